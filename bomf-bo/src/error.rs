//! One error type for the crate: every failure a caller can act on, with the numbers that caused it.

use thiserror::Error;

/// Result alias used across `bomf-bo`.
pub type Result<T> = std::result::Result<T, BoError>;

#[derive(Debug, Error)]
pub enum BoError {
    /// Inputs disagree on a dimension (points vs space, objectives vs reference point, ...).
    #[error("dimension mismatch in {what}: expected {expected}, got {got}")]
    DimensionMismatch {
        what: String,
        expected: usize,
        got: usize,
    },

    /// A value a computation cannot use (NaN where a number is needed, empty data, bad bounds).
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// The covariance matrix stayed non positive-definite after every jitter retry.
    #[error("Cholesky factorisation failed after adding jitter up to {max_jitter:e}")]
    NotPositiveDefinite { max_jitter: f64 },

    /// Every restart of the marginal-likelihood fit failed.
    #[error("GP fit failed: {0}")]
    FitFailed(String),

    /// State could not be (de)serialised.
    #[error("state (de)serialisation failed: {0}")]
    Serde(#[from] serde_json::Error),
}

impl BoError {
    /// `Ok(())` when `got == expected`, else a [`BoError::DimensionMismatch`] about `what`.
    pub(crate) fn check_dim(what: &str, expected: usize, got: usize) -> Result<()> {
        if got == expected {
            Ok(())
        } else {
            Err(BoError::DimensionMismatch {
                what: what.into(),
                expected,
                got,
            })
        }
    }
}
