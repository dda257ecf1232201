//! Hand-written CPU kernels for the encoder's hot paths on burn's `Flex` backend.
//!
//! Why they exist: a profile of MiniLM on `Flex` (forward, batch 32, length 64) spent ~13% of its
//! time in scalar `libm::erff` (exact GELU), ~12% in strided copies that split and merge attention
//! heads, and ~7% in softmax's scalar `expf`. burn's CPU ops are generic and element-by-element
//! there; these kernels work on contiguous `f32` buffers with a vectorisable `exp`/`erf` and read
//! the heads in place, so nothing is transposed. A later profile found one of the two cores idle
//! for a fifth of a step in burn's single-threaded elementwise ops (bias adds, residual adds,
//! LayerNorm under autodiff, the dropout multiply): [`linear`] and [`layer_norm`] fuse those
//! into parallel passes.
//!
//! They apply only where the backend *is* `Flex` or `Autodiff<Flex>` (GELU, dropout, Linear with
//! its bias and activation, residual + LayerNorm, and the training attention, each with its own
//! backward pass): a `TypeId` check through [`Any`], safe code with no extra trait bound on the
//! models. Every other backend and dtype runs burn's composed
//! ops, so CUDA is untouched. The parity tests against `transformers` run through these kernels,
//! and each kernel is tested against burn's ops, gradients included.

use std::any::Any;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::nn::Dropout;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, DType, Distribution, Tensor, TensorData, TensorPrimitive, activation};
use rayon::prelude::*;

mod adamw;
mod layer_norm;
mod linear;
mod packed;

pub use adamw::{AdamWStep, Moments, adamw_update, squared_sum};

pub(crate) use layer_norm::layer_norm;
pub(crate) use linear::{Activation, linear, linear3, linear3_then, matmul_transposed};
pub(crate) use packed::Packing;

/// Elements per parallel work item of the elementwise kernels: large enough that rayon's
/// scheduling is noise, small enough that both cores get work on a `[32, 64, 1536]` activation.
const CHUNK: usize = 1 << 14;

/// `BOMF_CPU_KERNELS=0` turns the kernels off (burn's ops everywhere): for A/B benchmarks, and
/// to rule them out when a result looks wrong.
fn enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("BOMF_CPU_KERNELS").map_or(true, |v| v != "0"))
}

/// `len` zeros, written in parallel. A large `vec![0.0; len]` is one single-threaded memset
/// whenever the allocator reuses memory (it does, step after step), which left a core idle.
#[allow(unsafe_code)]
fn zeros(len: usize) -> Vec<f32> {
    let mut values = Vec::with_capacity(len);
    values.spare_capacity_mut()[..len]
        .par_chunks_mut(CHUNK)
        .for_each(|chunk| chunk.fill(std::mem::MaybeUninit::new(0.0)));
    // SAFETY: the first `len` elements of the capacity were all just written (the chunks cover
    // the whole range), and `len` ≤ capacity.
    unsafe { values.set_len(len) };
    values
}

/// `values` as a `[shape]` tensor of `B`, which the caller has found to be `Flex`.
fn flex_values<B: Backend, const D: usize>(values: Vec<f32>, shape: [usize; D]) -> Tensor<B, D> {
    let t = FlexTensor::from_data(TensorData::new(values, shape));
    back(Tensor::<Flex, D>::from_primitive(TensorPrimitive::Float(t)))
}

/// Moves `value` into type `U` when `T` and `U` are the same type (a safe, allocation-free
/// downcast); gives it back otherwise.
fn same_type<T: 'static, U: 'static>(value: T) -> Result<U, T> {
    let mut slot = Some(value);
    match (&mut slot as &mut dyn Any).downcast_mut::<Option<U>>() {
        Some(same) => Ok(same.take().expect("the slot was just filled")),
        None => Err(slot.expect("the slot was not touched")),
    }
}

/// Converts back after a successful [`same_type`] in the other direction.
fn back<T: 'static, U: 'static>(value: T) -> U {
    match same_type(value) {
        Ok(same) => same,
        Err(_) => unreachable!("only called when the two types were just found equal"),
    }
}

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
fn gelu_values(x: FlexTensor) -> FlexTensor {
    with_owned_buffer(x, |xs| {
        xs.par_chunks_mut(CHUNK)
            .for_each(|xs| pulp::Arch::new().dispatch(Gelu { xs }))
    })
}

