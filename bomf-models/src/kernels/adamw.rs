//! The AdamW update of one parameter, and the squared sum of a gradient, as single parallel
//! passes.
//!
//! Why: written with burn's ops, AdamW is about a dozen single-threaded elementwise passes over
//! every parameter, moments and gradient (a tenth of a MiniLM training step on 2 cores, with one
//! core idle); the gradient-norm's `square` is one more. Here each chunk of the parameter is
//! updated in one pass, on every thread.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};
use rayon::prelude::*;

use super::{CHUNK, back, enabled, flex_values, same_type, with_owned_buffer, zeros};

/// The scalars of one AdamW step (PyTorch's `torch.optim.AdamW`):
/// `θ ← θ·(1 − lr·wd)`, `g ← grad_scale·g`, `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`,
/// `θ ← θ − lr/bias_correction1 · m / (√v / √bias_correction2 + ε)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWStep {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// 0 for the no-decay group.
    pub weight_decay: f64,
    /// Multiplies the gradient first (the clipping coefficient; 1 for none).
    pub grad_scale: f64,
    /// `1 − β1^t`.
    pub bias_correction1: f64,
    /// `1 − β2^t`.
    pub bias_correction2: f64,
}

/// First and second moments of a flattened parameter.
pub type Moments<B> = (Tensor<B, 1>, Tensor<B, 1>);

/// One AdamW update of a flattened parameter `theta` with gradient `grad`; `moments` is `None`
/// on the first step (zeros). Returns the new parameter and moments. One fused parallel pass on
/// `Flex` (f32); burn's ops elsewhere.
pub fn adamw_update<B: Backend>(
    theta: Tensor<B, 1>,
    grad: Tensor<B, 1>,
    moments: Option<Moments<B>>,
    step: &AdamWStep,
) -> (Tensor<B, 1>, Moments<B>) {
    let f32s = theta.dtype() == DType::F32
        && grad.dtype() == DType::F32
        && moments
            .as_ref()
            .is_none_or(|(m, v)| m.dtype() == DType::F32 && v.dtype() == DType::F32);
    let fits = grad.dims() == theta.dims()
        && moments
            .as_ref()
            .is_none_or(|(m, v)| m.dims() == theta.dims() && v.dims() == theta.dims());
    if !enabled() || !f32s || !fits {
        return composed(theta, grad, moments, step);
    }
    match same_type::<_, Tensor<Flex, 1>>(theta) {
        Ok(theta) => {
            let moments = moments.map(|(m, v)| (back(m), back(v)));
            let (theta, (m, v)) = flex_update(theta, back(grad), moments, step);
            (back(theta), (back(m), back(v)))
        }
        Err(theta) => composed(theta, grad, moments, step),
    }
}

fn composed<B: Backend>(
    theta: Tensor<B, 1>,
    grad: Tensor<B, 1>,
    moments: Option<Moments<B>>,
    s: &AdamWStep,
) -> (Tensor<B, 1>, Moments<B>) {
    let g = if s.grad_scale == 1.0 {
        grad
    } else {
        grad.mul_scalar(s.grad_scale)
    };
    let (m, v) = match moments {
        Some((m, v)) => (
            m.mul_scalar(s.beta1) + g.clone().mul_scalar(1.0 - s.beta1),
            v.mul_scalar(s.beta2) + g.square().mul_scalar(1.0 - s.beta2),
        ),
        None => (
            g.clone().mul_scalar(1.0 - s.beta1),
            g.square().mul_scalar(1.0 - s.beta2),
        ),
    };
    let theta = if s.weight_decay > 0.0 {
        theta.mul_scalar(1.0 - s.lr * s.weight_decay)
    } else {
        theta
    };
    let denom = v
        .clone()
        .sqrt()
        .div_scalar(s.bias_correction2.sqrt())
        .add_scalar(s.eps);
    let theta = theta - m.clone().div(denom).mul_scalar(s.lr / s.bias_correction1);
    (theta, (m, v))
}

