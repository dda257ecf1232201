//! Bayesian optimisation in pure Rust, usable on its own (no deep-learning dependency): exact
//! GPs, BoTorch-style Monte-Carlo acquisitions (qLogEI, qEHVI, qNEHVI), hypervolume and box
//! decompositions, a bounded L-BFGS-B, and an ask/tell optimiser with serialisable state.
//!
//! # The front door
//!
//! Everything an ask/tell loop needs is at the crate root:
//!
//! - [`Optimizer`]: `ask` candidates, `tell` results (NaN/∞ marks a failed evaluation),
//!   `to_json`/`from_json` to stop and resume exactly; [`OptimizerSettings`] (with
//!   [`AcquisitionKind`], [`GpPreset`], [`RefPointRule`], and the acquisition optimiser's [`AcqfOptions`] and
//!   [`LbfgsbOptions`]) and the told [`Observation`]s.
//! - The search space: [`Space`] (a box of [`Param`]s, or a simplex of weights mapped by a
//!   [`SimplexMap`]), the [`Objective`]s and their [`Goal`]s, and [`SpaceConfig`], the
//!   `SPACE.json` form of both.
//! - Multi-objective results: [`hypervolume`], [`pareto_front`], [`non_dominated_indices`],
//!   [`is_non_dominated`], [`infer_reference_point`].
//! - [`BoError`] and [`Result`].
//!
//! ```
//! use bomf_bo::{Objective, Optimizer, OptimizerSettings, Param, Space};
//!
//! # fn main() -> bomf_bo::Result<()> {
//! let space = Space::new_box(vec![Param::new("x", -2.0, 2.0), Param::new("y", -2.0, 2.0)])?;
//! let mut opt = Optimizer::new(space, vec![Objective::minimize("f")], OptimizerSettings::default())?;
//! for x in opt.ask(3)? {
//!     opt.tell(&x, &[x[0] * x[0] + x[1] * x[1]])?;
//! }
//! assert_eq!(opt.observations().len(), 3);
//! # Ok(())
//! # }
//! ```
//!
//! # Building blocks
//!
//! The pieces the optimiser is made of stay reachable for custom loops and for checks against
//! BoTorch, each module with a small surface (laid out like BoTorch):
//!
//! - [`gp`]: exact GP regression per objective (Matérn-5/2 or RBF, ARD, priors, learned noise).
//! - [`acquisition`]: qLogEI, qEHVI/qNEHVI and their log variants, the hypervolume-improvement
//!   kernels, and pending points.
//! - [`partitioning`]: Pareto filtering, hypervolume and box decompositions.
//! - [`optim`]: acquisition optimisation (raw samples, Boltzmann restarts, local searches).
//! - [`lbfgsb`]: the bounded quasi-Newton method both the acquisition optimiser and the GP fit
//!   use.
//! - [`sampling`]: scrambled Sobol designs and QMC normal base samples.
//! - [`surrogate`]: plugging another surrogate into [`Optimizer::ask_with`].

pub mod acquisition;
mod error;
pub mod gp;
pub mod lbfgsb;
pub mod optim;
mod optimizer;
pub mod partitioning;
mod safe_math;
pub mod sampling;
mod space;

// Test support shared with the integration tests in `tests/`.
#[cfg(test)]
#[path = "../tests/fixtures/mod.rs"]
mod fixtures;
#[cfg(test)]
#[path = "../tests/tolerance/mod.rs"]
mod tolerance;

pub use error::{BoError, Result};
pub use lbfgsb::LbfgsbOptions;
pub use optim::AcqfOptions;
pub use optimizer::{
    AcquisitionKind, GpPreset, GpSubset, MAX_ASK, MAX_EXACT_GP, MAX_FAILED_PENDING, Observation,
    Optimizer, OptimizerSettings, RefPointRule,
};
pub use partitioning::{
    hypervolume, infer_reference_point, is_non_dominated, non_dominated_indices, pareto_front,
};
pub use space::{Domain, DomainKind, Goal, Objective, Param, SimplexMap, Space, SpaceConfig};

pub mod surrogate {
    //! Another surrogate in the ask/tell loop: [`Optimizer::ask_with`] calls a
    //! [`SurrogateBuilder`] with the [`TrainingData`] and an [`AcquisitionRequest`] at every BO
    //! step, and maximises the acquisition it returns. [`BuiltinSurrogate`] (what
    //! [`Optimizer::ask`] uses) is [`fit_surrogate_and_build_acquisition`]: one GP per
    //! objective and the requested acquisition.
    //!
    //! [`Optimizer::ask_with`]: crate::Optimizer::ask_with
    //! [`Optimizer::ask`]: crate::Optimizer::ask

    pub use crate::optimizer::{
        AcquisitionRequest, BuiltinSurrogate, SurrogateBuilder, TrainingData,
        fit_surrogate_and_build_acquisition,
    };
}

/// The ask/tell example of `README.md`, compiled and run by `cargo test --doc`.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
