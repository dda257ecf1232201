//! qNEHVI and qLogNEHVI (Daulton et al., NeurIPS 2021; Ament et al. 2023), as BoTorch's
//! `qNoisyExpectedHypervolumeImprovement` / `qLogNoisyExpectedHypervolumeImprovement` with
//! `cache_root=True`, `cache_pending=True`, `max_iep=0`, `incremental_nehvi=True`.
//!
//! Noise never enters the incumbent front: every MC sample `k` draws the objectives **jointly**
//! at the baseline (already evaluated) points and the candidates, and scores the candidates'
//! improvement over *that sample's* Pareto front of the baseline:
//!
//! ```text
//! qNEHVI(X) = mean_k HVI(f_k(X) | cells_k),   cells_k = non-dominated boxes of f_k(X_baseline)
//! ```
//!
//! Construction does the expensive part once: optional pruning of the baseline
//! ([`prune_inferior_points`]), one [`CachedBaseline`] (posterior Cholesky of the baseline block)
//! per objective, the baseline samples `f_k(X_b) = μ_b + L_bb ε_b,k` and their box
//! decompositions. An evaluation then only extends each cached factor by the `q` new points
//! (`L_xb`, `L_xx`, see [`crate::gp::posterior`]) and reuses the **same** `ε_b,k`, so the
//! candidates' samples are consistent with the fronts they are scored against.
//!
//! Pending points (sequential greedy batches, asked-but-untold points) are appended to the
//! baseline and the boxes recomputed — BoTorch's `cache_pending=True, max_iep=0`: the value of a
//! candidate is its improvement given baseline ∪ pending.
//!
//! Base-sample layout: with `nb` baseline points (after pruning, pending included) and `q_max`
//! new points, `base.dim = m · (nb + q_max)`; row `k`, objective `j` uses the block
//! `j·(nb+q_max) ..`: its first `nb` entries are `ε_b`, the next `q_max` are `ε_x`.
//!
//! Gradients are analytic: `∂value/∂y` from the HVI kernels flows to the block's mean, `L_xb`
//! and `L_xx`, whose input derivatives [`CachedBaseline::extend_with_grad`] provides.

use super::Acquisition;
use super::ehvi::{HviEstimator, check_batch, check_models};
use super::hvi::LogHviParams;
use crate::acquisition::AcquisitionFactory;
use crate::error::{BoError, Result};
use crate::gp::blocked::{self, BLOCKED_MIN_N, Rows};
use crate::gp::linalg::cholesky_jittered;
use crate::gp::{CachedBaseline, GaussianProcess, LowRankBlock, LowRankBlockGrad};
use crate::partitioning::{Cells, is_non_dominated, nondominated_cells_into};
use crate::sampling::NormalBaseSamples;
use crate::sampling::derive_seed;

/// Settings of [`QNoisyExpectedHypervolumeImprovement::new`]; defaults follow BoTorch as used by
/// Ax and BOMF (128 MC samples, `prune_baseline=True`, `max_frac=1`).
#[derive(Debug, Clone, PartialEq)]
pub struct NehviOptions {
    /// Number of fixed QMC base samples.
    pub mc_samples: usize,
    /// Seed of the base samples (pruning uses a seed derived from it).
    pub seed: u64,
    /// Largest candidate batch the acquisition scores jointly (1 for sequential greedy).
    pub q_max: usize,
    /// Drop baseline points with zero probability of being Pareto-optimal.
    pub prune_baseline: bool,
    /// At most `⌈max_frac · n⌉` baseline points survive pruning.
    pub max_frac: f64,
    /// Joint posterior samples used to estimate the pruning probabilities (BoTorch: 2048).
    pub prune_samples: usize,
    /// Exact kernel (qNEHVI) or log kernel (qLogNEHVI).
    pub estimator: HviEstimator,
}

impl Default for NehviOptions {
    fn default() -> Self {
        Self {
            mc_samples: 128,
            seed: 0,
            q_max: 1,
            prune_baseline: true,
            max_frac: 1.0,
            prune_samples: 2048,
            estimator: HviEstimator::Exact,
        }
    }
}

