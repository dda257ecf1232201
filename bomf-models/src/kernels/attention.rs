//! Encoder self-attention straight from the Q/K/V projections, reading the heads in place:
//! inference on `Flex`, and training (with dropout on the probabilities, as one autodiff op with
//! its own backward) on `Autodiff<Flex>`.

use std::any::Any;

use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, DType, Tensor, TensorData};
use rayon::prelude::*;

use super::dropout::{DropoutParams, draw_seed};
use super::gemm::{GemmShape, strided_gemm};
use super::simd::exp_f32;
use super::{BackwardFn, back, enabled, finish_op, flex_values, same_type, zeros};

/// Scaled dot-product self-attention of an encoder layer, straight from the Q/K/V projections.
///
/// `q`, `k`, `v`: `[batch, seq, hidden]` (heads side by side, as the Linear layers produce them);
/// `key_padding`: `[batch, seq]`, true at padded keys. Returns the context `[batch, seq, hidden]`
/// with heads merged, or `None` when the backend is not `Flex` or the dtype not `f32`, in which
/// case the caller runs burn's attention.
pub(crate) fn encoder_attention<B: Backend>(
    q: &Tensor<B, 3>,
    k: &Tensor<B, 3>,
    v: &Tensor<B, 3>,
    key_padding: &Tensor<B, 2, Bool>,
    heads: usize,
) -> Option<Tensor<B, 3>> {
    if !enabled() {
        return None;
    }
    let flex = |t: &Tensor<B, 3>| {
        let t = (t as &dyn Any).downcast_ref::<Tensor<Flex, 3>>()?;
        (t.dtype() == DType::F32).then(|| t.clone().into_primitive().tensor().to_contiguous())
    };
    let (q, k, v) = (flex(q)?, flex(k)?, flex(v)?);
    let [batch, seq, hidden] = q.layout().shape().dims::<3>();
    if hidden % heads != 0 || k.layout().shape() != q.layout().shape() {
        return None;
    }
    let keep = keep_mask(key_padding, batch, seq)?;
    let (qs, ks, vs) = (
        q.as_slice::<f32>()?,
        k.as_slice::<f32>()?,
        v.as_slice::<f32>()?,
    );
    let mut out = zeros(batch * seq * hidden);
    let shape = AttentionShape::new(seq, hidden, heads);
    out.par_chunks_mut(seq * hidden)
        .enumerate()
        .for_each(|(b, out)| {
            let rows = b * seq * hidden..(b + 1) * seq * hidden;
            let keep = &keep[b * seq..(b + 1) * seq];
            pulp::Arch::new().dispatch(AttendOneSequence {
                shape,
                queries: seq,
                q: &qs[rows.clone()],
                k: &ks[rows.clone()],
                v: &vs[rows],
                keep,
                out,
            });
        });
    Some(flex_values(out, [batch, seq, hidden]))
}

