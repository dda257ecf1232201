//! Bayesian optimisation for BOMF, usable on its own (no deep-learning dependency).
//!
//! Laid out like BoTorch:
//! - [`gp`]: exact GP regression per objective (Matérn-5/2 or RBF, ARD, priors, learned noise).
//! - [`sampling`]: scrambled Sobol QMC normal base samples.
//! - [`acquisition`]: qLogEI, qEHVI/qNEHVI and their log variants.
//! - [`partitioning`]: Pareto filtering, hypervolume and box decompositions.
//! - [`optim`]: acquisition optimisation (raw samples, Boltzmann restarts, bounded quasi-Newton).
//! - [`space`] and [`optimizer`]: search spaces and the ask/tell [`optimizer::Optimizer`].

pub mod acquisition;
pub mod error;
pub mod gp;
pub mod lbfgsb;
pub mod optim;
pub mod optimizer;
pub mod partitioning;
pub mod safe_math;
pub mod sampling;
pub mod space;

pub use error::{BoError, Result};
