//! MAP fit of the hyperparameters: maximise `(ln N(y | c, K + σ²I) + Σ ln p(θ)) / n` over log
//! lengthscales, log outputscale and log noise, with the constant mean `c` profiled out.

use rand::SeedableRng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::kernel::{Kernel, KernelKind};
use super::lbfgs::{LbfgsOptions, minimize_box};
use super::linalg;
use super::prior::{Preset, PresetSpec};
use super::{GaussianProcess, Hyperparameters, standardize};
use crate::error::{BoError, Result};

/// How the observation noise is treated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub enum NoiseSpec {
    /// One noise variance, inferred with the preset's prior (BoTorch's default).
    #[default]
    Learned,
    /// Known noise variances in the units of `y`: one shared value or one per observation
    /// (BoTorch's `train_Yvar`). Standardisation divides them by `std(y)²`.
    Fixed(Vec<f64>),
}

/// Settings of [`GaussianProcess::fit`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitOptions {
    pub preset: Preset,
    pub noise: NoiseSpec,
    /// Extra starts drawn from the priors, after the start at BoTorch's initial values.
    pub n_prior_starts: usize,
    pub seed: u64,
    pub max_iters: usize,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            preset: Preset::default(),
            noise: NoiseSpec::Learned,
            n_prior_starts: 4,
            seed: 0,
            max_iters: 200,
        }
    }
}

/// What the fit found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitReport {
    /// The maximised objective `(log marginal likelihood + log priors) / n`, as GPyTorch's
    /// `ExactMarginalLogLikelihood` with priors reports it.
    pub map_objective: f64,
    /// Index of the winning start (0 = BoTorch's initial values).
    pub best_start: usize,
    pub starts: usize,
    pub iterations: usize,
}

/// The objective over `θ = [ln ℓ_1..d, (ln s), (ln σ²)]` for fixed, standardised data.
struct MapObjective<'a> {
    n: usize,
    d: usize,
    y: &'a [f64],
    /// `sq_diff[k][a*n+b] = (x_ak − x_bk)²`.
    sq_diff: Vec<Vec<f64>>,
    spec: &'a PresetSpec,
    fixed_noise: Option<Vec<f64>>,
}