/// Encoder self-attention *with dropout on the attention probabilities*, for training on
/// `Autodiff<Flex>`: scores, masked softmax, dropout and `P·V` as one autodiff op with its own
/// backward, reading the heads in place like [`encoder_attention`]. burn's composed version
/// splits and merges the heads with copies in both passes and runs the mask, softmax and
/// dropout as separate elementwise passes.
///
/// The dropout mask is [`DropoutMask`]'s hash of the element's index in `[batch, heads, seq,
/// seq]`, seeded from the backend RNG per call (so `Backend::seed` keeps runs reproducible); the
/// backward pass recomputes it instead of storing it. Returns `None` when the backend is not
/// `Autodiff<Flex>` or the dtype not `f32` (the caller runs burn's ops).
pub(crate) fn encoder_attention_train<B: Backend>(
    q: &Tensor<B, 3>,
    k: &Tensor<B, 3>,
    v: &Tensor<B, 3>,
    key_padding: &Tensor<B, 2, Bool>,
    heads: usize,
    dropout_prob: f64,
) -> Option<Tensor<B, 3>> {
    if !enabled() || q.dtype() != DType::F32 || !(0.0..1.0).contains(&dropout_prob) {
        return None;
    }
    let ad = |t: &Tensor<B, 3>| same_type::<_, Tensor<Autodiff<Flex>, 3>>(t.clone()).ok();
    let (q, k, v) = (ad(q)?, ad(k)?, ad(v)?);
    let [batch, seq, hidden] = q.dims();
    if hidden % heads != 0 || k.dims() != q.dims() || v.dims() != q.dims() {
        return None;
    }
    let keep = keep_mask(key_padding, batch, seq)?;
    let contiguous = |t: &Tensor<Autodiff<Flex>, 3>| {
        t.clone()
            .into_primitive()
            .tensor()
            .primitive
            .to_contiguous()
    };
    let state = AttentionTrainState {
        shape: AttentionShape::new(seq, hidden, heads),
        batch,
        keep: keep.into(),
        dropout: DropoutParams::new(dropout_prob, draw_seed()),
        q: contiguous(&q),
        k: contiguous(&k),
        v: contiguous(&v),
        probs: std::sync::Arc::new(Vec::new()),
    };
    let (out, probs) = attention_train_forward(&state);
    let state = AttentionTrainState {
        probs: std::sync::Arc::new(probs),
        ..state
    };
    let out = FlexTensor::from_data(TensorData::new(out, [batch, seq, hidden]));
    let nodes = [
        q.into_primitive().tensor().node,
        k.into_primitive().tensor().node,
        v.into_primitive().tensor().node,
    ];
    let kind = BackwardFn(attention_train_grads)
        .prepare::<NoCheckpointing>(nodes)
        .compute_bound()
        .stateful();
    let out: Tensor<Autodiff<Flex>, 3> = finish_op(kind, out, |out| (state, out), |out| out);
    Some(back(out))
}

/// The keys each token may attend to (`[batch·seq]`, false at padding) from `key_padding`
/// (`[batch, seq]`, true at padding); `None` when it has another shape.
fn keep_mask<B: Backend>(
    key_padding: &Tensor<B, 2, Bool>,
    batch: usize,
    seq: usize,
) -> Option<Vec<bool>> {
    let keep: Vec<bool> = key_padding
        .clone()
        .into_data()
        .iter::<bool>()
        .map(|padded| !padded)
        .collect();
    (keep.len() == batch * seq).then_some(keep)
}

/// What the backward pass of [`encoder_attention_train`] needs: the inputs and the softmax
/// probabilities before dropout (`[batch, heads, seq, seq]`).
#[derive(Clone, Debug)]
struct AttentionTrainState {
    shape: AttentionShape,
    batch: usize,
    keep: std::sync::Arc<[bool]>,
    dropout: DropoutParams,
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    probs: std::sync::Arc<Vec<f32>>,
}

impl AttentionTrainState {
    /// Q, K and V as `f32` slices (made contiguous when the state was built).
    fn inputs(&self) -> [&[f32]; 3] {
        [&self.q, &self.k, &self.v].map(|t| t.as_slice::<f32>().expect("contiguous f32"))
    }
}

/// The keys a row attends to (1) or not (0); a sequence without any real token attends
/// uniformly, as adding a large negative number to every score does in transformers.
fn keep_weights(keep: &[bool]) -> Vec<f32> {
    let any_kept = keep.iter().any(|&kept| kept);
    keep.iter()
        .map(|&kept| if kept || !any_kept { 1.0 } else { 0.0 })
        .collect()
}

