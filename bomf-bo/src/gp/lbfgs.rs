//! A compact projected L-BFGS for box-constrained minimisation (in the spirit of L-BFGS-B,
//! without its generalised Cauchy point): variables held at a bound by the gradient are frozen
//! for the step, the two-loop recursion gives the direction on the others, and a backtracking
//! Armijo search runs along the projected path. Enough for the ≤ 20 smooth hyperparameters of
//! a GP; private to `gp` so the fit has no dependency on the acquisition optimiser.

#[derive(Debug, Clone, Copy)]
pub struct LbfgsOptions {
    pub max_iters: usize,
    pub memory: usize,
    /// Stop when every projected-gradient component is below this.
    pub pgtol: f64,
    /// Stop when the relative decrease of `f` in one step is below this (scipy's
    /// `factr · ε` ≈ 2.2e-9).
    pub ftol: f64,
}

impl Default for LbfgsOptions {
    fn default() -> Self {
        Self {
            max_iters: 200,
            memory: 10,
            pgtol: 1e-5,
            ftol: 2.2e-9,
        }
    }
}

#[derive(Debug, Clone)]
pub struct LbfgsResult {
    pub x: Vec<f64>,
    pub f: f64,
    pub iterations: usize,
    pub evaluations: usize,
    /// The curvature pairs `(s, y)` held at the end, oldest first.
    pub memory: Vec<(Vec<f64>, Vec<f64>)>,
}