fn flex_update(
    theta: Tensor<Flex, 1>,
    grad: Tensor<Flex, 1>,
    moments: Option<Moments<Flex>>,
    step: &AdamWStep,
) -> (Tensor<Flex, 1>, Moments<Flex>) {
    let primitive = |t: Tensor<Flex, 1>| t.into_primitive().tensor();
    let n = theta.dims()[0];
    let grad = primitive(grad).to_contiguous();
    let gs = grad.as_slice::<f32>().expect("contiguous f32");
    let (m, v) = match moments {
        Some((m, v)) => (primitive(m), primitive(v)),
        None => {
            let zeros = || FlexTensor::from_data(TensorData::new(zeros(n), [n]));
            (zeros(), zeros())
        }
    };
    let scalars = UpdateScalars::new(step);
    // Three buffers updated in place: each `with_owned_buffer` hands over its own values (or a
    // copy when shared), nested so that one parallel pass sees all three.
    let mut v_out = None;
    let mut theta_out = None;
    let m = with_owned_buffer(m, |ms| {
        let v = with_owned_buffer(v, |vs| {
            let theta = with_owned_buffer(primitive(theta), |ts| {
                ts.par_chunks_mut(CHUNK)
                    .zip(ms.par_chunks_mut(CHUNK))
                    .zip(vs.par_chunks_mut(CHUNK))
                    .zip(gs.par_chunks(CHUNK))
                    .for_each(|(((theta, m), v), g)| {
                        pulp::Arch::new().dispatch(UpdateChunk {
                            theta,
                            m,
                            v,
                            g,
                            s: scalars,
                        })
                    })
            });
            theta_out = Some(theta);
        });
        v_out = Some(v);
    });
    let wrap = |t: FlexTensor| Tensor::<Flex, 1>::from_primitive(TensorPrimitive::Float(t));
    let (theta, v) = (
        theta_out.expect("the update ran"),
        v_out.expect("the update ran"),
    );
    (wrap(theta), (wrap(m), wrap(v)))
}

/// [`AdamWStep`]'s scalars, in `f32` as the update uses them.
#[derive(Clone, Copy)]
struct UpdateScalars {
    grad_scale: f32,
    beta1: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    decay_factor: f32,
    inv_sqrt_bias2: f32,
    eps: f32,
    step_size: f32,
}

impl UpdateScalars {
    fn new(s: &AdamWStep) -> Self {
        Self {
            grad_scale: s.grad_scale as f32,
            beta1: s.beta1 as f32,
            one_minus_beta1: (1.0 - s.beta1) as f32,
            beta2: s.beta2 as f32,
            one_minus_beta2: (1.0 - s.beta2) as f32,
            decay_factor: (1.0 - s.lr * s.weight_decay) as f32,
            inv_sqrt_bias2: (1.0 / s.bias_correction2.sqrt()) as f32,
            eps: s.eps as f32,
            step_size: (s.lr / s.bias_correction1) as f32,
        }
    }
}

struct UpdateChunk<'a> {
    theta: &'a mut [f32],
    m: &'a mut [f32],
    v: &'a mut [f32],
    g: &'a [f32],
    s: UpdateScalars,
}

impl pulp::WithSimd for UpdateChunk<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let s = self.s;
        for (((theta, m), v), &g) in self
            .theta
            .iter_mut()
            .zip(self.m.iter_mut())
            .zip(self.v.iter_mut())
            .zip(self.g)
        {
            let g = g * s.grad_scale;
            *m = s.beta1 * *m + s.one_minus_beta1 * g;
            *v = s.beta2 * *v + s.one_minus_beta2 * (g * g);
            let denom = v.sqrt() * s.inv_sqrt_bias2 + s.eps;
            *theta = *theta * s.decay_factor - s.step_size * (*m / denom);
        }
    }
}

