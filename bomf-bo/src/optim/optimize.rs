//! `optimize_acqf`: maximise an acquisition function over a box, BoTorch's recipe.
//!
//! 1. Score `raw_samples` scrambled-Sobol q-batches in parallel (rayon), plus, for `q = 1`,
//!    points derived from *anchors* (the caller's incumbents, [`optimize_acqf_with_anchors`]).
//! 2. Pick `num_restarts` of them by Boltzmann sampling (BoTorch's `initialize_q_batch`).
//! 3. Run bounded L-BFGS-B ([`crate::lbfgsb`]) from each, in parallel, on `−acq`.
//! 4. Return every restart's end point, best first.
//!
//! For `q > 1`, [`optimize_acqf`] optimises the `q·d` coordinates jointly, while
//! [`optimize_acqf_sequential`] does BoTorch's *sequential greedy*: it picks one point at a
//! time and rebuilds the acquisition with the points chosen so far as *pending* points, through
//! an [`AcquisitionFactory`]. The greedy version is what BOMF uses (`sequential=True`); it costs
//! `q` small optimisations instead of one large one and is within a constant factor of the joint
//! optimum for submodular acquisitions such as qEI and qEHVI.
//!
//! Everything is deterministic given `options.seed`: the Sobol design and the Boltzmann draws
//! are seeded, and the parallel loops collect their results in input order.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::initializers::{boltzmann_select, boltzmann_select_nonnegative};
use crate::acquisition::{Acquisition, AcquisitionFactory};
use crate::error::{BoError, Result};
use crate::lbfgsb::{self, LbfgsbOptions};
use crate::sampling::derive_seed;
use crate::sampling::sobol_design;

/// Settings of [`optimize_acqf`]. Defaults are BoTorch's multi-objective tutorial and BOMF's
/// (`num_restarts=10, raw_samples=512, options={"maxiter": 200}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AcqfOptions {
    /// Number of local searches.
    pub num_restarts: usize,
    /// Number of Sobol q-batches scored to choose the restarts (at most 65536).
    pub raw_samples: usize,
    /// Boltzmann temperature η on the standardised raw values.
    pub eta: f64,
    /// Use the non-negative selection rule (for acquisitions that are exactly zero over much of
    /// the space, e.g. qEHVI): only raw values `≥ nonnegative_alpha · max` compete.
    pub nonnegative: bool,
    /// α of the non-negative rule (BoTorch: 1e-4).
    pub nonnegative_alpha: f64,
    /// Local optimiser settings; `maxiter` defaults to 200 as in BoTorch's usual options.
    pub lbfgsb: LbfgsbOptions,
    /// Seed of the Sobol design and the Boltzmann draws.
    pub seed: u64,
    /// Let [`crate::optimizer::Optimizer`] add raw candidates around its incumbents
    /// ([`optimize_acqf_with_anchors`]); `false` is BoTorch's plain recipe.
    pub anchor_incumbents: bool,
}

impl AcqfOptions {
    /// Checks `1 <= num_restarts <= raw_samples`.
    pub fn validate(&self) -> Result<()> {
        if self.num_restarts == 0 || self.raw_samples < self.num_restarts {
            return Err(BoError::InvalidInput(format!(
                "optimize_acqf needs 1 <= num_restarts <= raw_samples, got {} restarts and {} raw samples",
                self.num_restarts, self.raw_samples
            )));
        }
        Ok(())
    }
}

impl Default for AcqfOptions {
    fn default() -> Self {
        Self {
            num_restarts: 10,
            raw_samples: 512,
            eta: 1.0,
            nonnegative: false,
            nonnegative_alpha: 1e-4,
            lbfgsb: LbfgsbOptions {
                maxiter: 200,
                ..LbfgsbOptions::default()
            },
            seed: 0,
            anchor_incumbents: true,
        }
    }
}