fn project(x: &mut [f64], lo: &[f64], hi: &[f64]) {
    for i in 0..x.len() {
        x[i] = x[i].clamp(lo[i], hi[i]);
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Minimise `f` (which returns the value and writes the gradient; a non-finite value means
/// "infeasible here") over the box `[lo, hi]` from `x0`.
pub fn minimize_box(
    f: impl FnMut(&[f64], &mut [f64]) -> f64,
    x0: &[f64],
    lo: &[f64],
    hi: &[f64],
    opts: LbfgsOptions,
) -> LbfgsResult {
    minimize_box_warm(f, x0, lo, hi, opts, &[])
}

/// [`minimize_box`] starting with the curvature pairs `memory` (e.g. those a search of a
/// similar objective ended with) instead of none.
pub fn minimize_box_warm(
    mut f: impl FnMut(&[f64], &mut [f64]) -> f64,
    x0: &[f64],
    lo: &[f64],
    hi: &[f64],
    opts: LbfgsOptions,
    memory: &[(Vec<f64>, Vec<f64>)],
) -> LbfgsResult {
    let n = x0.len();
    let mut x = x0.to_vec();
    project(&mut x, lo, hi);
    let mut g = vec![0.0; n];
    let mut fx = f(&x, &mut g);
    let mut evaluations = 1;
    let (mut s_hist, mut y_hist): (Vec<Vec<f64>>, Vec<Vec<f64>>) = memory.iter().cloned().unzip();
    let mut iterations = 0;
    if !fx.is_finite() {
        return LbfgsResult {
            x,
            f: fx,
            iterations,
            evaluations,
            memory: Vec::new(),
        };
    }
    let mut x_new = vec![0.0; n];
    let mut g_new = vec![0.0; n];
    while iterations < opts.max_iters {
        // Free variables: not pinned at a bound by a gradient pointing outwards.
        let free: Vec<bool> = (0..n)
            .map(|i| !((x[i] <= lo[i] && g[i] > 0.0) || (x[i] >= hi[i] && g[i] < 0.0)))
            .collect();
        let pg_max = (0..n)
            .filter(|&i| free[i])
            .map(|i| g[i].abs())
            .fold(0.0, f64::max);
        if pg_max < opts.pgtol {
            break;
        }
        iterations += 1;
        // Two-loop recursion on the free subspace.
        let mut d: Vec<f64> = (0..n).map(|i| if free[i] { -g[i] } else { 0.0 }).collect();
        let k = s_hist.len();
        let mut alphas = vec![0.0; k];
        for j in (0..k).rev() {
            let rho = 1.0 / dot(&y_hist[j], &s_hist[j]);
            alphas[j] = rho * dot(&s_hist[j], &d);
            for i in 0..n {
                d[i] -= alphas[j] * y_hist[j][i];
            }
        }
        let gamma = if k > 0 {
            dot(&s_hist[k - 1], &y_hist[k - 1]) / dot(&y_hist[k - 1], &y_hist[k - 1])
        } else {
            1.0 / pg_max.max(1.0)
        };
        d.iter_mut().for_each(|v| *v *= gamma);
        for j in 0..k {
            let rho = 1.0 / dot(&y_hist[j], &s_hist[j]);
            let beta = rho * dot(&y_hist[j], &d);
            for i in 0..n {
                d[i] += (alphas[j] - beta) * s_hist[j][i];
            }
        }
        for i in 0..n {
            if !free[i] {
                d[i] = 0.0;
            }
        }
        if dot(&d, &g) >= 0.0 {
            // Not a descent direction (stale curvature): restart from steepest descent.
            s_hist.clear();
            y_hist.clear();
            for i in 0..n {
                d[i] = if free[i] {
                    -g[i] / pg_max.max(1.0)
                } else {
                    0.0
                };
            }
        }
        // Backtracking Armijo search along the projected path.
        let mut t = 1.0;
        let mut accepted = false;
        let mut f_new = f64::INFINITY;
        for _ in 0..40 {
            for i in 0..n {
                x_new[i] = x[i] + t * d[i];
            }
            project(&mut x_new, lo, hi);
            f_new = f(&x_new, &mut g_new);
            evaluations += 1;
            let decrease: f64 = (0..n).map(|i| g[i] * (x_new[i] - x[i])).sum();
            if f_new.is_finite() && f_new <= fx + 1e-4 * decrease {
                accepted = true;
                break;
            }
            t *= 0.5;
        }
        if !accepted {
            if s_hist.is_empty() {
                break;
            }
            s_hist.clear();
            y_hist.clear();
            continue;
        }
        let s: Vec<f64> = (0..n).map(|i| x_new[i] - x[i]).collect();
        let y: Vec<f64> = (0..n).map(|i| g_new[i] - g[i]).collect();
        let sy = dot(&s, &y);
        if sy > 1e-10 * dot(&y, &y).max(1e-300) {
            if s_hist.len() == opts.memory {
                s_hist.remove(0);
                y_hist.remove(0);
            }
            s_hist.push(s);
            y_hist.push(y);
        }
        let rel = (fx - f_new) / fx.abs().max(f_new.abs()).max(1.0);
        x.copy_from_slice(&x_new);
        g.copy_from_slice(&g_new);
        fx = f_new;
        if rel < opts.ftol {
            break;
        }
    }
    LbfgsResult {
        x,
        f: fx,
        iterations,
        evaluations,
        memory: s_hist.into_iter().zip(y_hist).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rosenbrock_in_a_box() {
        let f = |x: &[f64], g: &mut [f64]| {
            let (a, b) = (x[0], x[1]);
            g[0] = -2.0 * (1.0 - a) - 400.0 * a * (b - a * a);
            g[1] = 200.0 * (b - a * a);
            (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2)
        };
        let opts = LbfgsOptions {
            max_iters: 500,
            ftol: 0.0,
            pgtol: 1e-8,
            ..Default::default()
        };
        let r = minimize_box(f, &[-1.2, 1.0], &[-2.0, -2.0], &[2.0, 2.0], opts);
        assert!(
            (r.x[0] - 1.0).abs() < 1e-5 && (r.x[1] - 1.0).abs() < 1e-5,
            "{:?}",
            r
        );
        // Active bound: the minimiser of (a−3)² + (b+1)² on [0,2]² is (2, 0).
        let f = |x: &[f64], g: &mut [f64]| {
            g[0] = 2.0 * (x[0] - 3.0);
            g[1] = 2.0 * (x[1] + 1.0);
            (x[0] - 3.0).powi(2) + (x[1] + 1.0).powi(2)
        };
        let r = minimize_box(
            f,
            &[1.0, 1.0],
            &[0.0, 0.0],
            &[2.0, 2.0],
            LbfgsOptions::default(),
        );
        assert_eq!(r.x, vec![2.0, 0.0]);
    }
}
