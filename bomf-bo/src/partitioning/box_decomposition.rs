//! Disjoint axis-aligned box covers of the objective space above the reference point
//! (maximisation), split by a Pareto front P:
//!
//! - the **non-dominated** region `{y ≥ r : no p ∈ P has p ≥ y}`, whose cells may have `+∞`
//!   upper sides; qEHVI/qNEHVI integrate the improvement of new points over these cells;
//! - the **dominated** region `{y : r ≤ y ≤ p for some p ∈ P}`, whose total volume is the
//!   hypervolume.
//!
//! Algorithms (as in BoTorch's `box_decompositions`):
//! - m = 1 and m = 2: closed forms after one sort (n + 1 non-dominated cells, n dominated);
//! - m ≥ 3, dominated: Lacour, Klamroth & Fonseca (2017), Algorithm 1: maintain the *local
//!   upper bounds* U of the minimisation problem (−P, −r) with their defining points, then
//!   read one box per bound off Eq. (2);
//! - m ≥ 3, non-dominated: the two-step method of Yang et al. (2019) that BoTorch's
//!   `FastNondominatedPartitioning` uses. The non-dominated region is the union of the search
//!   zones `(−u, +∞)` of those local upper bounds; that union is exactly the region
//!   "dominated" (in the minimisation sense) by the point set −U with reference point +∞, so
//!   running Algorithm 1 again on −U with reference +∞ and reading off Eq. (2) yields disjoint
//!   boxes of it, directly in maximisation coordinates.
//!
//! Cells are stored as flat `num_cells × m` lower and upper arrays ([`Cells`]) so the
//! hypervolume-improvement kernels stream through them without indirection.

use super::pareto::front_better_than_unchecked;
use super::{check_points, check_ref_point};
use crate::error::Result;

/// Upper cell sides are clamped to this before taking `log(u − l)` (BoTorch's float64 value in
/// qLogEHVI), so unbounded cells get a finite, irrelevant, log length.
const LOG_CELL_UPPER_CLAMP: f64 = 1e10;

/// A list of axis-aligned boxes `[lower_k, upper_k]` in `m` dimensions, stored flat
/// (`num_cells × m`, row-major). Upper sides may be `+∞`.
///
/// The log side lengths `ln(min(u, 1e10) − l)` that the log-HVI kernel needs are cached at
/// construction: the cells are built once per BO step but evaluated thousands of times.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cells {
    m: usize,
    lower: Vec<f64>,
    upper: Vec<f64>,
    log_len: Vec<f64>,
}

impl Cells {
    /// An empty cell list in `m` dimensions.
    pub fn new(m: usize) -> Self {
        Self {
            m,
            lower: Vec::new(),
            upper: Vec::new(),
            log_len: Vec::new(),
        }
    }

    /// Builds cells from flat lower/upper buffers, checking that their shapes agree.
    pub fn from_bounds(m: usize, lower: Vec<f64>, upper: Vec<f64>) -> Result<Self> {
        let n = check_points(&lower, m, "Cells::from_bounds lower")?;
        let n_up = check_points(&upper, m, "Cells::from_bounds upper")?;
        if n != n_up {
            return Err(crate::error::BoError::DimensionMismatch {
                what: "Cells::from_bounds: number of upper corners".into(),
                expected: n,
                got: n_up,
            });
        }
        let log_len = log_lengths(&lower, &upper);
        Ok(Self {
            m,
            lower,
            upper,
            log_len,
        })
    }

    /// Number of objectives.
    pub fn m(&self) -> usize {
        self.m
    }

    /// Number of boxes.
    pub fn len(&self) -> usize {
        self.lower.len().checked_div(self.m).unwrap_or(0)
    }

    /// Whether there are no boxes.
    pub fn is_empty(&self) -> bool {
        self.lower.is_empty()
    }

    /// Lower corners, flat `len() × m`.
    pub fn lower(&self) -> &[f64] {
        &self.lower
    }

    /// Upper corners, flat `len() × m` (entries may be `+∞`).
    pub fn upper(&self) -> &[f64] {
        &self.upper
    }

    /// `ln(min(upper, LOG_CELL_UPPER_CLAMP) − lower)`, flat `len() × m`.
    pub fn log_lengths(&self) -> &[f64] {
        &self.log_len
    }

