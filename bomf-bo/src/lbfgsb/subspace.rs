//! Steps 1 and 2 of an iteration: the generalised Cauchy point along the projected
//! steepest-descent path, then the subspace minimisation over the variables still free there.

use super::compact::{Lu, Memory, dot};

/// The quadratic model `m(x) = f + gᵀ(x−x_k) + ½(x−x_k)ᵀB(x−x_k)` at the iterate `x_k`, over the
/// box `[lower, upper]`; `middle` factors `memory`'s `M⁻¹`.
pub(super) struct Model<'a> {
    pub(super) x: &'a [f64],
    pub(super) g: &'a [f64],
    pub(super) lower: &'a [f64],
    pub(super) upper: &'a [f64],
    pub(super) memory: &'a Memory,
    pub(super) middle: &'a Lu,
}

/// Algorithm CP's result: the point, which variables are still free there, and
/// `c = Wᵀ(xcp − x)`.
struct CauchyPoint {
    x: Vec<f64>,
    free: Vec<bool>,
    c: Vec<f64>,
}

/// The projected steepest-descent path: its direction (zero for fixed variables), which
/// variables may move, and the breakpoints `(t, i)` where coordinate `i` reaches its bound,
/// in path order.
struct Path {
    d: Vec<f64>,
    free: Vec<bool>,
    breakpoints: Vec<(f64, usize)>,
}

