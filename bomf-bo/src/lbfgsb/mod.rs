//! Bounded quasi-Newton minimisation: L-BFGS-B in pure Rust.
//!
//! This is the algorithm of Byrd, Lu, Nocedal & Zhu (1995), "A limited memory algorithm for
//! bound constrained optimization", with the subspace-step correction of Morales & Nocedal
//! (2011) that scipy's `L-BFGS-B` (v3.0 of the Fortran code) also uses. Each iteration:
//!
//! 1. **Generalised Cauchy point** (GCP): follow the projected steepest-descent path
//!    `P(x − t·g)` through its breakpoints (where coordinates hit their bounds) and stop at the
//!    first local minimiser of the quadratic model `m(x) = f + gᵀ(x−x_k) + ½(x−x_k)ᵀB(x−x_k)`.
//!    The variables that reached a bound are *fixed* for this iteration.
//! 2. **Subspace step**: minimise the model over the remaining *free* variables (direct primal
//!    method, Sherman–Morrison–Woodbury on the compact representation), project the result onto
//!    the box, and fall back to the step truncated at the box if the projection is not a
//!    descent direction.
//! 3. **Line search** along `d = x̄ − x_k` (strong Wolfe conditions, `c1 = 1e-3`, `c2 = 0.9` as in
//!    the Fortran code) with the step capped so the iterate stays feasible.
//! 4. **Limited-memory update**: keep the last `m` pairs `(s, y)` with `sᵀy > ε·yᵀy`; the Hessian
//!    approximation is `B = θI − W M Wᵀ` with `W = [Y, θS]` (Byrd, Nocedal & Schnabel 1994).
//!
//! Why write it: the Rust crates that offer L-BFGS-B wrap the C or Fortran code (`lbfgsb`,
//! `lbfgsb-sys`, `rustimization`), which brings a native toolchain and global state into a
//! library that must build anywhere and run restarts on several threads; `argmin` has L-BFGS
//! but no box bounds. The acquisition functions live in the unit cube, so bounds are not
//! optional, and a projected-gradient method without the Cauchy-point machinery stalls on
//! faces of the box far more often.
//!
//! Both local searches of the crate use it: the acquisition optimiser ([`crate::optim`]) in the
//! unit cube, and the GP's hyperparameter fit ([`crate::gp`]) in a box of log-hyperparameters,
//! where a non-positive-definite covariance is an infinite value the line search steps back
//! from, and the fit's final refinement starts from the curvature pairs of a search on a subset
//! of the data.
//!
//! Stopping rules follow scipy: the projected-gradient sup-norm `≤ pgtol`, the relative
//! reduction `(f_k − f_{k+1}) / max(|f_k|, |f_{k+1}|, 1) ≤ ftol`, or the iteration / evaluation
//! budget. A line search that finds no decrease resets the memory once (steepest descent) before
//! giving up, as the Fortran code does.

mod compact;
mod line_search;
mod subspace;

use crate::error::{BoError, Result};
use compact::{Lu, Memory};
use line_search::{LineSearchOutcome, LineSearchProblem, line_search};
use subspace::Model;

/// Options of [`minimize`]. The defaults are scipy's `L-BFGS-B` defaults.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct LbfgsbOptions {
    /// Maximum number of iterations (scipy `maxiter`, default 15000).
    pub maxiter: usize,
    /// Maximum number of function evaluations (scipy `maxfun`, default 15000).
    pub max_evals: usize,
    /// Number of correction pairs kept in memory (scipy `maxcor`, default 10).
    pub m: usize,
    /// Stop when the sup-norm of the projected gradient is at most this (scipy `gtol`, 1e-5).
    pub pgtol: f64,
    /// Stop when the relative reduction of `f` in one iteration is at most this
    /// (scipy `ftol` = `factr · ε`, default 2.22e-9).
    pub ftol: f64,
    /// Maximum number of evaluations in one line search (scipy `maxls`, default 20).
    pub max_linesearch: usize,
}

impl Default for LbfgsbOptions {
    fn default() -> Self {
        Self {
            maxiter: 15000,
            max_evals: 15000,
            m: 10,
            pgtol: 1e-5,
            ftol: 1e7 * f64::EPSILON,
            max_linesearch: 20,
        }
    }
}

/// Why [`minimize`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Termination {
    /// The projected gradient's sup-norm fell to `pgtol` or below.
    ProjectedGradient,
    /// The relative reduction of `f` fell to `ftol` or below.
    RelativeReduction,
    /// `maxiter` iterations were done.
    MaxIterations,
    /// `max_evals` function evaluations were done.
    MaxEvaluations,
    /// The line search found no acceptable step even from a steepest-descent restart.
    LineSearchFailed,
}

