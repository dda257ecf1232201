//! Acquisition optimisation, following BoTorch's `optimize_acqf`:
//! - [`lbfgsb`]: the bounded quasi-Newton local optimiser (pure-Rust L-BFGS-B).
//! - [`initializers`]: Boltzmann selection of restart points from raw samples.
//! - [`optimize`]: the driver — raw Sobol samples, restarts and local searches in parallel,
//!   joint or sequential-greedy q-batches.
//! - [`canonical`]: an acquisition composed with a search space's canonical map, so that a
//!   simplex is searched in the coordinates its GP is fitted in.

pub mod canonical;
pub mod initializers;
pub mod lbfgsb;
pub mod optimize;

pub use canonical::Canonicalized;
pub use optimize::{
    AcqfOptions, AcqfResult, AcquisitionFactory, Bounds, Candidate, SequentialResult, WithPending,
    anchor_candidates, optimize_acqf, optimize_acqf_sequential, optimize_acqf_with_anchors,
};

/// Derive an independent 64-bit seed for sub-stream `stream` of `seed` (SplitMix64 finaliser),
/// so every random choice of a run follows from one user seed without sharing an RNG.
pub fn derive_seed(seed: u64, stream: u64) -> u64 {
    let mut z = seed
        .wrapping_add(stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
