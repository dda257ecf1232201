//! Hyperparameter priors and the two BoTorch presets that use them.

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::kernel::KernelKind;
use crate::sampling::ndtri;

/// A prior on a positive hyperparameter `v`, with density on `v` itself (as GPyTorch: no
/// change-of-variables term for the log parameterisation the optimiser uses).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Prior {
    /// Gamma with shape `concentration` and `rate`.
    Gamma { concentration: f64, rate: f64 },
    /// `ln v ~ N(loc, scale²)`.
    LogNormal { loc: f64, scale: f64 },
}

impl Prior {
    /// `(ln p(v), d ln p(v) / d ln v)` at `v = exp(u)`.
    pub fn log_pdf_and_grad_log(&self, u: f64) -> (f64, f64) {
        let v = u.exp();
        match *self {
            Prior::Gamma {
                concentration: a,
                rate: b,
            } => (
                a * b.ln() - libm::lgamma(a) + (a - 1.0) * u - b * v,
                (a - 1.0) - b * v,
            ),
            Prior::LogNormal { loc, scale } => {
                let z = (u - loc) / scale;
                (
                    -u - scale.ln() - crate::safe_math::LOG_SQRT_2PI - 0.5 * z * z,
                    -1.0 - z / scale,
                )
            }
        }
    }

    /// The mode of the density on `v`.
    pub fn mode(&self) -> f64 {
        match *self {
            Prior::Gamma {
                concentration: a,
                rate: b,
            } => ((a - 1.0) / b).max(0.0),
            Prior::LogNormal { loc, scale } => (loc - scale * scale).exp(),
        }
    }

    /// One draw of `v`.
    pub fn sample(&self, rng: &mut impl Rng) -> f64 {
        match *self {
            Prior::Gamma {
                concentration,
                rate,
            } => sample_gamma(concentration, rng) / rate,
            Prior::LogNormal { loc, scale } => (loc + scale * std_normal(rng)).exp(),
        }
    }
}

/// Uniform draw in the open interval (0, 1) with 53 random bits.
fn uniform01(rng: &mut impl Rng) -> f64 {
    ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

fn std_normal(rng: &mut impl Rng) -> f64 {
    ndtri(uniform01(rng))
}

/// Gamma(shape, 1) by Marsaglia & Tsang (2000), with the `U^{1/a}` boost for shape < 1.
fn sample_gamma(shape: f64, rng: &mut impl Rng) -> f64 {
    if shape < 1.0 {
        return sample_gamma(shape + 1.0, rng) * uniform01(rng).powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = std_normal(rng);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u = uniform01(rng);
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// BoTorch's two `SingleTaskGP` model families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Preset {
    /// BoTorch ≥ 0.12 default: RBF with ARD and no outputscale, lengthscales
    /// `LogNormal(√2 + ½ ln d, √3)` (≥ 0.025), noise `LogNormal(−4, 1)` (Hvarfner et al. 2024).
    #[default]
    RbfDimScaled,
    /// BoTorch ≤ 0.11 default (the BOMF paper's): Matérn-5/2 ARD with an outputscale,
    /// lengthscales `Gamma(3, 6)`, outputscale `Gamma(2, 0.15)`, noise `Gamma(1.1, 0.05)`.
    MaternGamma,
}

/// Everything a fit needs to know about one preset in dimension `d`.
#[derive(Debug, Clone, PartialEq)]
pub struct PresetSpec {
    pub kind: KernelKind,
    pub lengthscale_prior: Prior,
    /// `None`: no outputscale (fixed at 1).
    pub outputscale_prior: Option<Prior>,
    pub noise_prior: Prior,
    pub lengthscale_bounds: (f64, f64),
    pub outputscale_bounds: (f64, f64),
    pub noise_bounds: (f64, f64),
    /// BoTorch's initial values (where its own fit starts).
    pub init_lengthscale: f64,
    pub init_outputscale: f64,
    pub init_noise: f64,
}

/// Smallest inferred noise variance (BoTorch's `MIN_INFERRED_NOISE_LEVEL`).
pub const MIN_NOISE: f64 = 1e-4;

impl Preset {
    pub(crate) fn spec(self, d: usize) -> PresetSpec {
        // Upper bounds are ours (BoTorch has none); they only keep the optimiser away from
        // overflow: a lengthscale of 1e4 on the unit cube is already a constant function.
        match self {
            Preset::RbfDimScaled => {
                let lengthscale_prior = Prior::LogNormal {
                    loc: std::f64::consts::SQRT_2 + 0.5 * (d as f64).ln(),
                    scale: 3f64.sqrt(),
                };
                let noise_prior = Prior::LogNormal {
                    loc: -4.0,
                    scale: 1.0,
                };
                PresetSpec {
                    kind: KernelKind::Rbf,
                    lengthscale_prior,
                    outputscale_prior: None,
                    noise_prior,
                    lengthscale_bounds: (0.025, 1e4),
                    outputscale_bounds: (1.0, 1.0),
                    noise_bounds: (MIN_NOISE, 1e3),
                    init_lengthscale: lengthscale_prior.mode(),
                    init_outputscale: 1.0,
                    init_noise: noise_prior.mode(),
                }
            }
            Preset::MaternGamma => {
                let noise_prior = Prior::Gamma {
                    concentration: 1.1,
                    rate: 0.05,
                };
                PresetSpec {
                    kind: KernelKind::Matern52,
                    lengthscale_prior: Prior::Gamma {
                        concentration: 3.0,
                        rate: 6.0,
                    },
                    outputscale_prior: Some(Prior::Gamma {
                        concentration: 2.0,
                        rate: 0.15,
                    }),
                    noise_prior,
                    lengthscale_bounds: (1e-3, 1e4),
                    outputscale_bounds: (1e-4, 1e4),
                    noise_bounds: (MIN_NOISE, 1e3),
                    // GPyTorch's default raw value 0 through softplus: ln 2.
                    init_lengthscale: std::f64::consts::LN_2,
                    init_outputscale: std::f64::consts::LN_2,
                    init_noise: noise_prior.mode(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn prior_samples_have_the_right_mean() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let g = Prior::Gamma {
            concentration: 3.0,
            rate: 6.0,
        };
        let n = 20_000;
        let mean = (0..n).map(|_| g.sample(&mut rng)).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
        let ln = Prior::LogNormal {
            loc: -1.0,
            scale: 0.5,
        };
        let mean = (0..n).map(|_| ln.sample(&mut rng).ln()).sum::<f64>() / n as f64;
        assert!((mean + 1.0).abs() < 0.02, "{mean}");
        let small = Prior::Gamma {
            concentration: 0.5,
            rate: 1.0,
        };
        let mean = (0..n).map(|_| small.sample(&mut rng)).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
    }

    #[test]
    fn log_pdf_gradient_matches_finite_difference() {
        for p in [
            Prior::Gamma {
                concentration: 1.1,
                rate: 0.05,
            },
            Prior::LogNormal {
                loc: 0.3,
                scale: 1.7,
            },
        ] {
            let u = 0.4;
            let h = 1e-6;
            let fd =
                (p.log_pdf_and_grad_log(u + h).0 - p.log_pdf_and_grad_log(u - h).0) / (2.0 * h);
            assert!((fd - p.log_pdf_and_grad_log(u).1).abs() < 1e-7);
        }
    }
}