impl NehviOptions {
    /// qLogNEHVI's defaults ([`LogHviParams::QLOGNEHVI`]) with the other settings unchanged.
    pub fn log() -> Self {
        Self {
            estimator: HviEstimator::Log(LogHviParams::QLOGNEHVI),
            ..Self::default()
        }
    }
}

/// Draw `n_samples` joint posterior samples of every objective at the points `x` (`n × d`),
/// independently per objective, as `n_samples × n × m` (row-major). `base.dim = m · n`.
fn joint_samples(gps: &[GaussianProcess], x: &[f64], base: &NormalBaseSamples) -> Result<Vec<f64>> {
    let m = gps.len();
    let n = x.len() / gps[0].d;
    let mut out = vec![0.0; base.n_samples * n * m];
    for (j, gp) in gps.iter().enumerate() {
        let joint = gp.posterior_joint(x)?;
        let (l, _) = cholesky_jittered(&joint.cov, n)?;
        if n >= BLOCKED_MIN_N {
            // All samples at once: row k of E Lᵀ is L ε_k.
            let eps = Rows::new(&base.values[j * n..], base.dim);
            let draws = blocked::times_lower_t(eps, base.n_samples, &l, n);
            for (k, row) in draws.chunks_exact(n).enumerate() {
                for (i, v) in row.iter().enumerate() {
                    out[(k * n + i) * m + j] = joint.mean[i] + v;
                }
            }
            continue;
        }
        for k in 0..base.n_samples {
            let eps = &base.row(k)[j * n..(j + 1) * n];
            for i in 0..n {
                let v: f64 = l[i * n..i * n + i + 1]
                    .iter()
                    .zip(eps)
                    .map(|(a, b)| a * b)
                    .sum();
                out[(k * n + i) * m + j] = joint.mean[i] + v;
            }
        }
    }
    Ok(out)
}

/// BoTorch's `prune_inferior_points_multi_objective`: the indices (ascending) of the points of
/// `x` (`n × d`) that are Pareto-optimal and strictly better than `ref_point` in at least one of
/// `num_samples` joint posterior samples; when more than `⌈max_frac · n⌉` qualify, the most
/// probable are kept (stable order among equal probabilities).
pub fn prune_inferior_points(
    gps: &[GaussianProcess],
    x: &[f64],
    ref_point: &[f64],
    num_samples: usize,
    max_frac: f64,
    seed: u64,
) -> Result<Vec<usize>> {
    let d = check_models(gps, "prune_inferior_points")?;
    let m = gps.len();
    BoError::check_dim("prune_inferior_points: reference point", m, ref_point.len())?;
    if !(max_frac > 0.0 && max_frac <= 1.0) {
        return Err(BoError::InvalidInput(format!(
            "prune_inferior_points: max_frac must be in (0, 1], got {max_frac}"
        )));
    }
    if !x.len().is_multiple_of(d) {
        return Err(BoError::DimensionMismatch {
            what: "prune_inferior_points: points (multiple of d)".into(),
            expected: d,
            got: x.len(),
        });
    }
    let n = x.len() / d;
    if n == 0 || num_samples == 0 {
        return Ok((0..n).collect());
    }
    let base = NormalBaseSamples::new(num_samples, m * n, seed)?;
    let samples = joint_samples(gps, x, &base)?;
    let mut counts = vec![0usize; n];
    for ys in samples.chunks_exact(n * m) {
        let pareto = is_non_dominated(ys, m, false)?;
        for (i, (p, y)) in pareto.iter().zip(ys.chunks_exact(m)).enumerate() {
            if *p && y.iter().zip(ref_point).all(|(a, r)| a > r) {
                counts[i] += 1;
            }
        }
    }
    let max_points = ((max_frac * n as f64).ceil() as usize).max(1);
    let mut keep: Vec<usize> = (0..n).filter(|&i| counts[i] > 0).collect();
    if keep.len() > max_points {
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|a, b| counts[*b].cmp(&counts[*a])); // stable, descending
        keep = order[..max_points].to_vec();
        keep.sort_unstable();
    }
    Ok(keep)
}