/// Returns the context `[batch, seq, hidden]` and the probabilities before dropout.
fn attention_train_forward(state: &AttentionTrainState) -> (Vec<f32>, Vec<f32>) {
    let AttentionShape {
        seq,
        hidden,
        heads,
        head_dim: d,
    } = state.shape;
    let [qs, ks, vs] = state.inputs();
    let scale = 1.0 / (d as f32).sqrt();
    let block = seq * seq;
    let mut out = zeros(state.batch * seq * hidden);
    let mut probs = zeros(state.batch * heads * block);
    out.par_chunks_mut(seq * hidden)
        .zip(probs.par_chunks_mut(heads * block))
        .enumerate()
        .for_each(|(b, (out, probs))| {
            let rows = b * seq * hidden..(b + 1) * seq * hidden;
            let (q, k, v) = (&qs[rows.clone()], &ks[rows.clone()], &vs[rows]);
            let keep_weight = keep_weights(&state.keep[b * seq..(b + 1) * seq]);
            let mut dropped = vec![0.0f32; block];
            for (h, p) in probs.chunks_exact_mut(block).enumerate() {
                let col = h * d;
                state.shape.head_scores(seq, col, [q, k], scale, p);
                for row in p.chunks_exact_mut(seq) {
                    pulp::Arch::new().dispatch(MaskedSoftmax {
                        row,
                        keep_weight: &keep_weight,
                    });
                }
                state.dropout.fill(&mut dropped, (b * heads + h) * block);
                dropped.iter_mut().zip(p.iter()).for_each(|(m, &p)| *m *= p);
                state
                    .shape
                    .head_context(seq, col, (&dropped, seq, 1), v, 1.0, out);
            }
        });
    (out, probs)
}

/// The backward pass of [`encoder_attention_train`]: registers the gradients of Q, K and V.
fn attention_train_grads(ops: Ops<AttentionTrainState, 3>, grads: &mut Gradients) {
    let grad = grads.consume::<Flex>(&ops.node).to_contiguous();
    let [dq, dk, dv] =
        attention_train_backward(&ops.state, grad.as_slice::<f32>().expect("contiguous f32"));
    let [batch, seq, hidden] = [ops.state.batch, ops.state.shape.seq, ops.state.shape.hidden];
    for (parent, values) in ops.parents.into_iter().zip([dq, dk, dv]) {
        if let Some(node) = parent {
            let t = FlexTensor::from_data(TensorData::new(values, [batch, seq, hidden]));
            grads.register::<Flex>(node.id, t);
        }
    }
}

/// The gradients of Q, K and V given the context's gradient `grad` (`[batch, seq, hidden]`).
/// With `P` the probabilities, `M` the dropout mask and `D = P∘M`: `dV = Dᵀ dO`,
/// `dP = (dO Vᵀ)∘M`, `dS = P∘(dP − rowsum(dP∘P))` (zero at padded keys), `dQ = s·dS K`,
/// `dK = s·dSᵀ Q` with `s = 1/√d`.
fn attention_train_backward(state: &AttentionTrainState, grad: &[f32]) -> [Vec<f32>; 3] {
    let rows = state.shape.seq * state.shape.hidden;
    let n = state.batch * rows;
    let (mut dq, mut dk, mut dv) = (zeros(n), zeros(n), zeros(n));
    dq.par_chunks_mut(rows)
        .zip(dk.par_chunks_mut(rows))
        .zip(dv.par_chunks_mut(rows))
        .enumerate()
        .for_each(|(b, ((dq, dk), dv))| {
            let d_out = &grad[b * rows..(b + 1) * rows];
            sequence_backward(state, b, d_out, [dq, dk, dv]);
        });
    [dq, dk, dv]
}

/// [`attention_train_backward`] for sequence `b`, head by head: `d_out` is its rows of the
/// context's gradient, `[dq, dk, dv]` its rows of the results.
fn sequence_backward(
    state: &AttentionTrainState,
    b: usize,
    d_out: &[f32],
    [dq, dk, dv]: [&mut [f32]; 3],
) {
    let shape = state.shape;
    let AttentionShape {
        seq,
        hidden,
        heads,
        head_dim: d,
    } = shape;
    let scale = 1.0 / (d as f32).sqrt();
    let rows = b * seq * hidden..(b + 1) * seq * hidden;
    let [q, k, v] = state.inputs().map(|t| &t[rows.clone()]);
    let keep = &state.keep[b * seq..(b + 1) * seq];
    let block = seq * seq;
    let (mut mask, mut dropped, mut dp) = (
        vec![0.0f32; block],
        vec![0.0f32; block],
        vec![0.0f32; block],
    );
    for h in 0..heads {
        let col = h * d;
        let first = (b * heads + h) * block;
        let p = &state.probs[first..first + block];
        state.dropout.fill(&mut mask, first);
        dropped
            .iter_mut()
            .zip(mask.iter().zip(p))
            .for_each(|(x, (&m, &p))| *x = m * p);
        // dV_h = Dᵀ dO_h
        shape.head_context(seq, col, (&dropped, 1, seq), d_out, 1.0, dv);
        // dP = (dO_h V_hᵀ) ∘ M
        shape.head_scores(seq, col, [d_out, v], 1.0, &mut dp);
        for ((dp_row, p_row), mask_row) in dp
            .chunks_exact_mut(seq)
            .zip(p.chunks_exact(seq))
            .zip(mask.chunks_exact(seq))
        {
            pulp::Arch::new().dispatch(SoftmaxGrad {
                dp: dp_row,
                p: p_row,
                mask: mask_row,
                keep,
            });
        }
        // With dS now in `dp`: dQ_h = s·dS K_h and dK_h = s·dSᵀ Q_h.
        shape.head_context(seq, col, (&dp, seq, 1), k, scale, dq);
        shape.head_context(seq, col, (&dp, 1, seq), q, scale, dk);
    }
}

