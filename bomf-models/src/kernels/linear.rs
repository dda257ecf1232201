//! A Linear layer with its bias, and optionally GELU, as one op: forward and backward.
//!
//! Why: burn's `Linear` on `Flex` runs a matmul into a zeroed buffer and then adds the bias in a
//! single-threaded broadcast pass; under autodiff the bias gradient is another reduction and GELU
//! another op. On a 2-core machine those single-threaded passes left one core idle for a fifth
//! of a MiniLM step. Here the output starts as the bias rows (filled in parallel), one GEMM on
//! every thread accumulates `x·W` onto them, and GELU runs in parallel on the result. The backward
//! pass computes `dx = g·Wᵀ` and `dW = xᵀ·g` as GEMMs on transposed strides (no copies) and the
//! bias gradient as parallel column sums.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};
use rayon::prelude::*;

use super::{
    AddInto, GemmShape, back, enabled, gelu, gelu_backward, gelu_values, parallel_gemm, same_type,
    zeros,
};

/// What follows the affine map in [`linear`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Activation {
    Identity,
    /// Exact (erf) GELU, as [`super::gelu`].
    Gelu,
}

/// `activation(x · W + b)` for `x`: `[rows, d_in]`. The fused op on `Flex` and `Autodiff<Flex>`
/// (f32, with a bias); burn's `Linear` followed by [`super::gelu`] everywhere else.
pub(crate) fn linear<B: Backend>(
    layer: &Linear<B>,
    x: Tensor<B, 2>,
    activation: Activation,
) -> Tensor<B, 2> {
    let composed = |x: Tensor<B, 2>| {
        let y = layer.forward(x);
        match activation {
            Activation::Identity => y,
            Activation::Gelu => gelu(y),
        }
    };
    let Some(bias) = &layer.bias else {
        return composed(x);
    };
    let weight = layer.weight.val();
    let [rows, d_in] = x.dims();
    let [w_in, d_out] = weight.dims();
    let fits = w_in == d_in && bias.dims() == [d_out] && rows > 0 && d_out > 0;
    let f32s = [x.dtype(), weight.dtype(), bias.dtype()] == [DType::F32; 3];
    if !enabled() || !fits || !f32s {
        return composed(x);
    }
    let x = match same_type::<_, Tensor<Flex, 2>>(x) {
        Ok(x) => {
            let out = flex_linear(x, back(weight), back(bias.val()), activation);
            return back(out);
        }
        Err(x) => x,
    };
    match same_type::<_, Tensor<Autodiff<Flex>, 2>>(x) {
        Ok(x) => back(autodiff_linear(
            x,
            back(weight),
            back(bias.val()),
            activation,
        )),
        Err(x) => composed(x),
    }
}