/// GELU on `Autodiff<Flex>`: the forward as [`flex_gelu`] (keeping the input for the backward
/// pass), the backward `grad · gelu'(x)` in one pass over the gradient buffer.
fn autodiff_gelu<const D: usize>(x: Tensor<Autodiff<Flex>, D>) -> Tensor<Autodiff<Flex>, D> {
    #[derive(Debug)]
    struct GeluBackward;

    impl Backward<Flex, 1> for GeluBackward {
        type State = FlexTensor;

        fn backward(
            self,
            ops: Ops<Self::State, 1>,
            grads: &mut Gradients,
            _checkpointer: &mut Checkpointer,
        ) {
            let input = ops.state;
            unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
                gelu_backward(input, grad)
            });
        }
    }

    let x = x.into_primitive().tensor();
    let out = match GeluBackward
        .prepare::<burn::backend::autodiff::checkpoint::strategy::NoCheckpointing>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            // The input stays shared with the backward state, so the output gets its own buffer.
            let output = gelu_values(x.primitive.clone());
            prep.finish(x.primitive, output)
        }
        OpsKind::UnTracked(prep) => prep.finish(gelu_values(x.primitive)),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

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

fn autodiff_dropout<const D: usize>(
    prob: f64,
    x: Tensor<Autodiff<Flex>, D>,
) -> Tensor<Autodiff<Flex>, D> {
    /// The backward pass recomputes the mask from its parameters instead of storing it.
    #[derive(Debug)]
    struct DropoutBackward;

    impl Backward<Flex, 1> for DropoutBackward {
        type State = DropoutParams;

        fn backward(
            self,
            ops: Ops<Self::State, 1>,
            grads: &mut Gradients,
            _checkpointer: &mut Checkpointer,
        ) {
            let params = ops.state;
            unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
                apply_dropout(grad, params)
            });
        }
    }

    let params = DropoutParams::new(prob, draw_seed());
    let x = x.into_primitive().tensor();
    let out = match DropoutBackward
        .prepare::<burn::backend::autodiff::checkpoint::strategy::NoCheckpointing>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(params, apply_dropout(x.primitive, params)),
        OpsKind::UnTracked(prep) => prep.finish(apply_dropout(x.primitive, params)),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
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

/// 48 random bits from the backend's (seedable) RNG.
fn draw_seed() -> u64 {
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

/// `grad · gelu'(x)`, written into the gradient's buffer when it owns it.
fn gelu_backward(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
    let x = x.to_contiguous();
    let xs = x.as_slice::<f32>().expect("contiguous f32");
    with_owned_buffer(grad, |gs| {
        gs.par_chunks_mut(CHUNK)
            .zip(xs.par_chunks(CHUNK))
            .for_each(|(gs, xs)| pulp::Arch::new().dispatch(GeluGrad { gs, xs }))
    })
}

/// Hands `f` the tensor's `f32` values to overwrite: its own buffer when not shared (no
/// allocation), else a contiguous copy.
fn with_owned_buffer(t: FlexTensor, f: impl FnOnce(&mut [f32])) -> FlexTensor {
    let n = t.layout().num_elements();
    let mut t = {
        let contiguous = t.to_contiguous();
        drop(t); // so that an already-contiguous buffer stays uniquely owned
        contiguous
    };
    let exact = t.layout().start_offset() == 0 && t.bytes().len() == n * 4;
    if exact && let Some(values) = t.try_storage_mut::<f32>() {
        f(values);
        return t;
    }
    let source = t.as_slice::<f32>().expect("contiguous f32");
    let mut values = zeros(n);
    values
        .par_chunks_mut(CHUNK)
        .zip(source.par_chunks(CHUNK))
        .for_each(|(dst, src)| dst.copy_from_slice(src));
    f(&mut values);
    FlexTensor::from_data(TensorData::new(values, t.layout().shape().clone()))
}

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
    let keep: Vec<bool> = key_padding
        .clone()
        .into_data()
        .iter::<bool>()
        .map(|padded| !padded)
        .collect();
    if keep.len() != batch * seq {
        return None;
    }
    let (qs, ks, vs) = (
        q.as_slice::<f32>()?,
        k.as_slice::<f32>()?,
        v.as_slice::<f32>()?,
    );
    let mut out = zeros(batch * seq * hidden);
    let shape = AttentionShape {
        seq,
        hidden,
        heads,
        head_dim: hidden / heads,
    };
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
    let keep: Vec<bool> = key_padding
        .clone()
        .into_data()
        .iter::<bool>()
        .map(|padded| !padded)
        .collect();
    if keep.len() != batch * seq {
        return None;
    }
    let state = AttentionTrainState {
        shape: AttentionShape {
            seq,
            hidden,
            heads,
            head_dim: hidden / heads,
        },
        batch,
        keep: keep.into(),
        dropout: DropoutParams::new(dropout_prob, draw_seed()),
        q: q.clone()
            .into_primitive()
            .tensor()
            .primitive
            .to_contiguous(),
        k: k.clone()
            .into_primitive()
            .tensor()
            .primitive
            .to_contiguous(),
        v: v.clone()
            .into_primitive()
            .tensor()
            .primitive
            .to_contiguous(),
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
    let out = match AttentionTrainBackward
        .prepare::<burn::backend::autodiff::checkpoint::strategy::NoCheckpointing>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(state, out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    Some(back(Tensor::<Autodiff<Flex>, 3>::from_primitive(
        TensorPrimitive::Float(out),
    )))
}

/// A dropout mask as a function of the element index: a counter-based hash, so the mask is
/// drawn in parallel and the backward pass recomputes it instead of storing it.
#[derive(Clone, Copy, Debug)]
struct DropoutParams {
    seed: u64,
    /// Drop when the hash's top 32 bits fall below `p · 2³²`.
    threshold: u64,
    scale: f32,
}

impl DropoutParams {
    fn new(prob: f64, seed: u64) -> Self {
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
    fn fill(&self, values: &mut [f32], first_index: usize) {
        pulp::Arch::new().dispatch(DropoutMask {
            values,
            first_index,
            params: *self,
            multiply: false,
        });
    }
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
                strided_gemm(
                    GemmShape {
                        m: seq,
                        n: seq,
                        k: d,
                    },
                    (p, seq, 1),
                    (&q[col..], hidden, 1),
                    (&k[col..], 1, hidden),
                    scale,
                    false,
                );
                for row in p.chunks_exact_mut(seq) {
                    pulp::Arch::new().dispatch(MaskedSoftmax {
                        row,
                        keep_weight: &keep_weight,
                    });
                }
                state.dropout.fill(&mut dropped, (b * heads + h) * block);
                dropped.iter_mut().zip(p.iter()).for_each(|(m, &p)| *m *= p);
                strided_gemm(
                    GemmShape {
                        m: seq,
                        n: d,
                        k: seq,
                    },
                    (&mut out[col..], hidden, 1),
                    (&dropped, seq, 1),
                    (&v[col..], hidden, 1),
                    1.0,
                    false,
                );
            }
        });
    (out, probs)
}