struct MaskedSoftmax<'a> {
    row: &'a mut [f32],
    keep_weight: &'a [f32],
}

impl pulp::WithSimd for MaskedSoftmax<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        masked_softmax(self.row, self.keep_weight);
    }
}

/// One row of the softmax-and-dropout backward, in place: `dp ← P∘(dp∘M − Σ(dp∘M∘P))`, zero
/// at padded keys (their scores were a constant fill, which has no gradient).
struct SoftmaxGrad<'a> {
    dp: &'a mut [f32],
    p: &'a [f32],
    mask: &'a [f32],
    keep: &'a [bool],
}

impl pulp::WithSimd for SoftmaxGrad<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let mut dot = 0.0f32;
        for ((dp, &m), &p) in self.dp.iter_mut().zip(self.mask).zip(self.p) {
            *dp *= m;
            dot += *dp * p;
        }
        for ((dp, &p), &kept) in self.dp.iter_mut().zip(self.p).zip(self.keep) {
            *dp = if kept { p * (*dp - dot) } else { 0.0 };
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub(super) struct AttentionShape {
    pub(super) seq: usize,
    pub(super) hidden: usize,
    pub(super) heads: usize,
    pub(super) head_dim: usize,
}

impl AttentionShape {
    /// `heads` heads side by side in `hidden` columns, over `seq` keys.
    pub(super) fn new(seq: usize, hidden: usize, heads: usize) -> Self {
        Self {
            seq,
            hidden,
            heads,
            head_dim: hidden / heads,
        }
    }

    /// `dst = scale · A_h B_hᵀ` (`[rows, seq]`), with `A_h` and `B_h` the column blocks from
    /// `col` of `a` (`[rows, hidden]`) and `b` (`[seq, hidden]`); `B_h` is read transposed
    /// through its strides. The attention scores are `Q_h K_hᵀ`.
    #[inline]
    fn head_scores(
        self,
        rows: usize,
        col: usize,
        [a, b]: [&[f32]; 2],
        scale: f32,
        dst: &mut [f32],
    ) {
        strided_gemm(
            GemmShape {
                m: rows,
                n: self.seq,
                k: self.head_dim,
            },
            (dst, self.seq, 1),
            (&a[col..], self.hidden, 1),
            (&b[col..], 1, self.hidden),
            scale,
            false,
        );
    }

    /// `dst_h = scale · W B_h` (`[rows, head_dim]`), written into the column block from `col` of
    /// `dst` (`[rows, hidden]`), with `B_h` that block of `b` (`[seq, hidden]`) and `W` a
    /// `[rows, seq]` matrix given as `(values, row stride, column stride)`, so a transposed one
    /// is read in place. The attention context is `P V_h`.
    #[inline]
    fn head_context(
        self,
        rows: usize,
        col: usize,
        w: (&[f32], usize, usize),
        b: &[f32],
        scale: f32,
        dst: &mut [f32],
    ) {
        strided_gemm(
            GemmShape {
                m: rows,
                n: self.head_dim,
                k: self.seq,
            },
            (&mut dst[col..], self.hidden, 1),
            w,
            (&b[col..], self.hidden, 1),
            scale,
            false,
        );
    }
}

/// Attention of one sequence, all heads: `k`, `v` are `[seq, hidden]` row-major, `q` and `out`
/// `[queries, hidden]` (the queries are usually the same `seq` tokens; one for a layer whose
/// output is read at the first token only), and each head is a column block of them. The two
/// products per head run as strided GEMMs straight on those blocks; the softmax in between is
/// vectorised.
pub(super) struct AttendOneSequence<'a> {
    pub(super) shape: AttentionShape,
    pub(super) queries: usize,
    pub(super) q: &'a [f32],
    pub(super) k: &'a [f32],
    pub(super) v: &'a [f32],
    pub(super) keep: &'a [bool],
    pub(super) out: &'a mut [f32],
}