/// A finite box `lower ≤ x ≤ upper` for one candidate (`d` coordinates).
#[derive(Debug, Clone, PartialEq)]
pub struct Bounds {
    lower: Vec<f64>,
    upper: Vec<f64>,
}

impl Bounds {
    /// The unit cube `[0, 1]^d`, where the acquisitions live.
    pub fn unit(d: usize) -> Self {
        Self {
            lower: vec![0.0; d],
            upper: vec![1.0; d],
        }
    }

    /// A general finite box; `lower[i] ≤ upper[i]` (equal pins the coordinate).
    pub fn new(lower: Vec<f64>, upper: Vec<f64>) -> Result<Self> {
        BoError::check_dim("upper bounds vs lower bounds", lower.len(), upper.len())?;
        for (i, (l, u)) in lower.iter().zip(&upper).enumerate() {
            if !(l.is_finite() && u.is_finite() && l <= u) {
                return Err(BoError::InvalidInput(format!(
                    "bounds of coordinate {i} must be finite with lower <= upper, got [{l}, {u}]"
                )));
            }
        }
        Ok(Self { lower, upper })
    }

    pub fn dim(&self) -> usize {
        self.lower.len()
    }

    pub fn lower(&self) -> &[f64] {
        &self.lower
    }

    pub fn upper(&self) -> &[f64] {
        &self.upper
    }

    /// The bounds repeated for a q-batch (`q·d` coordinates).
    fn repeated(&self, q: usize) -> (Vec<f64>, Vec<f64>) {
        (self.lower.repeat(q), self.upper.repeat(q))
    }
}

/// One locally optimised q-batch (row-major `q × d`) and its acquisition value.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub x: Vec<f64>,
    pub value: f64,
}

/// All restarts' end points, best first (non-finite values last).
#[derive(Debug, Clone, PartialEq)]
pub struct AcqfResult {
    pub candidates: Vec<Candidate>,
}

impl AcqfResult {
    /// The best q-batch found.
    pub fn best(&self) -> &Candidate {
        &self.candidates[0]
    }
}

/// Maximise `acq` over q-batches in `bounds` (see the module doc for the recipe).
pub fn optimize_acqf(
    acq: &dyn Acquisition,
    q: usize,
    bounds: &Bounds,
    options: &AcqfOptions,
) -> Result<AcqfResult> {
    optimize_acqf_with_anchors(acq, q, bounds, options, &[])
}

/// [`optimize_acqf`] with extra raw candidates derived from `anchors` (row-major `n × d`
/// points in `bounds`, typically the observed Pareto-optimal or best inputs), for `q = 1`
/// (ignored for larger `q`).
///
/// **Why.** Acquisition optima often sit on a face, edge or corner of the box next to an
/// incumbent (ZDT's Pareto set is the edge `x_2 = … = x_d = 0`; its extreme point is the corner
/// `(1, 0, …, 0)`). Sobol raw samples almost never land on such a low-dimensional face, and
/// local searches from the interior end in whichever corner is closest, so both this crate and
/// BoTorch's `optimize_acqf` can miss an optimum that is worth ten times the one they return.
/// Each anchor therefore adds ([`anchor_candidates`]): the anchor with one coordinate pushed to
/// each bound, and a few Gaussian perturbations clamped to the box (clamping puts coordinates
/// that sit on a bound back onto it, like BoTorch's `sample_around_best`). These compete with
/// the Sobol samples in the restart selection; they never replace them.
pub fn optimize_acqf_with_anchors(
    acq: &dyn Acquisition,
    q: usize,
    bounds: &Bounds,
    options: &AcqfOptions,
    anchors: &[f64],
) -> Result<AcqfResult> {
    let d = bounds.dim();
    check_options(acq, q, d, options)?;
    check_anchors(anchors, bounds)?;
    let width = q * d;
    let (lower, upper) = bounds.repeated(q);

    // 1. Raw q-batches, scaled from the unit cube to the box, then the anchors' neighbours;
    //    all scored in parallel.
    let mut raw = sobol_design(options.raw_samples, width, derive_seed(options.seed, 0))?;
    for row in raw.chunks_mut(width) {
        for (j, v) in row.iter_mut().enumerate() {
            *v = lower[j] + *v * (upper[j] - lower[j]);
        }
    }
    if q == 1 && !anchors.is_empty() {
        raw.extend(anchor_candidates(
            anchors,
            bounds,
            options.raw_samples / 2,
            derive_seed(options.seed, 2),
        ));
    }
    let raw_values: Vec<f64> = raw.par_chunks(width).map(|x| acq.value(x)).collect();

    // 2. Restarts by Boltzmann sampling.
    let chosen = select_restarts(&raw_values, options);

    // 3. Local searches in parallel, each on −acq.
    let mut candidates: Vec<Candidate> = chosen
        .par_iter()
        .map(|&i| {
            let start = &raw[i * width..(i + 1) * width];
            local_search(acq, start, raw_values[i], (&lower, &upper), options)
        })
        .collect();

    // 4. Best first; NaN sorts last.
    candidates.sort_by(|a, b| {
        let key = |c: &Candidate| {
            if c.value.is_nan() {
                f64::NEG_INFINITY
            } else {
                c.value
            }
        };
        key(b).total_cmp(&key(a))
    });
    Ok(AcqfResult { candidates })
}