#[derive(Debug)]
struct AttentionTrainBackward;

impl Backward<Flex, 3> for AttentionTrainBackward {
    type State = AttentionTrainState;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
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
}

/// The gradients of Q, K and V given the context's gradient `grad` (`[batch, seq, hidden]`).
/// With `P` the probabilities, `M` the dropout mask and `D = P∘M`: `dV = Dᵀ dO`,
/// `dP = (dO Vᵀ)∘M`, `dS = P∘(dP − rowsum(dP∘P))` (zero at padded keys), `dQ = s·dS K`,
/// `dK = s·dSᵀ Q` with `s = 1/√d`.
fn attention_train_backward(state: &AttentionTrainState, grad: &[f32]) -> [Vec<f32>; 3] {
    let AttentionShape {
        seq,
        hidden,
        heads,
        head_dim: d,
    } = state.shape;
    let [qs, ks, vs] = state.inputs();
    let scale = 1.0 / (d as f32).sqrt();
    let block = seq * seq;
    let n = state.batch * seq * hidden;
    let (mut dq, mut dk, mut dv) = (zeros(n), zeros(n), zeros(n));
    dq.par_chunks_mut(seq * hidden)
        .zip(dk.par_chunks_mut(seq * hidden))
        .zip(dv.par_chunks_mut(seq * hidden))
        .enumerate()
        .for_each(|(b, ((dq, dk), dv))| {
            let rows = b * seq * hidden..(b + 1) * seq * hidden;
            let (q, k, v, d_out) = (
                &qs[rows.clone()],
                &ks[rows.clone()],
                &vs[rows.clone()],
                &grad[rows],
            );
            let keep = &state.keep[b * seq..(b + 1) * seq];
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
                strided_gemm(
                    GemmShape {
                        m: seq,
                        n: d,
                        k: seq,
                    },
                    (&mut dv[col..], hidden, 1),
                    (&dropped, 1, seq),
                    (&d_out[col..], hidden, 1),
                    1.0,
                    false,
                );
                // dP = (dO_h V_hᵀ) ∘ M
                strided_gemm(
                    GemmShape {
                        m: seq,
                        n: seq,
                        k: d,
                    },
                    (&mut dp, seq, 1),
                    (&d_out[col..], hidden, 1),
                    (&v[col..], 1, hidden),
                    1.0,
                    false,
                );
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
                // dQ_h = s·dS K_h, dK_h = s·dSᵀ Q_h
                strided_gemm(
                    GemmShape {
                        m: seq,
                        n: d,
                        k: seq,
                    },
                    (&mut dq[col..], hidden, 1),
                    (&dp, seq, 1),
                    (&k[col..], hidden, 1),
                    scale,
                    false,
                );
                strided_gemm(
                    GemmShape {
                        m: seq,
                        n: d,
                        k: seq,
                    },
                    (&mut dk[col..], hidden, 1),
                    (&dp, 1, seq),
                    (&q[col..], hidden, 1),
                    scale,
                    false,
                );
            }
        });
    [dq, dk, dv]
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
struct AttentionShape {
    seq: usize,
    hidden: usize,
    heads: usize,
    head_dim: usize,
}

