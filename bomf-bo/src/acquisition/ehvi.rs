//! qEHVI and qLogEHVI (Daulton et al. 2020; Ament et al. 2023), as BoTorch's
//! `qExpectedHypervolumeImprovement` / `qLogExpectedHypervolumeImprovement`.
//!
//! The non-dominated region of the **observed** Pareto front (above the reference point) is cut
//! into boxes once, at construction. At a batch `X` of `q` candidates each objective's GP gives
//! an independent joint posterior `N(μ_j, Σ_j)`; with fixed QMC base samples `ε_k` the outcome
//! samples are `y_kij = μ_j[i] + (L_j ε_kj)[i]` (`L_j = chol Σ_j`) and
//!
//! ```text
//! qEHVI(X)    = mean_k HVI(y_k | cells)
//! qLogEHVI(X) = logmeanexp_k logHVI(y_k | cells)      (smoothed kernel, never −∞ off the front)
//! ```
//!
//! The estimator over given samples ([`mc_hvi_estimate`]) is public so it can be checked
//! against BoTorch's golden values with hand-made samples, and is shared with qNEHVI
//! ([`super::nehvi`]), whose only difference is one set of cells per MC sample.
//!
//! Gradients are analytic: the HVI kernels give `∂value/∂y_kij`, which flows to `μ_j` and to
//! `L_j`, and from `L_j` to `Σ_j` by forward-mode differentiation of the Cholesky factor
//! (the same back-propagation as [`super::logei`]).

use super::Acquisition;
use super::hvi::{LogHviParams, hvi, hvi_with_grad, log_hvi, log_hvi_with_grad};
use crate::acquisition::{AcquisitionFactory, WithPending};
use crate::error::{BoError, Result};
use crate::gp::GaussianProcess;
use crate::gp::linalg::cholesky_jittered;
use crate::partitioning::{Cells, nondominated_cells};
use crate::safe_math::logmeanexp_grad;
use crate::sampling::NormalBaseSamples;

/// Which per-sample kernel an estimator uses and how it averages over samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HviEstimator {
    /// Exact hypervolume improvement, arithmetic mean over samples (qEHVI / qNEHVI).
    Exact,
    /// Smoothed log hypervolume improvement, log-mean-exp over samples (qLogEHVI / qLogNEHVI).
    Log(LogHviParams),
}

impl HviEstimator {
    /// One sample's (log) HVI, and its gradient w.r.t. `ys` when `grad` is given.
    pub(crate) fn per_sample(
        &self,
        cells: &Cells,
        ys: &[f64],
        grad: Option<&mut [f64]>,
    ) -> Result<f64> {
        match (self, grad) {
            (Self::Exact, None) => hvi(cells, ys),
            (Self::Exact, Some(g)) => hvi_with_grad(cells, ys, g),
            (Self::Log(p), None) => log_hvi(cells, ys, p),
            (Self::Log(p), Some(g)) => log_hvi_with_grad(cells, ys, p, g),
        }
    }

    /// Combine per-sample values; `weights` (if given) receives `∂estimate/∂per_sample[k]`.
    pub(crate) fn reduce(&self, per_sample: &[f64], weights: Option<&mut [f64]>) -> f64 {
        let n = per_sample.len() as f64;
        match self {
            Self::Exact => {
                if let Some(w) = weights {
                    w.fill(1.0 / n);
                }
                per_sample.iter().sum::<f64>() / n
            }
            Self::Log(_) => match weights {
                Some(w) => logmeanexp_grad(per_sample, w),
                None => {
                    let mut w = vec![0.0; per_sample.len()];
                    logmeanexp_grad(per_sample, &mut w)
                }
            },
        }
    }
}

/// The Monte Carlo (log) EHVI over given outcome samples: `samples` is `n_samples × q × m`
/// (row-major), every sample scored against the same `cells`.
pub fn mc_hvi_estimate(
    cells: &Cells,
    samples: &[f64],
    q: usize,
    estimator: &HviEstimator,
) -> Result<f64> {
    let per = q * cells.m();
    if per == 0 || samples.is_empty() || !samples.len().is_multiple_of(per) {
        return Err(BoError::DimensionMismatch {
            what: "MC HVI samples (multiple of q * m)".into(),
            expected: per,
            got: samples.len(),
        });
    }
    let values = samples
        .chunks_exact(per)
        .map(|ys| estimator.per_sample(cells, ys, None))
        .collect::<Result<Vec<_>>>()?;
    Ok(estimator.reduce(&values, None))
}

/// Joint posterior of one objective at the batch, factorised, with what the backward pass
/// needs.
pub(crate) struct ObjectiveBatch {
    pub mean: Vec<f64>,
    /// Lower Cholesky factor of the joint covariance (`q × q`).
    pub chol: Vec<f64>,
    grad: Option<crate::gp::JointPosteriorGrad>,
}