fn flex_linear(
    x: Tensor<Flex, 2>,
    weight: Tensor<Flex, 2>,
    bias: Tensor<Flex, 1>,
    activation: Activation,
) -> Tensor<Flex, 2> {
    let [x, weight, bias] = [
        x.into_primitive().tensor(),
        weight.into_primitive().tensor(),
        bias.into_primitive().tensor(),
    ];
    let out = affine(&x, &weight, &bias);
    let out = match activation {
        Activation::Identity => out,
        Activation::Gelu => gelu_values(out),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// `x · W + b` as a `[rows, d_out]` tensor: the bias rows first, then one parallel GEMM
/// accumulating onto them.
fn affine(x: &FlexTensor, weight: &FlexTensor, bias: &FlexTensor) -> FlexTensor {
    let (x, weight, bias) = (
        x.to_contiguous(),
        weight.to_contiguous(),
        bias.to_contiguous(),
    );
    let [rows, d_in] = x.layout().shape().dims::<2>();
    let d_out = weight.layout().shape().dims::<2>()[1];
    let xs = x.as_slice::<f32>().expect("contiguous f32");
    let ws = weight.as_slice::<f32>().expect("contiguous f32");
    let bs = bias.as_slice::<f32>().expect("contiguous f32");
    let mut out = zeros(rows * d_out);
    out.par_chunks_mut(d_out * ROWS_PER_TASK).for_each(|block| {
        block
            .chunks_exact_mut(d_out)
            .for_each(|row| row.copy_from_slice(bs))
    });
    parallel_gemm(
        GemmShape {
            m: rows,
            n: d_out,
            k: d_in,
        },
        (&mut out, d_out, 1),
        (xs, d_in, 1),
        (ws, d_out, 1),
        1.0,
        true,
    );
    FlexTensor::from_data(TensorData::new(out, [rows, d_out]))
}

/// Rows per parallel work item of the row-wise passes (bias fill, bias gradient).
const ROWS_PER_TASK: usize = 64;

/// What the backward pass needs: the input, the weight and, after GELU, the pre-activation.
#[derive(Clone, Debug)]
struct LinearState {
    x: FlexTensor,
    weight: FlexTensor,
    pre_activation: Option<FlexTensor>,
}

#[derive(Debug)]
struct LinearBackward;

impl Backward<Flex, 3> for LinearBackward {
    type State = LinearState;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let LinearState {
            x,
            weight,
            pre_activation,
        } = ops.state;
        let grad = grads.consume::<Flex>(&ops.node);
        let grad = match pre_activation {
            Some(z) => gelu_backward(z, grad),
            None => grad.to_contiguous(),
        };
        let [rows, d_in] = x.layout().shape().dims::<2>();
        let d_out = weight.layout().shape().dims::<2>()[1];
        let gs = grad.as_slice::<f32>().expect("contiguous f32");
        let [x_node, weight_node, bias_node] = ops.parents;
        if let Some(node) = x_node {
            // dx = g · Wᵀ (W read transposed through its strides).
            let ws = weight.as_slice::<f32>().expect("contiguous f32");
            let mut dx = zeros(rows * d_in);
            parallel_gemm(
                GemmShape {
                    m: rows,
                    n: d_in,
                    k: d_out,
                },
                (&mut dx, d_in, 1),
                (gs, d_out, 1),
                (ws, 1, d_out),
                1.0,
                false,
            );
            let dx = FlexTensor::from_data(TensorData::new(dx, [rows, d_in]));
            grads.register::<Flex>(node.id, dx);
        }
        if let Some(node) = weight_node {
            // dW = xᵀ · g (x read transposed through its strides).
            let xs = x.as_slice::<f32>().expect("contiguous f32");
            let mut dw = zeros(d_in * d_out);
            parallel_gemm(
                GemmShape {
                    m: d_in,
                    n: d_out,
                    k: rows,
                },
                (&mut dw, d_out, 1),
                (xs, 1, d_in),
                (gs, d_out, 1),
                1.0,
                false,
            );
            let dw = FlexTensor::from_data(TensorData::new(dw, [d_in, d_out]));
            grads.register::<Flex>(node.id, dw);
        }
        if let Some(node) = bias_node {
            let db = FlexTensor::from_data(TensorData::new(column_sums(gs, d_out), [d_out]));
            grads.register::<Flex>(node.id, db);
        }
    }
}

fn autodiff_linear(
    x: Tensor<Autodiff<Flex>, 2>,
    weight: Tensor<Autodiff<Flex>, 2>,
    bias: Tensor<Autodiff<Flex>, 1>,
    activation: Activation,
) -> Tensor<Autodiff<Flex>, 2> {
    let [x, weight, bias] = [
        x.into_primitive().tensor(),
        weight.into_primitive().tensor(),
        bias.into_primitive().tensor(),
    ];
    let (xs, ws) = (
        x.primitive.to_contiguous(),
        weight.primitive.to_contiguous(),
    );
    let z = affine(&xs, &ws, &bias.primitive);
    let nodes = [x.node, weight.node, bias.node];
    let out = match LinearBackward
        .prepare::<NoCheckpointing>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (out, pre_activation) = match activation {
                Activation::Identity => (z, None),
                // The pre-activation stays shared with the state; GELU writes a new buffer.
                Activation::Gelu => (gelu_values(z.clone()), Some(z)),
            };
            let state = LinearState {
                x: xs,
                weight: ws,
                pre_activation,
            };
            prep.finish(state, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(match activation {
            Activation::Identity => z,
            Activation::Gelu => gelu_values(z),
        }),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// The sum of the rows of `values` (`[rows, width]` row-major): partial sums per block of rows
/// in parallel, then added up.
pub(super) fn column_sums(values: &[f32], width: usize) -> Vec<f32> {
    values
        .par_chunks(width * ROWS_PER_TASK)
        .map(|block| {
            let mut sums = vec![0.0f32; width];
            for row in block.chunks_exact(width) {
                pulp::Arch::new().dispatch(AddInto {
                    dst: &mut sums,
                    src: row,
                });
            }
            sums
        })
        .reduce(
            || vec![0.0f32; width],
            |mut a, b| {
                pulp::Arch::new().dispatch(AddInto {
                    dst: &mut a,
                    src: &b,
                });
                a
            },
        )
}

#[cfg(test)]
mod tests {
    use burn::module::Param;
    use burn::tensor::Tolerance;

    use super::*;
    use crate::{CpuAutodiffBackend, CpuBackend};

    fn values(n: usize, salt: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 37 + salt * 11) % 29) as f32 - 14.0) / 9.0)
            .collect()
    }

    fn layer<B: Backend>(d_in: usize, d_out: usize, device: &B::Device) -> Linear<B> {
        Linear {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(values(d_in * d_out, 1), [d_in, d_out]),
                device,
            )),
            bias: Some(Param::from_tensor(Tensor::from_data(
                TensorData::new(values(d_out, 2), [d_out]),
                device,
            ))),
        }
    }

    #[test]
    fn fused_linear_matches_burn_forward_and_backward() {
        let device = Default::default();
        // 130 rows: more than one block of `ROWS_PER_TASK`, and not a multiple of it.
        let (rows, d_in, d_out) = (130, 24, 40);
        let input = TensorData::new(values(rows * d_in, 3), [rows, d_in]);
        for activation in [Activation::Identity, Activation::Gelu] {
            let reference = |y: Tensor<CpuBackend, 2>| match activation {
                Activation::Identity => y,
                Activation::Gelu => burn::tensor::activation::gelu(y),
            };
            let flex = layer::<CpuBackend>(d_in, d_out, &device);
            let x = Tensor::<CpuBackend, 2>::from_data(input.clone(), &device);
            linear(&flex, x.clone(), activation)
                .into_data()
                .assert_approx_eq::<f32>(
                    &reference(flex.forward(x)).into_data(),
                    Tolerance::absolute(1e-5),
                );

            type AB = CpuAutodiffBackend;
            let upstream = Tensor::<AB, 2>::from_data(
                TensorData::new(values(rows * d_out, 4), [rows, d_out]),
                &device,
            );
            let run = |fused: bool| {
                let layer = layer::<AB>(d_in, d_out, &device);
                let x = Tensor::<AB, 2>::from_data(input.clone(), &device).require_grad();
                let y = if fused {
                    linear(&layer, x.clone(), activation)
                } else {
                    let y = layer.forward(x.clone());
                    match activation {
                        Activation::Identity => y,
                        Activation::Gelu => burn::tensor::activation::gelu(y),
                    }
                };
                let grads = (y.clone() * upstream.clone()).sum().backward();
                let grad = |t: Tensor<AB, 2>| t.grad(&grads).expect("tracked").into_data();
                let bias = layer.bias.as_ref().expect("bias").val();
                [
                    y.into_data(),
                    grad(x),
                    grad(layer.weight.val()),
                    bias.grad(&grads).expect("tracked").into_data(),
                ]
            };
            for (ours, theirs) in run(true).iter().zip(run(false).iter()) {
                ours.assert_approx_eq::<f32>(theirs, Tolerance::absolute(1e-4));
            }
        }
    }
}
