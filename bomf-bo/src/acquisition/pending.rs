//! Pending points: candidates chosen (or being evaluated) whose outcomes are unknown. MC
//! acquisitions condition on them by including them in the joint posterior sample (BoTorch's
//! `X_pending`), which lowers the value of nearby candidates and spreads a batch out.

use super::Acquisition;
use crate::error::{BoError, Result};

/// Builds the acquisition for a given set of *pending* points: points already chosen (or being
/// evaluated) whose outcomes are unknown. MC acquisitions condition on them by including them
/// in the joint posterior sample (BoTorch's `X_pending`), which lowers the value of nearby
/// candidates and spreads a batch out.
///
/// `pending` is row-major (`n_pending × d`) in the acquisition's input space. The returned
/// acquisition may borrow from the factory (a factory typically owns the fitted GPs and the
/// base samples). Closures `Fn(&[f64]) -> Result<Box<dyn Acquisition>>` are factories.
pub trait AcquisitionFactory {
    fn build(&self, pending: &[f64]) -> Result<Box<dyn Acquisition + '_>>;
}

impl<F> AcquisitionFactory for F
where
    F: Fn(&[f64]) -> Result<Box<dyn Acquisition>>,
{
    fn build(&self, pending: &[f64]) -> Result<Box<dyn Acquisition + '_>> {
        self(pending)
    }
}

/// An acquisition evaluated on `[x; pending]`: the candidates are joined by fixed pending
/// points, as BoTorch's `concatenate_pending_points` does for MC acquisitions. It turns any
/// q-batch acquisition into an [`AcquisitionFactory`] product that accounts for pending points
/// (the joint MC sample sees them, so improvement they already "claim" is not counted twice).
pub struct WithPending<'a> {
    inner: Box<dyn Acquisition + 'a>,
    /// Row-major `n_pending × d`.
    pending: Vec<f64>,
}

impl<'a> WithPending<'a> {
    /// Wrap `inner`; `pending` must be a row-major `n × inner.dim()` array.
    pub fn new(inner: Box<dyn Acquisition + 'a>, pending: &[f64]) -> Result<Self> {
        let d = inner.dim();
        if d == 0 || !pending.len().is_multiple_of(d) {
            return Err(BoError::InvalidInput(format!(
                "pending points must be a row-major n x {d} array, got {} values",
                pending.len()
            )));
        }
        Ok(Self {
            inner,
            pending: pending.to_vec(),
        })
    }

    fn joined(&self, x: &[f64]) -> Vec<f64> {
        let mut all = Vec::with_capacity(x.len() + self.pending.len());
        all.extend_from_slice(x);
        all.extend_from_slice(&self.pending);
        all
    }
}

impl std::fmt::Debug for WithPending<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithPending")
            .field("dim", &self.inner.dim())
            .field("n_pending", &(self.pending.len() / self.inner.dim().max(1)))
            .finish()
    }
}

impl Acquisition for WithPending<'_> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    fn value(&self, x: &[f64]) -> f64 {
        if self.pending.is_empty() {
            return self.inner.value(x);
        }
        self.inner.value(&self.joined(x))
    }

    fn value_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        if self.pending.is_empty() {
            return self.inner.value_and_grad(x, grad);
        }
        let all = self.joined(x);
        let mut all_grad = vec![0.0; all.len()];
        let v = self.inner.value_and_grad(&all, &mut all_grad);
        grad.copy_from_slice(&all_grad[..x.len()]);
        v
    }
}
