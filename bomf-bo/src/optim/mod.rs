//! Acquisition optimisation, following BoTorch's `optimize_acqf`: score raw Sobol samples,
//! pick restarts among them by Boltzmann sampling, run L-BFGS-B ([`crate::lbfgsb`]) from each
//! in parallel, for joint or sequential-greedy q-batches.
//!
//! - [`optimize_acqf`]: one q-batch, optimised jointly.
//! - [`optimize_acqf_with_anchors`]: the same with extra raw candidates around given
//!   incumbents ([`anchor_candidates`]), which reach optima on a face of the box.
//! - [`optimize_acqf_sequential`]: BoTorch's sequential greedy, one point at a time with the
//!   points chosen so far pending (through an [`crate::acquisition::AcquisitionFactory`]).
//!
//! Inside the crate, the optimiser also composes an acquisition with a search space's canonical
//! map, so that a simplex is searched in the coordinates its GP is fitted in.

mod canonical;
mod initializers;
mod optimize;

pub(crate) use canonical::Canonicalized;
pub use optimize::{
    AcqfOptions, AcqfResult, Bounds, Candidate, SequentialResult, anchor_candidates, optimize_acqf,
    optimize_acqf_sequential, optimize_acqf_with_anchors,
};
