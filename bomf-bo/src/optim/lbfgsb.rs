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
//! Stopping rules follow scipy: the projected-gradient sup-norm `≤ pgtol`, the relative
//! reduction `(f_k − f_{k+1}) / max(|f_k|, |f_{k+1}|, 1) ≤ ftol`, or the iteration / evaluation
//! budget. A line search that finds no decrease resets the memory once (steepest descent) before
//! giving up, as the Fortran code does.

use std::collections::VecDeque;

use crate::error::{BoError, Result};

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
    mut f: F,
    x0: &[f64],
    lower: &[f64],
    upper: &[f64],
    options: &LbfgsbOptions,
) -> Result<LbfgsbResult>
where
    F: FnMut(&[f64], &mut [f64]) -> f64,
{
    let n = x0.len();
    check_problem(x0, lower, upper, options)?;

    let mut x: Vec<f64> = (0..n).map(|i| x0[i].clamp(lower[i], upper[i])).collect();
    let mut g = vec![0.0; n];
    let mut fx = f(&x, &mut g);
    let mut evaluations = 1;
    if !fx.is_finite() || g.iter().any(|v| !v.is_finite()) {
        return Err(BoError::InvalidInput(format!(
            "L-BFGS-B: objective or gradient is not finite at the starting point (f = {fx})"
        )));
    }
    let all_boxed = (0..n).all(|i| lower[i].is_finite() && upper[i].is_finite());
    let constrained = (0..n).any(|i| lower[i].is_finite() || upper[i].is_finite());

    let mut memory = Memory::new(options.m);
    let mut iterations = 0;
    let mut x_new = vec![0.0; n];
    let mut g_new = vec![0.0; n];

    let finish = |x: Vec<f64>, f: f64, g: Vec<f64>, it: usize, ev: usize, t: Termination| {
        let pg = projected_grad_norm(&x, &g, lower, upper);
        Ok(LbfgsbResult {
            x,
            f,
            grad: g,
            projected_grad_norm: pg,
            iterations: it,
            evaluations: ev,
            termination: t,
        })
    };

    if projected_grad_norm(&x, &g, lower, upper) <= options.pgtol {
        return finish(x, fx, g, 0, evaluations, Termination::ProjectedGradient);
    }

    loop {
        if iterations >= options.maxiter {
            return finish(
                x,
                fx,
                g,
                iterations,
                evaluations,
                Termination::MaxIterations,
            );
        }
        if evaluations >= options.max_evals {
            return finish(
                x,
                fx,
                g,
                iterations,
                evaluations,
                Termination::MaxEvaluations,
            );
        }

        // Steps 1–2: Cauchy point and subspace minimisation give the target x̄.
        let target = match memory.factor_middle() {
            Some(middle) => search_target(&x, &g, lower, upper, &memory, &middle),
            None => {
                // The middle matrix is numerically singular: forget the curvature pairs.
                memory.clear();
                let middle = memory.factor_middle().unwrap_or_else(Lu::empty);
                search_target(&x, &g, lower, upper, &memory, &middle)
            }
        };
        let d: Vec<f64> = target.iter().zip(&x).map(|(t, xi)| t - xi).collect();
        let dg0: f64 = d.iter().zip(&g).map(|(a, b)| a * b).sum();
        let dnorm = d.iter().map(|v| v * v).sum::<f64>().sqrt();

        if dg0 >= 0.0 || dnorm == 0.0 {
            // No descent direction from the model: with memory, restart from steepest descent;
            // without, the point is stationary to working precision.
            if memory.is_empty() {
                return finish(
                    x,
                    fx,
                    g,
                    iterations,
                    evaluations,
                    Termination::LineSearchFailed,
                );
            }
            memory.clear();
            continue;
        }

        // Step 3: line search along d, staying in the box.
        let first_iteration = iterations == 0 && memory.is_empty();
        let step_max = if constrained && first_iteration {
            1.0
        } else if constrained {
            max_feasible_step(&x, &d, lower, upper).min(1e10)
        } else {
            1e10
        };
        let step_init = if first_iteration && !all_boxed {
            (1.0 / dnorm).min(step_max)
        } else {
            1.0_f64.min(step_max)
        };
        let budget = options
            .max_linesearch
            .min(options.max_evals.saturating_sub(evaluations))
            .max(1);
        let outcome = line_search(
            &mut f,
            LineSearchProblem {
                x: &x,
                d: &d,
                lower,
                upper,
                f0: fx,
                dg0,
                step_init,
                step_max,
                max_evals: budget,
            },
            &mut x_new,
            &mut g_new,
        );
        evaluations += outcome.evaluations;

        if !outcome.accepted {
            if memory.is_empty() {
                return finish(
                    x,
                    fx,
                    g,
                    iterations,
                    evaluations,
                    Termination::LineSearchFailed,
                );
            }
            memory.clear();
            continue;
        }
        iterations += 1;

        let f_old = fx;
        // Step 4: curvature pair, then swap in the new iterate.
        let s: Vec<f64> = x_new.iter().zip(&x).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
        std::mem::swap(&mut x, &mut x_new);
        std::mem::swap(&mut g, &mut g_new);
        fx = outcome.f;

        if projected_grad_norm(&x, &g, lower, upper) <= options.pgtol {
            return finish(
                x,
                fx,
                g,
                iterations,
                evaluations,
                Termination::ProjectedGradient,
            );
        }
        let scale = f_old.abs().max(fx.abs()).max(1.0);
        if f_old - fx <= options.ftol * scale {
            return finish(
                x,
                fx,
                g,
                iterations,
                evaluations,
                Termination::RelativeReduction,
            );
        }
        memory.push(s, y);
    }
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

// ---------------------------------------------------------------------------------------------
// Limited-memory compact representation.

/// The last `m` curvature pairs and the scaling `θ`, oldest first.
struct Memory {
    capacity: usize,
    s: VecDeque<Vec<f64>>,
    y: VecDeque<Vec<f64>>,
    theta: f64,
}

impl Memory {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            s: VecDeque::new(),
            y: VecDeque::new(),
            theta: 1.0,
        }
    }

    fn len(&self) -> usize {
        self.s.len()
    }

    fn is_empty(&self) -> bool {
        self.s.is_empty()
    }

    fn clear(&mut self) {
        self.s.clear();
        self.y.clear();
        self.theta = 1.0;
    }

    /// Keep the pair only if it carries positive curvature (`sᵀy > ε·yᵀy`), which keeps `B`
    /// positive definite.
    fn push(&mut self, s: Vec<f64>, y: Vec<f64>) {
        let sy: f64 = s.iter().zip(&y).map(|(a, b)| a * b).sum();
        let yy: f64 = y.iter().map(|v| v * v).sum();
        if !sy.is_finite() || !yy.is_finite() || sy <= f64::EPSILON * yy {
            return;
        }
        if self.s.len() == self.capacity {
            self.s.pop_front();
            self.y.pop_front();
        }
        self.s.push_back(s);
        self.y.push_back(y);
        self.theta = yy / sy;
    }

    /// Row `i` of `W = [Y, θS]` (length `2k`).
    fn w_row(&self, i: usize, out: &mut [f64]) {
        let k = self.len();
        for j in 0..k {
            out[j] = self.y[j][i];
            out[k + j] = self.theta * self.s[j][i];
        }
    }

    /// LU factors of `M⁻¹ = [[−D, Lᵀ], [L, θSᵀS]]`, so `M·v` is one solve.
    fn factor_middle(&self) -> Option<Lu> {
        let k = self.len();
        let n = 2 * k;
        let mut a = vec![0.0; n * n];
        let dot = |u: &[f64], v: &[f64]| u.iter().zip(v).map(|(p, q)| p * q).sum::<f64>();
        for i in 0..k {
            for j in 0..k {
                // Top-left: −D (diagonal of sᵢᵀyᵢ).
                if i == j {
                    a[i * n + j] = -dot(&self.s[i], &self.y[i]);
                }
                // L (strictly lower: sᵢᵀyⱼ for i > j) bottom-left, Lᵀ top-right.
                if i > j {
                    let l = dot(&self.s[i], &self.y[j]);
                    a[(k + i) * n + j] = l;
                    a[j * n + (k + i)] = l;
                }
                // Bottom-right: θ SᵀS.
                a[(k + i) * n + (k + j)] = self.theta * dot(&self.s[i], &self.s[j]);
            }
        }
        Lu::factor(a, n)
    }
}

