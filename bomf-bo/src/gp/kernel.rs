//! Stationary ARD kernels `k(x, x') = s · g(ρ)`, `ρ = Σ_k (x_k − x'_k)² / ℓ_k²`, written in terms
//! of `ρ` so that one function serves values, hyperparameter gradients and input gradients.

use serde::{Deserialize, Serialize};

/// The correlation function `g`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KernelKind {
    /// Matérn ν = 5/2: `(1 + √5 r + 5r²/3) e^{−√5 r}`, `r = √ρ`.
    Matern52,
    /// Squared exponential (RBF): `e^{−ρ/2}`.
    Rbf,
}

const SQRT5: f64 = 2.236_067_977_499_79;

impl KernelKind {
    /// `(g(ρ), −2 g'(ρ))`. The second value is what every derivative needs:
    /// `∂k/∂ log ℓ_k = s · (−2g') · Δ_k²/ℓ_k²` and `∂k/∂x_k = −s · (−2g') · Δ_k/ℓ_k²`.
    #[inline]
    pub(crate) fn eval(self, rho: f64) -> (f64, f64) {
        match self {
            KernelKind::Matern52 => {
                let r = rho.max(0.0).sqrt();
                let e = (-SQRT5 * r).exp();
                (
                    (1.0 + SQRT5 * r + 5.0 / 3.0 * rho) * e,
                    5.0 / 3.0 * (1.0 + SQRT5 * r) * e,
                )
            }
            KernelKind::Rbf => {
                let e = (-0.5 * rho).exp();
                (e, e)
            }
        }
    }
}

/// Scaled squared distance `ρ` between `a` and `b` with inverse squared lengthscales `inv_l2`.
#[inline]
pub(crate) fn scaled_sq_dist(a: &[f64], b: &[f64], inv_l2: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .zip(inv_l2)
        .map(|((x, y), w)| (x - y) * (x - y) * w)
        .sum()
}

/// Kernel hyperparameters in the model's (normalised-input, standardised-output) space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kernel {
    pub kind: KernelKind,
    /// One lengthscale per input dimension (ARD).
    pub lengthscales: Vec<f64>,
    /// Output scale `s` (1 for the RBF preset, which has none).
    pub outputscale: f64,
}

impl Kernel {
    pub(crate) fn inv_l2(&self) -> Vec<f64> {
        self.lengthscales.iter().map(|l| 1.0 / (l * l)).collect()
    }

    /// `k(a, b)`.
    pub(crate) fn k(&self, a: &[f64], b: &[f64], inv_l2: &[f64]) -> f64 {
        self.outputscale * self.kind.eval(scaled_sq_dist(a, b, inv_l2)).0
    }

    /// Cross-covariance matrix `K(A, B)` (`na × nb`, row-major) of row-major point sets.
    pub(crate) fn matrix(&self, a: &[f64], b: &[f64], d: usize) -> Vec<f64> {
        let inv_l2 = self.inv_l2();
        let mut out = Vec::with_capacity(a.len() / d * b.len() / d);
        for pa in a.chunks_exact(d) {
            for pb in b.chunks_exact(d) {
                out.push(self.k(pa, pb, &inv_l2));
            }
        }
        out
    }

    /// `∂k(x, b)/∂x_k` for one coordinate `k`.
    pub(crate) fn grad_x_coord(&self, x: &[f64], b: &[f64], inv_l2: &[f64], k: usize) -> f64 {
        let (_, m2g) = self.kind.eval(scaled_sq_dist(x, b, inv_l2));
        -self.outputscale * m2g * (x[k] - b[k]) * inv_l2[k]
    }

    /// Gradient of `k(x, b)` with respect to `x`, added (times `weight`) into `grad`.
    pub(crate) fn add_grad_x(
        &self,
        x: &[f64],
        b: &[f64],
        inv_l2: &[f64],
        weight: f64,
        grad: &mut [f64],
    ) {
        let (_, m2g) = self.kind.eval(scaled_sq_dist(x, b, inv_l2));
        let c = -weight * self.outputscale * m2g;
        for k in 0..x.len() {
            grad[k] += c * (x[k] - b[k]) * inv_l2[k];
        }
    }
}
