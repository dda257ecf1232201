//! MAP fit of the hyperparameters: maximise `(ln N(y | c, K + σ²I) + Σ ln p(θ)) / n` over log
//! lengthscales, log outputscale and log noise, with the constant mean `c` profiled out.
//!
//! Every evaluation of the objective and its gradient costs a Cholesky factorisation and an
//! inverse of the `n × n` covariance. Up to [`FitOptions::screen_points`] observations, every
//! start is polished on all of them. Beyond, the starts are polished on a seeded subset of
//! that many observations (the objective is a mean over observations, so its optimum and
//! curvature move little), and only the best subset optimum is refined on all observations,
//! starting from the subset search's L-BFGS-B memory: a local MAP optimum of the full data, for
//! one full-size search instead of one per start.

use rand::SeedableRng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::kernel::{Kernel, KernelKind, scaled_sq_dist};
use super::linalg;
use super::prior::{Preset, PresetSpec};
use super::{GaussianProcess, Hyperparameters, standardize};
use crate::error::{BoError, Result};
use crate::lbfgsb::{self, CurvaturePairs, LbfgsbOptions, LbfgsbResult};
use crate::sampling::sample_indices;

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
    /// With more observations than this, the starts are compared on a seeded subset of this
    /// size and only the best is refined on all observations (see the module doc).
    #[serde(default = "default_screen_points")]
    pub screen_points: usize,
}

/// Default of [`FitOptions::screen_points`].
pub(crate) const SCREEN_POINTS: usize = 256;

fn default_screen_points() -> usize {
    SCREEN_POINTS
}

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            preset: Preset::default(),
            noise: NoiseSpec::Learned,
            n_prior_starts: 4,
            seed: 0,
            max_iters: 200,
            screen_points: SCREEN_POINTS,
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
    /// Size of the subset the starts were compared on (`None`: all observations).
    #[serde(default)]
    pub screened_on: Option<usize>,
}

/// The objective over `θ = [ln ℓ_1..d, (ln s), (ln σ²)]` for fixed, standardised data.
///
/// Squared coordinate differences are recomputed from `x` at every evaluation rather than
/// stored: the `n × d` inputs stay in cache, while a table of them would take `n²d/2` values.
struct MapObjective<'a> {
    n: usize,
    d: usize,
    /// Standardised inputs, `n × d`.
    x: Vec<f64>,
    y: Vec<f64>,
    spec: &'a PresetSpec,
    fixed_noise: Option<Vec<f64>>,
}

/// [`MapObjective::factor`]'s result.
struct Factor {
    inv_l2: Vec<f64>,
    noise: Vec<f64>,
    /// Lower triangle of `K + diag(noise)`.
    ktilde: Vec<f64>,
    /// `s·(−2g′)` of the pairs, packed.
    m2g: Vec<f64>,
    /// Cholesky factor of `ktilde`.
    l: Vec<f64>,
    /// `K̃⁻¹(y − c)`.
    alpha: Vec<f64>,
    /// Profiled constant mean.
    c: f64,
    /// Log marginal likelihood (not divided by `n`).
    mll: f64,
}

impl<'a> MapObjective<'a> {
    /// The objective of the standardised inputs `x` (`n × d`) and outputs `y`.
    fn new(
        x: Vec<f64>,
        y: Vec<f64>,
        d: usize,
        spec: &'a PresetSpec,
        fixed_noise: Option<Vec<f64>>,
    ) -> Self {
        Self {
            n: y.len(),
            d,
            x,
            y,
            spec,
            fixed_noise,
        }
    }

    /// The same objective restricted to the observations `idx`.
    fn subset(&self, idx: &[usize]) -> Self {
        let d = self.d;
        let xs = idx
            .iter()
            .flat_map(|&i| self.x[i * d..(i + 1) * d].iter().copied())
            .collect();
        let ys = idx.iter().map(|&i| self.y[i]).collect();
        let noise = self
            .fixed_noise
            .as_ref()
            .map(|v| idx.iter().map(|&i| v[i]).collect());
        Self::new(xs, ys, d, self.spec, noise)
    }

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