/// Dense LU factorisation with partial pivoting for the tiny (`2m × 2m`) systems.
struct Lu {
    n: usize,
    a: Vec<f64>,
    pivots: Vec<usize>,
}

impl Lu {
    fn empty() -> Self {
        Self {
            n: 0,
            a: Vec::new(),
            pivots: Vec::new(),
        }
    }

    fn factor(mut a: Vec<f64>, n: usize) -> Option<Self> {
        let scale = a.iter().fold(0.0_f64, |m, v| m.max(v.abs()));
        let mut pivots = vec![0; n];
        for col in 0..n {
            let (p, best) = (col..n)
                .map(|r| (r, a[r * n + col].abs()))
                .fold((col, -1.0), |acc, c| if c.1 > acc.1 { c } else { acc });
            if best.is_nan() || best <= 1e-14 * scale {
                return None;
            }
            pivots[col] = p;
            if p != col {
                for j in 0..n {
                    a.swap(col * n + j, p * n + j);
                }
            }
            let diag = a[col * n + col];
            for r in col + 1..n {
                let factor = a[r * n + col] / diag;
                a[r * n + col] = factor;
                for j in col + 1..n {
                    a[r * n + j] -= factor * a[col * n + j];
                }
            }
        }
        Some(Self { n, a, pivots })
    }