/// Anchors must be a row-major `n × d` array inside `bounds`.
fn check_anchors(anchors: &[f64], bounds: &Bounds) -> Result<()> {
    let d = bounds.dim();
    if !anchors.len().is_multiple_of(d) {
        return Err(BoError::InvalidInput(format!(
            "anchors must be a row-major n x {d} array, got {} values",
            anchors.len()
        )));
    }
    for (i, row) in anchors.chunks(d).enumerate() {
        let inside = row
            .iter()
            .zip(bounds.lower.iter().zip(&bounds.upper))
            .all(|(v, (lo, hi))| (lo..=hi).contains(&v));
        if !inside {
            return Err(BoError::InvalidInput(format!(
                "anchor {i} ({row:?}) is not inside the bounds"
            )));
        }
    }
    Ok(())
}

/// Indices of the raw samples the local searches start from (Boltzmann sampling, the
/// non-negative rule when `options.nonnegative`).
fn select_restarts(raw_values: &[f64], options: &AcqfOptions) -> Vec<usize> {
    let selection_seed = derive_seed(options.seed, 1);
    if options.nonnegative {
        boltzmann_select_nonnegative(
            raw_values,
            options.num_restarts,
            options.eta,
            options.nonnegative_alpha,
            selection_seed,
        )
    } else {
        boltzmann_select(
            raw_values,
            options.num_restarts,
            options.eta,
            selection_seed,
        )
    }
}

/// L-BFGS-B on `−acq` from `start` (whose value is `start_value`) within `(lower, upper)`.
fn local_search(
    acq: &dyn Acquisition,
    start: &[f64],
    start_value: f64,
    (lower, upper): (&[f64], &[f64]),
    options: &AcqfOptions,
) -> Candidate {
    let objective = |x: &[f64], g: &mut [f64]| {
        let v = acq.value_and_grad(x, g);
        g.iter_mut().for_each(|t| *t = -*t);
        -v
    };
    match lbfgsb::minimize(objective, start, lower, upper, &options.lbfgsb) {
        // Keep the raw point if the search somehow ended worse (it cannot by construction, but
        // a non-deterministic acquisition could make it so).
        Ok(r) if -r.f >= start_value || !start_value.is_finite() => Candidate {
            x: r.x,
            value: -r.f,
        },
        _ => Candidate {
            x: start.to_vec(),
            value: start_value,
        },
    }
}

/// Gaussian perturbations per anchor in [`anchor_candidates`], with these standard deviations
/// (fractions of each coordinate's range), cycled.
const ANCHOR_PERTURBATION_SCALES: [f64; 4] = [0.02, 0.1, 0.02, 0.1];