/// The baseline as [`QNoisyExpectedHypervolumeImprovement::new`] uses it: pruned with
/// [`prune_inferior_points`] (seed derived from `options.seed`) when `options.prune_baseline`.
/// Deviation from BoTorch: when no point can be Pareto-optimal above the reference point, all
/// are kept instead of failing on an empty baseline.
pub fn pruned_baseline(
    gps: &[GaussianProcess],
    x_baseline: &[f64],
    ref_point: &[f64],
    options: &NehviOptions,
) -> Result<Vec<f64>> {
    if !options.prune_baseline {
        return Ok(x_baseline.to_vec());
    }
    let d = check_models(gps, "qNEHVI")?;
    let keep = prune_inferior_points(
        gps,
        x_baseline,
        ref_point,
        options.prune_samples,
        options.max_frac,
        derive_seed(options.seed, 1),
    )?;
    if keep.is_empty() {
        return Ok(x_baseline.to_vec());
    }
    Ok(keep
        .iter()
        .flat_map(|&i| x_baseline[i * d..(i + 1) * d].iter().copied())
        .collect())
}

/// qNEHVI / qLogNEHVI over independent GPs (one per objective, all maximised).
#[derive(Debug, Clone)]
pub struct QNoisyExpectedHypervolumeImprovement<'a> {
    gps: &'a [GaussianProcess],
    /// Baseline after pruning, pending points appended (`nb × d`).
    baseline: Vec<f64>,
    nb: usize,
    q_max: usize,
    cached: Vec<CachedBaseline>,
    base: NormalBaseSamples,
    /// One box decomposition per MC sample.
    cells: Vec<Cells>,
    estimator: HviEstimator,
}

impl<'a> QNoisyExpectedHypervolumeImprovement<'a> {
    /// Build the acquisition: prune `x_baseline` (`n × d`, the GPs' input units) if asked,
    /// append `pending` (`n_pending × d`), draw the base samples and the per-sample boxes.
    pub fn new(
        gps: &'a [GaussianProcess],
        x_baseline: &[f64],
        ref_point: &[f64],
        pending: &[f64],
        options: &NehviOptions,
    ) -> Result<Self> {
        let d = check_models(gps, "qNEHVI")?;
        let m = gps.len();
        for (what, pts) in [("baseline", x_baseline), ("pending points", pending)] {
            if !pts.len().is_multiple_of(d) {
                return Err(BoError::DimensionMismatch {
                    what: format!("qNEHVI: {what} (multiple of d)"),
                    expected: d,
                    got: pts.len(),
                });
            }
        }
        let mut baseline = pruned_baseline(gps, x_baseline, ref_point, options)?;
        baseline.extend_from_slice(pending);
        let nb = baseline.len() / d;
        let q_max = options.q_max.max(1);
        let base = NormalBaseSamples::new(options.mc_samples, m * (nb + q_max), options.seed)?;
        Self::with_base_samples(gps, &baseline, ref_point, base, options.estimator)
    }

    /// Build from an explicit baseline (already pruned, pending included) and explicit base
    /// samples laid out as in the module doc (`base.dim = m · (nb + q_max)`); no pruning.
    pub fn with_base_samples(
        gps: &'a [GaussianProcess],
        baseline: &[f64],
        ref_point: &[f64],
        base: NormalBaseSamples,
        estimator: HviEstimator,
    ) -> Result<Self> {
        let d = check_models(gps, "qNEHVI")?;
        let m = gps.len();
        if baseline.is_empty() || !baseline.len().is_multiple_of(d) {
            return Err(BoError::InvalidInput(format!(
                "qNEHVI needs at least one baseline point (a positive multiple of d={d} \
                 coordinates), got {} coordinates",
                baseline.len()
            )));
        }
        let nb = baseline.len() / d;
        if base.n_samples == 0 || !base.dim.is_multiple_of(m) || base.dim / m <= nb {
            return Err(BoError::DimensionMismatch {
                what: format!(
                    "qNEHVI: base samples (dim = m * (nb + q_max) with nb={nb}, q_max >= 1)"
                ),
                expected: m * (nb + 1),
                got: base.dim,
            });
        }
        let q_max = base.dim / m - nb;
        let cached = gps
            .iter()
            .map(|gp| CachedBaseline::new(gp, baseline))
            .collect::<Result<Vec<_>>>()?;
        let block = nb + q_max;
        let mut ys = vec![0.0; nb * m];
        let mut cells = Vec::with_capacity(base.n_samples);
        for k in 0..base.n_samples {
            let row = base.row(k);
            for (j, cb) in cached.iter().enumerate() {
                let eps = &row[j * block..j * block + nb];
                for i in 0..nb {
                    let v: f64 = cb.chol[i * nb..i * nb + i + 1]
                        .iter()
                        .zip(eps)
                        .map(|(a, b)| a * b)
                        .sum();
                    ys[i * m + j] = cb.mean[i] + v;
                }
            }
            let mut c = Cells::new(m);
            nondominated_cells_into(&ys, m, ref_point, &mut c)?;
            cells.push(c);
        }
        Ok(Self {
            gps,
            baseline: baseline.to_vec(),
            nb,
            q_max,
            cached,
            base,
            cells,
            estimator,
        })
    }