    /// Solve `A z = b` in place.
    fn solve(&self, b: &mut [f64]) {
        let n = self.n;
        for col in 0..n {
            b.swap(col, self.pivots[col]);
        }
        // Forward substitution with the unit lower triangle, then back substitution.
        for r in 0..n {
            let row = &self.a[r * n..r * n + r];
            let acc = b[r] - dot(row, &b[..r]);
            b[r] = acc;
        }
        for r in (0..n).rev() {
            let row = &self.a[r * n + r + 1..(r + 1) * n];
            let acc = b[r] - dot(row, &b[r + 1..]);
            b[r] = acc / self.a[r * n + r];
        }
    }
}

fn dot(u: &[f64], v: &[f64]) -> f64 {
    u.iter().zip(v).map(|(a, b)| a * b).sum()
}

// ---------------------------------------------------------------------------------------------
// Generalised Cauchy point and subspace minimisation.

/// Steps 1 and 2: the point `x̄` the line search aims at.
fn search_target(
    x: &[f64],
    g: &[f64],
    lower: &[f64],
    upper: &[f64],
    memory: &Memory,
    middle: &Lu,
) -> Vec<f64> {
    let n = x.len();
    let k2 = 2 * memory.len();
    let theta = memory.theta;
    let (xcp, free, c) = cauchy_point(x, g, lower, upper, memory, middle);
    let free_idx: Vec<usize> = (0..n).filter(|&i| free[i]).collect();
    if free_idx.is_empty() {
        return xcp;
    }

    // Reduced gradient of the model at the Cauchy point: r = Zᵀ(g + θ(xcp − x) − W M c).
    let mut mc = c;
    middle.solve(&mut mc);
    let mut w = vec![0.0; k2];
    let mut r = Vec::with_capacity(free_idx.len());
    // Wᵀ Z r and A = Wᵀ Z Zᵀ W, accumulated over the free variables.
    let mut wz_r = vec![0.0; k2];
    let mut a = vec![0.0; k2 * k2];
    for &i in &free_idx {
        memory.w_row(i, &mut w);
        let ri = g[i] + theta * (xcp[i] - x[i]) - dot(&w, &mc);
        r.push(ri);
        for p in 0..k2 {
            wz_r[p] += w[p] * ri;
            for q in 0..k2 {
                a[p * k2 + q] += w[p] * w[q];
            }
        }
    }

    // Woodbury: (θI − ZᵀW M WᵀZ)⁻¹ r = r/θ + (1/θ²) ZᵀW (M⁻¹ − A/θ)⁻¹ WᵀZ r.
    let mut v = wz_r;
    let mut correction_ok = k2 == 0;
    if k2 > 0 {
        let mut reduced = vec![0.0; k2 * k2];
        for p in 0..k2 {
            for q in 0..k2 {
                reduced[p * k2 + q] = middle_entry(memory, p, q) - a[p * k2 + q] / theta;
            }
        }
        if let Some(lu) = Lu::factor(reduced, k2) {
            lu.solve(&mut v);
            correction_ok = v.iter().all(|t| t.is_finite());
        }
    }
    let mut du = vec![0.0; free_idx.len()];
    for (j, &i) in free_idx.iter().enumerate() {
        du[j] = -r[j] / theta;
        if correction_ok && k2 > 0 {
            memory.w_row(i, &mut w);
            du[j] -= dot(&w, &v) / (theta * theta);
        }
    }

    // Morales–Nocedal: project xcp + du onto the box; keep it if it is a descent direction
    // from x, otherwise truncate the step at the first bound (the 1995 rule).
    let mut projected = xcp.clone();
    for (j, &i) in free_idx.iter().enumerate() {
        projected[i] = (xcp[i] + du[j]).clamp(lower[i], upper[i]);
    }
    let descent: f64 = (0..n).map(|i| (projected[i] - x[i]) * g[i]).sum();
    if descent < 0.0 {
        return projected;
    }
    let mut alpha: f64 = 1.0;
    for (j, &i) in free_idx.iter().enumerate() {
        if du[j] > 0.0 {
            alpha = alpha.min((upper[i] - xcp[i]) / du[j]);
        } else if du[j] < 0.0 {
            alpha = alpha.min((lower[i] - xcp[i]) / du[j]);
        }
    }
    let alpha = alpha.max(0.0);
    let mut truncated = xcp;
    for (j, &i) in free_idx.iter().enumerate() {
        truncated[i] = (truncated[i] + alpha * du[j]).clamp(lower[i], upper[i]);
    }
    truncated
}

