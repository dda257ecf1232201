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
//!
//! This file is the façade: what the models call, and the helpers every kernel shares (the
//! backend check, parallel zeros, buffer reuse, recording an op for autodiff). One file per
//! kernel: `gelu`, `dropout`, `attention` (encoder attention, inference and training), `packed`
//! (attention over sequences packed without padding), `linear`, `layer_norm`, `adamw`; `gemm`
//! (strided matrix products) and `simd` (vectorisable scalar math) are their building blocks.

use std::any::Any;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};
use rayon::prelude::*;

mod adamw;
mod attention;
mod dropout;
mod gelu;
mod gemm;
mod layer_norm;
mod linear;
mod packed;
mod simd;

pub use adamw::{AdamWStep, Moments, adamw_update, squared_sum};

pub(crate) use attention::{encoder_attention, encoder_attention_train};
pub(crate) use dropout::dropout;
pub(crate) use gelu::gelu;
pub(crate) use layer_norm::layer_norm;
pub(crate) use linear::{Activation, linear, linear3, linear3_then, matmul_transposed};
pub(crate) use packed::{Packing, Queries};

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

/// An op's backward pass on `Autodiff<Flex>` as a plain function: given the op's recorded state,
/// its parents and its output node, it registers the parents' gradients.
#[derive(Debug)]
struct BackwardFn<S, const N: usize>(fn(Ops<S, N>, &mut Gradients));

impl<S, const N: usize> Backward<Flex, N> for BackwardFn<S, N>
where
    S: Clone + Send + std::fmt::Debug + 'static,
{
    type State = S;

    fn backward(self, ops: Ops<S, N>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        (self.0)(ops, grads);
    }
}

/// Finishes an op on `Autodiff<Flex>` prepared as `kind` (compute-bound and stateful): from
/// `input`, `tracked` makes the backward state and the output when some parent needs a gradient,
/// `untracked` only the output.
fn finish_op<O, T, const N: usize, const D: usize>(
    kind: OpsKind<O, Flex, O::State, NoCheckpointing, N>,
    input: T,
    tracked: impl FnOnce(T) -> (O::State, FlexTensor),
    untracked: impl FnOnce(T) -> FlexTensor,
) -> Tensor<Autodiff<Flex>, D>
where
    O: Backward<Flex, N>,
{
    let out = match kind {
        OpsKind::Tracked(prep) => {
            let (state, out) = tracked(input);
            prep.finish(state, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(untracked(input)),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// What a [`unary_op`] keeps for its backward pass: its own state and its gradient function.
type UnaryState<S> = (S, fn(S, FlexTensor) -> FlexTensor);

/// A one-input op on `Autodiff<Flex>`: `forward` maps the input's values to the output's. When
/// the input is tracked, `state` (of the input, taken before `forward` consumes it) is kept, and
/// the backward pass maps the output's gradient through `backward(state, grad)`.
fn unary_op<const D: usize, S>(
    x: Tensor<Autodiff<Flex>, D>,
    state: impl FnOnce(&FlexTensor) -> S,
    forward: impl Fn(FlexTensor) -> FlexTensor,
    backward: fn(S, FlexTensor) -> FlexTensor,
) -> Tensor<Autodiff<Flex>, D>
where
    S: Clone + Send + std::fmt::Debug + 'static,
{
    let x = x.into_primitive().tensor();
    let kind = BackwardFn(unary_backward::<S>)
        .prepare::<NoCheckpointing>([x.node])
        .compute_bound()
        .stateful();
    let tracked = |x| ((state(&x), backward), forward(x));
    finish_op(kind, x.primitive, tracked, &forward)
}

/// The backward pass of a [`unary_op`].
fn unary_backward<S>(ops: Ops<UnaryState<S>, 1>, grads: &mut Gradients) {
    let (state, backward) = ops.state;
    unary::<Flex, _>(ops.parents, ops.node, grads, |grad| backward(state, grad));
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

/// Deterministic inputs for the kernels' tests.
#[cfg(test)]
mod test_values {
    /// `n` values of a sawtooth over the element index `i`: `((i·step + salt·salt_step) mod
    /// period − period/2) / scale`. Each test file picks its own `[step, salt_step, period]` and
    /// `scale` (the spread of its values); each `salt` gives another sequence.
    pub(super) fn sawtooth(
        n: usize,
        salt: usize,
        [step, salt_step, period]: [usize; 3],
        scale: f32,
    ) -> Vec<f32> {
        let half = (period / 2) as f32;
        (0..n)
            .map(|i| (((i * step + salt * salt_step) % period) as f32 - half) / scale)
            .collect()
    }
}