impl Model<'_> {
    /// Steps 1 and 2: the point `x̄` the line search aims at.
    pub(super) fn search_target(&self) -> Vec<f64> {
        let n = self.x.len();
        let cp = self.cauchy_point();
        let free_idx: Vec<usize> = (0..n).filter(|&i| cp.free[i]).collect();
        if free_idx.is_empty() {
            return cp.x;
        }
        let du = self.subspace_step(&cp, &free_idx);
        self.project_or_truncate(cp.x, &free_idx, &du)
    }

    /// The model's minimiser over the free variables from the Cauchy point, unconstrained:
    /// `du = −(ZᵀBZ)⁻¹ r` with `r = Zᵀ(g + θ(xcp − x) − W M c)` the reduced gradient.
    fn subspace_step(&self, cp: &CauchyPoint, free_idx: &[usize]) -> Vec<f64> {
        let (x, g, memory) = (self.x, self.g, self.memory);
        let k2 = 2 * memory.len();
        let theta = memory.theta;
        let mut mc = cp.c.clone();
        self.middle.solve(&mut mc);
        let mut w = vec![0.0; k2];
        let mut r = Vec::with_capacity(free_idx.len());
        // Wᵀ Z r and A = Wᵀ Z Zᵀ W, accumulated over the free variables.
        let mut wz_r = vec![0.0; k2];
        let mut a = vec![0.0; k2 * k2];
        for &i in free_idx {
            memory.w_row(i, &mut w);
            let ri = g[i] + theta * (cp.x[i] - x[i]) - dot(&w, &mc);
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
                    reduced[p * k2 + q] = memory.middle_entry(p, q) - a[p * k2 + q] / theta;
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
        du
    }

    /// Morales–Nocedal: project `xcp + du` onto the box; keep it if it is a descent direction
    /// from `x`, otherwise truncate the step at the first bound (the 1995 rule).
    fn project_or_truncate(&self, xcp: Vec<f64>, free_idx: &[usize], du: &[f64]) -> Vec<f64> {
        let (x, g, lower, upper) = (self.x, self.g, self.lower, self.upper);
        let n = x.len();
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

    /// The path `P(x − t·g)`, `t ≥ 0`: variables pinned (equal bounds, or at the bound the
    /// gradient pushes against) are fixed; the others move along `−g` until their breakpoint.
    fn steepest_descent_path(&self) -> Path {
        let (x, g, lower, upper) = (self.x, self.g, self.lower, self.upper);
        let n = x.len();
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
        Path {
            d,
            free,
            breakpoints,
        }
    }

    /// Algorithm CP of Byrd et al. (1995): the first local minimiser of the quadratic model
    /// along the projected steepest-descent path.
    fn cauchy_point(&self) -> CauchyPoint {
        let (x, lower, upper) = (self.x, self.lower, self.upper);
        let Path {
            mut d,
            mut free,
            breakpoints,
        } = self.steepest_descent_path();
        let mut xcp = x.to_vec();
        let mut segment = Segment::new(self, &d);
        let mut dt_min = segment.dt_min();
        let mut t_old = 0.0;
        for &(t, b) in &breakpoints {
            let dt = t - t_old;
            if dt_min < dt {
                break;
            }
            // Move to the breakpoint: coordinate b reaches its bound and leaves the path.
            let bound = if d[b] > 0.0 { upper[b] } else { lower[b] };
            xcp[b] = bound;
            free[b] = false;
            segment.cross(self, b, bound - x[b], dt);
            d[b] = 0.0;
            dt_min = segment.dt_min();
            t_old = t;
        }

        let dt_min = if dt_min.is_finite() {
            dt_min.max(0.0)
        } else {
            0.0
        };
        let t_final = t_old + dt_min;
        for i in 0..x.len() {
            if d[i] != 0.0 {
                xcp[i] = (x[i] + t_final * d[i]).clamp(lower[i], upper[i]);
            }
        }
        let mut c = segment.c;
        for (cj, pj) in c.iter_mut().zip(&segment.p) {
            *cj += dt_min * pj;
        }
        CauchyPoint { x: xcp, free, c }
    }
}

/// The model along the current segment of the path: its slope `f1` and curvature `f2`, with
/// `p = Wᵀd`, `c = Wᵀ(xcp − x)` and their products with `M` (`mp`, `mc`).
struct Segment {
    p: Vec<f64>,
    mp: Vec<f64>,
    c: Vec<f64>,
    mc: Vec<f64>,
    f1: f64,
    f2: f64,
    f2_original: f64,
    /// Scratch rows of `W` and `M·W`.
    w: Vec<f64>,
    mw: Vec<f64>,
}

impl Segment {
    /// The first segment, from `x` along `d`.
    fn new(model: &Model<'_>, d: &[f64]) -> Self {
        let k2 = 2 * model.memory.len();
        let mut w = vec![0.0; k2];
        let mut p = vec![0.0; k2];
        for (i, &di) in d.iter().enumerate() {
            if di != 0.0 {
                model.memory.w_row(i, &mut w);
                for (pj, wj) in p.iter_mut().zip(&w) {
                    *pj += wj * di;
                }
            }
        }
        let mut mp = p.clone();
        model.middle.solve(&mut mp);
        let f1 = -dot(d, d);
        let f2 = -model.memory.theta * f1 - dot(&p, &mp);
        Self {
            p,
            mp,
            c: vec![0.0; k2],
            mc: vec![0.0; k2],
            f1,
            f2,
            f2_original: f2,
            w,
            mw: vec![0.0; k2],
        }
    }

    /// The step to the model's minimiser on this segment (infinite without positive curvature).
    fn dt_min(&self) -> f64 {
        if self.f2 > 0.0 {
            -self.f1 / self.f2
        } else {
            f64::INFINITY
        }
    }

    /// Advance by `dt` to the breakpoint of coordinate `b`, which leaves the path at distance
    /// `zb = bound − x_b`, and update the slope and curvature for the next segment.
    fn cross(&mut self, model: &Model<'_>, b: usize, zb: f64, dt: f64) {
        let theta = model.memory.theta;
        for j in 0..self.p.len() {
            self.c[j] += dt * self.p[j];
            self.mc[j] += dt * self.mp[j];
        }
        let gb = model.g[b];
        model.memory.w_row(b, &mut self.w);
        self.mw.copy_from_slice(&self.w);
        model.middle.solve(&mut self.mw);
        let w = &self.w;
        self.f1 += dt * self.f2 + gb * gb + theta * gb * zb - gb * dot(w, &self.mc);
        self.f2 += -theta * gb * gb - 2.0 * gb * dot(w, &self.mp) - gb * gb * dot(w, &self.mw);
        self.f2 = self.f2.max(f64::EPSILON * self.f2_original);
        for (pj, wj) in self.p.iter_mut().zip(w) {
            *pj += gb * wj;
        }
        for (mpj, mwj) in self.mp.iter_mut().zip(&self.mw) {
            *mpj += gb * mwj;
        }
    }
}
