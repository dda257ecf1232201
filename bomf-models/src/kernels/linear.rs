//! A Linear layer with its bias, and optionally GELU, as one op: forward and backward.
//!
//! Why: burn's `Linear` on `Flex` runs a matmul into a zeroed buffer and then adds the bias in a
//! single-threaded broadcast pass; under autodiff the bias gradient is another reduction and GELU
//! another op. On a 2-core machine those single-threaded passes left one core idle for a fifth
//! of a MiniLM step. Here the output starts as the bias rows (filled in parallel), one GEMM on
//! every thread accumulates `x·W` onto them, and GELU runs in parallel on the result. The backward
//! pass computes `dx = g·Wᵀ` and `dW = xᵀ·g` as GEMMs on transposed strides (no copies) and the
//! bias gradient as parallel column sums.

use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};
use rayon::prelude::*;

use super::gelu::{gelu, gelu_backward, gelu_values};
use super::gemm::{GemmShape, parallel_gemm, parallel_product, strided_gemm};
use super::simd::AddInto;
use super::{BackwardFn, back, enabled, finish_op, flex_values, same_type, zeros};

/// What follows the affine map in [`linear`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Activation {
    Identity,
    /// Exact (erf) GELU, as [`super::gelu`].
    Gelu,
}

/// `activation(x · W [+ b])` for `x`: `[rows, d_in]`. The fused op on `Flex` and
/// `Autodiff<Flex>` (f32); burn's `Linear` followed by [`super::gelu`] everywhere else.
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
    let bias = layer.bias.as_ref().map(|b| b.val());
    let weight = layer.weight.val();
    let [rows, d_in] = x.dims();
    let [w_in, d_out] = weight.dims();
    let fits = w_in == d_in && bias.as_ref().is_none_or(|b| b.dims() == [d_out]);
    let f32s = x.dtype() == DType::F32
        && weight.dtype() == DType::F32
        && bias.as_ref().is_none_or(|b| b.dtype() == DType::F32);
    if !enabled() || !fits || !f32s || rows == 0 || d_out == 0 {
        return composed(x);
    }
    let x = match same_type::<_, Tensor<Flex, 2>>(x) {
        Ok(x) => return back(flex_linear(x, back(weight), bias.map(back), activation)),
        Err(x) => x,
    };
    match same_type::<_, Tensor<Autodiff<Flex>, 2>>(x) {
        Ok(x) => back(autodiff_linear(x, back(weight), bias.map(back), activation)),
        Err(x) => composed(x),
    }
}

/// Applies a Linear layer to `[batch, seq, d]` as one `[batch·seq, d]` matrix product: the CPU
/// backend runs that as a single large GEMM instead of one small GEMM per sequence.
pub(crate) fn linear3<B: Backend>(layer: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    linear3_then(layer, x, Activation::Identity)
}

/// [`linear3`] followed by `activation`, fused where the backend allows.
pub(crate) fn linear3_then<B: Backend>(
    layer: &Linear<B>,
    x: Tensor<B, 3>,
    activation: Activation,
) -> Tensor<B, 3> {
    let [batch, seq_len, d] = x.dims();
    let y = linear(layer, x.reshape([batch * seq_len, d]), activation);
    let [_, d_out] = y.dims();
    y.reshape([batch, seq_len, d_out])
}