/// Entry `(p, q)` of `M⁻¹` rebuilt from the pairs (used once per iteration, `O(m²n)` in all).
fn middle_entry(memory: &Memory, p: usize, q: usize) -> f64 {
    let k = memory.len();
    match (p < k, q < k) {
        (true, true) => {
            if p == q {
                -dot(&memory.s[p], &memory.y[p])
            } else {
                0.0
            }
        }
        (false, true) => {
            let i = p - k;
            if i > q {
                dot(&memory.s[i], &memory.y[q])
            } else {
                0.0
            }
        }
        (true, false) => {
            let j = q - k;
            if j > p {
                dot(&memory.s[j], &memory.y[p])
            } else {
                0.0
            }
        }
        (false, false) => memory.theta * dot(&memory.s[p - k], &memory.s[q - k]),
    }
}

/// Algorithm CP of Byrd et al. (1995): the first local minimiser of the quadratic model along
/// the projected steepest-descent path. Returns the point, which variables are still free
/// there, and `c = Wᵀ(xcp − x)`.
fn cauchy_point(
    x: &[f64],
    g: &[f64],
    lower: &[f64],
    upper: &[f64],
    memory: &Memory,
    middle: &Lu,
) -> (Vec<f64>, Vec<bool>, Vec<f64>) {
    let n = x.len();
    let k2 = 2 * memory.len();
    let theta = memory.theta;

    let mut xcp = x.to_vec();
    let mut free = vec![true; n];
    let mut d = vec![0.0; n];
    let mut breakpoints: Vec<(f64, usize)> = Vec::new();
    for i in 0..n {
        if lower[i] == upper[i] {
            free[i] = false;
            continue;
        }
        let t = if g[i] < 0.0 && upper[i].is_finite() {
            (x[i] - upper[i]) / g[i]
        } else if g[i] > 0.0 && lower[i].is_finite() {
            (x[i] - lower[i]) / g[i]
        } else {
            f64::INFINITY
        };
        if t <= 0.0 {
            // Already at the bound the gradient pushes against: fixed.
            free[i] = false;
        } else {
            d[i] = -g[i];
            if t.is_finite() {
                breakpoints.push((t, i));
            }
        }
    }
    breakpoints.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));

    let mut w = vec![0.0; k2];
    let mut p = vec![0.0; k2];
    for (i, &di) in d.iter().enumerate() {
        if di != 0.0 {
            memory.w_row(i, &mut w);
            for (pj, wj) in p.iter_mut().zip(&w) {
                *pj += wj * di;
            }
        }
    }
    let mut c = vec![0.0; k2];
    let mut mp = p.clone();
    middle.solve(&mut mp);
    let mut mc = vec![0.0; k2];

    let mut f1 = -dot(&d, &d);
    let mut f2 = -theta * f1 - dot(&p, &mp);
    let f2_original = f2;
    let mut dt_min = if f2 > 0.0 { -f1 / f2 } else { f64::INFINITY };
    let mut t_old = 0.0;

    let mut mw = vec![0.0; k2];
    for &(t, b) in &breakpoints {
        let dt = t - t_old;
        if dt_min < dt {
            break;
        }
        // Move to the breakpoint: coordinate b reaches its bound and leaves the path.
        let bound = if d[b] > 0.0 { upper[b] } else { lower[b] };
        let zb = bound - x[b];
        xcp[b] = bound;
        free[b] = false;
        for j in 0..k2 {
            c[j] += dt * p[j];
            mc[j] += dt * mp[j];
        }
        let gb = g[b];
        memory.w_row(b, &mut w);
        mw.copy_from_slice(&w);
        middle.solve(&mut mw);
        f1 += dt * f2 + gb * gb + theta * gb * zb - gb * dot(&w, &mc);
        f2 += -theta * gb * gb - 2.0 * gb * dot(&w, &mp) - gb * gb * dot(&w, &mw);
        f2 = f2.max(f64::EPSILON * f2_original);
        for j in 0..k2 {
            p[j] += gb * w[j];
            mp[j] += gb * mw[j];
        }
        d[b] = 0.0;
        dt_min = if f2 > 0.0 { -f1 / f2 } else { f64::INFINITY };
        t_old = t;
    }

    let dt_min = if dt_min.is_finite() {
        dt_min.max(0.0)
    } else {
        0.0
    };
    let t_final = t_old + dt_min;
    for i in 0..n {
        if d[i] != 0.0 {
            xcp[i] = (x[i] + t_final * d[i]).clamp(lower[i], upper[i]);
        }
    }
    for j in 0..k2 {
        c[j] += dt_min * p[j];
    }
    (xcp, free, c)
}

