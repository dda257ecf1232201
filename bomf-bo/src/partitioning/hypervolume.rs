//! Exact hypervolume (maximisation) and BoTorch's reference-point heuristic.
//!
//! Algorithm choice. m = 1 and m = 2 are closed forms (a max, and the staircase sweep after
//! one sort). For m ≥ 3 we use **WFG** (While, Bradstreet & Barone, IEEE TEC 2012) rather than
//! the Fonseca–Paquete–López-Ibáñez dimension sweep that BoTorch's `Hypervolume` class ports:
//! - WFG is the fastest exact algorithm in practice for the front sizes BO produces
//!   (tens to a few hundred points, m ≤ 6), because its limit sets shrink quickly;
//! - it is a short recursion on plain arrays (sort, clip, filter), whereas the dimension sweep
//!   needs a multi-linked list with per-node `area`/`volume`/`ignore` bookkeeping that is easy
//!   to get subtly wrong and awkward to express without shared mutable pointers in Rust;
//! - sorting by the last objective makes every limit set live in one slice of that objective,
//!   so each recursion step also drops one dimension and ends in the 2-D sweep.
//!
//! The decomposition-based value (sum of the dominated cells of
//! [`super::box_decomposition::dominated_cells`], what BoTorch reports for m > 2) is an
//! independent second implementation; the tests check that both agree.

use super::pareto::{front_better_than_unchecked, non_dominated_mask_into};
use super::{check_points, check_ref_point};
use crate::error::{BoError, Result};

/// Smallest per-objective range used by [`infer_reference_point`] (BoTorch's `MIN_Y_RANGE`),
/// so a degenerate objective (all values equal) still gets a reference point below it.
pub(crate) const MIN_Y_RANGE: f64 = 1e-7;

/// Hypervolume dominated by the `n × m` points `ys` (row-major) and bounded below by
/// `ref_point`. Points that are not strictly better than the reference point in every
/// objective are ignored, as in BoTorch; rows containing NaN are ignored.
pub fn hypervolume(ys: &[f64], m: usize, ref_point: &[f64]) -> Result<f64> {
    check_points(ys, m, "hypervolume")?;
    check_ref_point(ref_point, m, "hypervolume")?;
    let front = front_better_than_unchecked(ys, m, ref_point);
    Ok(hypervolume_of_front(&front, m, ref_point))
}

/// Hypervolume of a front whose points are all strictly better than `ref_point` (they need not
/// be mutually non-dominated). No input checks: for callers that built the front themselves.
pub(crate) fn hypervolume_of_front(front: &[f64], m: usize, ref_point: &[f64]) -> f64 {
    // Shift so the reference point is the origin: every coordinate is then a positive length.
    let mut shifted: Vec<f64> = front
        .chunks_exact(m)
        .flat_map(|p| p.iter().zip(ref_point).map(|(a, r)| a - r))
        .collect();
    wfg(&mut shifted, m)
}

/// Hypervolume w.r.t. the origin of the positive points `pts` (`n × k`, row-major).
/// `pts` is reordered in place.
fn wfg(pts: &mut [f64], k: usize) -> f64 {
    let n = pts.len() / k;
    match (n, k) {
        (0, _) => 0.0,
        (_, 1) => pts.iter().copied().fold(0.0, f64::max),
        (1, _) => pts.iter().product(),
        (_, 2) => sweep_2d(pts),
        _ => {
            // Sort by the last objective ascending: for j > i, min(p_i, p_j) has the last
            // coordinate of p_i, so the limit set of p_i is a (k-1)-dimensional problem
            // scaled by p_i[k-1].
            sort_rows_by(pts, k, k - 1);
            let km = k - 1;
            let mut total = 0.0;
            let mut limit: Vec<f64> = Vec::with_capacity(n * km);
            let mut mask: Vec<bool> = Vec::with_capacity(n);
            for i in 0..n {
                let pi = &pts[i * k..i * k + km];
                let inclusive: f64 = pi.iter().product();
                limit.clear();
                for pj in pts[(i + 1) * k..].chunks_exact(k) {
                    limit.extend(pi.iter().zip(&pj[..km]).map(|(a, b)| a.min(*b)));
                }
                let covered = if limit.is_empty() {
                    0.0
                } else {
                    mask.clear();
                    mask.resize(limit.len() / km, false);
                    non_dominated_mask_into(&limit, km, true, &mut mask);
                    let mut nd: Vec<f64> = limit
                        .chunks_exact(km)
                        .zip(&mask)
                        .filter(|(_, keep)| **keep)
                        .flat_map(|(p, _)| p.iter().copied())
                        .collect();
                    wfg(&mut nd, km)
                };
                total += pts[i * k + km] * (inclusive - covered);
            }
            total
        }
    }
}

