//! Scalar math and elementwise loops written to vectorise.
//!
//! The kernels implement `pulp::WithSimd`: pulp calls `with_simd` inside a function compiled for
//! the CPU's best instruction set (AVX2 or AVX-512), and `#[inline(always)]` pulls the loop body
//! in there, where the compiler vectorises it. (A closure passed to `dispatch` may stay out of
//! line and then runs as baseline SSE2.) The scalar functions here are branch-free so that such
//! loops over them vectorise.

/// `dst += src`, elementwise.
pub(super) struct AddInto<'a> {
    pub(super) dst: &'a mut [f32],
    pub(super) src: &'a [f32],
}

impl pulp::WithSimd for AddInto<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        for (d, &s) in self.dst.iter_mut().zip(self.src) {
            *d += s;
        }
    }
}

/// `e^x` for `f32`, branch-free so loops over it vectorise: `x = n·ln 2 + r`, a degree-6 Taylor
/// polynomial on |r| ≤ ln 2 / 2 (relative error ≈ 1e-7), and `2^n` built from the exponent bits.
/// Inputs are clamped to [-87.3, 88] (`e^-87.3` ≈ 1e-38 stands in for 0); the kernels only ever
/// take it of non-positive numbers.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so that `n · LN2_HI` is exact for the n that occur.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding 1.5·2²³ rounds to an integer that then sits in the low mantissa bits: the rounding
    // and the float-to-int conversion without Rust's saturating `as` (which does not vectorise).
    const ROUNDER: f32 = 12_582_912.0;
    const ROUNDER_BITS: u32 = 0x4B40_0000;
    let x = x.clamp(-87.3, 88.0);
    let shifted = x * LOG2_E + ROUNDER;
    let n = shifted - ROUNDER;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let biased_exponent = shifted
        .to_bits()
        .wrapping_sub(ROUNDER_BITS)
        .wrapping_add(127);
    p * f32::from_bits(biased_exponent << 23)
}

/// `erf(x)` by Abramowitz & Stegun 7.1.26 (absolute error ≤ 1.5e-7, ≤ 5e-7 in f32), branch-free.
#[inline(always)]
pub(crate) fn erf_f32(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A1: f32 = 0.254_829_6;
    const A2: f32 = -0.284_496_74;
    const A3: f32 = 1.421_413_8;
    const A4: f32 = -1.453_152_1;
    const A5: f32 = 1.061_405_4;
    let a = x.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = t * (A1 + t * (A2 + t * (A3 + t * (A4 + t * A5))));
    let y = 1.0 - poly * exp_f32(-a * a);
    y.copysign(x)
}

/// `x · Φ(x)` with Φ the standard normal CDF.
#[inline(always)]
pub(crate) fn gelu_f32(x: f32) -> f32 {
    0.5 * x * (1.0 + erf_f32(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `d/dx [x · Φ(x)] = Φ(x) + x · φ(x)`.
#[inline(always)]
pub(crate) fn gelu_grad_f32(x: f32) -> f32 {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    let cdf = 0.5 * (1.0 + erf_f32(x * std::f32::consts::FRAC_1_SQRT_2));
    cdf + x * INV_SQRT_2PI * exp_f32(-0.5 * x * x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_erf_match_the_standard_library() {
        let mut worst_exp = 0.0f64;
        let mut worst_erf = 0.0f64;
        for i in -40_000..=40_000 {
            let x = i as f32 / 1000.0; // [-40, 40]
            let exact = (x as f64).exp();
            worst_exp = worst_exp.max(((exp_f32(x) as f64) - exact).abs() / exact);
            let exact_erf = libm::erf(x as f64);
            worst_erf = worst_erf.max(((erf_f32(x) as f64) - exact_erf).abs());
        }
        assert!(worst_exp < 3e-7, "exp relative error {worst_exp}");
        // The formula's 1.5e-7 plus f32 rounding of its terms.
        assert!(worst_erf < 6e-7, "erf absolute error {worst_erf}");
    }
}