impl ObjectiveBatch {
    pub fn new(gp: &GaussianProcess, x: &[f64], with_grad: bool) -> Result<Self> {
        let q = x.len() / gp.d;
        if with_grad {
            let jp = gp.posterior_joint_with_grad(x)?;
            let (chol, _) = cholesky_jittered(&jp.joint.cov, q)?;
            Ok(Self {
                mean: jp.joint.mean.clone(),
                chol,
                grad: Some(jp),
            })
        } else {
            let joint = gp.posterior_joint(x)?;
            let (chol, _) = cholesky_jittered(&joint.cov, q)?;
            Ok(Self {
                mean: joint.mean,
                chol,
                grad: None,
            })
        }
    }

    /// Sample of point `i`: `μ_i + Σ_{l≤i} L_il ε_l`.
    #[inline]
    pub fn sample(&self, i: usize, eps: &[f64]) -> f64 {
        let q = self.mean.len();
        self.mean[i]
            + self.chol[i * q..i * q + i + 1]
                .iter()
                .zip(eps)
                .map(|(l, e)| l * e)
                .sum::<f64>()
    }

    /// Add `∂A/∂x` to `grad` (`q × d`) given the adjoints `g_mean = ∂A/∂μ` and
    /// `g_l = ∂A/∂L` (`q × q`, lower triangle used).
    pub fn backprop(&self, d: usize, g_mean: &[f64], g_l: &[f64], grad: &mut [f64]) {
        if let Some(jp) = &self.grad {
            jp.backprop_through_root(&self.chol, d, g_mean, g_l, grad);
        }
    }
}

/// Checks that `gps` is a non-empty list of GPs over the same input dimension; returns `d`.
pub(crate) fn check_models(gps: &[GaussianProcess], what: &str) -> Result<usize> {
    let Some(first) = gps.first() else {
        return Err(BoError::InvalidInput(format!(
            "{what}: needs one GP per objective, got none"
        )));
    };
    if let Some((j, gp)) = gps.iter().enumerate().find(|(_, g)| g.d != first.d) {
        return Err(BoError::DimensionMismatch {
            what: format!("{what}: input dimension of the GP of objective {j}"),
            expected: first.d,
            got: gp.d,
        });
    }
    Ok(first.d)
}

/// Checks a candidate batch: a positive multiple of `d`, at most `q_max` rows; returns `q`.
pub(crate) fn check_batch(x: &[f64], d: usize, q_max: usize, what: &str) -> Result<usize> {
    if x.is_empty() || !x.len().is_multiple_of(d) {
        return Err(BoError::DimensionMismatch {
            what: format!("{what}: candidate batch (positive multiple of d)"),
            expected: d,
            got: x.len(),
        });
    }
    let q = x.len() / d;
    if q > q_max {
        return Err(BoError::DimensionMismatch {
            what: format!("{what}: batch size vs the base samples' q_max"),
            expected: q_max,
            got: q,
        });
    }
    Ok(q)
}

/// qEHVI / qLogEHVI over independent GPs (one per objective, all maximised, outputs in the
/// GPs' original units).
///
/// Base-sample layout: `base.dim = m · q_max`; row `k`, objective `j` uses the columns
/// `j·q_max .. j·q_max + q` for a batch of `q ≤ q_max` points.
#[derive(Debug, Clone)]
pub struct QExpectedHypervolumeImprovement<'a> {
    gps: &'a [GaussianProcess],
    cells: Cells,
    base: NormalBaseSamples,
    q_max: usize,
    estimator: HviEstimator,
}

impl<'a> QExpectedHypervolumeImprovement<'a> {
    /// qEHVI. `observed_y` is `n × m` (row-major, may be empty); only its Pareto points
    /// strictly better than `ref_point` shape the cells.
    pub fn new(
        gps: &'a [GaussianProcess],
        observed_y: &[f64],
        ref_point: &[f64],
        base: NormalBaseSamples,
    ) -> Result<Self> {
        let m = gps.len();
        let cells = nondominated_cells(observed_y, m, ref_point)?;
        Self::from_cells(gps, cells, base, HviEstimator::Exact)
    }

    /// The same acquisition estimated with `estimator`; qLogEHVI with BoTorch's defaults is
    /// `HviEstimator::Log(LogHviParams::QLOGEHVI)`.
    pub fn with_estimator(self, estimator: HviEstimator) -> Self {
        Self { estimator, ..self }
    }