impl Termination {
    /// True for the two convergence tests (as opposed to a budget or a failure).
    pub fn converged(self) -> bool {
        matches!(self, Self::ProjectedGradient | Self::RelativeReduction)
    }
}

/// Outcome of [`minimize`]: the best point found (always feasible) and how the run went.
#[derive(Debug, Clone, PartialEq)]
pub struct LbfgsbResult {
    /// Final iterate (inside the bounds).
    pub x: Vec<f64>,
    /// Objective value at `x`.
    pub f: f64,
    /// Gradient at `x`.
    pub grad: Vec<f64>,
    /// Sup-norm of the projected gradient `P(x − g) − x` at `x`.
    pub projected_grad_norm: f64,
    /// Iterations done.
    pub iterations: usize,
    /// Function (and gradient) evaluations done.
    pub evaluations: usize,
    /// Why the run stopped.
    pub termination: Termination,
}

/// Minimise `f` over the box `lower ≤ x ≤ upper`, starting from `x0` (projected onto the box).
///
/// `f(x, grad)` returns the value at `x` and writes the gradient into `grad`. Bounds may be
/// infinite. A non-finite value is treated as "worse than anything" by the line search, which
/// then shortens the step; a non-finite value at the starting point is an error.
pub fn minimize<F>(
    f: F,
    x0: &[f64],
    lower: &[f64],
    upper: &[f64],
    options: &LbfgsbOptions,
) -> Result<LbfgsbResult>
where
    F: FnMut(&[f64], &mut [f64]) -> f64,
{
    minimize_warm(f, x0, lower, upper, options, &[]).map(|(result, _)| result)
}

/// Curvature pairs `(s, y)` of the limited memory, oldest first.
pub(crate) type CurvaturePairs = Vec<(Vec<f64>, Vec<f64>)>;

/// [`minimize`] with the limited memory starting from the pairs `warm` (e.g. those a search of
/// a similar objective ended with) instead of empty; also returns the pairs it ends with.
pub(crate) fn minimize_warm<F>(
    mut f: F,
    x0: &[f64],
    lower: &[f64],
    upper: &[f64],
    options: &LbfgsbOptions,
    warm: &[(Vec<f64>, Vec<f64>)],
) -> Result<(LbfgsbResult, CurvaturePairs)>
where
    F: FnMut(&[f64], &mut [f64]) -> f64,
{
    check_problem(x0, lower, upper, options)?;
    let mut memory = Memory::new(options.m);
    for (s, y) in warm {
        memory.push(s.clone(), y.clone());
    }
    let mut state = State::start(&mut f, x0, lower, upper)?;
    let termination = if state.projected_grad_norm() <= options.pgtol {
        Termination::ProjectedGradient
    } else {
        loop {
            if let Some(termination) = state.iterate(&mut f, &mut memory, options) {
                break termination;
            }
        }
    };
    Ok((state.finish(termination), memory.into_pairs()))
}

/// The current iterate of [`minimize`] and its bookkeeping.
struct State<'a> {
    x: Vec<f64>,
    g: Vec<f64>,
    fx: f64,
    lower: &'a [f64],
    upper: &'a [f64],
    /// Every bound finite / some bound finite.
    all_boxed: bool,
    constrained: bool,
    iterations: usize,
    evaluations: usize,
    /// The line search's trial point and gradient.
    x_new: Vec<f64>,
    g_new: Vec<f64>,
}

impl<'a> State<'a> {
    /// `x0` projected onto the box and evaluated; an error where `f` or its gradient is not
    /// finite there.
    fn start<F>(f: &mut F, x0: &[f64], lower: &'a [f64], upper: &'a [f64]) -> Result<Self>
    where
        F: FnMut(&[f64], &mut [f64]) -> f64,
    {
        let n = x0.len();
        let x: Vec<f64> = (0..n).map(|i| x0[i].clamp(lower[i], upper[i])).collect();
        let mut g = vec![0.0; n];
        let fx = f(&x, &mut g);
        if !fx.is_finite() || g.iter().any(|v| !v.is_finite()) {
            return Err(BoError::InvalidInput(format!(
                "L-BFGS-B: objective or gradient is not finite at the starting point (f = {fx})"
            )));
        }
        Ok(Self {
            x,
            g,
            fx,
            lower,
            upper,
            all_boxed: (0..n).all(|i| lower[i].is_finite() && upper[i].is_finite()),
            constrained: (0..n).any(|i| lower[i].is_finite() || upper[i].is_finite()),
            iterations: 0,
            evaluations: 1,
            x_new: vec![0.0; n],
            g_new: vec![0.0; n],
        })
    }

