//! `LayerNorm(x + residual)` as one op, forward and backward.
//!
//! Why: burn's `Flex` has a parallel LayerNorm forward, but the residual add before it is a
//! single-threaded pass, and under autodiff LayerNorm is composed of about ten single-threaded
//! elementwise ops in each direction (mean, centre, square, mean, sqrt, divide, scale, shift, and
//! their gradients). Here each block of rows is added, normalised, scaled and shifted in one
//! parallel pass; the backward pass is the closed form
//! `dx = rstd · (ĝ − mean(ĝ) − x̂ · mean(ĝ · x̂))` with `ĝ = g · γ`, plus column sums for γ and β.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::nn::LayerNorm;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Shape, Tensor, TensorData, TensorPrimitive};
use rayon::prelude::*;

use super::simd::AddInto;
use super::{BackwardFn, back, enabled, finish_op, same_type, zeros};

/// Rows per parallel work item.
const ROWS_PER_TASK: usize = 32;

/// `norm(x + residual)` (or `norm(x)`), normalising the last dimension with `norm`'s γ and β
/// and `epsilon` (burn keeps its own private, so the caller passes the configured value).
/// The fused op on `Flex` (with a residual) and on `Autodiff<Flex>`; burn's ops everywhere else.
pub(crate) fn layer_norm<B: Backend, const D: usize>(
    norm: &LayerNorm<B>,
    epsilon: f64,
    x: Tensor<B, D>,
    residual: Option<Tensor<B, D>>,
) -> Tensor<B, D> {
    let composed = |x: Tensor<B, D>, residual: Option<Tensor<B, D>>| match residual {
        Some(r) => norm.forward(x + r),
        None => norm.forward(x),
    };
    let Some(beta) = &norm.beta else {
        return composed(x, residual);
    };
    let gamma = norm.gamma.val();
    let width = x.dims()[D - 1];
    let f32s = x.dtype() == DType::F32
        && gamma.dtype() == DType::F32
        && beta.dtype() == DType::F32
        && residual.as_ref().is_none_or(|r| r.dtype() == DType::F32);
    let fits = width > 0
        && gamma.dims() == [width]
        && beta.dims() == [width]
        && residual.as_ref().is_none_or(|r| r.dims() == x.dims());
    if !enabled() || !f32s || !fits {
        return composed(x, residual);
    }
    let x = match same_type::<_, Tensor<Flex, D>>(x) {
        // Without a residual, burn's own kernel (parallel already) is the same computation.
        Ok(x) => match residual {
            None => return composed(back(x), None),
            Some(r) => {
                let (gamma, beta) = (back(gamma), back(beta.val()));
                return back(norm_flex(x, back(r), gamma, beta, epsilon));
            }
        },
        Err(x) => x,
    };
    match same_type::<_, Tensor<Autodiff<Flex>, D>>(x) {
        Ok(x) => back(norm_autodiff(
            x,
            residual.map(back),
            back(gamma),
            back(beta.val()),
            epsilon,
        )),
        Err(x) => composed(x, residual),
    }
}

