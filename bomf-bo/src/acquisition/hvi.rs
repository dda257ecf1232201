//! Hypervolume-improvement kernels: the inner loop of qEHVI / qNEHVI and their log variants,
//! evaluated once per Monte-Carlo sample.
//!
//! Given disjoint boxes `[l_k, u_k]` covering the non-dominated region
//! ([`crate::partitioning::nondominated_cells`]) and `q` new outcome vectors `y_1..y_q`
//! (maximisation), the hypervolume improvement is, by inclusion–exclusion over the
//! `2^q − 1` non-empty subsets S (Daulton et al. 2020, BoTorch's `_compute_qehvi`):
//!
//! ```text
//! HVI = Σ_k Σ_S (−1)^{|S|+1} Π_d [ min(u_k^d, min_{i∈S} y_i^d) − l_k^d ]_+
//! ```
//!
//! It works because inside one box the region dominated by `y_i` is `[l_k, min(u_k, y_i)]`,
//! and all these rectangles share the corner `l_k`, so their intersections are rectangles too.
//!
//! Subsets are bit masks, visited in increasing order. Instead of BoTorch's cached index lists
//! per subset size, the exact kernel builds `min_{i∈S} y_i` by dynamic programming —
//! `min(S) = min(min(S \ {lowest}), y_lowest)` — which costs O(m) per subset instead of
//! O(|S|·m), needs no cache, and computes the subset minima once per call rather than per
//! cell. Because a subset's area never exceeds that of the subset without its lowest member,
//! a zero area prunes all the subsets built on it.
//!
//! The HVI is piecewise polynomial in `y`, so [`hvi_with_grad`] differentiates it exactly:
//! a subset term depends on `y_i^d` only where `y_i` is the subset's minimum in `d` and below
//! `u_k^d`, with derivative `±Π_{d'≠d} side_{d'}` (ties give one valid subgradient).
//!
//! [`log_hvi`] / [`log_hvi_with_grad`] are the qLogEHVI numerics (Ament et al. 2023,
//! BoTorch's `_compute_log_qehvi`): every `[·]_+` becomes a smooth, fat-tailed ReLU taken in
//! log space, every `min` a smooth fat-tailed minimum, and the signed sum keeps odd and even
//! subset sizes in separate log accumulators combined with `logdiffexp`. The result is
//! strictly finite with informative gradients where the exact HVI is zero. The smooth subset
//! minimum is not associative, so here the subset members are gathered explicitly (the index
//! lists BoTorch caches are the bits of the mask).

use crate::error::{BoError, Result};
use crate::partitioning::Cells;
use crate::safe_math::{
    log_fatplus, log_fatplus_grad, log_softplus, log_softplus_grad, logdiffexp,
};
use std::cell::RefCell;

/// Largest batch size the kernels accept: `2^q − 1` subsets per cell grow quickly, and BoTorch
/// likewise uses sequential greedy conditioning instead of large joint batches.
pub const MAX_Q: usize = 12;

/// Smoothing settings of the log-HVI kernel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogHviParams {
    /// Temperature of the smooth ReLU applied to `y − l`.
    pub tau_relu: f64,
    /// Temperature of the smooth minima (over a subset, and against the cell length).
    pub tau_max: f64,
    /// Fat-tailed smoothing (`log_fatplus`, `fatmin`) instead of `log_softplus` and the
    /// log-sum-exp minimum.
    pub fat: bool,
}

impl LogHviParams {
    /// qLogEHVI's defaults (`tau_relu = 1e-6`, `tau_max = 1e-2`, fat).
    pub const QLOGEHVI: Self = Self {
        tau_relu: 1e-6,
        tau_max: 1e-2,
        fat: true,
    };
    /// qLogNEHVI's defaults (`tau_relu = 1e-6`, `tau_max = 1e-3`, fat).
    pub const QLOGNEHVI: Self = Self {
        tau_relu: 1e-6,
        tau_max: 1e-3,
        fat: true,
    };
}