/// `Σ x²` over every element, as a one-element tensor (no read-back, so a GPU is not made to
/// wait per parameter). Parallel partial sums on `Flex` (f32, accumulated in f64); burn's
/// `square().sum()` elsewhere.
pub fn squared_sum<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, 1> {
    if !enabled() || x.dtype() != DType::F32 {
        return x.square().sum();
    }
    match same_type::<_, Tensor<Flex, D>>(x) {
        Ok(x) => {
            let values = x.into_primitive().tensor().to_contiguous();
            let xs = values.as_slice::<f32>().expect("contiguous f32");
            let total: f64 = xs
                .par_chunks(CHUNK)
                .map(|chunk| pulp::Arch::new().dispatch(SquaredSum { xs: chunk }))
                .sum();
            flex_values(vec![total as f32], [1])
        }
        Err(x) => x.square().sum(),
    }
}

struct SquaredSum<'a> {
    xs: &'a [f32],
}

impl pulp::WithSimd for SquaredSum<'_> {
    type Output = f64;
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> f64 {
        // f32 lanes within a chunk (vectorised), f64 across chunks.
        let mut lanes = [0.0f32; 16];
        let mut blocks = self.xs.chunks_exact(16);
        for block in &mut blocks {
            for (acc, &x) in lanes.iter_mut().zip(block) {
                *acc += x * x;
            }
        }
        let tail: f32 = blocks.remainder().iter().map(|&x| x * x).sum();
        lanes.iter().map(|&l| l as f64).sum::<f64>() + tail as f64
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Tolerance;

    use super::*;
    use crate::CpuBackend;
    use crate::kernels::test_values::sawtooth;

    fn values(n: usize, salt: usize) -> Vec<f32> {
        sawtooth(n, salt, [29, 17, 37], 11.0)
    }

    #[test]
    fn fused_adamw_matches_the_composed_update_over_several_steps() {
        let device = Default::default();
        // More than one chunk, and not a multiple of it.
        let n = CHUNK * 2 + 77;
        let tensor = |salt| {
            Tensor::<CpuBackend, 1>::from_data(TensorData::new(values(n, salt), [n]), &device)
        };
        let (mut fused, mut reference) = ((tensor(1), None), (tensor(1), None));
        for t in 1..=3 {
            let step = AdamWStep {
                lr: 1e-2,
                beta1: 0.9,
                beta2: 0.98,
                eps: 1e-6,
                weight_decay: if t == 2 { 0.0 } else { 0.1 },
                grad_scale: if t == 3 { 0.5 } else { 1.0 },
                bias_correction1: 1.0 - 0.9f64.powi(t),
                bias_correction2: 1.0 - 0.98f64.powi(t),
            };
            let grad = tensor(t as usize + 1);
            let (theta, moments) = adamw_update(fused.0, grad.clone(), fused.1, &step);
            fused = (theta, Some(moments));
            let (theta, moments) = composed(reference.0, grad, reference.1, &step);
            reference = (theta, Some(moments));
        }
        let (Some((m, v)), Some((m_ref, v_ref))) = (fused.1, reference.1) else {
            unreachable!("three steps ran")
        };
        let tolerance = Tolerance::absolute(1e-6);
        for (ours, theirs) in [(fused.0, reference.0), (m, m_ref), (v, v_ref)] {
            ours.into_data()
                .assert_approx_eq::<f32>(&theirs.into_data(), tolerance);
        }
    }

    #[test]
    fn squared_sum_matches_burn() {
        let device = Default::default();
        let n = CHUNK + 5;
        let x =
            Tensor::<CpuBackend, 2>::from_data(TensorData::new(values(n * 2, 3), [2, n]), &device);
        let ours = squared_sum(x.clone()).into_scalar();
        let theirs = x.square().sum().into_scalar();
        assert!((ours - theirs).abs() <= 1e-4 * theirs, "{ours} vs {theirs}");
    }
}