// The kernels below implement `pulp::WithSimd`: pulp calls `with_simd` inside a function compiled
// for the CPU's best instruction set (AVX2 or AVX-512), and `#[inline(always)]` pulls the loop body
// in there, where the compiler vectorises it. (A closure passed to `dispatch` may stay out of
// line and then runs as baseline SSE2.)

/// `dst += src`, elementwise.
struct AddInto<'a> {
    dst: &'a mut [f32],
    src: &'a [f32],
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

/// Attention of one sequence, all heads: `k`, `v` are `[seq, hidden]` row-major, `q` and `out`
/// `[queries, hidden]` (the queries are usually the same `seq` tokens; one for a layer whose
/// output is read at the first token only), and each head is a column block of them. The two
/// products per head run as strided GEMMs straight on those blocks; the softmax in between is
/// vectorised.
struct AttendOneSequence<'a> {
    shape: AttentionShape,
    queries: usize,
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    keep: &'a [bool],
    out: &'a mut [f32],
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
        let (seq, hidden, d) = (s.seq, s.hidden, s.head_dim);
        let scale = 1.0 / (d as f32).sqrt();
        let keep_weight = keep_weights(keep);
        let mut scores = vec![0.0f32; queries * seq];
        for h in 0..s.heads {
            let col = h * d;
            // scores = scale · Q_h K_hᵀ: K_h read transposed through its strides.
            strided_gemm(
                GemmShape {
                    m: queries,
                    n: seq,
                    k: d,
                },
                (&mut scores, seq, 1),
                (&q[col..], hidden, 1),
                (&k[col..], 1, hidden),
                scale,
                false,
            );
            for row in scores.chunks_exact_mut(seq) {
                masked_softmax(row, &keep_weight);
            }
            // out_h = P V_h, written into the head's column block of `out`.
            strided_gemm(
                GemmShape {
                    m: queries,
                    n: d,
                    k: seq,
                },
                (&mut out[col..], hidden, 1),
                (&scores, seq, 1),
                (&v[col..], hidden, 1),
                1.0,
                false,
            );
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

#[derive(Clone, Copy)]
struct GemmShape {
    m: usize,
    n: usize,
    k: usize,
}

/// `dst[m×n] = beta · lhs[m×k] · rhs[k×n]` (or `dst += …` with `accumulate`) on strided views:
/// each operand is `(slice, row_stride, col_stride)` and element `(r, c)` sits at
/// `r · row_stride + c · col_stride`. Single-threaded: callers parallelise over sequences.
fn strided_gemm(
    shape: GemmShape,
    dst: (&mut [f32], usize, usize),
    lhs: (&[f32], usize, usize),
    rhs: (&[f32], usize, usize),
    beta: f32,
    accumulate: bool,
) {
    gemm_on(
        gemm::Parallelism::None,
        shape,
        dst,
        lhs,
        rhs,
        beta,
        accumulate,
    );
}

/// [`strided_gemm`] spread over rayon's threads: for one large product (a Linear layer over the
/// whole batch) rather than many small ones.
fn parallel_gemm(
    shape: GemmShape,
    dst: (&mut [f32], usize, usize),
    lhs: (&[f32], usize, usize),
    rhs: (&[f32], usize, usize),
    beta: f32,
    accumulate: bool,
) {
    let threads = gemm::Parallelism::Rayon(rayon::current_num_threads());
    gemm_on(threads, shape, dst, lhs, rhs, beta, accumulate);
}

/// The GEMM behind [`strided_gemm`] and [`parallel_gemm`].
///
/// Why unsafe: the `gemm` crate (the kernel burn's CPU backend itself uses) takes raw pointers
/// and strides. The asserts below check that every element the strides reach lies inside its
/// slice, which is all `gemm::gemm` needs; `dst` is a unique borrow, so nothing aliases it.
#[allow(unsafe_code)]
fn gemm_on(
    parallelism: gemm::Parallelism,
    GemmShape { m, n, k }: GemmShape,
    (dst, dst_rs, dst_cs): (&mut [f32], usize, usize),
    (lhs, lhs_rs, lhs_cs): (&[f32], usize, usize),
    (rhs, rhs_rs, rhs_cs): (&[f32], usize, usize),
    beta: f32,
    accumulate: bool,
) {
    let reach = |rows: usize, cols: usize, rs: usize, cs: usize| {
        (rows.max(1) - 1) * rs + (cols.max(1) - 1) * cs + 1
    };
    assert!(
        reach(m, n, dst_rs, dst_cs) <= dst.len(),
        "gemm: dst out of bounds"
    );
    assert!(
        reach(m, k, lhs_rs, lhs_cs) <= lhs.len(),
        "gemm: lhs out of bounds"
    );
    assert!(
        reach(k, n, rhs_rs, rhs_cs) <= rhs.len(),
        "gemm: rhs out of bounds"
    );
    let stride = |s: usize| isize::try_from(s).expect("stride fits isize");
    // SAFETY: the asserts above keep every accessed element inside its slice; `dst` is borrowed
    // mutably and the inputs immutably, so the output aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            stride(dst_cs),
            stride(dst_rs),
            accumulate,
            lhs.as_ptr(),
            stride(lhs_cs),
            stride(lhs_rs),
            rhs.as_ptr(),
            stride(rhs_cs),
            stride(rhs_rs),
            1.0,
            beta,
            false,
            false,
            false,
            parallelism,
        );
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
    use crate::{CpuAutodiffBackend, CpuBackend};

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

    #[test]
    fn encoder_attention_matches_burn_with_padding() {
        use burn::tensor::module::attention;
        use burn::tensor::ops::AttentionModuleOptions;
        let device = Default::default();
        let (batch, seq, heads, d) = (3, 7, 2, 4);
        let hidden = heads * d;
        let values = |offset: usize| -> Tensor<CpuBackend, 3> {
            let v: Vec<f32> = (0..batch * seq * hidden)
                .map(|i| (((i * 37 + offset * 11) % 23) as f32 - 11.0) / 7.0)
                .collect();
            Tensor::from_data(TensorData::new(v, [batch, seq, hidden]), &device)
        };
        let (q, k, v) = (values(1), values(2), values(3));
        // Sequence lengths 7, 4 and 1.
        let padded: Vec<bool> = (0..batch * seq)
            .map(|i| i % seq >= [7, 4, 1][i / seq])
            .collect();
        let key_padding = Tensor::<CpuBackend, 2, Bool>::from_data(
            TensorData::new(padded, [batch, seq]),
            &device,
        );

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
        let (batch, seq, heads, d) = (3, 7, 2, 4);
        let hidden = heads * d;
        let prob = 0.3;
        let data = |offset: usize| {
            let v: Vec<f32> = (0..batch * seq * hidden)
                .map(|i| (((i * 37 + offset * 11) % 23) as f32 - 11.0) / 7.0)
                .collect();
            TensorData::new(v, [batch, seq, hidden])
        };
        let leaf = |offset| Tensor::<AB, 3>::from_data(data(offset), &device).require_grad();
        // Sequence lengths 7, 4 and 1.
        let padded: Vec<bool> = (0..batch * seq)
            .map(|i| i % seq >= [7, 4, 1][i / seq])
            .collect();
        let key_padding =
            Tensor::<AB, 2, Bool>::from_data(TensorData::new(padded, [batch, seq]), &device);
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
        <AB as Backend>::seed(&device, 5);
        let fast =
            encoder_attention_train(&q, &k, &v, &key_padding, heads, prob).expect("Autodiff<Flex>");
        let grads = (fast.clone() * weights.clone()).sum().backward();

        // The same mask: the same seed, drawn the same way.
        <AB as Backend>::seed(&device, 5);
        let params = DropoutParams::new(prob, draw_seed());
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
    fn dropout_drops_about_p_scales_the_rest_and_is_reproducible() {
        use burn::nn::DropoutConfig;
        let device = Default::default();
        let module = DropoutConfig::new(0.25).init();
        let run = |seed: u64| {
            <CpuAutodiffBackend as Backend>::seed(&device, seed);
            let x = Tensor::<CpuAutodiffBackend, 2>::ones([300, 700], &device).require_grad();
            let y = dropout(&module, x.clone());
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