    /// Lower and upper corner of box `k`.
    pub fn cell(&self, k: usize) -> (&[f64], &[f64]) {
        let s = k * self.m..(k + 1) * self.m;
        (&self.lower[s.clone()], &self.upper[s])
    }

    /// Sum of the box volumes after clipping every upper side at `clip` (use the ideal point
    /// to get a finite volume from non-dominated cells; `+∞` entries are allowed).
    pub fn volume_clipped(&self, clip: &[f64]) -> f64 {
        self.lower
            .chunks_exact(self.m)
            .zip(self.upper.chunks_exact(self.m))
            .map(|(lo, up)| {
                lo.iter()
                    .zip(up)
                    .zip(clip)
                    .map(|((l, u), c)| (u.min(*c) - l).max(0.0))
                    .product::<f64>()
            })
            .sum()
    }

    /// Sum of the box volumes (`+∞` if some box is unbounded).
    pub fn volume(&self) -> f64 {
        let clip = vec![f64::INFINITY; self.m];
        self.volume_clipped(&clip)
    }

    /// Removes every box and sets the dimension, keeping the allocations for reuse.
    pub fn reset(&mut self, m: usize) {
        self.m = m;
        self.lower.clear();
        self.upper.clear();
        self.log_len.clear();
    }

    /// Appends a box unless it is empty (some side `upper ≤ lower`).
    fn push_nonempty(&mut self, lower: &[f64], upper: &[f64]) {
        if lower.iter().zip(upper).any(|(l, u)| u <= l) {
            return;
        }
        self.lower.extend_from_slice(lower);
        self.upper.extend_from_slice(upper);
        self.log_len.extend(
            lower
                .iter()
                .zip(upper)
                .map(|(l, u)| (u.min(LOG_CELL_UPPER_CLAMP) - l).ln()),
        );
    }
}

fn log_lengths(lower: &[f64], upper: &[f64]) -> Vec<f64> {
    lower
        .iter()
        .zip(upper)
        .map(|(l, u)| (u.min(LOG_CELL_UPPER_CLAMP) - l).ln())
        .collect()
}

/// Disjoint boxes covering the region above `ref_point` not dominated by the points `ys`
/// (`n × m`, row-major, maximisation; only points strictly better than `ref_point` count).
/// Upper sides may be `+∞`. These are the cells qEHVI/qNEHVI integrate over.
pub fn nondominated_cells(ys: &[f64], m: usize, ref_point: &[f64]) -> Result<Cells> {
    let mut cells = Cells::new(m);
    nondominated_cells_into(ys, m, ref_point, &mut cells)?;
    Ok(cells)
}

/// [`nondominated_cells`] writing into `out`, reusing its allocations (per-sample loops).
pub fn nondominated_cells_into(
    ys: &[f64],
    m: usize,
    ref_point: &[f64],
    out: &mut Cells,
) -> Result<()> {
    check_points(ys, m, "nondominated_cells")?;
    check_ref_point(ref_point, m, "nondominated_cells")?;
    let mut front = front_better_than_unchecked(ys, m, ref_point);
    out.reset(m);
    match m {
        1 => {
            let best = front.iter().copied().fold(ref_point[0], f64::max);
            out.push_nonempty(&[best], &[f64::INFINITY]);
        }
        2 => nondominated_2d(&mut front, ref_point, out),
        _ => nondominated_general(&front, m, ref_point, out),
    }
    Ok(())
}

/// Disjoint boxes covering the region between `ref_point` and the points `ys` (`n × m`,
/// maximisation). Their total volume is the hypervolume.
pub fn dominated_cells(ys: &[f64], m: usize, ref_point: &[f64]) -> Result<Cells> {
    check_points(ys, m, "dominated_cells")?;
    check_ref_point(ref_point, m, "dominated_cells")?;
    let mut front = front_better_than_unchecked(ys, m, ref_point);
    let mut out = Cells::new(m);
    match m {
        1 => {
            let best = front.iter().copied().fold(ref_point[0], f64::max);
            out.push_nonempty(ref_point, &[best]);
        }
        2 => dominated_2d(&mut front, ref_point, &mut out),
        _ => dominated_general(&front, m, ref_point, &mut out),
    }
    Ok(out)
}