impl MapObjective<'_> {
    fn has_outputscale(&self) -> bool {
        self.spec.outputscale_prior.is_some()
    }

    fn n_params(&self) -> usize {
        self.d + usize::from(self.has_outputscale()) + usize::from(self.fixed_noise.is_none())
    }

    /// Unpack `θ` into (lengthscales, outputscale, noise vector).
    fn unpack(&self, theta: &[f64]) -> (Vec<f64>, f64, Vec<f64>) {
        let ls = theta[..self.d].iter().map(|u| u.exp()).collect();
        let mut i = self.d;
        let s = if self.has_outputscale() {
            i += 1;
            theta[i - 1].exp()
        } else {
            1.0
        };
        let noise = match &self.fixed_noise {
            Some(v) => v.clone(),
            None => vec![theta[i].exp(); self.n],
        };
        (ls, s, noise)
    }

    /// `(map objective / n, profiled mean)` and its gradient w.r.t. `θ` in `grad`.
    fn eval(&self, theta: &[f64], grad: &mut [f64]) -> Option<(f64, f64)> {
        let (n, d) = (self.n, self.d);
        let (ls, s, noise) = self.unpack(theta);
        let inv_l2: Vec<f64> = ls.iter().map(|l| 1.0 / (l * l)).collect();
        let kind: KernelKind = self.spec.kind;
        let mut kmat = vec![0.0; n * n];
        let mut m2g = vec![0.0; n * n];
        for a in 0..n {
            for b in 0..=a {
                let rho: f64 = (0..d).map(|k| self.sq_diff[k][a * n + b] * inv_l2[k]).sum();
                let (g, dg) = kind.eval(rho);
                kmat[a * n + b] = s * g;
                kmat[b * n + a] = s * g;
                m2g[a * n + b] = s * dg;
                m2g[b * n + a] = s * dg;
            }
        }
        let mut ktilde = kmat.clone();
        for i in 0..n {
            ktilde[i * n + i] += noise[i];
        }
        let (l, _) = linalg::cholesky_jittered(&ktilde, n).ok()?;
        // Profile the constant mean: c = 1ᵀK⁻¹y / 1ᵀK⁻¹1.
        let kinv_1 = linalg::cho_solve(&l, n, &vec![1.0; n]);
        let kinv_y = linalg::cho_solve(&l, n, self.y);
        let c = kinv_y.iter().sum::<f64>() / kinv_1.iter().sum::<f64>();
        let alpha: Vec<f64> = (0..n).map(|i| kinv_y[i] - c * kinv_1[i]).collect();
        let quad: f64 = (0..n).map(|i| (self.y[i] - c) * alpha[i]).sum();
        let logdet: f64 = 2.0 * (0..n).map(|i| l[i * n + i].ln()).sum::<f64>();
        let mll = -0.5 * quad - 0.5 * logdet - 0.5 * n as f64 * (2.0 * std::f64::consts::PI).ln();
        // W = ααᵀ − K⁻¹; ∂mll/∂θ_j = ½ Σ W ∘ ∂K/∂θ_j.
        let kinv = linalg::cho_inverse(&l, n);
        let mut w = kinv;
        for a in 0..n {
            for b in 0..n {
                w[a * n + b] = alpha[a] * alpha[b] - w[a * n + b];
            }
        }
        grad.iter_mut().for_each(|g| *g = 0.0);
        // Symmetric terms counted once (×2, cancelling the ½); the diagonal has Δ = 0, so the
        // full-matrix dot product with a zero-diagonal, symmetric `sq` counts each pair twice.
        let wm: Vec<f64> = w.iter().zip(&m2g).map(|(w, m)| w * m).collect();
        for k in 0..d {
            grad[k] = 0.5 * linalg::dot(&wm, &self.sq_diff[k]) * inv_l2[k];
        }
        let mut value = mll;
        for k in 0..d {
            let (lp, dlp) = self.spec.lengthscale_prior.log_pdf_and_grad_log(theta[k]);
            value += lp;
            grad[k] += dlp;
        }
        let mut i = d;
        if let Some(prior) = self.spec.outputscale_prior {
            let dk: f64 = w.iter().zip(&kmat).map(|(w, k)| w * k).sum();
            let (lp, dlp) = prior.log_pdf_and_grad_log(theta[i]);
            value += lp;
            grad[i] = 0.5 * dk + dlp;
            i += 1;
        }
        if self.fixed_noise.is_none() {
            let trace: f64 = (0..n).map(|a| w[a * n + a]).sum();
            let (lp, dlp) = self.spec.noise_prior.log_pdf_and_grad_log(theta[i]);
            value += lp;
            grad[i] = 0.5 * noise[0] * trace + dlp;
        }
        let nf = n as f64;
        grad.iter_mut().for_each(|g| *g /= nf);
        Some((value / nf, c))
    }
}