    /// The baseline actually used (pruned, pending appended), row-major `nb × d`.
    pub fn baseline(&self) -> &[f64] {
        &self.baseline
    }

    /// The base samples (layout in the module doc).
    pub fn base_samples(&self) -> &NormalBaseSamples {
        &self.base
    }

    /// Largest batch size scored jointly.
    pub fn q_max(&self) -> usize {
        self.q_max
    }

    /// The box decomposition of MC sample `k`'s baseline front.
    pub fn cells(&self, k: usize) -> Option<&Cells> {
        self.cells.get(k)
    }

    /// Value, and the gradient w.r.t. `x` (`q × d`) when `grad` is given.
    pub fn evaluate(&self, x: &[f64], grad: Option<&mut [f64]>) -> Result<f64> {
        let d = self.gps[0].d;
        let q = check_batch(x, d, self.q_max, "qNEHVI")?;
        let m = self.gps.len();
        let with_grad = grad.is_some();
        let mut grads: Vec<LowRankBlockGrad> = Vec::new();
        let mut plain: Vec<LowRankBlock> = Vec::new();
        for (gp, cb) in self.gps.iter().zip(&self.cached) {
            if with_grad {
                grads.push(cb.extend_with_grad(gp, x)?);
            } else {
                plain.push(cb.extend(gp, x)?);
            }
        }
        let blocks: Vec<&LowRankBlock> = if with_grad {
            grads.iter().map(|g| &g.block).collect()
        } else {
            plain.iter().collect()
        };
        let ns = self.base.n_samples;
        let qm = q * m;
        let mut dys = if with_grad {
            vec![0.0; ns * qm]
        } else {
            vec![]
        };
        let per_sample = self.per_sample(&blocks, q, with_grad.then_some(&mut dys[..]))?;
        let Some(grad) = grad else {
            return Ok(self.estimator.reduce(&per_sample, None));
        };
        let mut weights = vec![0.0; ns];
        let value = self.estimator.reduce(&per_sample, Some(&mut weights));
        grad.fill(0.0);
        for (j, bg) in grads.iter().enumerate() {
            self.add_block_grad(j, bg, (q, d), &weights, &dys, grad);
        }
        Ok(value)
    }

    /// Every MC sample's (log) HVI of the candidates' outcomes `blocks` (one per objective)
    /// over that sample's front; with `dys` (`n_samples × q × m`), its gradient w.r.t. the
    /// outcomes.
    fn per_sample(
        &self,
        blocks: &[&LowRankBlock],
        q: usize,
        mut dys: Option<&mut [f64]>,
    ) -> Result<Vec<f64>> {
        let m = blocks.len();
        let (nb, block) = (self.nb, self.nb + self.q_max);
        let ns = self.base.n_samples;
        let qm = q * m;
        let mut ys = vec![0.0; qm];
        let mut col = vec![0.0; q];
        let mut per_sample = vec![0.0; ns];
        for k in 0..ns {
            let row = self.base.row(k);
            for (j, b) in blocks.iter().enumerate() {
                let eps = &row[j * block..(j + 1) * block];
                b.sample(&eps[..nb], &eps[nb..nb + q], &mut col);
                for i in 0..q {
                    ys[i * m + j] = col[i];
                }
            }
            let dy = dys.as_deref_mut().map(|d| &mut d[k * qm..(k + 1) * qm]);
            per_sample[k] = self.estimator.per_sample(&self.cells[k], &ys, dy)?;
        }
        Ok(per_sample)
    }

