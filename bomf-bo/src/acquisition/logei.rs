//! LogEI acquisitions (Ament et al., NeurIPS 2023), as BoTorch's `qLogExpectedImprovement`
//! and `LogExpectedImprovement`, with analytic gradients.
//!
//! qLogEI is `log mean_k fatmax_i log_fatplus(f_k(x_i) − f*, τ_relu)` over fixed QMC samples
//! `f_k = μ + L ε_k` of the joint posterior (`L = chol Σ`): smooth and non-zero everywhere, so
//! a quasi-Newton search keeps moving where plain EI is flat. The gradient is back-propagated
//! by hand: through the log-mean-exp and fat max weights to each sample, then to the posterior
//! mean and, by forward-mode differentiation of the Cholesky factor
//! (`dL = L Φ(L⁻¹ dΣ L⁻ᵀ)`, Φ = lower triangle with halved diagonal), to the covariance.

use super::Acquisition;
use crate::error::{BoError, Result};
use crate::gp::linalg::cholesky_jittered;
use crate::gp::{GaussianProcess, JointPosteriorGrad};
use crate::safe_math::{
    FAT_ALPHA, erfcx, fatmax_grad, log_fatplus_grad, log_norm_pdf, log_softplus_grad, log1mexp,
    logmeanexp_grad, norm_cdf, norm_pdf, smooth_amax_grad,
};
use crate::sampling::NormalBaseSamples;

/// BoTorch's `TAU_RELU`: temperature of the smoothed ReLU over improvements.
pub(crate) const TAU_RELU: f64 = 1e-6;
/// BoTorch's `TAU_MAX`: temperature of the smooth maximum over the `q` candidates.
pub(crate) const TAU_MAX: f64 = 1e-2;

/// Monte Carlo qLogEI over a fitted GP with fixed base samples (single objective, maximised).
#[derive(Debug, Clone)]
pub struct QLogExpectedImprovement<'a> {
    gp: &'a GaussianProcess,
    best_f: f64,
    /// `n_samples × q_max`; a batch of `q` points uses the first `q` columns.
    base: NormalBaseSamples,
    pub tau_relu: f64,
    pub tau_max: f64,
    /// Fat-tailed smoothing (`log_fatplus`, `fatmax`) rather than `log_softplus`/`smooth_amax`.
    pub fat: bool,
}

impl<'a> QLogExpectedImprovement<'a> {
    /// qLogEI with BoTorch's defaults (`τ_relu = 1e-6`, `τ_max = 1e-2`, fat). `base` fixes the
    /// MC samples; its `dim` is the largest batch size `q` it can score.
    pub fn new(gp: &'a GaussianProcess, best_f: f64, base: NormalBaseSamples) -> Result<Self> {
        if !best_f.is_finite() {
            return Err(BoError::InvalidInput(format!(
                "qLogEI best_f must be finite, got {best_f}"
            )));
        }
        if base.n_samples == 0 || base.dim == 0 {
            return Err(BoError::InvalidInput(
                "qLogEI needs at least one base sample".into(),
            ));
        }
        Ok(Self {
            gp,
            best_f,
            base,
            tau_relu: TAU_RELU,
            tau_max: TAU_MAX,
            fat: true,
        })
    }

    /// Value, and the gradient w.r.t. `x` when `grad` is given.
    pub fn evaluate(&self, x: &[f64], grad: Option<&mut [f64]>) -> Result<f64> {
        let q = self.batch_size(x)?;
        let with_grad = grad.is_some();
        let jp = if with_grad {
            Some(self.gp.posterior_joint_with_grad(x)?)
        } else {
            None
        };
        let joint = match &jp {
            Some(j) => j.joint.clone(),
            None => self.gp.posterior_joint(x)?,
        };
        let (l, _) = cholesky_jittered(&joint.cov, q)?;
        let (per_sample, dsample) = self.per_sample(&joint.mean, &l, q);
        let mut weights = vec![0.0; self.base.n_samples];
        let value = logmeanexp_grad(&per_sample, &mut weights);
        let (Some(grad), Some(jp)) = (grad, jp) else {
            return Ok(value);
        };
        self.backprop(&jp, &l, q, &weights, &dsample, grad);
        Ok(value)
    }