impl GaussianProcess {
    /// Fit a GP to `n` points (`x` row-major `n × d`, in user units inside `bounds`; the unit
    /// cube when `bounds` is `None`) and outputs `y`. Non-finite values are rejected.
    pub fn fit(
        x: &[f64],
        y: &[f64],
        d: usize,
        bounds: Option<&[(f64, f64)]>,
        opts: &FitOptions,
    ) -> Result<Self> {
        let s = standardize(x, y, d, bounds)?;
        let n = s.y.len();
        let spec = opts.preset.spec(d);
        let fixed_noise = match &opts.noise {
            NoiseSpec::Learned => None,
            NoiseSpec::Fixed(v) => {
                let v = match v.len() {
                    1 => vec![v[0]; n],
                    l if l == n => v.clone(),
                    l => {
                        return Err(BoError::DimensionMismatch {
                            what: "fixed noise variances".into(),
                            expected: n,
                            got: l,
                        });
                    }
                };
                if v.iter().any(|v| !(v.is_finite() && *v >= 0.0)) {
                    return Err(BoError::InvalidInput(
                        "fixed noise variances must be finite and non-negative".into(),
                    ));
                }
                Some(
                    v.iter()
                        .map(|v| (v / (s.y_std * s.y_std)).max(1e-12))
                        .collect(),
                )
            }
        };
        let sq_diff = (0..d)
            .map(|k| {
                let mut m = vec![0.0; n * n];
                for a in 0..n {
                    for b in 0..n {
                        let diff = s.x[a * d + k] - s.x[b * d + k];
                        m[a * n + b] = diff * diff;
                    }
                }
                m
            })
            .collect();
        let obj = MapObjective {
            n,
            d,
            y: &s.y,
            sq_diff,
            spec: &spec,
            fixed_noise,
        };
        let (lo, hi) = param_bounds(&obj);
        let starts = initial_points(&obj, opts);
        let lb_opts = LbfgsOptions {
            max_iters: opts.max_iters,
            ..Default::default()
        };
        let results: Vec<_> = starts
            .par_iter()
            .map(|x0| {
                // Minimise the negated objective (and negated gradient).
                let neg = |t: &[f64], g: &mut [f64]| match obj.eval(t, g) {
                    Some((v, _)) => {
                        g.iter_mut().for_each(|gi| *gi = -*gi);
                        -v
                    }
                    None => f64::INFINITY,
                };
                let r = minimize_box(neg, x0, &lo, &hi, lb_opts);
                r.f.is_finite().then_some(r)
            })
            .collect();
        let iterations = results.iter().flatten().map(|r| r.iterations).sum();
        let (best_start, best) = results
            .into_iter()
            .enumerate()
            .filter_map(|(i, r)| r.map(|r| (i, r)))
            .min_by(|a, b| a.1.f.total_cmp(&b.1.f))
            .ok_or_else(|| {
                BoError::FitFailed(format!(
                    "every one of {} starts hit a non-PSD covariance",
                    starts.len()
                ))
            })?;
        let mut g = vec![0.0; best.x.len()];
        let (map_objective, mean) = obj.eval(&best.x, &mut g).ok_or_else(|| {
            BoError::FitFailed("covariance at the optimum is not positive definite".into())
        })?;
        let (lengthscales, outputscale, noise) = obj.unpack(&best.x);
        let hyper = Hyperparameters {
            kernel: Kernel {
                kind: spec.kind,
                lengthscales,
                outputscale,
            },
            noise,
            mean,
        };
        let report = FitReport {
            map_objective,
            best_start,
            starts: starts.len(),
            iterations,
        };
        let noise_learned = obj.fixed_noise.is_none();
        drop(obj);
        GaussianProcess::from_parts(s, hyper, noise_learned, Some(report))
    }

    /// The MAP objective `(ln N(y | mean, K) + Σ ln p(θ)) / n` of this GP's current
    /// hyperparameters under `preset`'s priors (the quantity BoTorch's fit maximises).
    pub fn map_objective(&self, preset: Preset) -> f64 {
        let spec = preset.spec(self.d);
        let mut value = self.log_marginal_likelihood();
        for l in &self.hyper.kernel.lengthscales {
            value += spec.lengthscale_prior.log_pdf_and_grad_log(l.ln()).0;
        }
        if let Some(p) = spec.outputscale_prior {
            value += p.log_pdf_and_grad_log(self.hyper.kernel.outputscale.ln()).0;
        }
        if self.noise_learned {
            value += spec
                .noise_prior
                .log_pdf_and_grad_log(self.hyper.noise[0].ln())
                .0;
        }
        value / self.n as f64
    }
}