/// Sorts a 2-D front by the first objective ascending (so the second is descending).
fn sort_front_2d(front: &mut [f64]) {
    let mut pairs: Vec<[f64; 2]> = front.chunks_exact(2).map(|p| [p[0], p[1]]).collect();
    pairs.sort_unstable_by(|a, b| a[0].total_cmp(&b[0]));
    for (dst, p) in front.chunks_exact_mut(2).zip(&pairs) {
        dst.copy_from_slice(p);
    }
}

/// m = 2, front p_1..p_n sorted by y0 ascending: the cells are
/// `[r0, p_1⁰] × [p_1¹, ∞)`, `[p_i⁰, p_{i+1}⁰] × [p_{i+1}¹, ∞)`, `[p_n⁰, ∞) × [r1, ∞)`.
fn nondominated_2d(front: &mut [f64], r: &[f64], out: &mut Cells) {
    sort_front_2d(front);
    let mut left = r[0];
    for p in front.chunks_exact(2) {
        out.push_nonempty(&[left, p[1]], &[p[0], f64::INFINITY]);
        left = p[0];
    }
    out.push_nonempty(&[left, r[1]], &[f64::INFINITY, f64::INFINITY]);
}

/// m = 2: the staircase `[p_{i-1}⁰, p_i⁰] × [r1, p_i¹]` with p_0⁰ = r0.
fn dominated_2d(front: &mut [f64], r: &[f64], out: &mut Cells) {
    sort_front_2d(front);
    let mut left = r[0];
    for p in front.chunks_exact(2) {
        out.push_nonempty(&[left, r[1]], p);
        left = p[0];
    }
}

/// m ≥ 3, dominated region: Lacour et al. Algorithm 1 on (−P, −r), boxes negated back.
fn dominated_general(front: &[f64], m: usize, r: &[f64], out: &mut Cells) {
    let neg_r: Vec<f64> = r.iter().map(|v| -v).collect();
    let bounds = LocalUpperBounds::of_negated(&neg_r, front.chunks_exact(m));
    let mut lo = vec![0.0; m];
    let mut up = vec![0.0; m];
    for idx in 0..bounds.len() {
        bounds.partition_bounds(idx, &neg_r, &mut lo, &mut up);
        // Minimisation box [lo, up] is the maximisation box [−up, −lo].
        let max_lo: Vec<f64> = up.iter().map(|v| -v).collect();
        let max_up: Vec<f64> = lo.iter().map(|v| -v).collect();
        out.push_nonempty(&max_lo, &max_up);
    }
}

/// m ≥ 3, non-dominated region: the two-step method (Yang et al. 2019), see the module docs.
fn nondominated_general(front: &[f64], m: usize, r: &[f64], out: &mut Cells) {
    // Step 1: local upper bounds U of the minimisation problem (−P, −r).
    let neg_r: Vec<f64> = r.iter().map(|v| -v).collect();
    let step1 = LocalUpperBounds::of_negated(&neg_r, front.chunks_exact(m));
    // Step 2: W = −U are the lower corners of the search zones (w, +∞). Keep the minimal
    // ones (a zone inside another adds nothing), i.e. the maximal elements of U.
    let mut keep = vec![false; step1.len()];
    super::pareto::non_dominated_mask_into(&step1.upper, m, true, &mut keep);
    let infinity = vec![f64::INFINITY; m];
    let kept = step1.upper.chunks_exact(m).zip(&keep).filter(|(_, k)| **k);
    let step2 = LocalUpperBounds::of_negated(&infinity, kept.map(|(u, _)| u));
    let mut lo = vec![0.0; m];
    let mut up = vec![0.0; m];
    for idx in 0..step2.len() {
        step2.partition_bounds(idx, &infinity, &mut lo, &mut up);
        out.push_nonempty(&lo, &up);
    }
}

/// Local upper bounds of a minimisation problem with their defining points
/// (Klamroth, Lacour & Vanderpooten 2015; Lacour et al. 2017).
///
/// For each bound u, `defining[(idx*m + j)*m ..][..m]` is the defining point Z^j(u): a point
/// with Z^j(u)_j = u_j and Z^j(u)_k < u_k for k ≠ j. Initially U = {r} with dummy defining
/// points Z^j = (−∞, …, r_j, …, −∞).
struct LocalUpperBounds {
    m: usize,
    upper: Vec<f64>,
    defining: Vec<f64>,
}