fn norm_flex<const D: usize>(
    x: Tensor<Flex, D>,
    residual: Tensor<Flex, D>,
    gamma: Tensor<Flex, 1>,
    beta: Tensor<Flex, 1>,
    epsilon: f64,
) -> Tensor<Flex, D> {
    let shape = x.shape();
    let normalised = normalise(
        &x.into_primitive().tensor(),
        Some(&residual.into_primitive().tensor()),
        &gamma.into_primitive().tensor(),
        &beta.into_primitive().tensor(),
        epsilon as f32,
    );
    let out = FlexTensor::from_data(TensorData::new(normalised.out, shape));
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// The forward pass's results: the output, and what the backward pass needs.
struct Normalised {
    out: Vec<f32>,
    /// `(x + residual − mean) · rstd`, per element.
    x_hat: Vec<f32>,
    /// `1 / sqrt(var + ε)`, per row.
    rstd: Vec<f32>,
}

fn normalise(
    x: &FlexTensor,
    residual: Option<&FlexTensor>,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    epsilon: f32,
) -> Normalised {
    let x = x.to_contiguous();
    let residual = residual.map(FlexTensor::to_contiguous);
    let (gamma, beta) = (gamma.to_contiguous(), beta.to_contiguous());
    let xs = x.as_slice::<f32>().expect("contiguous f32");
    let rs = residual
        .as_ref()
        .map(|r| r.as_slice::<f32>().expect("contiguous f32"));
    let gs = gamma.as_slice::<f32>().expect("contiguous f32");
    let bs = beta.as_slice::<f32>().expect("contiguous f32");
    let width = gs.len();
    let rows = xs.len() / width;
    let block = width * ROWS_PER_TASK;
    let mut out = zeros(xs.len());
    let mut x_hat = zeros(xs.len());
    let mut rstd = vec![0.0f32; rows];
    out.par_chunks_mut(block)
        .zip(x_hat.par_chunks_mut(block))
        .zip(rstd.par_chunks_mut(ROWS_PER_TASK))
        .enumerate()
        .for_each(|(i, ((out, x_hat), rstd))| {
            let span = i * block..(i * block + out.len());
            pulp::Arch::new().dispatch(NormaliseRows {
                x: &xs[span.clone()],
                residual: rs.map(|r| &r[span]),
                gamma: gs,
                beta: bs,
                epsilon,
                out,
                x_hat,
                rstd,
            })
        });
    Normalised { out, x_hat, rstd }
}

struct NormaliseRows<'a> {
    x: &'a [f32],
    residual: Option<&'a [f32]>,
    gamma: &'a [f32],
    beta: &'a [f32],
    epsilon: f32,
    out: &'a mut [f32],
    x_hat: &'a mut [f32],
    rstd: &'a mut [f32],
}

impl pulp::WithSimd for NormaliseRows<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let width = self.gamma.len();
        let rows = self.x.chunks_exact(width);
        let outs = self.out.chunks_exact_mut(width);
        let hats = self.x_hat.chunks_exact_mut(width);
        for (r, ((x, out), x_hat)) in rows.zip(outs).zip(hats).enumerate() {
            // The sum x + residual lands in `x_hat` first, then is normalised in place.
            match self.residual {
                Some(res) => {
                    let res = &res[r * width..(r + 1) * width];
                    for ((h, &a), &b) in x_hat.iter_mut().zip(x).zip(res) {
                        *h = a + b;
                    }
                }
                None => x_hat.copy_from_slice(x),
            }
            let mean = x_hat.iter().sum::<f32>() / width as f32;
            let var = x_hat.iter().map(|&v| (v - mean) * (v - mean)).sum::<f32>() / width as f32;
            let rstd = 1.0 / (var + self.epsilon).sqrt();
            self.rstd[r] = rstd;
            for (((o, h), &g), &b) in out
                .iter_mut()
                .zip(x_hat.iter_mut())
                .zip(self.gamma)
                .zip(self.beta)
            {
                *h = (*h - mean) * rstd;
                *o = *h * g + b;
            }
        }
    }
}

/// The backward state: `x̂`, the per-row `rstd`, γ, and the input's shape for the gradients.
#[derive(Clone, Debug)]
struct NormState {
    x_hat: Arc<Vec<f32>>,
    rstd: Arc<Vec<f32>>,
    gamma: FlexTensor,
    shape: Shape,
}

