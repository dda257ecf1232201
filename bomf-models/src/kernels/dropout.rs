//! Dropout on `Autodiff<Flex>` with a counter-based mask: drawn in parallel, recomputed (not
//! stored) for the backward pass.

use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::nn::Dropout;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Distribution, Tensor};
use rayon::prelude::*;

use super::{CHUNK, back, enabled, same_type, unary_op, with_owned_buffer};

/// Dropout exactly as burn's [`Dropout::forward`] defines it (active only when autodiff is on:
/// zero with probability `p`, scale the rest by `1 / (1 - p)`), with the mask drawn by a
/// counter-based hash in parallel instead of one ChaCha draw per element, applied in one
/// parallel pass, and recomputed (not stored) for the backward pass. The hash's seed comes from
/// the backend's seeded RNG, so `Backend::seed` still makes training reproducible.
pub(crate) fn dropout<B: Backend, const D: usize>(
    module: &Dropout,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    if !enabled() || module.prob == 0.0 || x.dtype() != DType::F32 || !B::ad_enabled(&x.device()) {
        return module.forward(x);
    }
    match same_type::<_, Tensor<Autodiff<Flex>, D>>(x) {
        Ok(x) => back(autodiff_dropout(module.prob, x)),
        Err(x) => module.forward(x),
    }
}

/// Dropout on `Autodiff<Flex>`: the backward pass recomputes the mask from its parameters
/// instead of storing it.
fn autodiff_dropout<const D: usize>(
    prob: f64,
    x: Tensor<Autodiff<Flex>, D>,
) -> Tensor<Autodiff<Flex>, D> {
    let params = DropoutParams::new(prob, draw_seed());
    unary_op(
        x,
        |_| params,
        |x| apply_dropout(x, params),
        |params, grad| apply_dropout(grad, params),
    )
}

/// `values · mask` in parallel, the mask element `i` being [`DropoutParams::scale_at`]`(i)`.
fn apply_dropout(t: FlexTensor, params: DropoutParams) -> FlexTensor {
    with_owned_buffer(t, |values| {
        values
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(chunk, values)| {
                pulp::Arch::new().dispatch(DropoutMask {
                    values,
                    first_index: chunk * CHUNK,
                    params,
                    multiply: true,
                })
            })
    })
}

/// 48 random bits from the backend's (seedable) RNG. In this crate's unit tests, the seed that
/// [`test_seed::with`] set on the calling thread comes first: the backend's RNG is one per
/// process and the tests run on parallel threads, so a test that seeds it cannot count on its
/// next draw being its own.
pub(super) fn draw_seed() -> u64 {
    #[cfg(test)]
    if let Some(seed) = test_seed::get() {
        return seed;
    }
    let draws = Tensor::<Flex, 1>::random(
        [2],
        Distribution::Uniform(0.0, 16_777_216.0),
        &Default::default(),
    )
    .into_data()
    .to_vec::<f32>()
    .unwrap_or_default();
    draws
        .iter()
        .fold(0u64, |bits, &draw| (bits << 24) | (draw as u64 & 0xFF_FFFF))
}

/// SplitMix64's output function: a good 64-bit hash of a counter, and branch-free, so a loop of
/// it vectorises (the stream `hash(seed + i·γ)` is SplitMix64 itself).
#[inline(always)]
fn splitmix64(x: u64) -> u64 {
    let x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Writes the dropout mask of elements `first_index..` into `values`, or with `multiply`
/// scales `values` by it.
struct DropoutMask<'a> {
    values: &'a mut [f32],
    first_index: usize,
    params: DropoutParams,
    multiply: bool,
}

impl pulp::WithSimd for DropoutMask<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let first = self.first_index as u64;
        if self.multiply {
            for (i, value) in self.values.iter_mut().enumerate() {
                *value *= self.params.scale_at(first + i as u64);
            }
        } else {
            for (i, value) in self.values.iter_mut().enumerate() {
                *value = self.params.scale_at(first + i as u64);
            }
        }
    }
}

/// A dropout mask as a function of the element index: a counter-based hash, so the mask is
/// drawn in parallel and the backward pass recomputes it instead of storing it.
#[derive(Clone, Copy, Debug)]
pub(super) struct DropoutParams {
    seed: u64,
    /// Drop when the hash's top 32 bits fall below `p · 2³²`.
    threshold: u64,
    scale: f32,
}

impl DropoutParams {
    pub(super) fn new(prob: f64, seed: u64) -> Self {
        Self {
            seed,
            threshold: (prob * 4_294_967_296.0) as u64,
            scale: (1.0 / (1.0 - prob)) as f32,
        }
    }

    /// The mask value (0 or `1/(1-p)`) of element `index`.
    #[inline(always)]
    fn scale_at(&self, index: u64) -> f32 {
        const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
        let counter = index + 1;
        let bits = splitmix64(self.seed.wrapping_add(counter.wrapping_mul(GAMMA))) >> 32;
        if bits >= self.threshold {
            self.scale
        } else {
            0.0
        }
    }

    /// The mask of the `values.len()` elements from `first_index` on.
    pub(super) fn fill(&self, values: &mut [f32], first_index: usize) {
        pulp::Arch::new().dispatch(DropoutMask {
            values,
            first_index,
            params: *self,
            multiply: false,
        });
    }
}

/// A per-thread mask seed for unit tests (see [`draw_seed`]).
#[cfg(test)]
pub(super) mod test_seed {
    use std::cell::Cell;

    thread_local! {
        static SEED: Cell<Option<u64>> = const { Cell::new(None) };
    }

    pub fn get() -> Option<u64> {
        SEED.with(Cell::get)
    }

    /// Runs `f` with [`super::draw_seed`] returning `seed` on this thread.
    pub fn with<R>(seed: u64, f: impl FnOnce() -> R) -> R {
        SEED.with(|s| s.set(Some(seed)));
        let result = f();
        SEED.with(|s| s.set(None));
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CpuAutodiffBackend, CpuBackend};

    #[test]
    fn dropout_drops_about_p_scales_the_rest_and_is_reproducible() {
        use burn::nn::DropoutConfig;
        let device = Default::default();
        let module = DropoutConfig::new(0.25).init();
        let run = |seed: u64| {
            let x = Tensor::<CpuAutodiffBackend, 2>::ones([300, 700], &device).require_grad();
            let y = test_seed::with(seed, || dropout(&module, x.clone()));
            let grads = (y.clone() * 3.0).sum().backward();
            let values = y.into_data().to_vec::<f32>().unwrap();
            let grad = x.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
            (values, grad)
        };
        let (values, grad) = run(7);
        let dropped = values.iter().filter(|&&v| v == 0.0).count() as f64 / values.len() as f64;
        assert!((dropped - 0.25).abs() < 0.005, "dropped fraction {dropped}");
        assert!(
            values
                .iter()
                .all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6)
        );
        // The gradient flows through the kept entries only, with the same scale.
        for (&v, &g) in values.iter().zip(&grad) {
            assert!((g - 3.0 * v).abs() < 1e-5);
        }
        assert_eq!(run(7).0, values, "same seed, same mask");
        assert_ne!(run(8).0, values, "another seed, another mask");
        // Without autodiff (inference), dropout is the identity.
        let x = Tensor::<CpuBackend, 2>::ones([3, 4], &device);
        assert_eq!(
            dropout(&module, x).into_data().to_vec::<f32>().unwrap(),
            vec![1.0; 12]
        );
    }
}