    /// From precomputed cells (any box decomposition of the non-dominated region).
    pub fn from_cells(
        gps: &'a [GaussianProcess],
        cells: Cells,
        base: NormalBaseSamples,
        estimator: HviEstimator,
    ) -> Result<Self> {
        check_models(gps, "qEHVI")?;
        let m = gps.len();
        BoError::check_dim(
            "qEHVI: objectives of the cells vs number of GPs",
            m,
            cells.m(),
        )?;
        if base.n_samples == 0 || base.dim == 0 || !base.dim.is_multiple_of(m) {
            return Err(BoError::DimensionMismatch {
                what: "qEHVI: base samples (dim = m * q_max, at least one sample)".into(),
                expected: m,
                got: base.dim,
            });
        }
        let q_max = base.dim / m;
        Ok(Self {
            gps,
            cells,
            base,
            q_max,
            estimator,
        })
    }

    /// The cells of the observed front.
    pub fn cells(&self) -> &Cells {
        &self.cells
    }

    /// Value, and the gradient w.r.t. `x` (`q × d`) when `grad` is given.
    pub fn evaluate(&self, x: &[f64], grad: Option<&mut [f64]>) -> Result<f64> {
        let d = self.gps[0].d;
        let q = check_batch(x, d, self.q_max, "qEHVI")?;
        let m = self.gps.len();
        let with_grad = grad.is_some();
        let objs = self
            .gps
            .iter()
            .map(|gp| ObjectiveBatch::new(gp, x, with_grad))
            .collect::<Result<Vec<_>>>()?;
        let ns = self.base.n_samples;
        let qm = q * m;
        let mut ys = vec![0.0; qm];
        let mut per_sample = vec![0.0; ns];
        let mut dys = if with_grad {
            vec![0.0; ns * qm]
        } else {
            vec![]
        };
        for k in 0..ns {
            let row = self.base.row(k);
            for (j, ob) in objs.iter().enumerate() {
                let eps = &row[j * self.q_max..j * self.q_max + q];
                for i in 0..q {
                    ys[i * m + j] = ob.sample(i, eps);
                }
            }
            per_sample[k] = if with_grad {
                self.estimator
                    .per_sample(&self.cells, &ys, Some(&mut dys[k * qm..(k + 1) * qm]))?
            } else {
                self.estimator.per_sample(&self.cells, &ys, None)?
            };
        }
        let Some(grad) = grad else {
            return Ok(self.estimator.reduce(&per_sample, None));
        };
        let mut weights = vec![0.0; ns];
        let value = self.estimator.reduce(&per_sample, Some(&mut weights));
        grad.fill(0.0);
        let mut g_mean = vec![0.0; q];
        let mut g_l = vec![0.0; q * q];
        for (j, ob) in objs.iter().enumerate() {
            g_mean.fill(0.0);
            g_l.fill(0.0);
            for k in 0..ns {
                if weights[k] == 0.0 {
                    continue;
                }
                let eps = &self.base.row(k)[j * self.q_max..j * self.q_max + q];
                for i in 0..q {
                    let g = weights[k] * dys[k * qm + i * m + j];
                    g_mean[i] += g;
                    for l in 0..=i {
                        g_l[i * q + l] += g * eps[l];
                    }
                }
            }
            ob.backprop(d, &g_mean, &g_l, grad);
        }
        Ok(value)
    }
}

impl_mc_acquisition!(QExpectedHypervolumeImprovement<'_>, |acq| acq.gps[0].d);

/// An [`AcquisitionFactory`] for qEHVI / qLogEHVI: owns the fitted GPs and the observed front's
/// cells; each build scores `[x; pending]` jointly ([`WithPending`], BoTorch's
/// `concatenate_pending_points`) with `mc_samples` base samples of dimension
/// `m · (1 + n_pending)`, seeded by `seed`.
#[derive(Debug, Clone)]
pub struct QEhviFactory {
    gps: Vec<GaussianProcess>,
    cells: Cells,
    mc_samples: usize,
    seed: u64,
    estimator: HviEstimator,
}

impl QEhviFactory {
    /// `observed_y` is `n × m` (row-major); `estimator` picks qEHVI or qLogEHVI.
    pub fn new(
        gps: Vec<GaussianProcess>,
        observed_y: &[f64],
        ref_point: &[f64],
        mc_samples: usize,
        seed: u64,
        estimator: HviEstimator,
    ) -> Result<Self> {
        check_models(&gps, "qEHVI")?;
        let cells = nondominated_cells(observed_y, gps.len(), ref_point)?;
        Ok(Self {
            gps,
            cells,
            mc_samples,
            seed,
            estimator,
        })
    }
}

impl AcquisitionFactory for QEhviFactory {
    fn build(&self, pending: &[f64]) -> Result<Box<dyn Acquisition + '_>> {
        let d = self.gps[0].d;
        let q = 1 + pending.len() / d;
        let base = NormalBaseSamples::new(self.mc_samples, self.gps.len() * q, self.seed)?;
        let acq = QExpectedHypervolumeImprovement::from_cells(
            &self.gps,
            self.cells.clone(),
            base,
            self.estimator,
        )?;
        Ok(Box::new(WithPending::new(Box::new(acq), pending)?))
    }
}