impl Default for LogHviParams {
    fn default() -> Self {
        Self::QLOGEHVI
    }
}

/// Checks `ys` against the cells and returns `q`.
fn check_batch(cells: &Cells, ys: &[f64]) -> Result<usize> {
    let m = cells.m();
    if m == 0 || ys.is_empty() || !ys.len().is_multiple_of(m) {
        return Err(BoError::DimensionMismatch {
            what: format!("hvi: outcome batch length must be a positive multiple of m={m}"),
            expected: m.max(1),
            got: ys.len(),
        });
    }
    let q = ys.len() / m;
    if q > MAX_Q {
        return Err(BoError::InvalidInput(format!(
            "hvi: batch size q={q} exceeds the supported maximum {MAX_Q} (2^q subsets per cell); \
             use sequential greedy batches"
        )));
    }
    if let Some(i) = ys.iter().position(|v| v.is_nan()) {
        return Err(BoError::InvalidInput(format!(
            "hvi: outcome y[{}][{}] is NaN",
            i / m,
            i % m
        )));
    }
    Ok(q)
}

thread_local! {
    /// Per-thread scratch so the kernels allocate nothing after their first call on a thread.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

#[derive(Default)]
struct Scratch {
    /// Subset minima `min_{i∈S} y_i`, `2^q × m`.
    mins: Vec<f64>,
    /// Which member attains each minimum, `2^q × m`.
    argmin: Vec<u8>,
    /// Per-subset areas of the current cell, `2^q`.
    areas: Vec<f64>,
    /// Log-variant buffers.
    log_imp: Vec<f64>,
    log_imp_grad: Vec<f64>,
    log_area: Vec<f64>,
    d_log_area: Vec<f64>,
    cell_grad: Vec<f64>,
    members: Vec<usize>,
    weights: Vec<f64>,
    /// One subset's log improvements in one objective.
    subset_vals: Vec<f64>,
}

/// Exact hypervolume improvement of the `q` outcome vectors `ys` (`q × m`, row-major) over the
/// region covered by `cells`.
pub fn hvi(cells: &Cells, ys: &[f64]) -> Result<f64> {
    let q = check_batch(cells, ys)?;
    if q == 1 {
        return Ok(hvi_single(cells, ys, None));
    }
    Ok(SCRATCH.with(|s| hvi_batch(cells, ys, q, None, &mut s.borrow_mut())))
}

/// [`hvi`] and its gradient with respect to `ys`, written into `grad` (same shape as `ys`).
pub fn hvi_with_grad(cells: &Cells, ys: &[f64], grad: &mut [f64]) -> Result<f64> {
    let q = check_batch(cells, ys)?;
    check_grad_len(ys, grad)?;
    grad.fill(0.0);
    if q == 1 {
        return Ok(hvi_single(cells, ys, Some(grad)));
    }
    Ok(SCRATCH.with(|s| hvi_batch(cells, ys, q, Some(grad), &mut s.borrow_mut())))
}

fn check_grad_len(ys: &[f64], grad: &[f64]) -> Result<()> {
    BoError::check_dim("hvi: gradient buffer", ys.len(), grad.len())
}

/// q = 1: `Σ_k Π_d [min(u, y) − l]_+`, no subsets.
fn hvi_single(cells: &Cells, y: &[f64], mut grad: Option<&mut [f64]>) -> f64 {
    let m = cells.m();
    let mut total = 0.0;
    for (lo, up) in cells
        .lower()
        .chunks_exact(m)
        .zip(cells.upper().chunks_exact(m))
    {
        let mut area = 1.0;
        for d in 0..m {
            let side = y[d].min(up[d]) - lo[d];
            if side <= 0.0 {
                area = 0.0;
                break;
            }
            area *= side;
        }
        if area == 0.0 {
            continue;
        }
        total += area;
        if let Some(g) = grad.as_deref_mut() {
            for d in 0..m {
                if y[d] < up[d] {
                    g[d] += area / (y[d] - lo[d]);
                }
            }
        }
    }
    total
}

/// q ≥ 2: inclusion–exclusion with subset minima built by dynamic programming over masks.
fn hvi_batch(
    cells: &Cells,
    ys: &[f64],
    q: usize,
    mut grad: Option<&mut [f64]>,
    s: &mut Scratch,
) -> f64 {
    let m = cells.m();
    let n_sub = 1usize << q;
    s.mins.clear();
    s.mins.resize(n_sub * m, f64::INFINITY);
    s.argmin.clear();
    s.argmin.resize(n_sub * m, 0);
    for mask in 1..n_sub {
        let low = mask.trailing_zeros() as usize;
        let rest = mask & (mask - 1);
        for d in 0..m {
            let y = ys[low * m + d];
            let (prev, prev_arg) = (s.mins[rest * m + d], s.argmin[rest * m + d]);
            // rest == 0 has min +inf, so the singleton takes y.
            if y < prev {
                s.mins[mask * m + d] = y;
                s.argmin[mask * m + d] = low as u8;
            } else {
                s.mins[mask * m + d] = prev;
                s.argmin[mask * m + d] = prev_arg;
            }
        }
    }
    s.areas.clear();
    s.areas.resize(n_sub, 0.0);
    let mut total = 0.0;
    for (lo, up) in cells
        .lower()
        .chunks_exact(m)
        .zip(cells.upper().chunks_exact(m))
    {
        s.areas[0] = 1.0; // empty subset: only a seed for pruning, never summed
        for mask in 1..n_sub {
            let rest = mask & (mask - 1);
            if rest != 0 && s.areas[rest] == 0.0 {
                s.areas[mask] = 0.0;
                continue;
            }
            let mut area = 1.0;
            for d in 0..m {
                let side = s.mins[mask * m + d].min(up[d]) - lo[d];
                if side <= 0.0 {
                    area = 0.0;
                    break;
                }
                area *= side;
            }
            s.areas[mask] = area;
            if area == 0.0 {
                continue;
            }
            let sign = if mask.count_ones() % 2 == 1 {
                1.0
            } else {
                -1.0
            };
            total += sign * area;
            if let Some(g) = grad.as_deref_mut() {
                for d in 0..m {
                    let y = s.mins[mask * m + d];
                    if y < up[d] {
                        let i = s.argmin[mask * m + d] as usize;
                        g[i * m + d] += sign * area / (y - lo[d]);
                    }
                }
            }
        }
    }
    total
}

/// Log of the smoothed hypervolume improvement (qLogEHVI numerics) of the `q` outcome vectors
/// `ys` over `cells`. Returns `-∞` when there are no cells.
pub fn log_hvi(cells: &Cells, ys: &[f64], params: &LogHviParams) -> Result<f64> {
    let q = check_batch(cells, ys)?;
    Ok(SCRATCH.with(|s| log_hvi_impl(cells, ys, q, params, None, &mut s.borrow_mut())))
}

/// [`log_hvi`] and its gradient with respect to `ys` (written into `grad`; zero where the
/// value is `-∞`).
pub fn log_hvi_with_grad(
    cells: &Cells,
    ys: &[f64],
    params: &LogHviParams,
    grad: &mut [f64],
) -> Result<f64> {
    let q = check_batch(cells, ys)?;
    check_grad_len(ys, grad)?;
    grad.fill(0.0);
    Ok(SCRATCH.with(|s| log_hvi_impl(cells, ys, q, params, Some(grad), &mut s.borrow_mut())))
}

/// Smooth minimum of `xs` with partial derivatives in `w` (same length): the fat-tailed
/// `fatmin` (α = 2) or `-τ·logsumexp(-x/τ)`. Allocation-free twin of `safe_math::fatmin_grad`
/// for the hot loop; ties at the minimum share its gradient equally, as there.
fn smooth_min_grad(xs: &[f64], tau: f64, fat: bool, w: &mut [f64]) -> f64 {
    let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
    if !lo.is_finite() {
        w.fill(0.0);
        return lo;
    }
    if xs.len() == 1 {
        w[0] = 1.0;
        return lo;
    }
    if fat {
        // fatmin(x) = -fatmax(-x) = lo − τ ln Σ p(t_i), t_i = (x_i − lo)/τ, p(t) = 2/(2+2t+t²).
        let mut sum_p = 0.0;
        let mut sum_dp = 0.0;
        for (wi, &x) in w.iter_mut().zip(xs) {
            let t = (x - lo) / tau;
            let den = 2.0 + 2.0 * t + t * t;
            let p = 2.0 / den;
            let dp = -p * (2.0 + 2.0 * t) / den;
            sum_p += p;
            sum_dp += dp;
            *wi = dp;
        }
        let n_min = xs.iter().filter(|&&x| x == lo).count() as f64;
        let d_lo = (1.0 + sum_dp / sum_p) / n_min;
        for (wi, &x) in w.iter_mut().zip(xs) {
            *wi = -*wi / sum_p + if x == lo { d_lo } else { 0.0 };
        }
        lo - tau * sum_p.ln()
    } else {
        let mut sum = 0.0;
        for (wi, &x) in w.iter_mut().zip(xs) {
            let e = (-(x - lo) / tau).exp();
            sum += e;
            *wi = e;
        }
        for wi in w.iter_mut() {
            *wi /= sum;
        }
        lo - tau * sum.ln()
    }
}

/// The log kernel. Per cell k: `A_S = Σ_d smin(smin_{i∈S} logrelu(y_i^d − l^d), log(u^d − l^d))`,
/// `H_k = log(Σ_{|S| odd} e^{A_S} − Σ_{|S| even} e^{A_S})`, result `logsumexp_k H_k`.
/// The gradient is accumulated in one pass with a running shift: `∂H_k/∂A_S = ±e^{A_S − H_k}`
/// and `∂result/∂H_k = e^{H_k − result}`.
fn log_hvi_impl(
    cells: &Cells,
    ys: &[f64],
    q: usize,
    params: &LogHviParams,
    grad: Option<&mut [f64]>,
    s: &mut Scratch,
) -> f64 {
    let m = cells.m();
    if q == 1 {
        return log_hvi_single(cells, ys, params, grad);
    }
    let n_sub = 1usize << q;
    let qm = q * m;
    let want_grad = grad.is_some();
    s.log_imp.resize(qm, 0.0);
    s.log_imp_grad.resize(qm, 0.0);
    s.log_area.resize(n_sub, f64::NEG_INFINITY);
    if want_grad {
        s.d_log_area.resize(n_sub * qm, 0.0);
        s.cell_grad.resize(qm, 0.0);
    }
    s.members.clear();
    s.weights.resize(q.max(2), 0.0);

    // Running log-sum-exp over cells with shift `shift`: sum_exp = Σ e^{H_k − shift}, and
    // grad_acc = Σ e^{H_k − shift} ∂H_k/∂y.
    let mut shift = f64::NEG_INFINITY;
    let mut sum_exp = 0.0;
    let mut grad_acc = vec![0.0; if want_grad { qm } else { 0 }];

    for (lo, log_len) in cells
        .lower()
        .chunks_exact(m)
        .zip(cells.log_lengths().chunks_exact(m))
    {
        for i in 0..q {
            for d in 0..m {
                let (v, dv) = log_relu(ys[i * m + d] - lo[d], params, want_grad);
                s.log_imp[i * m + d] = v;
                s.log_imp_grad[i * m + d] = dv;
            }
        }
        let (odd, even) = s.subset_log_areas(log_len, q, params, want_grad);
        // log(Σ_odd − Σ_even); rounding that makes it non-positive counts as no improvement.
        let h = logdiffexp(even.value(), odd.value());
        if h.is_nan() || h == f64::NEG_INFINITY {
            continue;
        }
        if want_grad {
            s.cell_log_hvi_grad(h, n_sub, qm);
        }
        if h > shift {
            let rescale = (shift - h).exp(); // 0 on the first finite cell
            sum_exp *= rescale;
            grad_acc.iter_mut().for_each(|g| *g *= rescale);
            shift = h;
        }
        let e = (h - shift).exp();
        sum_exp += e;
        for (g, cg) in grad_acc.iter_mut().zip(&s.cell_grad) {
            *g += e * cg;
        }
    }
    if sum_exp == 0.0 {
        return f64::NEG_INFINITY;
    }
    if let Some(g) = grad {
        for (gi, acc) in g.iter_mut().zip(&grad_acc) {
            *gi = acc / sum_exp;
        }
    }
    shift + sum_exp.ln()
}

impl Scratch {
    /// Every subset's log area `A_S` in one cell (`log_len` its log side lengths), from the
    /// log improvements in `log_imp`, into `log_area` (and `∂A_S/∂y` into `d_log_area`);
    /// returns the log sums over the odd and the even subsets.
    fn subset_log_areas(
        &mut self,
        log_len: &[f64],
        q: usize,
        params: &LogHviParams,
        want_grad: bool,
    ) -> (LogAcc, LogAcc) {
        let m = log_len.len();
        let qm = q * m;
        let (mut odd, mut even) = (LogAcc::default(), LogAcc::default());
        for mask in 1..1usize << q {
            self.members.clear();
            self.members
                .extend((0..q).filter(|&i| mask & (1 << i) != 0));
            let mut log_area = 0.0;
            if want_grad {
                self.d_log_area[mask * qm..(mask + 1) * qm].fill(0.0);
            }
            for (d, &cell_log_len) in log_len.iter().enumerate() {
                self.subset_vals.clear();
                self.subset_vals
                    .extend(self.members.iter().map(|&i| self.log_imp[i * m + d]));
                let k = self.subset_vals.len();
                let b = smooth_min_grad(
                    &self.subset_vals,
                    params.tau_max,
                    params.fat,
                    &mut self.weights[..k],
                );
                let (c, w_b, _) = smooth_min2(b, cell_log_len, params.tau_max, params.fat);
                log_area += c;
                if want_grad {
                    for (j, &i) in self.members.iter().enumerate() {
                        self.d_log_area[mask * qm + i * m + d] =
                            w_b * self.weights[j] * self.log_imp_grad[i * m + d];
                    }
                }
            }
            self.log_area[mask] = log_area;
            if mask.count_ones() % 2 == 1 {
                odd.add(log_area);
            } else {
                even.add(log_area);
            }
        }
        (odd, even)
    }

    /// `∂H_k/∂y` of the cell whose log HVI is `h`, into `cell_grad`, from the subsets' log areas
    /// and their gradients.
    fn cell_log_hvi_grad(&mut self, h: f64, n_sub: usize, qm: usize) {
        self.cell_grad.fill(0.0);
        for mask in 1..n_sub {
            let sign = if mask.count_ones() % 2 == 1 {
                1.0
            } else {
                -1.0
            };
            let wgt = sign * (self.log_area[mask] - h).exp();
            if wgt == 0.0 {
                continue;
            }
            for (g, dg) in self
                .cell_grad
                .iter_mut()
                .zip(&self.d_log_area[mask * qm..(mask + 1) * qm])
            {
                *g += wgt * dg;
            }
        }
    }
}

/// q = 1: the log kernel without subsets, `H_k = Σ_d smin(logrelu(y^d − l^d), log(u^d − l^d))`.
fn log_hvi_single(
    cells: &Cells,
    y: &[f64],
    params: &LogHviParams,
    grad: Option<&mut [f64]>,
) -> f64 {
    let m = cells.m();
    let want_grad = grad.is_some();
    let mut shift = f64::NEG_INFINITY;
    let mut sum_exp = 0.0;
    // m is small; a fixed stack buffer covers every practical case, a Vec the rest.
    let mut stack_acc = [0.0; 8];
    let mut stack_cell = [0.0; 8];
    let mut heap_acc;
    let mut heap_cell;
    let (grad_acc, cell_grad): (&mut [f64], &mut [f64]) = if m <= 8 {
        (&mut stack_acc[..m], &mut stack_cell[..m])
    } else {
        heap_acc = vec![0.0; m];
        heap_cell = vec![0.0; m];
        (&mut heap_acc, &mut heap_cell)
    };
    for (lo, log_len) in cells
        .lower()
        .chunks_exact(m)
        .zip(cells.log_lengths().chunks_exact(m))
    {
        let mut h = 0.0;
        for d in 0..m {
            let (a, da) = log_relu(y[d] - lo[d], params, want_grad);
            let (side, w_a, _) = smooth_min2(a, log_len[d], params.tau_max, params.fat);
            h += side;
            cell_grad[d] = w_a * da;
        }
        if h.is_nan() || h == f64::NEG_INFINITY {
            continue;
        }
        if h > shift {
            let rescale = (shift - h).exp();
            sum_exp *= rescale;
            grad_acc.iter_mut().for_each(|g| *g *= rescale);
            shift = h;
        }
        let e = (h - shift).exp();
        sum_exp += e;
        if want_grad {
            for (g, cg) in grad_acc.iter_mut().zip(cell_grad.iter()) {
                *g += e * cg;
            }
        }
    }
    if sum_exp == 0.0 {
        return f64::NEG_INFINITY;
    }
    if let Some(g) = grad {
        for (gi, acc) in g.iter_mut().zip(grad_acc.iter()) {
            *gi = acc / sum_exp;
        }
    }
    shift + sum_exp.ln()
}

/// Smooth minimum of the two values `(a, b)` and its partials `(∂/∂a, ∂/∂b)`: [`smooth_min_grad`]
/// specialised to the pair (subset side vs cell side) that every cell and dimension needs.
/// The fat version is `lo − τ·ln(1 + p(t))`, `t = |a − b|/τ`, `p(t) = 2/(2 + 2t + t²)`; for
/// `p < 1e-5` the logarithm is replaced by its cubic series (error below 1e-20), which is the
/// common case once the two sides differ by a few hundred τ.
fn smooth_min2(a: f64, b: f64, tau: f64, fat: bool) -> (f64, f64, f64) {
    if !fat || !a.is_finite() || !b.is_finite() {
        let mut w = [0.0; 2];
        let v = smooth_min_grad(&[a, b], tau, fat, &mut w);
        return (v, w[0], w[1]);
    }
    let (lo, a_is_lo) = if a <= b { (a, true) } else { (b, false) };
    let t = (a - b).abs() / tau;
    let den = 2.0 + 2.0 * t + t * t;
    let p = 2.0 / den;
    let dp = -p * (2.0 + 2.0 * t) / den;
    let log1p_p = if p < 1e-5 {
        p * (1.0 - p * (0.5 - p / 3.0))
    } else {
        p.ln_1p()
    };
    let s = 1.0 + p;
    // Partials: the smaller argument gets 1 + p'/S, the other −p'/S (½ each at a tie).
    let (w_lo, w_hi) = (1.0 + dp / s, -dp / s);
    let (wa, wb) = if a_is_lo { (w_lo, w_hi) } else { (w_hi, w_lo) };
    (lo - tau * log1p_p, wa, wb)
}

/// `z = x/τ` beyond which `softplus(z) = z` and `e^z` is negligible next to the Cauchy term
/// (relative error below 1e-17), so `log_fatplus` needs one logarithm instead of three
/// transcendental calls. With BoTorch's `τ_relu = 1e-6` almost every evaluation lands here.
const FATPLUS_ASYMPTOTIC_Z: f64 = 50.0;

/// The smoothed `log(max(x, 0))` of the log kernel and (when `want_grad`) its derivative.
/// Uses `safe_math`'s `log_fatplus` / `log_softplus` except in the asymptotic ranges of the
/// fat version, where it evaluates the same formula with the negligible terms dropped.
fn log_relu(x: f64, params: &LogHviParams, want_grad: bool) -> (f64, f64) {
    let tau = params.tau_relu;
    if !params.fat {
        return if want_grad {
            log_softplus_grad(x, tau)
        } else {
            (log_softplus(x, tau), 0.0)
        };
    }
    let z = x / tau;
    if z.abs() > FATPLUS_ASYMPTOTIC_Z {
        // fatplus = τ(softplus(z) + 0.1/(1+z²)), softplus(z) = max(z, 0) to within 1e-21.
        let c = 1.0 / (1.0 + z * z);
        let inner = z.max(0.0) + 0.1 * c;
        let dinner = if z > 0.0 { 1.0 } else { 0.0 } - 0.2 * z * c * c;
        return ((tau * inner).ln(), dinner / (inner * tau));
    }
    if want_grad {
        log_fatplus_grad(x, tau)
    } else {
        (log_fatplus(x, tau), 0.0)
    }
}

/// Online log-sum-exp accumulator.
#[derive(Default)]
struct LogAcc {
    shift: Option<f64>,
    sum: f64,
}

impl LogAcc {
    fn add(&mut self, x: f64) {
        if x == f64::NEG_INFINITY {
            return;
        }
        match self.shift {
            None => {
                self.shift = Some(x);
                self.sum = 1.0;
            }
            Some(sh) if x > sh => {
                self.sum = self.sum * (sh - x).exp() + 1.0;
                self.shift = Some(x);
            }
            Some(sh) => self.sum += (x - sh).exp(),
        }
    }

    fn value(&self) -> f64 {
        match self.shift {
            None => f64::NEG_INFINITY,
            Some(sh) => sh + self.sum.ln(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The asymptotic shortcut of `log_relu` agrees with `safe_math` on both sides of its
    /// switch point, in value and derivative.
    #[test]
    fn log_relu_shortcut_matches_safe_math() {
        let params = LogHviParams::QLOGEHVI;
        let tau = params.tau_relu;
        for z in [
            -1e12, -1e6, -400.0, -50.5, -49.5, -3.0, 0.0, 3.0, 49.5, 50.5, 400.0, 1e9,
        ] {
            let x = z * tau;
            let (v, dv) = log_relu(x, &params, true);
            let (w, dw) = log_fatplus_grad(x, tau);
            assert!(
                (v - w).abs() <= 1e-14 * w.abs().max(1.0),
                "z={z}: {v} vs {w}"
            );
            assert!(
                (dv - dw).abs() <= 1e-12 * dw.abs().max(1e-300),
                "z={z}: {dv} vs {dw}"
            );
            assert_eq!(log_relu(x, &params, false).0, v);
        }
    }

    /// The pair shortcut agrees with `safe_math::fatmin_grad` (value and partials), including
    /// ties and the series branch.
    #[test]
    fn smooth_min2_matches_safe_math_fatmin() {
        let tau = 1e-2;
        for (a, b) in [
            (0.0, 0.0),
            (1.0, 1.001),
            (1.0, 0.9),
            (-3.0, 5.0),
            (2.0, -40.0),
            (7.0, 7.5),
        ] {
            let (v, wa, wb) = smooth_min2(a, b, tau, true);
            let mut g = [0.0; 2];
            let want =
                crate::safe_math::fatmin_grad(&[a, b], tau, crate::safe_math::FAT_ALPHA, &mut g);
            assert!(
                (v - want).abs() <= 1e-14 * want.abs().max(1.0),
                "({a},{b}): {v} vs {want}"
            );
            assert!(
                (wa - g[0]).abs() <= 1e-12 && (wb - g[1]).abs() <= 1e-12,
                "({a},{b}): {wa},{wb} vs {g:?}"
            );
        }
    }
}
