//! Acquisition functions. Each one is a deterministic function of the candidate batch once
//! built (the MC base samples are fixed at construction, as in BoTorch's sample-average
//! approximation), which is what makes quasi-Newton optimisation of it valid.
//!
//! - [`Acquisition`]: the trait the optimiser maximises; [`AcquisitionFactory`] builds one for
//!   given pending points, and [`WithPending`] appends pending points to any q-batch
//!   acquisition.
//! - Single objective: [`QLogExpectedImprovement`] (MC) and [`LogExpectedImprovement`]
//!   (analytic), BoTorch's LogEI family.
//! - Several objectives: [`QExpectedHypervolumeImprovement`] (qEHVI, qLogEHVI) over the
//!   observed front and [`QNoisyExpectedHypervolumeImprovement`] (qNEHVI, qLogNEHVI) over each
//!   sample's front, with their factories [`QEhviFactory`] and [`QNehviFactory`], BoTorch's
//!   [`prune_inferior_points`], and the Monte-Carlo estimator [`mc_hvi_estimate`] they share.
//! - The hypervolume-improvement kernels they evaluate per sample: [`hvi`], [`hvi_with_grad`]
//!   and the smoothed [`log_hvi`], [`log_hvi_with_grad`] ([`LogHviParams`]), for batches of at
//!   most [`MAX_Q`] points.

/// Implements [`Acquisition`] for an MC acquisition from its inherent
/// `evaluate(&self, x, grad: Option<&mut [f64]>) -> Result<f64>` and `$dim`, the input
/// dimension as a function of the acquisition. An evaluation that fails (a malformed batch, a
/// posterior that cannot be factorised) gives NaN and a zero gradient ([`nan_on_error`]).
macro_rules! impl_mc_acquisition {
    ($ty:ty, $dim:expr) => {
        impl $crate::acquisition::Acquisition for $ty {
            fn dim(&self) -> usize {
                let dim: fn(&Self) -> usize = $dim;
                dim(self)
            }

            fn value(&self, x: &[f64]) -> f64 {
                self.evaluate(x, None).unwrap_or(f64::NAN)
            }

            fn value_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
                $crate::acquisition::nan_on_error(grad, |grad| self.evaluate(x, Some(grad)))
            }
        }
    };
}

mod ehvi;
mod hvi;
mod logei;
mod nehvi;
mod pending;

pub use ehvi::{HviEstimator, QEhviFactory, QExpectedHypervolumeImprovement, mc_hvi_estimate};
pub use hvi::{LogHviParams, MAX_Q, hvi, hvi_with_grad, log_hvi, log_hvi_with_grad};
pub use logei::{LogExpectedImprovement, QLogExpectedImprovement};
pub use nehvi::{
    NehviOptions, QNehviFactory, QNoisyExpectedHypervolumeImprovement, prune_inferior_points,
};
pub use pending::{AcquisitionFactory, WithPending};

/// A deterministic acquisition function over a batch of `q` candidates in `d` dimensions,
/// in the model's input space (the unit cube). Larger is better.
///
/// `x` is row-major: candidate `i` occupies `x[i*d..(i+1)*d]`.
pub trait Acquisition: Sync {
    /// Input dimension `d` of one candidate.
    fn dim(&self) -> usize;

    /// Value at the batch `x` (`x.len()` is a multiple of `dim()`).
    fn value(&self, x: &[f64]) -> f64;

    /// Value and gradient with respect to every coordinate of `x` (`grad.len() == x.len()`).
    /// The default uses central finite differences; implementations override it with
    /// analytic gradients where they have them.
    fn value_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        let f0 = self.value(x);
        let mut xp = x.to_vec();
        for j in 0..x.len() {
            let h = 1e-6 * (1.0 + x[j].abs());
            xp[j] = x[j] + h;
            let fp = self.value(&xp);
            xp[j] = x[j] - h;
            let fm = self.value(&xp);
            xp[j] = x[j];
            grad[j] = (fp - fm) / (2.0 * h);
        }
        f0
    }
}

/// The failure rule shared by the MC acquisitions, whose evaluation can fail (a malformed batch,
/// a posterior that cannot be factorised): the value is NaN and the gradient zero, which the
/// optimiser ranks below every finite value.
pub(crate) fn nan_on_error(
    grad: &mut [f64],
    evaluate: impl FnOnce(&mut [f64]) -> crate::Result<f64>,
) -> f64 {
    match evaluate(grad) {
        Ok(value) => value,
        Err(_) => {
            grad.fill(0.0);
            f64::NAN
        }
    }
}
