//! Exact Gaussian-process regression, one GP per objective, as BoTorch's `SingleTaskGP`.
//!
//! - Kernels ([`Kernel`], [`KernelKind`]): Matérn-5/2 or RBF, ARD lengthscales, optional
//!   outputscale.
//! - Presets ([`Preset`]): BoTorch's current default (RBF, dimension-scaled LogNormal priors) and
//!   its legacy one (Matérn-5/2 with Gamma priors, used by the BOMF paper).
//! - Inputs are normalised to the unit cube by given bounds, outputs standardised (mean, std
//!   with BoTorch's `min_stdv = 1e-8`); posteriors are returned in the original units.
//! - Hyperparameters by maximising the marginal likelihood plus log priors (MAP, divided by `n`
//!   as GPyTorch's `ExactMarginalLogLikelihood`), with analytic gradients, from BoTorch's own
//!   initial values and from seeded draws of the priors, each polished by the crate's L-BFGS-B
//!   ([`crate::lbfgsb`]) in a box of log-hyperparameters ([`FitOptions`], [`FitReport`]). The
//!   constant mean is profiled out in closed form (it has no prior, so its optimum given the
//!   other hyperparameters is the generalised-least-squares mean).
//! - Posterior: mean and variance with input gradients ([`PointPosterior`]), the joint mean and
//!   covariance over any set of points ([`JointPosterior`]); inside the crate also the
//!   cached-Cholesky low-rank update qNEHVI uses to extend the baseline block with new points.
//!
//! Why not `egobox-gp` (the crate the project's design named; fast): it has only a fixed nugget (no
//! learned noise, no per-observation noise), no hyperparameter priors (so no MAP fit and
//! neither BoTorch preset), its restarts optimise with COBYLA (no gradients), its sampling uses
//! an unseeded global RNG, and it does not expose its Cholesky factor, which the qNEHVI
//! low-rank update needs. The model itself is ~500 lines on plain `Vec<f64>`.

pub(crate) mod blocked;
mod fit;
mod kernel;
pub(crate) mod linalg;
mod posterior;
mod prior;
#[cfg(test)]
mod tests;

pub use fit::{FitOptions, FitReport, NoiseSpec};
pub use kernel::{Kernel, KernelKind};
pub(crate) use posterior::{CachedBaseline, JointPosteriorGrad, LowRankBlock, LowRankBlockGrad};
pub use posterior::{JointPosterior, PointPosterior};
pub use prior::Preset;

use serde::{Deserialize, Serialize};

use crate::error::{BoError, Result};

/// BoTorch's `Standardize(min_stdv=1e-8)`: a standard deviation below this is replaced by 1.
pub(crate) const MIN_STD: f64 = 1e-8;

/// Hyperparameters in model space (unit-cube inputs, standardised outputs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hyperparameters {
    pub kernel: Kernel,
    /// Observation-noise variance of each training point (all equal when learned).
    pub noise: Vec<f64>,
    /// Constant prior mean.
    pub mean: f64,
}

/// A fitted GP: training data in model space, hyperparameters and the Cholesky factor of
/// `K + diag(noise)`. Serialisable as a whole, so a run can resume without refitting.
///
/// Built by [`Self::fit`] (MAP hyperparameters) or [`Self::with_hyperparameters`]; queried by
/// [`Self::predict`], [`Self::predict_with_grad`] and [`Self::posterior_joint`], in user units.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GaussianProcess {
    pub(crate) d: usize,
    pub(crate) n: usize,
    /// Lower input bounds and widths used to map inputs to the unit cube.
    pub(crate) input_lower: Vec<f64>,
    pub(crate) input_width: Vec<f64>,
    /// Output standardisation: `y_model = (y − y_mean) / y_std`.
    pub(crate) y_mean: f64,
    pub(crate) y_std: f64,
    /// Normalised training inputs (`n × d`, row-major) and standardised outputs.
    pub(crate) x: Vec<f64>,
    pub(crate) y: Vec<f64>,
    pub(crate) hyper: Hyperparameters,
    /// Whether the noise is a hyperparameter (with a prior) rather than given.
    pub(crate) noise_learned: bool,
    /// Lower Cholesky factor of `K + diag(noise)` (`n × n`).
    pub(crate) chol: Vec<f64>,
    /// `(K + diag(noise))⁻¹ (y − mean)`.
    pub(crate) alpha: Vec<f64>,
    /// How the hyperparameters were found (absent for fixed hyperparameters).
    pub(crate) report: Option<FitReport>,
}