// ---------------------------------------------------------------------------------------------
// Line search.

struct LineSearchProblem<'a> {
    x: &'a [f64],
    d: &'a [f64],
    lower: &'a [f64],
    upper: &'a [f64],
    f0: f64,
    dg0: f64,
    step_init: f64,
    step_max: f64,
    max_evals: usize,
}

struct LineSearchOutcome {
    accepted: bool,
    f: f64,
    evaluations: usize,
}

/// One trial point of the line search.
#[derive(Clone, Copy)]
struct Trial {
    step: f64,
    f: f64,
    slope: f64,
}

/// Strong-Wolfe line search (Nocedal & Wright, Algorithms 3.5–3.6) on `φ(t) = f(x + t·d)`,
/// `t ∈ (0, step_max]`, with safeguarded cubic interpolation. On success `x_out`/`g_out` hold the
/// accepted point. If the budget runs out, the best point with sufficient decrease is accepted.
fn line_search<F>(
    f: &mut F,
    problem: LineSearchProblem<'_>,
    x_out: &mut [f64],
    g_out: &mut [f64],
) -> LineSearchOutcome
where
    F: FnMut(&[f64], &mut [f64]) -> f64,
{
    const C1: f64 = 1e-3;
    const C2: f64 = 0.9;
    let p = &problem;
    let mut evaluations = 0;
    // The best point with sufficient decrease so far, kept to fall back on.
    let mut best: Option<(Trial, Vec<f64>, Vec<f64>)> = None;

    let mut evaluate = |step: f64, x_out: &mut [f64], g_out: &mut [f64]| -> Trial {
        for (i, xi) in x_out.iter_mut().enumerate() {
            *xi = (p.x[i] + step * p.d[i]).clamp(p.lower[i], p.upper[i]);
        }
        let value = f(x_out, g_out);
        let slope = dot(g_out, p.d);
        if value.is_finite() && slope.is_finite() && g_out.iter().all(|v| v.is_finite()) {
            Trial {
                step,
                f: value,
                slope,
            }
        } else {
            Trial {
                step,
                f: f64::INFINITY,
                slope: f64::NAN,
            }
        }
    };
    let armijo = |t: &Trial| t.f <= p.f0 + C1 * t.step * p.dg0;
    let curvature = |t: &Trial| t.slope.abs() <= -C2 * p.dg0;

    let done = |t: Trial, evaluations: usize| LineSearchOutcome {
        accepted: true,
        f: t.f,
        evaluations,
    };

    let origin = Trial {
        step: 0.0,
        f: p.f0,
        slope: p.dg0,
    };
    let mut previous = origin;
    let mut step = p.step_init;
    // Phase 1: bracket an acceptable step.
    let (mut lo, mut hi) = loop {
        let trial = evaluate(step, x_out, g_out);
        evaluations += 1;
        if !armijo(&trial) || (evaluations > 1 && trial.f >= previous.f) {
            break (previous, trial);
        }
        if best.as_ref().is_none_or(|b| trial.f < b.0.f) {
            best = Some((trial, x_out.to_vec(), g_out.to_vec()));
        }
        if curvature(&trial) {
            return done(trial, evaluations);
        }
        if trial.slope >= 0.0 {
            break (trial, previous);
        }
        if step >= p.step_max || evaluations >= p.max_evals {
            // Sufficient decrease at the largest feasible step: accept it.
            return done(trial, evaluations);
        }
        previous = trial;
        step = (4.0 * step).min(p.step_max);
    };

    // Phase 2: zoom inside [lo, hi]; `lo` always satisfies sufficient decrease.
    while evaluations < p.max_evals {
        let width = (hi.step - lo.step).abs();
        if width <= 1e-14 * hi.step.abs().max(lo.step.abs()).max(1e-300) {
            break;
        }
        let step = interpolate(&lo, &hi);
        let trial = evaluate(step, x_out, g_out);
        evaluations += 1;
        if !armijo(&trial) || trial.f >= lo.f {
            hi = trial;
        } else {
            if best.as_ref().is_none_or(|b| trial.f < b.0.f) {
                best = Some((trial, x_out.to_vec(), g_out.to_vec()));
            }
            if curvature(&trial) {
                return done(trial, evaluations);
            }
            if trial.slope * (hi.step - lo.step) >= 0.0 {
                hi = lo;
            }
            lo = trial;
        }
    }

    match best {
        Some((trial, xb, gb)) => {
            x_out.copy_from_slice(&xb);
            g_out.copy_from_slice(&gb);
            done(trial, evaluations)
        }
        None => LineSearchOutcome {
            accepted: false,
            f: p.f0,
            evaluations,
        },
    }
}

