//! Acquisition optimisation, following BoTorch's `optimize_acqf`:
//! - [`initializers`]: Boltzmann selection of restart points from raw samples.
//! - [`optimize`]: the driver — raw Sobol samples, restarts and local searches in parallel,
//!   joint or sequential-greedy q-batches.
//! - [`canonical`]: an acquisition composed with a search space's canonical map, so that a
//!   simplex is searched in the coordinates its GP is fitted in.

pub mod canonical;
pub mod initializers;
pub mod optimize;

pub use crate::acquisition::{AcquisitionFactory, WithPending};
pub use crate::sampling::derive_seed;
pub use canonical::Canonicalized;
pub use optimize::{
    AcqfOptions, AcqfResult, Bounds, Candidate, SequentialResult, anchor_candidates, optimize_acqf,
    optimize_acqf_sequential, optimize_acqf_with_anchors,
};