impl GaussianProcess {
    /// Input dimension `d`.
    pub fn dim(&self) -> usize {
        self.d
    }

    /// Number of training points.
    pub fn n_train(&self) -> usize {
        self.n
    }

    /// The training outputs in model space: standardised by [`Self::output_scaling`].
    pub fn train_outputs(&self) -> &[f64] {
        &self.y
    }

    /// The output standardisation `(mean, std)`: `y_model = (y − mean) / std`.
    pub fn output_scaling(&self) -> (f64, f64) {
        (self.y_mean, self.y_std)
    }

    /// The hyperparameters, in model space (unit-cube inputs, standardised outputs).
    pub fn hyperparameters(&self) -> &Hyperparameters {
        &self.hyper
    }

    /// How [`Self::fit`] found the hyperparameters (`None` for given ones).
    pub fn fit_report(&self) -> Option<&FitReport> {
        self.report.as_ref()
    }
}

/// Training data in user units, validated.
pub(crate) struct Standardized {
    pub x: Vec<f64>,
    pub y: Vec<f64>,
    pub input_lower: Vec<f64>,
    pub input_width: Vec<f64>,
    pub y_mean: f64,
    pub y_std: f64,
}

/// Validate and transform training data: inputs to the unit cube of `bounds` (the unit cube
/// itself when `None`), outputs standardised. Non-finite values are errors that name the row.
pub(crate) fn standardize(
    x: &[f64],
    y: &[f64],
    d: usize,
    bounds: Option<&[(f64, f64)]>,
) -> Result<Standardized> {
    if d == 0 {
        return Err(BoError::InvalidInput(
            "GP input dimension must be at least 1".into(),
        ));
    }
    let n = y.len();
    if n == 0 {
        return Err(BoError::InvalidInput(
            "GP needs at least one observation".into(),
        ));
    }
    BoError::check_dim("GP training inputs (n * d)", n * d, x.len())?;
    for (i, row) in x.chunks_exact(d).enumerate() {
        if row.iter().any(|v| !v.is_finite()) {
            return Err(BoError::InvalidInput(format!(
                "GP training input row {i} is not finite: {row:?}"
            )));
        }
    }
    if let Some((i, v)) = y.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(BoError::InvalidInput(format!(
            "GP training output {i} is {v}: failed evaluations must be removed before fitting"
        )));
    }
    let (input_lower, input_width) = input_transform(d, bounds)?;
    let xs = x
        .chunks_exact(d)
        .flat_map(|row| {
            row.iter()
                .enumerate()
                .map(|(k, v)| (v - input_lower[k]) / input_width[k])
                .collect::<Vec<_>>()
        })
        .collect();
    let y_mean = y.iter().sum::<f64>() / n as f64;
    let var = if n > 1 {
        y.iter().map(|v| (v - y_mean).powi(2)).sum::<f64>() / (n - 1) as f64
    } else {
        0.0
    };
    let mut y_std = var.sqrt();
    if y_std.is_nan() || y_std < MIN_STD {
        y_std = 1.0;
    }
    let ys = y.iter().map(|v| (v - y_mean) / y_std).collect();
    Ok(Standardized {
        x: xs,
        y: ys,
        input_lower,
        input_width,
        y_mean,
        y_std,
    })
}

/// Noise variances, one per observation, from `v`: a single value shared by all `n`
/// observations, or one each (otherwise a dimension mismatch naming `what`).
fn per_observation(v: &[f64], n: usize, what: &str) -> Result<Vec<f64>> {
    match v.len() {
        1 => Ok(vec![v[0]; n]),
        l if l == n => Ok(v.to_vec()),
        l => Err(BoError::DimensionMismatch {
            what: what.into(),
            expected: n,
            got: l,
        }),
    }
}