    fn projected_grad_norm(&self) -> f64 {
        projected_grad_norm(&self.x, &self.g, self.lower, self.upper)
    }

    /// One iteration (Cauchy point, subspace step, line search, memory update); `Some` when the
    /// run stops.
    fn iterate<F>(
        &mut self,
        f: &mut F,
        memory: &mut Memory,
        options: &LbfgsbOptions,
    ) -> Option<Termination>
    where
        F: FnMut(&[f64], &mut [f64]) -> f64,
    {
        if self.iterations >= options.maxiter {
            return Some(Termination::MaxIterations);
        }
        if self.evaluations >= options.max_evals {
            return Some(Termination::MaxEvaluations);
        }
        // Steps 1–2: Cauchy point and subspace minimisation give the target x̄.
        let target = self.search_target(memory);
        let d: Vec<f64> = target.iter().zip(&self.x).map(|(t, xi)| t - xi).collect();
        let dg0: f64 = d.iter().zip(&self.g).map(|(a, b)| a * b).sum();
        let dnorm = d.iter().map(|v| v * v).sum::<f64>().sqrt();
        if dg0 >= 0.0 || dnorm == 0.0 {
            // No descent direction from the model: with memory, restart from steepest descent;
            // without, the point is stationary to working precision.
            return restart(memory);
        }
        // Step 3: line search along d, staying in the box.
        let outcome = self.line_search(f, &d, dg0, dnorm, memory.is_empty(), options);
        self.evaluations += outcome.evaluations;
        if !outcome.accepted {
            return restart(memory);
        }
        self.iterations += 1;
        // Step 4: curvature pair, then swap in the new iterate.
        let f_old = self.fx;
        let s: Vec<f64> = self.x_new.iter().zip(&self.x).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = self.g_new.iter().zip(&self.g).map(|(a, b)| a - b).collect();
        std::mem::swap(&mut self.x, &mut self.x_new);
        std::mem::swap(&mut self.g, &mut self.g_new);
        self.fx = outcome.f;
        memory.push(s, y);
        if self.projected_grad_norm() <= options.pgtol {
            return Some(Termination::ProjectedGradient);
        }
        let scale = f_old.abs().max(self.fx.abs()).max(1.0);
        if f_old - self.fx <= options.ftol * scale {
            return Some(Termination::RelativeReduction);
        }
        None
    }

    /// Steps 1–2: the point the line search aims at, from the model of `memory` (emptied first
    /// when its middle matrix is numerically singular).
    fn search_target(&self, memory: &mut Memory) -> Vec<f64> {
        let middle = match memory.factor_middle() {
            Some(middle) => middle,
            None => {
                memory.clear();
                memory.factor_middle().unwrap_or_else(Lu::empty)
            }
        };
        Model {
            x: &self.x,
            g: &self.g,
            lower: self.lower,
            upper: self.upper,
            memory,
            middle: &middle,
        }
        .search_target()
    }

    /// Step 3 along `d` (`dg0 = dᵀg < 0`, `dnorm = |d|`), leaving the trial point in
    /// `x_new`/`g_new`.
    fn line_search<F>(
        &mut self,
        f: &mut F,
        d: &[f64],
        dg0: f64,
        dnorm: f64,
        memory_empty: bool,
        options: &LbfgsbOptions,
    ) -> LineSearchOutcome
    where
        F: FnMut(&[f64], &mut [f64]) -> f64,
    {
        let first_iteration = self.iterations == 0 && memory_empty;
        let step_max = if self.constrained && first_iteration {
            1.0
        } else if self.constrained {
            max_feasible_step(&self.x, d, self.lower, self.upper).min(1e10)
        } else {
            1e10
        };
        let step_init = if first_iteration && !self.all_boxed {
            (1.0 / dnorm).min(step_max)
        } else {
            1.0_f64.min(step_max)
        };
        let budget = options
            .max_linesearch
            .min(options.max_evals.saturating_sub(self.evaluations))
            .max(1);
        line_search(
            f,
            LineSearchProblem {
                x: &self.x,
                d,
                lower: self.lower,
                upper: self.upper,
                f0: self.fx,
                dg0,
                step_init,
                step_max,
                max_evals: budget,
            },
            &mut self.x_new,
            &mut self.g_new,
        )
    }