fn param_bounds(obj: &MapObjective) -> (Vec<f64>, Vec<f64>) {
    let sp = obj.spec;
    let mut lo = vec![sp.lengthscale_bounds.0.ln(); obj.d];
    let mut hi = vec![sp.lengthscale_bounds.1.ln(); obj.d];
    if obj.has_outputscale() {
        lo.push(sp.outputscale_bounds.0.ln());
        hi.push(sp.outputscale_bounds.1.ln());
    }
    if obj.fixed_noise.is_none() {
        lo.push(sp.noise_bounds.0.ln());
        hi.push(sp.noise_bounds.1.ln());
    }
    (lo, hi)
}

/// BoTorch's initial values first, then seeded draws from the priors.
fn initial_points(obj: &MapObjective, opts: &FitOptions) -> Vec<Vec<f64>> {
    let sp = obj.spec;
    let (lo, hi) = param_bounds(obj);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed ^ 0x6770_5f66_6974);
    let mut starts = Vec::with_capacity(1 + opts.n_prior_starts);
    let mut first = vec![sp.init_lengthscale.ln(); obj.d];
    if obj.has_outputscale() {
        first.push(sp.init_outputscale.ln());
    }
    if obj.fixed_noise.is_none() {
        first.push(sp.init_noise.ln());
    }
    starts.push(first);
    for _ in 0..opts.n_prior_starts {
        let mut t: Vec<f64> = (0..obj.d)
            .map(|_| sp.lengthscale_prior.sample(&mut rng).ln())
            .collect();
        if let Some(p) = sp.outputscale_prior {
            t.push(p.sample(&mut rng).ln());
        }
        if obj.fixed_noise.is_none() {
            t.push(sp.noise_prior.sample(&mut rng).ln());
        }
        starts.push(t);
    }
    for t in &mut starts {
        for i in 0..t.len() {
            t[i] = t[i].clamp(lo[i], hi[i]);
        }
    }
    debug_assert!(starts.iter().all(|t| t.len() == obj.n_params()));
    starts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objective_gradient_matches_finite_differences() {
        let d = 3;
        let n = 7;
        let x: Vec<f64> = (0..n * d).map(|i| ((i * 37 % 11) as f64) / 11.0).collect();
        let y: Vec<f64> = (0..n).map(|i| (i as f64 * 0.7).sin()).collect();
        for preset in [Preset::MaternGamma, Preset::RbfDimScaled] {
            let spec = preset.spec(d);
            let s = standardize(&x, &y, d, None).unwrap();
            let sq_diff = (0..d)
                .map(|k| {
                    let mut m = vec![0.0; n * n];
                    for a in 0..n {
                        for b in 0..n {
                            m[a * n + b] = (s.x[a * d + k] - s.x[b * d + k]).powi(2);
                        }
                    }
                    m
                })
                .collect();
            let obj = MapObjective {
                n,
                d,
                y: &s.y,
                sq_diff,
                spec: &spec,
                fixed_noise: None,
            };
            let theta: Vec<f64> = (0..obj.n_params()).map(|i| -0.5 + 0.3 * i as f64).collect();
            let mut g = vec![0.0; theta.len()];
            obj.eval(&theta, &mut g).unwrap();
            let mut scratch = g.clone();
            for j in 0..theta.len() {
                let h = 1e-5;
                let mut tp = theta.clone();
                tp[j] += h;
                let mut tm = theta.clone();
                tm[j] -= h;
                let fd = (obj.eval(&tp, &mut scratch).unwrap().0
                    - obj.eval(&tm, &mut scratch).unwrap().0)
                    / (2.0 * h);
                assert!(
                    (fd - g[j]).abs() < 1e-6,
                    "{preset:?} param {j}: fd {fd} vs {}",
                    g[j]
                );
            }
        }
    }
}
