//! Exact (erf) GELU on `Flex` and `Autodiff<Flex>`, with its backward pass.

use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorPrimitive, activation};
use rayon::prelude::*;

use super::simd::{gelu_f32, gelu_grad_f32};
use super::{CHUNK, back, enabled, same_type, unary_op, with_owned_buffer};

/// Exact (erf-based) GELU, as `torch.nn.functional.gelu` and HF's `"gelu"`.
pub(crate) fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    if x.dtype() != DType::F32 || !enabled() {
        return activation::gelu(x);
    }
    let x = match same_type::<_, Tensor<Flex, D>>(x) {
        Ok(x) => return back(flex_gelu(x)),
        Err(x) => x,
    };
    match same_type::<_, Tensor<Autodiff<Flex>, D>>(x) {
        Ok(x) => back(autodiff_gelu(x)),
        Err(x) => activation::gelu(x),
    }
}

fn flex_gelu<const D: usize>(x: Tensor<Flex, D>) -> Tensor<Flex, D> {
    let out = gelu_values(x.into_primitive().tensor());
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// GELU of every value, in the tensor's own buffer when it is not shared.
pub(super) fn gelu_values(x: FlexTensor) -> FlexTensor {
    with_owned_buffer(x, |xs| {
        xs.par_chunks_mut(CHUNK)
            .for_each(|xs| pulp::Arch::new().dispatch(Gelu { xs }))
    })
}

/// GELU on `Autodiff<Flex>`: the forward as [`flex_gelu`], keeping the input for the backward
/// pass (so the output gets its own buffer), the backward `grad · gelu'(x)` in one pass over the
/// gradient buffer.
fn autodiff_gelu<const D: usize>(x: Tensor<Autodiff<Flex>, D>) -> Tensor<Autodiff<Flex>, D> {
    unary_op(x, FlexTensor::clone, gelu_values, gelu_backward)
}

/// `grad · gelu'(x)`, written into the gradient's buffer when it owns it.
pub(super) fn gelu_backward(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
    let x = x.to_contiguous();
    let xs = x.as_slice::<f32>().expect("contiguous f32");
    with_owned_buffer(grad, |gs| {
        gs.par_chunks_mut(CHUNK)
            .zip(xs.par_chunks(CHUNK))
            .for_each(|(gs, xs)| pulp::Arch::new().dispatch(GeluGrad { gs, xs }))
    })
}

struct Gelu<'a> {
    xs: &'a mut [f32],
}

impl pulp::WithSimd for Gelu<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        self.xs.iter_mut().for_each(|v| *v = gelu_f32(*v));
    }
}

struct GeluGrad<'a> {
    gs: &'a mut [f32],
    xs: &'a [f32],
}

impl pulp::WithSimd for GeluGrad<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        for (g, &v) in self.gs.iter_mut().zip(self.xs) {
            *g *= gelu_grad_f32(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CpuAutodiffBackend, CpuBackend};
    use burn::tensor::TensorData;

    #[test]
    fn gelu_and_its_gradient_match_burn_on_both_cpu_backends() {
        let device = Default::default();
        let values: Vec<f32> = (0..5000).map(|i| (i as f32 - 2500.0) / 300.0).collect();
        let data = TensorData::new(values.clone(), [50, 100]);

        let fast = gelu(Tensor::<CpuBackend, 2>::from_data(data.clone(), &device));
        let reference = activation::gelu(Tensor::<CpuBackend, 2>::from_data(data.clone(), &device));
        fast.into_data().assert_approx_eq::<f32>(
            &reference.into_data(),
            burn::tensor::Tolerance::absolute(1e-6),
        );

        let x = Tensor::<CpuAutodiffBackend, 2>::from_data(data.clone(), &device).require_grad();
        let weights = Tensor::<CpuAutodiffBackend, 2>::from_data(
            TensorData::new((0..5000).map(|i| (i % 7) as f32 - 3.0).collect(), [50, 100]),
            &device,
        );
        let grads = (gelu(x.clone()) * weights.clone()).sum().backward();
        let fast_grad = x.grad(&grads).expect("x requires grad");

        let x_ref = Tensor::<CpuAutodiffBackend, 2>::from_data(data, &device).require_grad();
        let grads_ref = (activation::gelu(x_ref.clone()) * weights).sum().backward();
        let ref_grad = x_ref.grad(&grads_ref).expect("x requires grad");
        fast_grad.into_data().assert_approx_eq::<f32>(
            &ref_grad.into_data(),
            burn::tensor::Tolerance::absolute(1e-5),
        );
    }
}