    /// `q` for a row-major batch `x` of `q` points, which the base samples must cover.
    fn batch_size(&self, x: &[f64]) -> Result<usize> {
        let d = self.gp.d;
        if x.is_empty() || !x.len().is_multiple_of(d) {
            return Err(BoError::DimensionMismatch {
                what: "qLogEI batch (multiple of d)".into(),
                expected: d,
                got: x.len(),
            });
        }
        let q = x.len() / d;
        if q > self.base.dim {
            return Err(BoError::DimensionMismatch {
                what: "qLogEI batch size vs base samples".into(),
                expected: self.base.dim,
                got: q,
            });
        }
        Ok(q)
    }

    /// Every MC sample's smoothed log improvement `r_k` of the batch with posterior mean `mean`
    /// and covariance root `l` (`q × q`), and `∂r_k/∂y_ki` (`n_samples × q`).
    fn per_sample(&self, mean: &[f64], l: &[f64], q: usize) -> (Vec<f64>, Vec<f64>) {
        let ns = self.base.n_samples;
        let mut per_sample = vec![0.0; ns];
        let mut dsample = vec![0.0; ns * q];
        let mut li = vec![0.0; q];
        let mut dli = vec![0.0; q];
        let mut gmax = vec![0.0; q];
        for k in 0..ns {
            let eps = &self.base.row(k)[..q];
            for i in 0..q {
                let y = mean[i] + (0..=i).map(|j| l[i * q + j] * eps[j]).sum::<f64>();
                let (v, dv) = if self.fat {
                    log_fatplus_grad(y - self.best_f, self.tau_relu)
                } else {
                    log_softplus_grad(y - self.best_f, self.tau_relu)
                };
                li[i] = v;
                dli[i] = dv;
            }
            per_sample[k] = if self.fat {
                fatmax_grad(&li, self.tau_max, FAT_ALPHA, &mut gmax)
            } else {
                smooth_amax_grad(&li, self.tau_max, &mut gmax)
            };
            for i in 0..q {
                dsample[k * q + i] = gmax[i] * dli[i];
            }
        }
        (per_sample, dsample)
    }

    /// The gradient w.r.t. the batch inputs: the reduction's sample `weights` times `dsample`,
    /// through the posterior mean and the covariance root `l` (via `jp`'s input derivatives).
    fn backprop(
        &self,
        jp: &JointPosteriorGrad,
        l: &[f64],
        q: usize,
        weights: &[f64],
        dsample: &[f64],
        grad: &mut [f64],
    ) {
        let d = self.gp.d;
        // Adjoints: ∂A/∂μ_i = Σ_k G_ki, ∂A/∂L_ij = Σ_k G_ki ε_kj with G_ki = w_k ∂r_k/∂y_ki.
        let mut g_mean = vec![0.0; q];
        let mut g_l = vec![0.0; q * q];
        for (k, w) in weights.iter().enumerate() {
            let eps = &self.base.row(k)[..q];
            for i in 0..q {
                let gki = w * dsample[k * q + i];
                g_mean[i] += gki;
                for j in 0..=i {
                    g_l[i * q + j] += gki * eps[j];
                }
            }
        }
        grad.fill(0.0);
        jp.backprop_through_root(l, d, &g_mean, &g_l, grad);
    }
}