fn flex_linear(
    x: Tensor<Flex, 2>,
    weight: Tensor<Flex, 2>,
    bias: Option<Tensor<Flex, 1>>,
    activation: Activation,
) -> Tensor<Flex, 2> {
    let bias = bias.map(|b| b.into_primitive().tensor());
    let [x, weight] = [
        x.into_primitive().tensor(),
        weight.into_primitive().tensor(),
    ];
    let out = affine(&x, &weight, bias.as_ref());
    let out = match activation {
        Activation::Identity => out,
        Activation::Gelu => gelu_values(out),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// `x · W (+ b)` as a `[rows, d_out]` tensor: the bias rows first, then one parallel GEMM
/// accumulating onto them.
fn affine(x: &FlexTensor, weight: &FlexTensor, bias: Option<&FlexTensor>) -> FlexTensor {
    let (x, weight) = (x.to_contiguous(), weight.to_contiguous());
    let bias = bias.map(FlexTensor::to_contiguous);
    let [rows, d_in] = x.layout().shape().dims::<2>();
    let d_out = weight.layout().shape().dims::<2>()[1];
    let xs = x.as_slice::<f32>().expect("contiguous f32");
    let ws = weight.as_slice::<f32>().expect("contiguous f32");
    let bs = bias
        .as_ref()
        .map(|b| b.as_slice::<f32>().expect("contiguous f32"));
    if rows < FEW_ROWS {
        let out = few_rows_product(xs, (ws, d_out, 1), bs, rows, d_in, d_out);
        return FlexTensor::from_data(TensorData::new(out, [rows, d_out]));
    }
    let mut out = zeros(rows * d_out);
    if let Some(bs) = bs {
        out.par_chunks_mut(d_out * ROWS_PER_TASK).for_each(|block| {
            block
                .chunks_exact_mut(d_out)
                .for_each(|row| row.copy_from_slice(bs))
        });
    }
    parallel_gemm(
        GemmShape {
            m: rows,
            n: d_out,
            k: d_in,
        },
        &mut out,
        (xs, d_in, 1),
        (ws, d_out, 1),
        bs.is_some(),
    );
    FlexTensor::from_data(TensorData::new(out, [rows, d_out]))
}

/// Below this many rows (one token per sequence while generating) the product is a few
/// matrix-vector products, which the GEMM runs on one thread: [`few_rows_product`] splits the
/// output columns across threads instead.
const FEW_ROWS: usize = 16;

/// Output columns per parallel work item of [`few_rows_product`].
const COLUMNS_PER_TASK: usize = 256;

/// `x · W (+ b)` for few rows, parallel over blocks of output columns: each block computes
/// `(x · W[:, block])ᵀ = W[:, block]ᵀ · xᵀ` into its own contiguous slice of the transposed
/// output (W and x read through transposed strides), which is then transposed back (small).
/// `W` is `(values, row stride, column stride)`: `[d_in, d_out]` row-major is `(w, d_out, 1)`,
/// the transpose of an `[d_out, d_in]` matrix is `(e, 1, d_in)`.
fn few_rows_product(
    xs: &[f32],
    (ws, w_rs, w_cs): (&[f32], usize, usize),
    bias: Option<&[f32]>,
    rows: usize,
    d_in: usize,
    d_out: usize,
) -> Vec<f32> {
    let mut transposed = vec![0.0f32; d_out * rows];
    transposed
        .par_chunks_mut(COLUMNS_PER_TASK * rows)
        .enumerate()
        .for_each(|(block, out)| {
            let first = block * COLUMNS_PER_TASK;
            let columns = out.len() / rows;
            strided_gemm(
                GemmShape {
                    m: columns,
                    n: rows,
                    k: d_in,
                },
                (out, rows, 1),
                (&ws[first * w_cs..], w_cs, w_rs),
                (xs, 1, d_in),
                1.0,
                false,
            );
        });
    let mut out = vec![0.0f32; rows * d_out];
    for (r, row) in out.chunks_exact_mut(d_out).enumerate() {
        for (j, value) in row.iter_mut().enumerate() {
            *value = transposed[j * rows + r] + bias.map_or(0.0, |b| b[j]);
        }
    }
    out
}

/// `x · eᵀ` for `x`: `[rows, k]` and `e`: `[n, k]` (a tied LM head: hidden states times the
/// embedding matrix), without materialising `eᵀ`. On `Flex` (f32) the product reads `e` through
/// transposed strides, its output columns split across threads when there are few rows; burn's
/// `matmul` of the transposed view elsewhere (and under autodiff).
pub(crate) fn matmul_transposed<B: Backend>(x: Tensor<B, 2>, e: Tensor<B, 2>) -> Tensor<B, 2> {
    let [rows, k] = x.dims();
    let [n, e_k] = e.dims();
    let usable = enabled()
        && k == e_k
        && rows > 0
        && n > 0
        && x.dtype() == DType::F32
        && e.dtype() == DType::F32;
    if !usable {
        return x.matmul(e.transpose());
    }
    match same_type::<_, Tensor<Flex, 2>>(x) {
        Ok(x) => {
            let e: Tensor<Flex, 2> = back(e);
            let x = x.into_primitive().tensor().to_contiguous();
            let e = e.into_primitive().tensor().to_contiguous();
            let xs = x.as_slice::<f32>().expect("contiguous f32");
            let es = e.as_slice::<f32>().expect("contiguous f32");
            let out = if rows < FEW_ROWS {
                few_rows_product(xs, (es, 1, k), None, rows, k, n)
            } else {
                parallel_product(GemmShape { m: rows, n, k }, (xs, k, 1), (es, 1, k))
            };
            flex_values(out, [rows, n])
        }
        Err(x) => x.matmul(e.transpose()),
    }
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

/// The backward pass of [`autodiff_linear`]: parents `[x, W]`, or `[x, W, b]`.
fn linear_backward<const N: usize>(ops: Ops<LinearState, N>, grads: &mut Gradients) {
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
    let [xs, ws, gs] = [&x, &weight, &grad].map(|t| t.as_slice::<f32>().expect("contiguous f32"));
    let product = |shape: GemmShape, lhs, rhs| {
        let values = parallel_product(shape, lhs, rhs);
        FlexTensor::from_data(TensorData::new(values, [shape.m, shape.n]))
    };
    let mut parents = ops.parents.into_iter();
    let (x_node, weight_node, bias_node) = (
        parents.next().flatten(),
        parents.next().flatten(),
        parents.next().flatten(),
    );
    if let Some(node) = x_node {
        // dx = g · Wᵀ (W read transposed through its strides).
        let shape = GemmShape {
            m: rows,
            n: d_in,
            k: d_out,
        };
        grads.register::<Flex>(node.id, product(shape, (gs, d_out, 1), (ws, 1, d_out)));
    }
    if let Some(node) = weight_node {
        // dW = xᵀ · g (x read transposed through its strides).
        let shape = GemmShape {
            m: d_in,
            n: d_out,
            k: rows,
        };
        grads.register::<Flex>(node.id, product(shape, (xs, 1, d_in), (gs, d_out, 1)));
    }
    if let Some(node) = bias_node {
        let db = FlexTensor::from_data(TensorData::new(column_sums(gs, d_out), [d_out]));
        grads.register::<Flex>(node.id, db);
    }
}

fn autodiff_linear(
    x: Tensor<Autodiff<Flex>, 2>,
    weight: Tensor<Autodiff<Flex>, 2>,
    bias: Option<Tensor<Autodiff<Flex>, 1>>,
    activation: Activation,
) -> Tensor<Autodiff<Flex>, 2> {
    let [x, weight] = [
        x.into_primitive().tensor(),
        weight.into_primitive().tensor(),
    ];
    let bias = bias.map(|b| b.into_primitive().tensor());
    let (xs, ws) = (
        x.primitive.to_contiguous(),
        weight.primitive.to_contiguous(),
    );
    let z = affine(&xs, &ws, bias.as_ref().map(|b| &b.primitive));
    let untracked = |z: FlexTensor| match activation {
        Activation::Identity => z,
        Activation::Gelu => gelu_values(z),
    };
    // The output and the backward state, when some parent is tracked.
    let tracked = |z: FlexTensor| {
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
        (state, out)
    };
    // Two arms because the parent count is part of the op's type.
    match bias {
        Some(b) => {
            let kind = BackwardFn(linear_backward::<3>)
                .prepare::<NoCheckpointing>([x.node, weight.node, b.node])
                .compute_bound()
                .stateful();
            finish_op(kind, z, tracked, untracked)
        }
        None => {
            let kind = BackwardFn(linear_backward::<2>)
                .prepare::<NoCheckpointing>([x.node, weight.node])
                .compute_bound()
                .stateful();
            finish_op(kind, z, tracked, untracked)
        }
    }
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
    use crate::kernels::test_values::sawtooth;
    use crate::{CpuAutodiffBackend, CpuBackend};

    fn values(n: usize, salt: usize) -> Vec<f32> {
        sawtooth(n, salt, [37, 11, 29], 9.0)
    }

    fn layer<B: Backend>(d_in: usize, d_out: usize, bias: bool, device: &B::Device) -> Linear<B> {
        Linear {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(values(d_in * d_out, 1), [d_in, d_out]),
                device,
            )),
            bias: bias.then(|| {
                Param::from_tensor(Tensor::from_data(
                    TensorData::new(values(d_out, 2), [d_out]),
                    device,
                ))
            }),
        }
    }

    #[test]
    fn fused_linear_matches_burn_forward_and_backward() {
        let device = Default::default();
        // 130 rows: more than one block of `ROWS_PER_TASK`, and not a multiple of it; 1 and 5
        // rows take the few-rows path, whose column blocks (`COLUMNS_PER_TASK`) 300 outputs
        // split unevenly.
        for (rows, d_in, d_out) in [(130, 24, 40), (1, 24, 300), (5, 24, 300)] {
            for (activation, bias) in [
                (Activation::Identity, true),
                (Activation::Gelu, true),
                (Activation::Identity, false),
            ] {
                check_linear(rows, d_in, d_out, activation, bias, &device);
            }
        }
    }

    fn check_linear(
        rows: usize,
        d_in: usize,
        d_out: usize,
        activation: Activation,
        bias: bool,
        device: &burn::tensor::Device<CpuBackend>,
    ) {
        let input = TensorData::new(values(rows * d_in, 3), [rows, d_in]);
        let reference = |y: Tensor<CpuBackend, 2>| match activation {
            Activation::Identity => y,
            Activation::Gelu => burn::tensor::activation::gelu(y),
        };
        let flex = layer::<CpuBackend>(d_in, d_out, bias, device);
        let x = Tensor::<CpuBackend, 2>::from_data(input.clone(), device);
        linear(&flex, x.clone(), activation)
            .into_data()
            .assert_approx_eq::<f32>(
                &reference(flex.forward(x)).into_data(),
                Tolerance::absolute(1e-4),
            );

        type AB = CpuAutodiffBackend;
        let upstream = Tensor::<AB, 2>::from_data(
            TensorData::new(values(rows * d_out, 4), [rows, d_out]),
            device,
        );
        let run = |fused: bool| {
            let layer = layer::<AB>(d_in, d_out, bias, device);
            let x = Tensor::<AB, 2>::from_data(input.clone(), device).require_grad();
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
            let mut out = vec![y.into_data(), grad(x), grad(layer.weight.val())];
            if let Some(b) = &layer.bias {
                out.push(b.val().grad(&grads).expect("tracked").into_data());
            }
            out
        };
        let (ours, theirs) = (run(true), run(false));
        assert_eq!(ours.len(), theirs.len());
        for (ours, theirs) in ours.iter().zip(&theirs) {
            ours.assert_approx_eq::<f32>(theirs, Tolerance::absolute(1e-3));
        }
    }

    #[test]
    fn transposed_product_matches_burn() {
        let device = Default::default();
        for rows in [1, 5, 40] {
            let (k, n) = (24, 300);
            let x = Tensor::<CpuBackend, 2>::from_data(
                TensorData::new(values(rows * k, 5), [rows, k]),
                &device,
            );
            let e = Tensor::<CpuBackend, 2>::from_data(
                TensorData::new(values(n * k, 6), [n, k]),
                &device,
            );
            matmul_transposed(x.clone(), e.clone())
                .into_data()
                .assert_approx_eq::<f32>(
                    &x.matmul(e.transpose()).into_data(),
                    Tolerance::absolute(1e-4),
                );
        }
    }
}
