//! Non-dominated (Pareto) filtering under maximisation, with BoTorch's `is_non_dominated`
//! semantics.
//!
//! `y` dominates `z` when `y ≥ z` in every objective and `y > z` in at least one. Exact
//! duplicates do not dominate each other; with `deduplicate` only the first occurrence of a
//! duplicated non-dominated point is kept (BoTorch's default). Rows containing a NaN are never
//! non-dominated and never dominate anything (BoTorch's pairwise comparison lets NaN rows
//! through; we drop them because a NaN outcome is a failed evaluation, not a trade-off).
//!
//! Instead of BoTorch's O(n²) pairwise tensor, both paths sort first:
//! - m = 2: sort by the first objective descending and sweep once, O(n log n);
//! - m ≥ 3: sort lexicographically descending, so a point can only be dominated by points
//!   before it, and compare each point with the front found so far (domination is
//!   transitive, so dominated points never need to be compared against), O(n log n + n·|P|·m).

use std::cmp::Ordering;

use super::{check_points, check_ref_point};
use crate::error::Result;

/// Mask of the non-dominated rows of the `n × m` row-major buffer `ys` (maximisation).
///
/// With `deduplicate`, only the first occurrence of each duplicated non-dominated point is
/// marked. Errors when `m == 0` or `ys.len()` is not a multiple of `m`.
pub fn is_non_dominated(ys: &[f64], m: usize, deduplicate: bool) -> Result<Vec<bool>> {
    let n = check_points(ys, m, "is_non_dominated")?;
    let mut mask = vec![false; n];
    non_dominated_mask_into(ys, m, deduplicate, &mut mask);
    Ok(mask)
}

/// Row indices (ascending) of the deduplicated non-dominated points of `ys`.
pub fn non_dominated_indices(ys: &[f64], m: usize) -> Result<Vec<usize>> {
    let mask = is_non_dominated(ys, m, true)?;
    Ok(mask
        .iter()
        .enumerate()
        .filter_map(|(i, &keep)| keep.then_some(i))
        .collect())
}

/// The deduplicated Pareto front of `ys`, as a flat `n_front × m` buffer in input order.
pub fn pareto_front(ys: &[f64], m: usize) -> Result<Vec<f64>> {
    let mask = is_non_dominated(ys, m, true)?;
    Ok(gather_rows(ys, m, &mask))
}

/// The deduplicated Pareto front of the points of `ys` that are strictly better than
/// `ref_point` in every objective: the only points that contribute to the hypervolume.
pub fn pareto_front_better_than(ys: &[f64], m: usize, ref_point: &[f64]) -> Result<Vec<f64>> {
    check_points(ys, m, "pareto_front_better_than")?;
    check_ref_point(ref_point, m, "pareto_front_better_than")?;
    Ok(front_better_than_unchecked(ys, m, ref_point))
}

/// [`pareto_front_better_than`] without input checks, for callers that validated already.
pub(crate) fn front_better_than_unchecked(ys: &[f64], m: usize, ref_point: &[f64]) -> Vec<f64> {
    let better: Vec<f64> = ys
        .chunks_exact(m)
        .filter(|y| y.iter().zip(ref_point).all(|(a, r)| a > r))
        .flatten()
        .copied()
        .collect();
    let mut mask = vec![false; better.len() / m];
    non_dominated_mask_into(&better, m, true, &mut mask);
    gather_rows(&better, m, &mask)
}

fn gather_rows(ys: &[f64], m: usize, mask: &[bool]) -> Vec<f64> {
    ys.chunks_exact(m)
        .zip(mask)
        .filter(|(_, keep)| **keep)
        .flat_map(|(y, _)| y.iter().copied())
        .collect()
}

/// Writes the non-dominated mask of `ys` into `mask` (length `n`), without input checks.
pub(crate) fn non_dominated_mask_into(ys: &[f64], m: usize, deduplicate: bool, mask: &mut [bool]) {
    mask.fill(false);
    let row = |i: usize| &ys[i * m..(i + 1) * m];
    // NaN rows are neither kept nor used as dominators.
    let mut order: Vec<usize> = (0..mask.len())
        .filter(|&i| row(i).iter().all(|v| !v.is_nan()))
        .collect();
    // Without NaNs `partial_cmp` is total and, unlike `total_cmp`, treats -0.0 == 0.0, which
    // keeps equal points adjacent after sorting. Ties broken by index so duplicates are met
    // in input order and the first one is the one kept.
    let cmp = |a: f64, b: f64| b.partial_cmp(&a).unwrap_or(Ordering::Equal);
    if m == 2 {
        order.sort_unstable_by(|&i, &j| {
            cmp(ys[2 * i], ys[2 * j])
                .then(cmp(ys[2 * i + 1], ys[2 * j + 1]))
                .then(i.cmp(&j))
        });
        sweep_2d(ys, &order, deduplicate, mask);
        return;
    }
    order.sort_unstable_by(|&i, &j| {
        row(i)
            .iter()
            .zip(row(j))
            .map(|(&a, &b)| cmp(a, b))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
            .then(i.cmp(&j))
    });
    let mut front: Vec<usize> = Vec::new();
    for &i in &order {
        let yi = row(i);
        let mut status = Status::NonDominated;
        for &f in &front {
            let yf = row(f);
            if yf.iter().zip(yi).all(|(a, b)| a >= b) {
                status = if yf == yi {
                    Status::Duplicate
                } else {
                    Status::Dominated
                };
                break;
            }
        }
        match status {
            Status::NonDominated => {
                mask[i] = true;
                front.push(i);
            }
            Status::Duplicate => mask[i] = !deduplicate,
            Status::Dominated => {}
        }
    }
}

enum Status {
    NonDominated,
    Duplicate,
    Dominated,
}

/// m = 2: `order` sorts points by (y0, y1) descending. A point is dominated exactly when an
/// earlier point (which has y0 at least as large) has y1 at least as large and is not equal.
fn sweep_2d(ys: &[f64], order: &[usize], deduplicate: bool, mask: &mut [bool]) {
    let mut best_y1 = f64::NEG_INFINITY;
    let mut seen_any = false;
    let mut prev: Option<usize> = None;
    let mut prev_kept = false;
    for &i in order {
        let (a, b) = (ys[2 * i], ys[2 * i + 1]);
        let is_dup = prev.is_some_and(|p| ys[2 * p] == a && ys[2 * p + 1] == b);
        if is_dup {
            // Same status as the first of its group, which was met first.
            mask[i] = prev_kept && !deduplicate;
        } else {
            prev_kept = !(seen_any && best_y1 >= b);
            mask[i] = prev_kept;
            prev = Some(i);
        }
        if b > best_y1 {
            best_y1 = b;
        }
        seen_any = true;
    }
}