impl LocalUpperBounds {
    fn new(r: &[f64]) -> Self {
        let m = r.len();
        let mut defining = vec![f64::NEG_INFINITY; m * m];
        for j in 0..m {
            defining[j * m + j] = r[j];
        }
        Self {
            m,
            upper: r.to_vec(),
            defining,
        }
    }

    /// The bounds of `r` after inserting `−p` for every point `p` (`m` values each) in order.
    fn of_negated<'a>(r: &[f64], points: impl Iterator<Item = &'a [f64]>) -> Self {
        let mut bounds = Self::new(r);
        let mut z = vec![0.0; r.len()];
        for p in points {
            for (zj, pj) in z.iter_mut().zip(p) {
                *zj = -pj;
            }
            bounds.insert(&z);
        }
        bounds
    }

    fn len(&self) -> usize {
        self.upper.len() / self.m
    }

    /// Inserts a point z that no earlier point dominates (Lacour et al. 2017, Alg. 1 body).
    ///
    /// The bounds u with z < u (componentwise strict) are the search zones containing z; each
    /// is replaced by the bounds u^j = (z_j, u_{-j}) for the j where z_j ≥ max_{k≠j} Z^k_j(u)
    /// (the others would be redundant), with defining points Z^j(u^j) = z and Z^k(u^j) = Z^k(u).
    fn insert(&mut self, z: &[f64]) {
        let m = self.m;
        let mm = m * m;
        // Move the affected bounds out (swap-remove: order of U is irrelevant), so the
        // untouched majority is never copied.
        let mut affected_upper: Vec<f64> = Vec::new();
        let mut affected_defining: Vec<f64> = Vec::new();
        let mut idx = 0;
        while idx < self.len() {
            let u = &self.upper[idx * m..(idx + 1) * m];
            if z.iter().zip(u).all(|(a, b)| a < b) {
                affected_upper.extend_from_slice(u);
                affected_defining.extend_from_slice(&self.defining[idx * mm..(idx + 1) * mm]);
                self.swap_remove(idx);
            } else {
                idx += 1;
            }
        }
        for (u, zu) in affected_upper
            .chunks_exact(m)
            .zip(affected_defining.chunks_exact(mm))
        {
            for j in 0..m {
                let max_other = (0..m)
                    .filter(|&k| k != j)
                    .map(|k| zu[k * m + j])
                    .fold(f64::NEG_INFINITY, f64::max);
                if z[j] >= max_other {
                    let start = self.upper.len();
                    self.upper.extend_from_slice(u);
                    self.upper[start + j] = z[j];
                    let dstart = self.defining.len();
                    self.defining.extend_from_slice(zu);
                    self.defining[dstart + j * m..dstart + (j + 1) * m].copy_from_slice(z);
                }
            }
        }
    }

    /// Removes bound `idx` by moving the last bound into its place.
    fn swap_remove(&mut self, idx: usize) {
        let m = self.m;
        let mm = m * m;
        let last = self.len() - 1;
        if idx != last {
            self.upper.copy_within(last * m..(last + 1) * m, idx * m);
            self.defining
                .copy_within(last * mm..(last + 1) * mm, idx * mm);
        }
        self.upper.truncate(last * m);
        self.defining.truncate(last * mm);
    }

    /// Lacour et al. 2017, Eq. (2): the box of bound `idx` in the minimisation problem with
    /// reference point `r`: lower = (Z^1_1, max_{k<2} Z^k_2, …, max_{k<m} Z^k_m), upper =
    /// (r_1, u_2, …, u_m). Together these boxes tile the dominated region.
    fn partition_bounds(&self, idx: usize, r: &[f64], lo: &mut [f64], up: &mut [f64]) {
        let m = self.m;
        let zu = &self.defining[idx * m * m..(idx + 1) * m * m];
        let u = &self.upper[idx * m..(idx + 1) * m];
        lo[0] = zu[0];
        up[0] = r[0];
        for j in 1..m {
            lo[j] = (0..j)
                .map(|k| zu[k * m + j])
                .fold(f64::NEG_INFINITY, f64::max);
            up[j] = u[j];
        }
    }
}
