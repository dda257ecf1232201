//! BoTorch's qEHVI test problem (`test/acquisition/multi_objective/test_monte_carlo.py`,
//! `TestQExpectedHypervolumeImprovement.test_q_expected_hypervolume_improvement`): a 2-objective
//! front with reference point 0 and the qEHVI of single MC samples against it.
//!
//! Shared by the integration tests (`mod botorch_qehvi;`).

use bomf_bo::partitioning::{Cells, nondominated_cells};

pub const FRONT: [f64; 10] = [4.0, 5.0, 5.0, 5.0, 8.5, 3.5, 8.5, 3.0, 9.0, 1.0];

/// (one MC sample of q outcome vectors, BoTorch's expected qEHVI)
pub const GOLDEN: [(&[f64], f64); 8] = [
    (&[6.5, 4.5], 1.5),
    (&[0.0, 1.0], 0.0),
    (&[6.5, 4.5, 7.0, 4.0], 1.75),
    (&[6.5, 4.5, 6.0, 4.0], 1.5),
    (&[6.5, 4.5, 6.0, 6.0], 8.0),
    (&[6.5, 4.5, 9.0, 2.0], 2.0),
    (&[6.5, 4.5, 9.0, 2.0, 7.0, 4.0], 2.25),
    (&[6.5, 4.5, 9.0, 2.0, 7.0, 5.0], 3.5),
];

/// The non-dominated cells of [`FRONT`] above the reference point 0.
pub fn cells() -> Cells {
    nondominated_cells(&FRONT, 2, &[0.0, 0.0]).unwrap()
}