impl_mc_acquisition!(QLogExpectedImprovement<'_>, |acq| acq.gp.d);

/// Below this `u` the ratios `Φ/φ` and `h/φ` come from their asymptotic series, which avoids
/// the cancellation in `1 − |u|Φ/φ ≈ 1/u²` (BoTorch switches to the leading-order asymptote
/// only at −1e6, and its gradient loses ~`ε·u²` relative accuracy before that).
const LOG_EI_SERIES_BELOW: f64 = -30.0;

/// `ln(φ(u) + u Φ(u))` and its derivative `Φ(u) / (φ(u) + u Φ(u))`, accurate for all `u`
/// down to about −1e150 (BoTorch's `_log_ei_helper`).
pub(crate) fn log_ei_helper(u: f64) -> (f64, f64) {
    if u > -1.0 {
        let h = norm_pdf(u) + u * norm_cdf(u);
        return (h.ln(), norm_cdf(u) / h);
    }
    if u > LOG_EI_SERIES_BELOW {
        // h = φ(u) (1 − e^w), w = ln(|u| Φ(u)/φ(u)), Φ/φ = √(π/2) erfcx(−u/√2).
        let phi_ratio =
            (std::f64::consts::PI / 2.0).sqrt() * erfcx(-u * std::f64::consts::FRAC_1_SQRT_2);
        let w = (u.abs() * phi_ratio).ln();
        let l1m = log1mexp(w);
        return (log_norm_pdf(u) + l1m, phi_ratio / l1m.exp());
    }
    // Φ/φ = (1/|u|) Σ_k (−1)^k (2k−1)!!/u^{2k} and h/φ = 1 + u Φ/φ = Σ_{k≥1} (−1)^{k+1} (2k−1)!!/u^{2k}.
    let inv_u2 = 1.0 / (u * u);
    let mut term = 1.0;
    let mut ratio_sum = 1.0;
    let mut h_sum = 0.0;
    for k in 1..30 {
        term *= -((2 * k - 1) as f64) * inv_u2;
        ratio_sum += term;
        h_sum -= term;
        if term.abs() < 1e-17 * inv_u2 {
            break;
        }
    }
    let phi_ratio = ratio_sum / u.abs();
    (log_norm_pdf(u) + h_sum.ln(), phi_ratio / h_sum)
}

/// Analytic LogEI for one candidate (`q = 1`), maximisation.
#[derive(Debug, Clone)]
pub struct LogExpectedImprovement<'a> {
    gp: &'a GaussianProcess,
    best_f: f64,
}

/// BoTorch's floor on the posterior variance in analytic acquisitions.
const MIN_VARIANCE: f64 = 1e-12;

impl<'a> LogExpectedImprovement<'a> {
    pub fn new(gp: &'a GaussianProcess, best_f: f64) -> Result<Self> {
        if !best_f.is_finite() {
            return Err(BoError::InvalidInput(format!(
                "LogEI best_f must be finite, got {best_f}"
            )));
        }
        Ok(Self { gp, best_f })
    }

    /// `log EI(x)` and its gradient.
    pub fn evaluate(&self, x: &[f64]) -> Result<(f64, Vec<f64>)> {
        let p = self.gp.predict_with_grad(x)?;
        let clamped = p.variance < MIN_VARIANCE;
        let sigma = p.variance.max(MIN_VARIANCE).sqrt();
        let u = (p.mean - self.best_f) / sigma;
        let (lh, dlh) = log_ei_helper(u);
        let grad = p
            .mean_grad
            .iter()
            .zip(&p.variance_grad)
            .map(|(dm, dv)| {
                let ds = if clamped { 0.0 } else { dv / (2.0 * sigma) };
                let du = (dm - u * ds) / sigma;
                dlh * du + ds / sigma
            })
            .collect();
        Ok((lh + sigma.ln(), grad))
    }
}

impl Acquisition for LogExpectedImprovement<'_> {
    fn dim(&self) -> usize {
        self.gp.d
    }

    fn value(&self, x: &[f64]) -> f64 {
        self.evaluate(x).map_or(f64::NAN, |v| v.0)
    }

    fn value_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        match self.evaluate(x) {
            Ok((v, g)) => {
                grad.copy_from_slice(&g);
                v
            }
            Err(_) => {
                grad.iter_mut().for_each(|g| *g = 0.0);
                f64::NAN
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tolerance::close;

    #[test]
    fn log_ei_helper_is_smooth_across_branches() {
        // Values and derivatives agree on both sides of the u = -1 and u = -30 switches.
        for &u0 in &[-1.0, -30.0] {
            let (a, da) = log_ei_helper(u0 * (1.0 + 1e-12));
            let (b, db) = log_ei_helper(u0 * (1.0 - 1e-12));
            close(a, b, 1e-9, 1e-9, &format!("value at {u0}"));
            close(da, db, 1e-6, 1e-9, &format!("derivative at {u0}"));
        }
        // Far below the incumbent LogEI is very negative but finite, with h ≈ φ(u)/u².
        for u in [-1e3, -1e6, -1e100] {
            let (v, dv) = log_ei_helper(u);
            let lead = -0.5 * u * u - 0.918_938_533_204_672_7 - 2.0 * f64::ln(-u);
            // The next term of h/φ is −3/u⁴ against 1/u²: relative error 3/u².
            close(v, lead, 1e-15, 3.5 / (u * u), &format!("asymptote at {u}"));
            close(
                dv,
                -u - 2.0 / u,
                1e-15,
                10.0 / (u * u).abs() / u.abs(),
                &format!("asymptotic slope at {u}"),
            );
        }
    }
}