/// Minimiser of the cubic through two trial points (values and slopes), kept in the middle 80 %
/// of the interval; bisection when the data are not finite or the cubic has no minimiser.
fn interpolate(a: &Trial, b: &Trial) -> f64 {
    let (lo, hi) = if a.step < b.step { (a, b) } else { (b, a) };
    let width = hi.step - lo.step;
    let safe_lo = lo.step + 0.1 * width;
    let safe_hi = hi.step - 0.1 * width;
    let bisect = 0.5 * (lo.step + hi.step);
    if !(lo.f.is_finite() && hi.f.is_finite() && lo.slope.is_finite() && hi.slope.is_finite()) {
        // Only the lower end is trustworthy: fit a quadratic through its value and slope and
        // the upper end's value when that is finite, else bisect.
        if lo.f.is_finite() && lo.slope.is_finite() && hi.f.is_finite() {
            let curvature = (hi.f - lo.f - lo.slope * width) / (width * width);
            if curvature > 0.0 {
                let t = lo.step - lo.slope / (2.0 * curvature);
                return t.clamp(safe_lo, safe_hi);
            }
        }
        return bisect;
    }
    let d1 = lo.slope + hi.slope - 3.0 * (lo.f - hi.f) / (lo.step - hi.step);
    let disc = d1 * d1 - lo.slope * hi.slope;
    if disc < 0.0 {
        return bisect;
    }
    let d2 = disc.sqrt();
    let t = hi.step - width * (hi.slope + d2 - d1) / (hi.slope - lo.slope + 2.0 * d2);
    if t.is_finite() {
        t.clamp(safe_lo, safe_hi)
    } else {
        bisect
    }
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