    fn finish(self, termination: Termination) -> LbfgsbResult {
        let projected_grad_norm = self.projected_grad_norm();
        LbfgsbResult {
            x: self.x,
            f: self.fx,
            grad: self.g,
            projected_grad_norm,
            iterations: self.iterations,
            evaluations: self.evaluations,
            termination,
        }
    }
}

/// No acceptable step: forget the curvature pairs and retry from steepest descent, or stop if
/// that was steepest descent already.
fn restart(memory: &mut Memory) -> Option<Termination> {
    if memory.is_empty() {
        return Some(Termination::LineSearchFailed);
    }
    memory.clear();
    None
}

fn check_problem(x0: &[f64], lower: &[f64], upper: &[f64], options: &LbfgsbOptions) -> Result<()> {
    let n = x0.len();
    if n == 0 {
        return Err(BoError::InvalidInput(
            "L-BFGS-B: empty starting point".into(),
        ));
    }
    for (what, len) in [("lower bounds", lower.len()), ("upper bounds", upper.len())] {
        if len != n {
            return Err(BoError::DimensionMismatch {
                what: format!("L-BFGS-B {what}"),
                expected: n,
                got: len,
            });
        }
    }
    for i in 0..n {
        if lower[i].is_nan() || upper[i].is_nan() || lower[i] > upper[i] {
            return Err(BoError::InvalidInput(format!(
                "L-BFGS-B: bounds of coordinate {i} are invalid: [{}, {}]",
                lower[i], upper[i]
            )));
        }
        if !x0[i].is_finite() {
            return Err(BoError::InvalidInput(format!(
                "L-BFGS-B: starting point coordinate {i} is not finite ({})",
                x0[i]
            )));
        }
    }
    if options.m == 0 {
        return Err(BoError::InvalidInput(
            "L-BFGS-B: memory size m must be at least 1".into(),
        ));
    }
    Ok(())
}

/// Sup-norm of `P(x − g) − x`: zero exactly at a first-order stationary point of the box problem.
pub fn projected_grad_norm(x: &[f64], g: &[f64], lower: &[f64], upper: &[f64]) -> f64 {
    (0..x.len())
        .map(|i| ((x[i] - g[i]).clamp(lower[i], upper[i]) - x[i]).abs())
        .fold(0.0, f64::max)
}