    /// The lower triangle of `K + diag(noise)` (the upper one is left zero: the Cholesky
    /// factorisation reads only the lower one) and `s·(−2g′)` of every pair `a > b`, packed
    /// in the order `(1, 0), (2, 0), (2, 1), (3, 0), …`.
    fn covariance(&self, inv_l2: &[f64], s: f64, noise: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let (n, d) = (self.n, self.d);
        let kind: KernelKind = self.spec.kind;
        let mut ktilde = vec![0.0; n * n];
        let mut m2g = Vec::with_capacity(n * n.saturating_sub(1) / 2);
        for (a, xa) in self.x.chunks_exact(d).enumerate() {
            for (b, xb) in self.x.chunks_exact(d).take(a).enumerate() {
                let (g, dg) = kind.eval(scaled_sq_dist(xa, xb, inv_l2));
                ktilde[a * n + b] = s * g;
                m2g.push(s * dg);
            }
            ktilde[a * n + a] = s * kind.eval(0.0).0 + noise[a];
        }
        (ktilde, m2g)
    }

    /// The covariance at `θ`, factorised, and the log marginal likelihood with the constant
    /// mean profiled out (`None` when the covariance is not positive definite).
    fn factor(&self, theta: &[f64]) -> Option<Factor> {
        let n = self.n;
        let (ls, s, noise) = self.unpack(theta);
        let inv_l2: Vec<f64> = ls.iter().map(|l| 1.0 / (l * l)).collect();
        let (ktilde, m2g) = self.covariance(&inv_l2, s, &noise);
        let (l, _) = linalg::cholesky_jittered(&ktilde, n).ok()?;
        // Profile the constant mean: c = 1ᵀK⁻¹y / 1ᵀK⁻¹1.
        let kinv_1 = linalg::cho_solve(&l, n, &vec![1.0; n]);
        let kinv_y = linalg::cho_solve(&l, n, &self.y);
        let c = kinv_y.iter().sum::<f64>() / kinv_1.iter().sum::<f64>();
        let alpha: Vec<f64> = (0..n).map(|i| kinv_y[i] - c * kinv_1[i]).collect();
        let quad: f64 = (0..n).map(|i| (self.y[i] - c) * alpha[i]).sum();
        let logdet: f64 = 2.0 * (0..n).map(|i| l[i * n + i].ln()).sum::<f64>();
        let mll = -0.5 * quad - 0.5 * logdet - 0.5 * n as f64 * (2.0 * std::f64::consts::PI).ln();
        Some(Factor {
            inv_l2,
            noise,
            ktilde,
            m2g,
            l,
            alpha,
            c,
            mll,
        })
    }

    /// `value` plus the log priors of `θ`; with `grad`, their derivatives are added to it.
    fn add_log_prior(&self, theta: &[f64], mut value: f64, mut grad: Option<&mut [f64]>) -> f64 {
        let d = self.d;
        let mut add = |i: usize, (lp, dlp): (f64, f64)| {
            value += lp;
            if let Some(g) = grad.as_deref_mut() {
                g[i] += dlp;
            }
        };
        for (k, t) in theta.iter().enumerate().take(d) {
            add(k, self.spec.lengthscale_prior.log_pdf_and_grad_log(*t));
        }
        let mut i = d;
        if let Some(prior) = self.spec.outputscale_prior {
            add(i, prior.log_pdf_and_grad_log(theta[i]));
            i += 1;
        }
        if self.fixed_noise.is_none() {
            add(i, self.spec.noise_prior.log_pdf_and_grad_log(theta[i]));
        }
        value
    }

    /// The map objective / n alone (one factorisation, no inverse).
    fn value(&self, theta: &[f64]) -> Option<f64> {
        let f = self.factor(theta)?;
        Some(self.add_log_prior(theta, f.mll, None) / self.n as f64)
    }