    /// Add objective `j`'s share of the gradient: the sample weights of the reduction times
    /// the outcome gradients `dys`, back-propagated through the block's mean, `L_xb` and `L_xx`
    /// to the inputs of the `q` points (`d` coordinates each).
    fn add_block_grad(
        &self,
        j: usize,
        bg: &LowRankBlockGrad,
        (q, d): (usize, usize),
        weights: &[f64],
        dys: &[f64],
        grad: &mut [f64],
    ) {
        let m = self.gps.len();
        let (nb, block) = (self.nb, self.nb + self.q_max);
        let qm = q * m;
        // Adjoints of the block: ∂A/∂μ_i, ∂A/∂L_xb[i,·], ∂A/∂L_xx[i,·].
        let mut g_mean = vec![0.0; q];
        let mut g_xb = vec![0.0; q * nb];
        let mut g_xx = vec![0.0; q * q];
        for (k, &w) in weights.iter().enumerate() {
            if w == 0.0 {
                continue;
            }
            let eps = &self.base.row(k)[j * block..(j + 1) * block];
            for i in 0..q {
                let g = w * dys[k * qm + i * m + j];
                if g == 0.0 {
                    continue;
                }
                g_mean[i] += g;
                for (a, e) in g_xb[i * nb..(i + 1) * nb].iter_mut().zip(&eps[..nb]) {
                    *a += g * e;
                }
                for l in 0..=i {
                    g_xx[i * q + l] += g * eps[nb + l];
                }
            }
        }
        for p in 0..q {
            for c in 0..d {
                let dir = p * d + c;
                // Moving point p changes its mean, row p of L_xb, and all of L_xx.
                let from_xb: f64 = g_xb[p * nb..(p + 1) * nb]
                    .iter()
                    .zip(&bg.l_xb_row_grad[dir * nb..(dir + 1) * nb])
                    .map(|(a, b)| a * b)
                    .sum();
                let from_xx: f64 = g_xx
                    .iter()
                    .zip(&bg.l_xx_grad[dir * q * q..(dir + 1) * q * q])
                    .map(|(a, b)| a * b)
                    .sum();
                grad[dir] += g_mean[p] * bg.mean_grad[dir] + from_xb + from_xx;
            }
        }
    }
}

impl_mc_acquisition!(QNoisyExpectedHypervolumeImprovement<'_>, |acq| acq.gps[0].d);

/// An [`AcquisitionFactory`] for the ask/tell loop and sequential greedy batches: owns the
/// fitted GPs, prunes the baseline **once**, and builds a qNEHVI / qLogNEHVI per set of pending
/// points (appended to the baseline, boxes recomputed).
#[derive(Debug, Clone)]
pub struct QNehviFactory {
    gps: Vec<GaussianProcess>,
    baseline: Vec<f64>,
    ref_point: Vec<f64>,
    options: NehviOptions,
}

impl QNehviFactory {
    /// `x_baseline` is `n × d` in the GPs' input units; `options` as for
    /// [`QNoisyExpectedHypervolumeImprovement::new`].
    pub fn new(
        gps: Vec<GaussianProcess>,
        x_baseline: &[f64],
        ref_point: &[f64],
        options: NehviOptions,
    ) -> Result<Self> {
        let baseline = pruned_baseline(&gps, x_baseline, ref_point, &options)?;
        Ok(Self {
            gps,
            baseline,
            ref_point: ref_point.to_vec(),
            options: NehviOptions {
                prune_baseline: false,
                ..options
            },
        })
    }

    /// The baseline after pruning (without pending points).
    pub fn baseline(&self) -> &[f64] {
        &self.baseline
    }
}

impl AcquisitionFactory for QNehviFactory {
    fn build(&self, pending: &[f64]) -> Result<Box<dyn Acquisition + '_>> {
        Ok(Box::new(QNoisyExpectedHypervolumeImprovement::new(
            &self.gps,
            &self.baseline,
            &self.ref_point,
            pending,
            &self.options,
        )?))
    }
}