impl pulp::WithSimd for AttendOneSequence<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let Self {
            shape: s,
            queries,
            q,
            k,
            v,
            keep,
            out,
        } = self;
        let (seq, d) = (s.seq, s.head_dim);
        let scale = 1.0 / (d as f32).sqrt();
        let keep_weight = keep_weights(keep);
        let mut scores = vec![0.0f32; queries * seq];
        for h in 0..s.heads {
            let col = h * d;
            // scores = scale · Q_h K_hᵀ
            s.head_scores(queries, col, [q, k], scale, &mut scores);
            for row in scores.chunks_exact_mut(seq) {
                masked_softmax(row, &keep_weight);
            }
            // out_h = P V_h, written into the head's column block of `out`.
            s.head_context(queries, col, (&scores, seq, 1), v, 1.0, out);
        }
    }
}

/// Softmax of one score row over the keys whose weight is 1 (padding has weight 0).
#[inline(always)]
fn masked_softmax(row: &mut [f32], keep_weight: &[f32]) {
    let mut max = f32::NEG_INFINITY;
    for (&score, &w) in row.iter().zip(keep_weight) {
        max = max.max(if w > 0.0 { score } else { f32::NEG_INFINITY });
    }
    for (score, &w) in row.iter_mut().zip(keep_weight) {
        *score = exp_f32(*score - max) * w;
    }
    let inv_sum = 1.0 / row.iter().sum::<f32>();
    row.iter_mut().for_each(|p| *p *= inv_sum);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::dropout::test_seed;
    use crate::kernels::test_values::sawtooth;
    use crate::{CpuAutodiffBackend, CpuBackend};
    use burn::tensor::activation;

    /// Batch, sequence length, heads and head size of the tests' inputs.
    const BATCH: usize = 3;
    const SEQ: usize = 7;
    const HEADS: usize = 2;
    const HEAD_DIM: usize = 4;
    const HIDDEN: usize = HEADS * HEAD_DIM;

    /// Input `salt` of shape `[BATCH, SEQ, HIDDEN]`.
    fn input(salt: usize) -> TensorData {
        let values = sawtooth(BATCH * SEQ * HIDDEN, salt, [37, 11, 23], 7.0);
        TensorData::new(values, [BATCH, SEQ, HIDDEN])
    }

    /// The key padding (`[BATCH, SEQ]`, true at padding) of sequences of lengths 7, 4 and 1.
    fn key_padding<B: Backend>(device: &B::Device) -> Tensor<B, 2, Bool> {
        let padded: Vec<bool> = (0..BATCH * SEQ)
            .map(|i| i % SEQ >= [7, 4, 1][i / SEQ])
            .collect();
        Tensor::from_data(TensorData::new(padded, [BATCH, SEQ]), device)
    }

    #[test]
    fn encoder_attention_matches_burn_with_padding() {
        use burn::tensor::module::attention;
        use burn::tensor::ops::AttentionModuleOptions;
        let device = Default::default();
        let (batch, seq, heads, d, hidden) = (BATCH, SEQ, HEADS, HEAD_DIM, HIDDEN);
        let values = |salt| Tensor::<CpuBackend, 3>::from_data(input(salt), &device);
        let (q, k, v) = (values(1), values(2), values(3));
        let key_padding = key_padding::<CpuBackend>(&device);

        let fast = encoder_attention(&q, &k, &v, &key_padding, heads).expect("Flex, f32");

        let split = |t: Tensor<CpuBackend, 3>| t.reshape([batch, seq, heads, d]).swap_dims(1, 2);
        let mask = key_padding
            .reshape([batch, 1, 1, seq])
            .expand([batch, heads, seq, seq]);
        let reference = attention(
            split(q),
            split(k),
            split(v),
            Some(mask),
            None,
            AttentionModuleOptions::default(),
        )
        .swap_dims(1, 2)
        .reshape([batch, seq, hidden]);
        fast.into_data().assert_approx_eq::<f32>(
            &reference.into_data(),
            burn::tensor::Tolerance::absolute(1e-5),
        );
    }

    /// The training attention (scores, masked softmax, dropout, P·V as one op) against burn's
    /// composed ops with the same dropout mask: the context and the gradients of Q, K and V.
    #[test]
    fn training_attention_and_its_gradients_match_burn() {
        type AB = CpuAutodiffBackend;
        let device = Default::default();
        let (batch, seq, heads, d, hidden) = (BATCH, SEQ, HEADS, HEAD_DIM, HIDDEN);
        let prob = 0.3;
        let leaf = |salt| Tensor::<AB, 3>::from_data(input(salt), &device).require_grad();
        let key_padding = key_padding::<AB>(&device);
        let weights = Tensor::<AB, 3>::from_data(
            TensorData::new(
                (0..batch * seq * hidden)
                    .map(|i| (i % 5) as f32 - 2.0)
                    .collect::<Vec<_>>(),
                [batch, seq, hidden],
            ),
            &device,
        );

        let (q, k, v) = (leaf(1), leaf(2), leaf(3));
        let fast = test_seed::with(5, || {
            encoder_attention_train(&q, &k, &v, &key_padding, heads, prob).expect("Autodiff<Flex>")
        });
        let grads = (fast.clone() * weights.clone()).sum().backward();

        // The same mask: the same seed, drawn the same way.
        let params = DropoutParams::new(prob, test_seed::with(5, draw_seed));
        let mut mask = vec![0.0f32; batch * heads * seq * seq];
        params.fill(&mut mask, 0);
        assert!(mask.contains(&0.0));
        let mask =
            Tensor::<AB, 4>::from_data(TensorData::new(mask, [batch, heads, seq, seq]), &device);
        let (q2, k2, v2) = (leaf(1), leaf(2), leaf(3));
        let split = |t: Tensor<AB, 3>| t.reshape([batch, seq, heads, d]).swap_dims(1, 2);
        let fill = key_padding
            .reshape([batch, 1, 1, seq])
            .expand([batch, heads, seq, seq]);
        let scores = split(q2.clone())
            .matmul(split(k2.clone()).swap_dims(2, 3))
            .div_scalar((d as f64).sqrt())
            .mask_fill(fill, f32::MIN);
        let reference = (activation::softmax(scores, 3) * mask)
            .matmul(split(v2.clone()))
            .swap_dims(1, 2)
            .reshape([batch, seq, hidden]);
        let grads_ref = (reference.clone() * weights).sum().backward();

        let tolerance = burn::tensor::Tolerance::absolute(1e-5);
        fast.into_data()
            .assert_approx_eq::<f32>(&reference.into_data(), tolerance);
        for (ours, theirs) in [(q, q2), (k, k2), (v, v2)] {
            ours.grad(&grads)
                .expect("requires grad")
                .into_data()
                .assert_approx_eq::<f32>(
                    &theirs.grad(&grads_ref).expect("requires grad").into_data(),
                    tolerance,
                );
        }
    }

    #[test]
    fn other_backends_are_declined() {
        let device = Default::default();
        let t = Tensor::<CpuAutodiffBackend, 3>::zeros([1, 2, 4], &device);
        let pad = Tensor::<CpuAutodiffBackend, 2, Bool>::from_data(
            TensorData::new(vec![false, false], [1, 2]),
            &device,
        );
        assert!(encoder_attention(&t, &t, &t, &pad, 2).is_none());
    }
}