    /// `(map objective / n, profiled mean)` and its gradient w.r.t. `θ` in `grad`.
    fn eval(&self, theta: &[f64], grad: &mut [f64]) -> Option<(f64, f64)> {
        let (n, d) = (self.n, self.d);
        let f = self.factor(theta)?;
        // W = ααᵀ − K⁻¹; ∂mll/∂θ_j = ½ Σ W ∘ ∂K/∂θ_j, summed over the pairs a > b (each
        // counted once, cancelling the ½ of the symmetric pair) plus the diagonal.
        let kinv = linalg::cho_inverse(&f.l, n);
        let alpha = &f.alpha;
        let mut ls_grad = vec![0.0; d];
        let (mut w_k, mut trace) = (0.0, 0.0);
        let mut m2g = f.m2g.iter();
        for (a, xa) in self.x.chunks_exact(d).enumerate() {
            for (b, (xb, m)) in self.x.chunks_exact(d).zip(&mut m2g).take(a).enumerate() {
                let w = alpha[a] * alpha[b] - kinv[a * n + b];
                let wm = w * m;
                for ((g, p), q) in ls_grad.iter_mut().zip(xa).zip(xb) {
                    *g += wm * (p - q) * (p - q);
                }
                w_k += 2.0 * w * f.ktilde[a * n + b];
            }
            let w_aa = alpha[a] * alpha[a] - kinv[a * n + a];
            trace += w_aa;
            w_k += w_aa * (f.ktilde[a * n + a] - f.noise[a]);
        }
        grad.iter_mut().for_each(|g| *g = 0.0);
        for k in 0..d {
            grad[k] = ls_grad[k] * f.inv_l2[k];
        }
        let mut i = d;
        if self.has_outputscale() {
            grad[i] = 0.5 * w_k;
            i += 1;
        }
        if self.fixed_noise.is_none() {
            grad[i] = 0.5 * f.noise[0] * trace;
        }
        let value = self.add_log_prior(theta, f.mll, Some(grad));
        let nf = n as f64;
        grad.iter_mut().for_each(|g| *g /= nf);
        Some((value / nf, f.c))
    }

    /// L-BFGS-B from `x0` on the negated objective, in the box of [`param_bounds`]; `None`
    /// when the start is infeasible (a covariance that is not positive definite).
    fn polish(&self, x0: &[f64], opts: &LbfgsbOptions) -> Option<Polished> {
        self.polish_warm(x0, opts, &[])
    }

    /// [`Self::polish`] with initial curvature pairs.
    fn polish_warm(
        &self,
        x0: &[f64],
        opts: &LbfgsbOptions,
        memory: &[(Vec<f64>, Vec<f64>)],
    ) -> Option<Polished> {
        let (lo, hi) = param_bounds(self);
        let neg = |t: &[f64], g: &mut [f64]| match self.eval(t, g) {
            Some((v, _)) => {
                g.iter_mut().for_each(|gi| *gi = -*gi);
                -v
            }
            None => f64::INFINITY,
        };
        let (result, memory) = lbfgsb::minimize_warm(neg, x0, &lo, &hi, opts, memory).ok()?;
        Some(Polished { result, memory })
    }

    /// Every start polished (in parallel), in start order.
    fn polish_all(&self, starts: &[Vec<f64>], opts: &LbfgsbOptions) -> Vec<Option<Polished>> {
        starts.par_iter().map(|x0| self.polish(x0, opts)).collect()
    }
}

/// One local search's end point and the curvature pairs it ended with.
struct Polished {
    result: LbfgsbResult,
    memory: CurvaturePairs,
}

/// The winning hyperparameters of a search and how they were found.
struct Search {
    theta: Vec<f64>,
    best_start: usize,
    iterations: usize,
    screened_on: Option<usize>,
}