fn input_transform(d: usize, bounds: Option<&[(f64, f64)]>) -> Result<(Vec<f64>, Vec<f64>)> {
    match bounds {
        None => Ok((vec![0.0; d], vec![1.0; d])),
        Some(b) => {
            BoError::check_dim("GP input bounds", d, b.len())?;
            for (k, &(lo, hi)) in b.iter().enumerate() {
                if !(lo.is_finite() && hi.is_finite() && hi > lo) {
                    return Err(BoError::InvalidInput(format!(
                        "GP input bounds of dimension {k} are not a finite interval: [{lo}, {hi}]"
                    )));
                }
            }
            Ok((
                b.iter().map(|b| b.0).collect(),
                b.iter().map(|b| b.1 - b.0).collect(),
            ))
        }
    }
}

impl GaussianProcess {
    /// Build a GP with given hyperparameters (model space) without fitting them.
    /// `noise` has one entry (a shared, "learned" noise level: it gets the preset's prior in
    /// [`GaussianProcess::map_objective`]) or one per observation (known noise, no prior).
    pub fn with_hyperparameters(
        x: &[f64],
        y: &[f64],
        d: usize,
        bounds: Option<&[(f64, f64)]>,
        kernel: Kernel,
        noise: &[f64],
        mean: f64,
    ) -> Result<Self> {
        let s = standardize(x, y, d, bounds)?;
        let n = y.len();
        BoError::check_dim("lengthscales", d, kernel.lengthscales.len())?;
        let noise_learned = noise.len() == 1;
        let noise = per_observation(noise, n, "noise variances")?;
        let hyper = Hyperparameters {
            kernel,
            noise,
            mean,
        };
        Self::from_parts(s, hyper, noise_learned, None)
    }

    pub(crate) fn from_parts(
        s: Standardized,
        hyper: Hyperparameters,
        noise_learned: bool,
        report: Option<FitReport>,
    ) -> Result<Self> {
        let n = s.y.len();
        let d = s.input_lower.len();
        let mut k = hyper.kernel.matrix(&s.x, &s.x, d);
        for i in 0..n {
            k[i * n + i] += hyper.noise[i];
        }
        let (chol, _) = linalg::cholesky_jittered(&k, n)?;
        let resid: Vec<f64> = s.y.iter().map(|v| v - hyper.mean).collect();
        let alpha = linalg::cho_solve(&chol, n, &resid);
        Ok(Self {
            d,
            n,
            input_lower: s.input_lower,
            input_width: s.input_width,
            y_mean: s.y_mean,
            y_std: s.y_std,
            x: s.x,
            y: s.y,
            hyper,
            noise_learned,
            chol,
            alpha,
            report,
        })
    }

    /// Map user-unit points (row-major) to the model's unit cube, checking their shape.
    pub(crate) fn normalize_inputs(&self, xs: &[f64]) -> Result<Vec<f64>> {
        if !xs.len().is_multiple_of(self.d) {
            return Err(BoError::DimensionMismatch {
                what: "GP query points (multiple of d)".into(),
                expected: self.d,
                got: xs.len(),
            });
        }
        if xs.iter().any(|v| !v.is_finite()) {
            return Err(BoError::InvalidInput(
                "GP query points must be finite".into(),
            ));
        }
        Ok(xs
            .chunks_exact(self.d)
            .flat_map(|row| {
                row.iter()
                    .enumerate()
                    .map(|(k, v)| (v - self.input_lower[k]) / self.input_width[k])
                    .collect::<Vec<_>>()
            })
            .collect())
    }

    /// Log marginal likelihood of the standardised training data under the current
    /// hyperparameters, `ln N(y | mean, K + diag(noise))` (not divided by `n`).
    pub fn log_marginal_likelihood(&self) -> f64 {
        let n = self.n;
        let quad: f64 = self
            .y
            .iter()
            .zip(&self.alpha)
            .map(|(y, a)| (y - self.hyper.mean) * a)
            .sum();
        let logdet: f64 = (0..n).map(|i| self.chol[i * n + i].ln()).sum::<f64>() * 2.0;
        -0.5 * quad - 0.5 * logdet - 0.5 * n as f64 * (2.0 * std::f64::consts::PI).ln()
    }
}
