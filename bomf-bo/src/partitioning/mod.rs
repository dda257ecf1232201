//! Pareto filtering, hypervolume and box decompositions of the objective space.
//!
//! Everything here follows BoTorch's convention: **all objectives are maximised**, and only
//! points **strictly better than the reference point in every objective** contribute.
//! Point sets are plain row-major `f64` slices (`n × m`, point `i` at `ys[i*m..(i+1)*m]`),
//! because these routines run inside qNEHVI once per Monte-Carlo sample and per BO step,
//! where allocation and indirection dominate the cost.
//!
//! - Non-dominated filtering: [`is_non_dominated`], [`non_dominated_indices`],
//!   [`pareto_front`], [`pareto_front_better_than`].
//! - [`hypervolume`]: exact hypervolume for any number of objectives, and
//!   [`infer_reference_point`].
//! - Box decompositions: disjoint box covers of the non-dominated region
//!   ([`nondominated_cells`], the cells qEHVI/qNEHVI integrate over) and of the dominated
//!   region ([`dominated_cells`]), as [`Cells`]; [`nondominated_cells_into`] reuses a [`Cells`]
//!   buffer for per-MC-sample loops.
//!
//! The hypervolume-improvement kernels that consume [`Cells`] live in
//! [`crate::acquisition`].

mod box_decomposition;
mod hypervolume;
mod pareto;

pub use box_decomposition::{Cells, dominated_cells, nondominated_cells, nondominated_cells_into};
pub use hypervolume::{hypervolume, infer_reference_point};
pub use pareto::{is_non_dominated, non_dominated_indices, pareto_front, pareto_front_better_than};

use crate::error::{BoError, Result};

/// Checks that a flat `n × m` point buffer and a reference point agree on `m`, and returns `n`.
pub(crate) fn check_points(ys: &[f64], m: usize, what: &str) -> Result<usize> {
    if m == 0 {
        return Err(BoError::InvalidInput(format!(
            "{what}: the number of objectives must be at least 1"
        )));
    }
    if !ys.len().is_multiple_of(m) {
        return Err(BoError::DimensionMismatch {
            what: format!("{what}: flat point buffer length must be a multiple of m={m}"),
            expected: ys.len().div_ceil(m) * m,
            got: ys.len(),
        });
    }
    Ok(ys.len() / m)
}

/// Checks that a reference point has `m` finite coordinates.
pub(crate) fn check_ref_point(ref_point: &[f64], m: usize, what: &str) -> Result<()> {
    if ref_point.len() != m {
        return Err(BoError::DimensionMismatch {
            what: format!("{what}: reference point"),
            expected: m,
            got: ref_point.len(),
        });
    }
    if let Some(j) = ref_point.iter().position(|r| !r.is_finite()) {
        return Err(BoError::InvalidInput(format!(
            "{what}: reference point coordinate {j} is {} (must be finite)",
            ref_point[j]
        )));
    }
    Ok(())
}