/// Largest `t` with `lower ≤ x + t·d ≤ upper`.
fn max_feasible_step(x: &[f64], d: &[f64], lower: &[f64], upper: &[f64]) -> f64 {
    let mut t = f64::INFINITY;
    for i in 0..x.len() {
        if d[i] < 0.0 && lower[i].is_finite() {
            t = t.min((lower[i] - x[i]) / d[i]);
        } else if d[i] > 0.0 && upper[i].is_finite() {
            t = t.min((upper[i] - x[i]) / d[i]);
        }
    }
    t.max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quadratic(x: &[f64], g: &mut [f64]) -> f64 {
        // f = Σ (i+1)(x_i − 2)², unconstrained minimum at 2, which lies outside [0, 1].
        let mut f = 0.0;
        for i in 0..x.len() {
            let w = (i + 1) as f64;
            f += w * (x[i] - 2.0).powi(2);
            g[i] = 2.0 * w * (x[i] - 2.0);
        }
        f
    }

    #[test]
    fn quadratic_with_optimum_outside_box_stops_at_upper_bound() {
        let r = minimize(
            quadratic,
            &[0.3, 0.1, 0.9],
            &[0.0; 3],
            &[1.0; 3],
            &LbfgsbOptions::default(),
        )
        .unwrap();
        for v in &r.x {
            assert_eq!(*v, 1.0);
        }
        assert!(r.termination.converged(), "{:?}", r.termination);
    }

    #[test]
    fn unconstrained_quadratic_reaches_minimum() {
        let inf = f64::INFINITY;
        let r = minimize(
            quadratic,
            &[0.0; 4],
            &[-inf; 4],
            &[inf; 4],
            &LbfgsbOptions::default(),
        )
        .unwrap();
        for v in &r.x {
            assert!((v - 2.0).abs() < 1e-5, "{v}");
        }
    }

    #[test]
    fn fixed_variables_stay_fixed() {
        let r = minimize(
            quadratic,
            &[0.5, 0.5],
            &[0.5, -10.0],
            &[0.5, 10.0],
            &LbfgsbOptions::default(),
        )
        .unwrap();
        assert_eq!(r.x[0], 0.5);
        assert!((r.x[1] - 2.0).abs() < 1e-6);
    }

    #[test]
    fn bad_bounds_are_errors() {
        assert!(minimize(quadratic, &[0.0], &[1.0], &[0.0], &LbfgsbOptions::default()).is_err());
        assert!(
            minimize(
                quadratic,
                &[0.0],
                &[0.0, 0.0],
                &[1.0],
                &LbfgsbOptions::default()
            )
            .is_err()
        );
        let nan_start = |_: &[f64], _: &mut [f64]| f64::NAN;
        assert!(minimize(nan_start, &[0.0], &[0.0], &[1.0], &LbfgsbOptions::default()).is_err());
    }

    #[test]
    fn rosenbrock_and_an_active_bound_in_a_box() {
        let rosenbrock = |x: &[f64], g: &mut [f64]| {
            let (a, b) = (x[0], x[1]);
            g[0] = -2.0 * (1.0 - a) - 400.0 * a * (b - a * a);
            g[1] = 200.0 * (b - a * a);
            (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2)
        };
        let options = LbfgsbOptions {
            maxiter: 500,
            ftol: 0.0,
            pgtol: 1e-8,
            ..LbfgsbOptions::default()
        };
        let r = minimize(rosenbrock, &[-1.2, 1.0], &[-2.0; 2], &[2.0; 2], &options).unwrap();
        assert!(
            (r.x[0] - 1.0).abs() < 1e-5 && (r.x[1] - 1.0).abs() < 1e-5,
            "{r:?}"
        );
        // The minimiser of (a−3)² + (b+1)² on [0,2]² is (2, 0), exactly on two bounds.
        let shifted = |x: &[f64], g: &mut [f64]| {
            g[0] = 2.0 * (x[0] - 3.0);
            g[1] = 2.0 * (x[1] + 1.0);
            (x[0] - 3.0).powi(2) + (x[1] + 1.0).powi(2)
        };
        let r = minimize(
            shifted,
            &[1.0; 2],
            &[0.0; 2],
            &[2.0; 2],
            &LbfgsbOptions::default(),
        );
        assert_eq!(r.unwrap().x, vec![2.0, 0.0]);
    }

    #[test]
    fn a_warm_memory_is_used_and_returned() {
        let inf = f64::INFINITY;
        let (lower, upper) = (vec![-inf; 4], vec![inf; 4]);
        let options = LbfgsbOptions::default();
        let (cold, pairs) =
            minimize_warm(quadratic, &[0.0; 4], &lower, &upper, &options, &[]).unwrap();
        assert!(!pairs.is_empty() && pairs.len() <= options.m);
        // From a nearby start, the pairs of the first search model the Hessian already.
        let start = [1.9, 2.1, 1.95, 2.05];
        let (warm, _) = minimize_warm(quadratic, &start, &lower, &upper, &options, &pairs).unwrap();
        let again = minimize(quadratic, &start, &lower, &upper, &options).unwrap();
        for v in cold.x.iter().chain(&warm.x) {
            assert!((v - 2.0).abs() < 1e-5, "{v}");
        }
        assert!(
            warm.evaluations <= again.evaluations,
            "{warm:?} vs {again:?}"
        );
    }

    #[test]
    fn infinite_values_shorten_the_step() {
        // Infinite beyond x = 1.5: the search must stay where f is finite.
        let walled = |x: &[f64], g: &mut [f64]| {
            if x[0] > 1.5 {
                return f64::INFINITY;
            }
            g[0] = 2.0 * (x[0] - 3.0);
            (x[0] - 3.0).powi(2)
        };
        let r = minimize(walled, &[0.0], &[-10.0], &[10.0], &LbfgsbOptions::default()).unwrap();
        assert!(r.f.is_finite() && r.x[0] <= 1.5 && r.x[0] > 1.0, "{r:?}");
    }

    #[test]
    fn lu_solves_small_system() {
        let a = vec![0.0, 2.0, 1.0, 1.0, 1.0, 0.0, 3.0, 0.0, 1.0];
        let lu = Lu::factor(a.clone(), 3).unwrap();
        let mut b = vec![5.0, 3.0, 10.0];
        lu.solve(&mut b);
        for r in 0..3 {
            let v: f64 = (0..3).map(|c| a[r * 3 + c] * b[c]).sum();
            assert!((v - [5.0, 3.0, 10.0][r]).abs() < 1e-12);
        }
    }
}