/// The backward pass of [`norm_autodiff`]: parents `[x, γ, β]`, or `[x, γ, β, residual]`
/// (whose gradient equals x's).
fn norm_backward<const N: usize>(ops: Ops<NormState, N>, grads: &mut Gradients) {
    let state = ops.state;
    let grad = grads.consume::<Flex>(&ops.node).to_contiguous();
    let gs = grad.as_slice::<f32>().expect("contiguous f32");
    let gamma = state.gamma.to_contiguous();
    let gamma = gamma.as_slice::<f32>().expect("contiguous f32");
    let width = gamma.len();
    let block = width * ROWS_PER_TASK;
    let mut dx = zeros(gs.len());
    let (d_gamma, d_beta) = dx
        .par_chunks_mut(block)
        .zip(gs.par_chunks(block))
        .zip(state.x_hat.par_chunks(block))
        .zip(state.rstd.par_chunks(ROWS_PER_TASK))
        .map(|(((dx, grad), x_hat), rstd)| {
            let mut sums = (vec![0.0f32; width], vec![0.0f32; width]);
            pulp::Arch::new().dispatch(NormGradRows {
                grad,
                x_hat,
                rstd,
                gamma,
                dx,
                d_gamma: &mut sums.0,
                d_beta: &mut sums.1,
            });
            sums
        })
        .reduce(
            || (vec![0.0f32; width], vec![0.0f32; width]),
            |mut a, b| {
                pulp::Arch::new().dispatch(AddInto {
                    dst: &mut a.0,
                    src: &b.0,
                });
                pulp::Arch::new().dispatch(AddInto {
                    dst: &mut a.1,
                    src: &b.1,
                });
                a
            },
        );
    let dx = FlexTensor::from_data(TensorData::new(dx, state.shape));
    let vector = |v: Vec<f32>| FlexTensor::from_data(TensorData::new(v, [width]));
    let mut parents = ops.parents.into_iter();
    let (x_node, gamma_node, beta_node, residual_node) = (
        parents.next().flatten(),
        parents.next().flatten(),
        parents.next().flatten(),
        parents.next().flatten(),
    );
    if let Some(node) = gamma_node {
        grads.register::<Flex>(node.id, vector(d_gamma));
    }
    if let Some(node) = beta_node {
        grads.register::<Flex>(node.id, vector(d_beta));
    }
    if let Some(node) = residual_node {
        grads.register::<Flex>(node.id, dx.clone());
    }
    if let Some(node) = x_node {
        grads.register::<Flex>(node.id, dx);
    }
}

struct NormGradRows<'a> {
    grad: &'a [f32],
    x_hat: &'a [f32],
    rstd: &'a [f32],
    gamma: &'a [f32],
    dx: &'a mut [f32],
    d_gamma: &'a mut [f32],
    d_beta: &'a mut [f32],
}

impl pulp::WithSimd for NormGradRows<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let width = self.gamma.len();
        let rows = self
            .grad
            .chunks_exact(width)
            .zip(self.x_hat.chunks_exact(width))
            .zip(self.dx.chunks_exact_mut(width));
        for (((grad, x_hat), dx), &rstd) in rows.zip(self.rstd) {
            let (mut mean_g, mut mean_gx) = (0.0f32, 0.0f32);
            for (((&g, &h), &gamma), dx) in
                grad.iter().zip(x_hat).zip(self.gamma).zip(dx.iter_mut())
            {
                let g_hat = g * gamma;
                *dx = g_hat;
                mean_g += g_hat;
                mean_gx += g_hat * h;
            }
            mean_g /= width as f32;
            mean_gx /= width as f32;
            for (dx, &h) in dx.iter_mut().zip(x_hat) {
                *dx = rstd * (*dx - mean_g - h * mean_gx);
            }
            for (((dg, db), &g), &h) in self
                .d_gamma
                .iter_mut()
                .zip(self.d_beta.iter_mut())
                .zip(grad)
                .zip(x_hat)
            {
                *dg += g * h;
                *db += g;
            }
        }
    }
}