/// 2-D staircase with the origin as reference: sort by the first objective descending; each
/// point adds the strip between its second objective and the best second objective so far.
fn sweep_2d(pts: &mut [f64]) -> f64 {
    sort_rows_by(pts, 2, 0);
    let mut best_y1 = 0.0_f64;
    let mut area = 0.0;
    for p in pts.chunks_exact(2).rev() {
        if p[1] > best_y1 {
            area += p[0] * (p[1] - best_y1);
            best_y1 = p[1];
        }
    }
    area
}

/// Sorts the rows of a row-major `n × k` buffer ascending by column `col`.
fn sort_rows_by(pts: &mut [f64], k: usize, col: usize) {
    let n = pts.len() / k;
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_unstable_by(|&a, &b| pts[a * k + col].total_cmp(&pts[b * k + col]));
    let sorted: Vec<f64> = order
        .iter()
        .flat_map(|&i| pts[i * k..(i + 1) * k].iter().copied())
        .collect();
    pts.copy_from_slice(&sorted);
}

/// BoTorch's `infer_reference_point` (with `scale_max_ref_point=False`): the nadir of the
/// front minus `scale` times its range (Ishibuchi et al. 2011 found `scale = 0.1` robust).
///
/// - A single point `y` gives `y − scale·max(|y|, 1e-7)`.
/// - Ranges are clamped at `MIN_Y_RANGE` (1e-7, BoTorch's) so a flat objective still gets a margin.
/// - With `max_ref_point`: if some point beats it in every objective (and it has no NaN) it
///   is returned unchanged; otherwise the nadir is capped by it. NaN entries of
///   `max_ref_point` mean "no cap for this objective"; where it has NaNs and some point beats
///   its other entries, those entries are used as they are.
///
/// Errors on a NaN in `pareto_y`, on an empty front without a (NaN-free) `max_ref_point`,
/// and on dimension mismatches.
pub fn infer_reference_point(
    pareto_y: &[f64],
    m: usize,
    max_ref_point: Option<&[f64]>,
    scale: f64,
) -> Result<Vec<f64>> {
    let n = check_points(pareto_y, m, "infer_reference_point")?;
    if let Some(i) = pareto_y.iter().position(|v| v.is_nan()) {
        return Err(BoError::InvalidInput(format!(
            "infer_reference_point: pareto_y[{}][{}] is NaN",
            i / m,
            i % m
        )));
    }
    if let Some(mr) = max_ref_point
        && mr.len() != m
    {
        return Err(BoError::DimensionMismatch {
            what: "infer_reference_point: max_ref_point".into(),
            expected: m,
            got: mr.len(),
        });
    }
    if n == 0 {
        return match max_ref_point {
            None => Err(BoError::InvalidInput(
                "infer_reference_point: empty Pareto front and no max_ref_point".into(),
            )),
            Some(mr) if mr.iter().any(|v| v.is_nan()) => Err(BoError::InvalidInput(
                "infer_reference_point: empty Pareto front and max_ref_point contains NaN".into(),
            )),
            Some(mr) => Ok(mr.to_vec()),
        };
    }
    let rows = || pareto_y.chunks_exact(m);
    let non_nan: Vec<bool> = match max_ref_point {
        Some(mr) => mr.iter().map(|v| !v.is_nan()).collect(),
        None => vec![true; m],
    };
    let any_better = match max_ref_point {
        Some(mr) => rows().any(|y| (0..m).all(|j| !non_nan[j] || y[j] > mr[j])),
        None => true,
    };
    let all_non_nan = non_nan.iter().all(|&b| b);
    if let Some(mr) = max_ref_point
        && any_better
        && all_non_nan
    {
        return Ok(mr.to_vec());
    }
    let mut ref_point: Vec<f64> = if n == 1 {
        pareto_y
            .iter()
            .map(|y| y - scale * y.abs().max(MIN_Y_RANGE))
            .collect()
    } else {
        (0..m)
            .map(|j| {
                let mut nadir = rows().map(|y| y[j]).fold(f64::INFINITY, f64::min);
                let ideal = rows().map(|y| y[j]).fold(f64::NEG_INFINITY, f64::max);
                if let Some(mr) = max_ref_point
                    && non_nan[j]
                {
                    nadir = nadir.min(mr[j]);
                }
                nadir - scale * (ideal - nadir).max(MIN_Y_RANGE)
            })
            .collect()
    };
    if let Some(mr) = max_ref_point
        && any_better
        && !all_non_nan
    {
        for j in (0..m).filter(|&j| non_nan[j]) {
            ref_point[j] = mr[j];
        }
    }
    Ok(ref_point)
}