/// Raw candidates around `anchors` (row-major, each in `bounds`), at most `budget` of them:
/// for each anchor, the anchor with coordinate `j` set to its lower and to its upper bound (for
/// every `j` where that changes it), then four clamped Gaussian perturbations (standard
/// deviations of 2 % and 10 % of each coordinate's range). When the anchors would need more
/// than `budget`, an evenly spaced subset of them is used.
pub fn anchor_candidates(anchors: &[f64], bounds: &Bounds, budget: usize, seed: u64) -> Vec<f64> {
    let d = bounds.dim();
    if d == 0 || anchors.is_empty() {
        return Vec::new();
    }
    let n_anchors = anchors.len() / d;
    let per_anchor = 2 * d + ANCHOR_PERTURBATION_SCALES.len();
    let usable = (budget / per_anchor).min(n_anchors);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(usable * per_anchor * d);
    for k in 0..usable {
        // Evenly spaced over the anchors when they do not all fit.
        let a = &anchors[(k * n_anchors / usable) * d..][..d];
        for j in 0..d {
            for bound in [bounds.lower[j], bounds.upper[j]] {
                if a[j] != bound {
                    out.extend_from_slice(a);
                    let last = out.len() - d;
                    out[last + j] = bound;
                }
            }
        }
        for scale in ANCHOR_PERTURBATION_SCALES {
            for ((&centre, &lo), &hi) in a.iter().zip(&bounds.lower).zip(&bounds.upper) {
                // Box–Muller: one standard normal from two uniforms in (0, 1].
                let u1 = 1.0 - rng.random::<f64>();
                let u2 = rng.random::<f64>();
                let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                out.push((centre + scale * (hi - lo) * z).clamp(lo, hi));
            }
        }
    }
    out
}

fn check_options(acq: &dyn Acquisition, q: usize, d: usize, options: &AcqfOptions) -> Result<()> {
    BoError::check_dim("acquisition input dimension vs bounds", d, acq.dim())?;
    if q == 0 || d == 0 {
        return Err(BoError::InvalidInput(format!(
            "optimize_acqf needs q >= 1 and d >= 1, got q = {q}, d = {d}"
        )));
    }
    options.validate()
}

/// Result of [`optimize_acqf_sequential`]: `q` points chosen one after another.
#[derive(Debug, Clone, PartialEq)]
pub struct SequentialResult {
    /// Row-major `q × d`.
    pub x: Vec<f64>,
    /// Acquisition value of each point given the previously chosen ones as pending.
    pub values: Vec<f64>,
}

/// Sequential greedy q-batch (BoTorch's `optimize_acqf(..., sequential=True)`): for
/// `i = 1..q`, build the acquisition with `pending ∪ {points chosen so far}` and optimise one
/// point. Step `i` uses the seed `derive_seed(options.seed, 100 + i)`.
pub fn optimize_acqf_sequential(
    factory: &dyn AcquisitionFactory,
    q: usize,
    bounds: &Bounds,
    pending: &[f64],
    options: &AcqfOptions,
) -> Result<SequentialResult> {
    let d = bounds.dim();
    if d == 0 || !pending.len().is_multiple_of(d) {
        return Err(BoError::InvalidInput(format!(
            "pending points must be a row-major n x {d} array, got {} values",
            pending.len()
        )));
    }
    let mut all_pending = pending.to_vec();
    let mut x = Vec::with_capacity(q * d);
    let mut values = Vec::with_capacity(q);
    for step in 0..q {
        let acq = factory.build(&all_pending)?;
        let step_options = AcqfOptions {
            seed: derive_seed(options.seed, 100 + step as u64),
            ..options.clone()
        };
        let result = optimize_acqf(acq.as_ref(), 1, bounds, &step_options)?;
        let best = result.best();
        x.extend_from_slice(&best.x);
        all_pending.extend_from_slice(&best.x);
        values.push(best.value);
    }
    Ok(SequentialResult { x, values })
}