fn norm_autodiff<const D: usize>(
    x: Tensor<Autodiff<Flex>, D>,
    residual: Option<Tensor<Autodiff<Flex>, D>>,
    gamma: Tensor<Autodiff<Flex>, 1>,
    beta: Tensor<Autodiff<Flex>, 1>,
    epsilon: f64,
) -> Tensor<Autodiff<Flex>, D> {
    let shape = x.shape();
    let x = x.into_primitive().tensor();
    let residual = residual.map(|r| r.into_primitive().tensor());
    let (gamma, beta) = (
        gamma.into_primitive().tensor(),
        beta.into_primitive().tensor(),
    );
    let Normalised { out, x_hat, rstd } = normalise(
        &x.primitive,
        residual.as_ref().map(|r| &r.primitive),
        &gamma.primitive,
        &beta.primitive,
        epsilon as f32,
    );
    let out = FlexTensor::from_data(TensorData::new(out, shape.clone()));
    let state = NormState {
        x_hat: Arc::new(x_hat),
        rstd: Arc::new(rstd),
        gamma: gamma.primitive,
        shape,
    };
    // Two arms because the parent count is part of the op's type.
    match residual {
        Some(r) => {
            let kind = BackwardFn(norm_backward::<4>)
                .prepare::<NoCheckpointing>([x.node, gamma.node, beta.node, r.node])
                .compute_bound()
                .stateful();
            finish_op(kind, out, |out| (state, out), |out| out)
        }
        None => {
            let kind = BackwardFn(norm_backward::<3>)
                .prepare::<NoCheckpointing>([x.node, gamma.node, beta.node])
                .compute_bound()
                .stateful();
            finish_op(kind, out, |out| (state, out), |out| out)
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Param;
    use burn::nn::LayerNormConfig;
    use burn::tensor::Tolerance;

    use super::*;
    use crate::kernels::test_values::sawtooth;
    use crate::{CpuAutodiffBackend, CpuBackend};

    fn values(n: usize, salt: usize) -> Vec<f32> {
        sawtooth(n, salt, [41, 13, 31], 7.0)
    }

    fn norm<B: Backend>(width: usize, device: &B::Device) -> LayerNorm<B> {
        let mut norm = LayerNormConfig::new(width)
            .with_epsilon(1e-5)
            .init::<B>(device);
        norm.gamma = Param::from_tensor(Tensor::from_data(
            TensorData::new(values(width, 5), [width]),
            device,
        ));
        norm.beta = Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(values(width, 6), [width]),
            device,
        )));
        norm
    }

    #[test]
    fn fused_layer_norm_matches_burn_forward_and_backward() {
        let device = Default::default();
        // 2·35 rows: more than one block of `ROWS_PER_TASK`, and not a multiple of it.
        let (batch, seq, width) = (2, 35, 24);
        let data = |salt| TensorData::new(values(batch * seq * width, salt), [batch, seq, width]);
        for with_residual in [true, false] {
            let flex = norm::<CpuBackend>(width, &device);
            let x = Tensor::<CpuBackend, 3>::from_data(data(1), &device);
            let r = Tensor::<CpuBackend, 3>::from_data(data(2), &device);
            let (ours, theirs) = if with_residual {
                (
                    layer_norm(&flex, 1e-5, x.clone(), Some(r.clone())),
                    flex.forward(x + r),
                )
            } else {
                (layer_norm(&flex, 1e-5, x.clone(), None), flex.forward(x))
            };
            ours.into_data()
                .assert_approx_eq::<f32>(&theirs.into_data(), Tolerance::absolute(1e-5));

            type AB = CpuAutodiffBackend;
            let upstream = Tensor::<AB, 3>::from_data(data(3), &device);
            let run = |fused: bool| {
                let norm = norm::<AB>(width, &device);
                let x = Tensor::<AB, 3>::from_data(data(1), &device).require_grad();
                let r = Tensor::<AB, 3>::from_data(data(2), &device).require_grad();
                let y = match (fused, with_residual) {
                    (true, true) => layer_norm(&norm, 1e-5, x.clone(), Some(r.clone())),
                    (true, false) => layer_norm(&norm, 1e-5, x.clone(), None),
                    (false, true) => norm.forward(x.clone() + r.clone()),
                    (false, false) => norm.forward(x.clone()),
                };
                let grads = (y.clone() * upstream.clone()).sum().backward();
                let vector = |t: Tensor<AB, 1>| t.grad(&grads).expect("tracked").into_data();
                let beta = norm.beta.as_ref().expect("beta").val();
                let mut out = vec![
                    y.into_data(),
                    x.grad(&grads).expect("tracked").into_data(),
                    vector(norm.gamma.val()),
                    vector(beta),
                ];
                if with_residual {
                    out.push(r.grad(&grads).expect("tracked").into_data());
                }
                out
            };
            let (ours, theirs) = (run(true), run(false));
            assert_eq!(ours.len(), theirs.len());
            for (ours, theirs) in ours.iter().zip(&theirs) {
                ours.assert_approx_eq::<f32>(theirs, Tolerance::absolute(1e-4));
            }
        }
    }
}