/// Every start polished on all observations; the best wins.
fn full_search(obj: &MapObjective, starts: &[Vec<f64>], opts: &LbfgsbOptions) -> Result<Search> {
    let results = obj.polish_all(starts, opts);
    let iterations = results.iter().flatten().map(|r| r.result.iterations).sum();
    let (best_start, best) = results
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| r.map(|r| (i, r.result)))
        .min_by(|a, b| a.1.f.total_cmp(&b.1.f))
        .ok_or_else(|| all_starts_failed(starts.len()))?;
    Ok(Search {
        theta: best.x,
        best_start,
        iterations,
        screened_on: None,
    })
}

/// The starts polished on a seeded subset of `size` observations; then, best subset optimum
/// first, refined on all observations (with the subset search's L-BFGS-B memory) until one
/// succeeds.
fn screened_search(
    obj: &MapObjective,
    starts: &[Vec<f64>],
    size: usize,
    seed: u64,
    opts: &LbfgsbOptions,
) -> Result<Search> {
    let idx = sample_indices(obj.n, size, seed ^ 0x7363_7265_656e);
    let results = obj.subset(&idx).polish_all(starts, opts);
    let mut iterations: usize = results.iter().flatten().map(|r| r.result.iterations).sum();
    // Rank the subset optima by the full objective (one factorisation each): the subset can
    // prefer another basin than all the data do.
    let mut order: Vec<(usize, f64, Polished)> = results
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let r = r?;
            Some((i, obj.value(&r.result.x)?, r))
        })
        .collect();
    order.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (best_start, _, r) in order {
        // The objective is a mean over observations, so the subset search's curvature pairs
        // are a good first model of the full objective's: they save full-size evaluations.
        if let Some(full) = obj.polish_warm(&r.result.x, opts, &r.memory) {
            iterations += full.result.iterations;
            return Ok(Search {
                theta: full.result.x,
                best_start,
                iterations,
                screened_on: Some(idx.len()),
            });
        }
    }
    Err(all_starts_failed(starts.len()))
}

fn all_starts_failed(starts: usize) -> BoError {
    BoError::FitFailed(format!(
        "every one of {starts} starts hit a non-PSD covariance"
    ))
}

/// Known noise variances, one per observation, in standardised units.
fn fixed_noise(spec: &NoiseSpec, n: usize, y_std: f64) -> Result<Option<Vec<f64>>> {
    let NoiseSpec::Fixed(v) = spec else {
        return Ok(None);
    };
    let v = super::per_observation(v, n, "fixed noise variances")?;
    if v.iter().any(|v| !(v.is_finite() && *v >= 0.0)) {
        return Err(BoError::InvalidInput(
            "fixed noise variances must be finite and non-negative".into(),
        ));
    }
    Ok(Some(
        v.iter().map(|v| (v / (y_std * y_std)).max(1e-12)).collect(),
    ))
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
        let noise = fixed_noise(&opts.noise, n, s.y_std)?;
        let obj = MapObjective::new(s.x.clone(), s.y.clone(), d, &spec, noise);
        let starts = initial_points(&obj, opts);
        let lb_opts = LbfgsbOptions {
            maxiter: opts.max_iters,
            ..LbfgsbOptions::default()
        };
        let search = if n > opts.screen_points.max(1) && starts.len() > 1 {
            screened_search(
                &obj,
                &starts,
                opts.screen_points.max(1),
                opts.seed,
                &lb_opts,
            )?
        } else {
            full_search(&obj, &starts, &lb_opts)?
        };
        let mut g = vec![0.0; search.theta.len()];
        let (map_objective, mean) = obj.eval(&search.theta, &mut g).ok_or_else(|| {
            BoError::FitFailed("covariance at the optimum is not positive definite".into())
        })?;
        let (lengthscales, outputscale, noise) = obj.unpack(&search.theta);
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
            best_start: search.best_start,
            starts: starts.len(),
            iterations: search.iterations,
            screened_on: search.screened_on,
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
            let obj = MapObjective::new(s.x.clone(), s.y.clone(), d, &spec, None);
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
