//! T5 encoder–decoder (original T5 and T5 v1.1 / Flan-T5 style) mirroring
//! `transformers.T5ForConditionalGeneration`.
//!
//! The module tree follows HF's so that parameter names map one to one
//! (`encoder.block.N.layer.0.SelfAttention.q`, `decoder.block.N.layer.1.EncDecAttention`,
//! `layer.M.DenseReluDense.wi_0`, `layer.M.layer_norm`, `shared`, `lm_head`, see
//! [`crate::params`]). A block's `layer` list is a `Vec` of [`T5SubLayer`]s (self-attention, then
//! cross-attention in the decoder, then feed-forward), as HF's `ModuleList`; the enum's variant
//! names do not appear in parameter names.
//!
//! Numerics follow `transformers` (checked by `tests/t5_parity.rs` against fixtures from
//! `tests/fixtures/gen_t5.py`):
//! - T5LayerNorm is an RMS norm: `weight * x / sqrt(mean(x²) + eps)`, no bias, no mean;
//! - attention scores are **not** scaled by `1/sqrt(d_kv)` (T5 folds that into its init); a
//!   learned relative position bias is added instead. Only the first block of each stack owns the
//!   bias table (`relative_attention_bias`, `[buckets, heads]`); the other blocks reuse the bias it
//!   computes. Encoder buckets are bidirectional, decoder buckets unidirectional (past only);
//!   cross-attention has no position bias;
//! - feed-forward is `wo(act(wi(x)))` (`feed_forward_proj = "relu"`, T5 v1.0) or
//!   `wo(act(wi_0(x)) * wi_1(x))` (`"gated-gelu"`, T5 v1.1, with the tanh approximation HF calls
//!   `gelu_new`);
//! - with tied embeddings the decoder output is rescaled by `d_model^-0.5` before the shared
//!   embedding matrix projects it to the vocabulary (HF's `scale_decoder_outputs`); an untied
//!   `lm_head` gets no rescaling;
//! - teacher forcing: `decoder_input_ids = shift_right(labels)` (the decoder start token first,
//!   `-100` replaced by the pad id), mean cross-entropy over labels that are not `-100`;
//! - generation encodes once, caches the decoder's self-attention keys/values and the
//!   cross-attention keys/values of the encoder output, and follows `generate()`: greedy (a row
//!   that produced an end-of-sequence id continues with the pad id until all rows are done), or
//!   transformers 5's beam search (length penalty, `early_stopping` modes).

// HF's parameter names `SelfAttention`, `EncDecAttention` and `DenseReluDense` are struct fields
// here (burn names parameters after fields), and the derived `Module` code binds them as
// variables, so the lint cannot be silenced on the structs alone.
#![allow(non_snake_case)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::{Initializer, Module, Param};
use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::tensor::activation;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{ModelError, Result};
use crate::export;
use crate::llama::{BeamSearchConfig, EarlyStopping};
use crate::loss;
use crate::params::{self, Coverage, HfNamed, HfTensor};
use crate::weights::{self, Checkpoint, SAFETENSORS_FILE};

/// Labels equal to this are left out of the loss (PyTorch's default `ignore_index`).
pub const IGNORE_INDEX: i64 = -100;

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

fn default_num_buckets() -> usize {
    32
}
fn default_max_distance() -> usize {
    128
}
fn default_dropout() -> f64 {
    0.1
}
fn default_eps() -> f64 {
    1e-6
}
fn default_initializer_factor() -> f64 {
    1.0
}
fn default_feed_forward_proj() -> String {
    "relu".into()
}
fn default_true() -> bool {
    true
}
fn default_pad() -> Option<i64> {
    Some(0)
}
fn default_eos() -> Option<Value> {
    Some(Value::from(1))
}

/// A T5 `config.json`, field for field as `transformers.T5Config` writes it. Fields we do not
/// interpret (`dense_act_fn`, `is_gated_act`, `task_specific_params`, ...) are kept in `extra`
/// and written back unchanged on export.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct T5Config {
    pub vocab_size: usize,
    pub d_model: usize,
    /// Size of one attention head (`heads * d_kv` need not equal `d_model`).
    pub d_kv: usize,
    pub d_ff: usize,
    /// Encoder blocks.
    pub num_layers: usize,
    /// Decoder blocks (`num_layers` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_decoder_layers: Option<usize>,
    pub num_heads: usize,
    #[serde(default = "default_num_buckets")]
    pub relative_attention_num_buckets: usize,
    #[serde(default = "default_max_distance")]
    pub relative_attention_max_distance: usize,
    #[serde(default = "default_dropout")]
    pub dropout_rate: f64,
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    /// Scale of HF's random init (only used for fresh models).
    #[serde(default = "default_initializer_factor")]
    pub initializer_factor: f64,
    /// `"relu"` (T5 v1.0), `"gated-gelu"` (T5 v1.1), or more generally `[gated-]ACT`.
    #[serde(default = "default_feed_forward_proj")]
    pub feed_forward_proj: String,
    #[serde(default = "default_true")]
    pub tie_word_embeddings: bool,
    /// Whether the decoder output is multiplied by `d_model^-0.5` before the LM head. Written by
    /// transformers ≥ 5; older configs imply it from `tie_word_embeddings`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_decoder_outputs: Option<bool>,
    #[serde(default = "default_pad")]
    pub pad_token_id: Option<i64>,
    /// One id or a list (HF allows both).
    #[serde(default = "default_eos")]
    pub eos_token_id: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoder_start_token_id: Option<i64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The nonlinearity of the feed-forward block (HF's `dense_act_fn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum T5Activation {
    Relu,
    /// Exact GELU (`erf`), HF's `"gelu"`.
    Gelu,
    /// The tanh approximation of GELU, HF's `"gelu_new"` (what `"gated-gelu"` means).
    GeluTanh,
    Silu,
}

impl T5Activation {
    fn apply<B: Backend, const D: usize>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Self::Relu => activation::relu(x),
            Self::Gelu => activation::gelu(x),
            Self::GeluTanh => gelu_tanh(x),
            Self::Silu => activation::silu(x),
        }
    }
}

/// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`, written with products so negative inputs never go
/// through a real-valued power.
fn gelu_tanh<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let sqrt_2_over_pi = (2.0 / std::f64::consts::PI).sqrt();
    let cube = x.clone() * x.clone() * x.clone();
    let inner = (x.clone() + cube.mul_scalar(0.044715)).mul_scalar(sqrt_2_over_pi);
    x.mul_scalar(0.5) * inner.tanh().add_scalar(1.0)
}

/// The feed-forward shape a config asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedForwardKind {
    /// `wi_0`/`wi_1` (gated) or a single `wi`.
    pub gated: bool,
    pub activation: T5Activation,
}

impl T5Config {
    /// Reads and validates a `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let config: Self = serde_json::from_str(&text).map_err(|source| ModelError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every option we would otherwise silently mis-compute.
    pub fn validate(&self) -> Result<()> {
        self.feed_forward()?;
        for (field, value) in [
            ("vocab_size", self.vocab_size),
            ("d_model", self.d_model),
            ("d_kv", self.d_kv),
            ("d_ff", self.d_ff),
            ("num_heads", self.num_heads),
        ] {
            if value == 0 {
                return Err(ModelError::unsupported(field, "must be positive"));
            }
        }
        let buckets = self.relative_attention_num_buckets;
        // Bidirectional buckets split in two halves, each half in exact and logarithmic parts.
        if buckets < 4 {
            return Err(ModelError::unsupported(
                "relative_attention_num_buckets",
                format!("{buckets} is too small (at least 4 are needed)"),
            ));
        }
        if self.relative_attention_max_distance <= buckets / 2 {
            return Err(ModelError::unsupported(
                "relative_attention_max_distance",
                format!(
                    "{} must exceed half the number of buckets ({})",
                    self.relative_attention_max_distance,
                    buckets / 2
                ),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout_rate) {
            return Err(ModelError::unsupported(
                "dropout_rate",
                format!("{} is not in [0, 1)", self.dropout_rate),
            ));
        }
        if self.extra.get("is_decoder").and_then(Value::as_bool) == Some(true) {
            return Err(ModelError::unsupported(
                "is_decoder",
                "a decoder-only T5 is not supported (T5ForConditionalGeneration only)",
            ));
        }
        Ok(())
    }

    /// Parses `feed_forward_proj` the way `T5Config` does: `[gated-]ACT`, where `gated-gelu`
    /// means the tanh approximation.
    pub fn feed_forward(&self) -> Result<FeedForwardKind> {
        let proj = self.feed_forward_proj.as_str();
        let parts: Vec<&str> = proj.split('-').collect();
        let bad = |why: String| ModelError::unsupported("feed_forward_proj", why);
        let (gated, act) = match parts.as_slice() {
            [act] => (false, *act),
            ["gated", act] => (true, *act),
            _ => {
                return Err(bad(format!(
                    "`{proj}` is not of the form `ACT` or `gated-ACT` (e.g. `relu`, `gated-gelu`)"
                )));
            }
        };
        let activation = match (proj, act) {
            ("gated-gelu", _) => T5Activation::GeluTanh,
            (_, "relu") => T5Activation::Relu,
            (_, "gelu") => T5Activation::Gelu,
            (_, "gelu_new" | "gelu_pytorch_tanh") => T5Activation::GeluTanh,
            (_, "silu" | "swish") => T5Activation::Silu,
            (_, other) => {
                return Err(bad(format!(
                    "activation `{other}` is not supported (relu, gelu, gelu_new, gelu_pytorch_tanh, silu)"
                )));
            }
        };
        Ok(FeedForwardKind { gated, activation })
    }

    pub fn num_decoder_layers(&self) -> usize {
        self.num_decoder_layers.unwrap_or(self.num_layers)
    }

    /// Whether the decoder output is rescaled by `d_model^-0.5` (see the field's docs).
    pub fn scales_decoder_outputs(&self) -> bool {
        self.scale_decoder_outputs
            .unwrap_or(self.tie_word_embeddings)
    }

    /// The end-of-sequence ids (HF allows one or a list).
    pub fn eos_token_ids(&self) -> Vec<i64> {
        match &self.eos_token_id {
            Some(Value::Number(n)) => n.as_i64().into_iter().collect(),
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_i64).collect(),
            _ => Vec::new(),
        }
    }

    /// The config for training without dropout (as the parity tests do).
    pub fn without_dropout(mut self) -> Self {
        self.dropout_rate = 0.0;
        self
    }

    /// The config as `transformers` would write it (our fields plus the untouched extras).
    pub fn to_json(&self) -> Result<Value> {
        serde_json::to_value(self).map_err(|e| ModelError::InvalidInput(e.to_string()))
    }
}

// ---------------------------------------------------------------------------------------------
// Relative positions
// ---------------------------------------------------------------------------------------------

/// HF's `T5Attention._relative_position_bucket` for one relative position
/// (`key_position - query_position`). Half of the buckets (per direction when bidirectional) are
/// exact small distances, the rest logarithmically wider bins up to `max_distance`; the float
/// arithmetic is done in f32 as PyTorch does, so bins agree at their edges.
pub fn relative_position_bucket(
    relative_position: i64,
    bidirectional: bool,
    num_buckets: usize,
    max_distance: usize,
) -> usize {
    let mut num_buckets = num_buckets as i64;
    let mut bucket = 0i64;
    let distance = if bidirectional {
        num_buckets /= 2;
        if relative_position > 0 {
            bucket += num_buckets;
        }
        relative_position.abs()
    } else {
        // Only the past counts: future positions (masked anyway) share bucket 0.
        (-relative_position).max(0)
    };
    let max_exact = num_buckets / 2;
    if distance < max_exact {
        return (bucket + distance) as usize;
    }
    let log_ratio = (distance as f32 / max_exact as f32).ln();
    let log_range = (max_distance as f64 / max_exact as f64).ln() as f32;
    let large = max_exact + (log_ratio / log_range * (num_buckets - max_exact) as f32) as i64;
    (bucket + large.min(num_buckets - 1)) as usize
}

// ---------------------------------------------------------------------------------------------
// Layers
// ---------------------------------------------------------------------------------------------

/// HF's `T5LayerNorm`: an RMS norm with a learned scale, no bias, no mean subtraction.
#[derive(Module, Debug)]
pub struct T5LayerNorm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
    eps: f64,
}

impl<B: Backend> T5LayerNorm<B> {
    fn new(size: usize, eps: f64, device: &B::Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::ones([size], device)),
            eps,
        }
    }

    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let variance = x.clone().square().mean_dim(2);
        let normed = x * variance.add_scalar(self.eps).sqrt().recip();
        normed * self.weight.val().unsqueeze::<3>()
    }
}

/// Keys and values of one attention layer, `[batch, heads, positions, d_kv]`.
#[derive(Debug, Clone)]
struct KeyValue<B: Backend> {
    key: Tensor<B, 4>,
    value: Tensor<B, 4>,
}

/// HF's `T5Attention` (self- or cross-attention). Scores are not scaled; the position bias and
/// the mask come from the caller.
#[derive(Module, Debug)]
pub struct T5Attention<B: Backend> {
    pub q: Linear<B>,
    pub k: Linear<B>,
    pub v: Linear<B>,
    pub o: Linear<B>,
    /// `[buckets, heads]`, only in the first block's self-attention.
    pub relative_attention_bias: Option<Embedding<B>>,
    dropout: Dropout,
    num_heads: usize,
    d_kv: usize,
}

impl<B: Backend> T5Attention<B> {
    /// `[batch, seq, heads * d_kv]` → `[batch, heads, seq, d_kv]`.
    fn split_heads(&self, x: Tensor<B, 3>) -> Tensor<B, 4> {
        let [batch, seq, _] = x.dims();
        x.reshape([batch, seq, self.num_heads, self.d_kv])
            .swap_dims(1, 2)
    }

    fn key_value(&self, states: Tensor<B, 3>) -> KeyValue<B> {
        KeyValue {
            key: self.split_heads(self.k.forward(states.clone())),
            value: self.split_heads(self.v.forward(states)),
        }
    }

    /// The bias `[1, heads, query_len, key_len]` for queries at positions `past..past +
    /// query_len` and keys at `0..key_len`; `None` without a bias table.
    fn position_bias(
        &self,
        query_len: usize,
        key_len: usize,
        past: usize,
        buckets: &BucketSpec,
    ) -> Option<Tensor<B, 4>> {
        let table = self.relative_attention_bias.as_ref()?;
        let device = table.weight.device();
        let mut ids = Vec::with_capacity(query_len * key_len);
        for i in 0..query_len {
            for j in 0..key_len {
                let relative = j as i64 - (past + i) as i64;
                ids.push(relative_position_bucket(
                    relative,
                    buckets.bidirectional,
                    buckets.num_buckets,
                    buckets.max_distance,
                ) as i64);
            }
        }
        let ids =
            Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [query_len, key_len]), &device);
        // [q, k, heads] → [1, heads, q, k]
        Some(table.forward(ids).permute([2, 0, 1]).unsqueeze::<4>())
    }

    /// Attention of `x` over itself (`key_value_states = None`, keys/values appended to `cache`
    /// when given) or over `key_value_states` (cross-attention; computed once into `cache` when
    /// given). `bias`: `[1, heads, q, k]`; `mask`: `[batch, 1, q, k]`, true where a key must be
    /// ignored.
    fn forward(
        &self,
        x: Tensor<B, 3>,
        key_value_states: Option<&Tensor<B, 3>>,
        cache: Option<&mut Option<KeyValue<B>>>,
        bias: Option<&Tensor<B, 4>>,
        mask: Option<&Tensor<B, 4, Bool>>,
    ) -> Tensor<B, 3> {
        let [batch, seq, _] = x.dims();
        let query = self.split_heads(self.q.forward(x.clone()));
        let kv = match (key_value_states, cache) {
            (Some(states), Some(slot)) => slot
                .get_or_insert_with(|| self.key_value(states.clone()))
                .clone(),
            (Some(states), None) => self.key_value(states.clone()),
            (None, Some(slot)) => {
                let new = self.key_value(x);
                let kv = match slot.take() {
                    Some(past) => KeyValue {
                        key: Tensor::cat(vec![past.key, new.key], 2),
                        value: Tensor::cat(vec![past.value, new.value], 2),
                    },
                    None => new,
                };
                *slot = Some(kv.clone());
                kv
            }
            (None, None) => self.key_value(x),
        };
        let keys = kv.key.dims()[2];
        let shape = [batch, self.num_heads, seq, keys];
        let mut scores = query.matmul(kv.key.swap_dims(2, 3));
        if let Some(bias) = bias {
            scores = scores + bias.clone().expand(shape);
        }
        if let Some(mask) = mask {
            scores = scores.mask_fill(mask.clone().expand(shape), f32::MIN);
        }
        let probs = self.dropout.forward(activation::softmax(scores, 3));
        let context = probs.matmul(kv.value).swap_dims(1, 2).reshape([
            batch,
            seq,
            self.num_heads * self.d_kv,
        ]);
        self.o.forward(context)
    }
}

/// HF's `T5LayerSelfAttention`: pre-norm self-attention with a residual connection.
#[derive(Module, Debug)]
pub struct T5LayerSelfAttention<B: Backend> {
    pub SelfAttention: T5Attention<B>,
    pub layer_norm: T5LayerNorm<B>,
    dropout: Dropout,
}

/// HF's `T5LayerCrossAttention`: pre-norm attention over the encoder output.
#[derive(Module, Debug)]
pub struct T5LayerCrossAttention<B: Backend> {
    pub EncDecAttention: T5Attention<B>,
    pub layer_norm: T5LayerNorm<B>,
    dropout: Dropout,
}

/// HF's `T5DenseActDense`: `wo(act(wi(x)))`.
#[derive(Module, Debug)]
pub struct T5DenseActDense<B: Backend> {
    pub wi: Linear<B>,
    pub wo: Linear<B>,
    dropout: Dropout,
    #[module(skip)]
    activation: T5Activation,
}

/// HF's `T5DenseGatedActDense`: `wo(act(wi_0(x)) * wi_1(x))`.
#[derive(Module, Debug)]
pub struct T5DenseGatedActDense<B: Backend> {
    pub wi_0: Linear<B>,
    pub wi_1: Linear<B>,
    pub wo: Linear<B>,
    dropout: Dropout,
    #[module(skip)]
    activation: T5Activation,
}

/// The two feed-forward shapes (HF's `DenseReluDense` attribute holds one or the other).
#[allow(clippy::large_enum_variant)] // one per block: not worth boxing
#[derive(Module, Debug)]
pub enum T5FeedForward<B: Backend> {
    Dense(T5DenseActDense<B>),
    Gated(T5DenseGatedActDense<B>),
}

impl<B: Backend> T5FeedForward<B> {
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        match self {
            Self::Dense(ff) => {
                let hidden = ff.activation.apply(ff.wi.forward(x));
                ff.wo.forward(ff.dropout.forward(hidden))
            }
            Self::Gated(ff) => {
                let gate = ff.activation.apply(ff.wi_0.forward(x.clone()));
                let hidden = gate * ff.wi_1.forward(x);
                ff.wo.forward(ff.dropout.forward(hidden))
            }
        }
    }
}

/// HF's `T5LayerFF`: pre-norm feed-forward with a residual connection.
#[derive(Module, Debug)]
pub struct T5LayerFF<B: Backend> {
    pub DenseReluDense: T5FeedForward<B>,
    pub layer_norm: T5LayerNorm<B>,
    dropout: Dropout,
}

/// One entry of a block's `layer` list.
#[allow(clippy::large_enum_variant)] // a handful per model: not worth boxing
#[derive(Module, Debug)]
pub enum T5SubLayer<B: Backend> {
    SelfAttention(T5LayerSelfAttention<B>),
    CrossAttention(T5LayerCrossAttention<B>),
    FeedForward(T5LayerFF<B>),
}

/// HF's `T5Block`: `[self-attention, (cross-attention,) feed-forward]`.
#[derive(Module, Debug)]
pub struct T5Block<B: Backend> {
    pub layer: Vec<T5SubLayer<B>>,
}

/// How a stack turns relative positions into buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BucketSpec {
    bidirectional: bool,
    num_buckets: usize,
    max_distance: usize,
}

/// Per-layer caches of one generation: decoder self-attention keys/values (growing) and
/// cross-attention keys/values of the encoder output (computed at the first step).
#[derive(Debug, Clone)]
struct DecoderCache<B: Backend> {
    self_attention: Vec<Option<KeyValue<B>>>,
    cross_attention: Vec<Option<KeyValue<B>>>,
    /// Decoder positions already cached.
    len: usize,
}

impl<B: Backend> DecoderCache<B> {
    fn new(layers: usize) -> Self {
        Self {
            self_attention: vec![None; layers],
            cross_attention: vec![None; layers],
            len: 0,
        }
    }

    /// Reorders the batch rows (beam search keeps the surviving beams' caches).
    fn select_rows(&mut self, rows: &[usize], device: &B::Device) {
        let index = Tensor::<B, 1, Int>::from_data(
            TensorData::new(
                rows.iter().map(|&r| r as i64).collect::<Vec<_>>(),
                [rows.len()],
            ),
            device,
        );
        for slot in self.self_attention.iter_mut().flatten() {
            slot.key = slot.key.clone().select(0, index.clone());
            slot.value = slot.value.clone().select(0, index.clone());
        }
    }
}

/// HF's `T5Stack` without its `embed_tokens` (the model's `shared` embedding is passed in).
#[derive(Module, Debug)]
pub struct T5Stack<B: Backend> {
    pub block: Vec<T5Block<B>>,
    pub final_layer_norm: T5LayerNorm<B>,
    dropout: Dropout,
    #[module(skip)]
    buckets: BucketSpec,
}

impl<B: Backend> T5Stack<B> {
    /// The shared position bias, computed by the first block's self-attention table.
    fn position_bias(&self, query_len: usize, key_len: usize, past: usize) -> Option<Tensor<B, 4>> {
        let first = self.block.first()?;
        first.layer.iter().find_map(|sub| match sub {
            T5SubLayer::SelfAttention(l) => {
                l.SelfAttention
                    .position_bias(query_len, key_len, past, &self.buckets)
            }
            _ => None,
        })
    }

    /// Runs the stack on embedded inputs. `self_mask`: `[batch, 1, q, past + q]`; `encoder`:
    /// the encoder output and its mask `[batch, 1, q, enc_len]` (decoder only); `cache`: the
    /// generation caches (decoder only).
    fn forward(
        &self,
        embeds: Tensor<B, 3>,
        self_mask: &Tensor<B, 4, Bool>,
        encoder: Option<(&Tensor<B, 3>, &Tensor<B, 4, Bool>)>,
        mut cache: Option<&mut DecoderCache<B>>,
    ) -> Tensor<B, 3> {
        let query_len = embeds.dims()[1];
        let past = cache.as_ref().map_or(0, |c| c.len);
        let bias = self.position_bias(query_len, past + query_len, past);
        let mut x = self.dropout.forward(embeds);
        for (index, block) in self.block.iter().enumerate() {
            for sub in &block.layer {
                x = match sub {
                    T5SubLayer::SelfAttention(l) => {
                        let slot = cache.as_deref_mut().map(|c| &mut c.self_attention[index]);
                        let out = l.SelfAttention.forward(
                            l.layer_norm.forward(x.clone()),
                            None,
                            slot,
                            bias.as_ref(),
                            Some(self_mask),
                        );
                        x + l.dropout.forward(out)
                    }
                    T5SubLayer::CrossAttention(l) => match encoder {
                        // As in HF, a decoder without encoder states skips cross-attention.
                        None => x,
                        Some((states, mask)) => {
                            let slot = cache.as_deref_mut().map(|c| &mut c.cross_attention[index]);
                            let out = l.EncDecAttention.forward(
                                l.layer_norm.forward(x.clone()),
                                Some(states),
                                slot,
                                None,
                                Some(mask),
                            );
                            x + l.dropout.forward(out)
                        }
                    },
                    T5SubLayer::FeedForward(l) => {
                        let out = l.DenseReluDense.forward(l.layer_norm.forward(x.clone()));
                        x + l.dropout.forward(out)
                    }
                };
            }
        }
        if let Some(c) = cache {
            c.len += query_len;
        }
        self.dropout.forward(self.final_layer_norm.forward(x))
    }
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

/// A padded batch of encoder inputs, kept on the host because masks are built from it.
/// `attention_mask` is 1 for real tokens, 0 for padding (left or right: T5's relative positions
/// allow both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seq2SeqInput {
    pub input_ids: Vec<Vec<i64>>,
    pub attention_mask: Vec<Vec<i64>>,
}

impl Seq2SeqInput {
    /// Rows without padding (all of the same length).
    pub fn unpadded(input_ids: Vec<Vec<i64>>) -> Self {
        let attention_mask = input_ids.iter().map(|r| vec![1; r.len()]).collect();
        Self {
            input_ids,
            attention_mask,
        }
    }

    /// Right-pads rows of different lengths with `pad_token_id`.
    pub fn padded(rows: &[Vec<i64>], pad_token_id: i64) -> Self {
        let width = rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut input_ids = Vec::with_capacity(rows.len());
        let mut attention_mask = Vec::with_capacity(rows.len());
        for row in rows {
            let pad = width - row.len();
            input_ids.push(
                row.iter()
                    .copied()
                    .chain(std::iter::repeat_n(pad_token_id, pad))
                    .collect(),
            );
            attention_mask.push(
                std::iter::repeat_n(1, row.len())
                    .chain(std::iter::repeat_n(0, pad))
                    .collect(),
            );
        }
        Self {
            input_ids,
            attention_mask,
        }
    }

    fn check(&self, vocab: usize) -> Result<(usize, usize)> {
        let batch = self.input_ids.len();
        let seq = self.input_ids.first().map_or(0, Vec::len);
        if batch == 0 || seq == 0 {
            return Err(ModelError::InvalidInput("empty batch".into()));
        }
        if self.attention_mask.len() != batch {
            return Err(ModelError::InvalidInput(format!(
                "{batch} input rows but {} mask rows",
                self.attention_mask.len()
            )));
        }
        for (i, (ids, mask)) in self.input_ids.iter().zip(&self.attention_mask).enumerate() {
            if ids.len() != seq || mask.len() != seq {
                return Err(ModelError::InvalidInput(format!(
                    "row {i}: every input and mask row must have length {seq}"
                )));
            }
            check_ids(i, ids, vocab)?;
            if mask.iter().any(|&m| m != 0 && m != 1) {
                return Err(ModelError::InvalidInput(format!(
                    "row {i}: attention_mask values must be 0 or 1"
                )));
            }
            if !mask.contains(&1) {
                return Err(ModelError::InvalidInput(format!(
                    "row {i}: attention_mask has no real token"
                )));
            }
        }
        Ok((batch, seq))
    }
}

fn check_ids(row: usize, ids: &[i64], vocab: usize) -> Result<()> {
    match ids.iter().find(|&&t| t < 0 || t as usize >= vocab) {
        Some(bad) => Err(ModelError::InvalidInput(format!(
            "row {row}: token id {bad} outside the vocabulary (size {vocab})"
        ))),
        None => Ok(()),
    }
}

/// What a teacher-forced forward returns.
#[derive(Debug, Clone)]
pub struct Seq2SeqOutput<B: Backend> {
    /// `[batch, input_len, d_model]`.
    pub encoder_last_hidden_state: Tensor<B, 3>,
    /// `[batch, target_len, vocab]`.
    pub logits: Tensor<B, 3>,
    /// Mean cross-entropy over the labels that are not [`IGNORE_INDEX`].
    pub loss: Tensor<B, 1>,
}

/// Token ids and scaling the model needs beyond its weights.
#[derive(Debug, Clone)]
struct T5Settings {
    d_model: usize,
    scale_decoder_outputs: bool,
    pad_token_id: Option<i64>,
    decoder_start_token_id: Option<i64>,
}

/// HF's `T5ForConditionalGeneration`. With tied embeddings `lm_head` is `None` and the output
/// projection is the `shared` embedding matrix.
#[derive(Module, Debug)]
pub struct T5ForConditionalGeneration<B: Backend> {
    pub shared: Embedding<B>,
    pub encoder: T5Stack<B>,
    pub decoder: T5Stack<B>,
    pub lm_head: Option<Linear<B>>,
    #[module(skip)]
    settings: T5Settings,
}

impl<B: Backend> HfNamed<B> for T5ForConditionalGeneration<B> {
    fn hf_base_prefix(&self) -> &str {
        ""
    }
}

fn linear<B: Backend>(d_in: usize, d_out: usize, std: f64, device: &B::Device) -> Linear<B> {
    LinearConfig::new(d_in, d_out)
        .with_bias(false)
        .with_initializer(Initializer::Normal { mean: 0.0, std })
        .init(device)
}

fn int_tensor<B: Backend>(rows: &[Vec<i64>], device: &B::Device) -> Tensor<B, 2, Int> {
    let shape = [rows.len(), rows.first().map_or(0, Vec::len)];
    let flat: Vec<i64> = rows.iter().flatten().copied().collect();
    Tensor::from_data(TensorData::new(flat, shape), device)
}

/// `[batch, 1, query_len, key_len]`, true where query `i` may not see key `j`.
fn bool_mask<B: Backend>(
    batch: usize,
    query_len: usize,
    key_len: usize,
    masked: impl Fn(usize, usize, usize) -> bool,
    device: &B::Device,
) -> Tensor<B, 4, Bool> {
    let mut data = Vec::with_capacity(batch * query_len * key_len);
    for b in 0..batch {
        for i in 0..query_len {
            for j in 0..key_len {
                data.push(masked(b, i, j));
            }
        }
    }
    Tensor::from_data(
        TensorData::new(data, [batch, 1, query_len, key_len]),
        device,
    )
}

fn tensor_rows(t: Tensor<impl Backend, 2>) -> Result<Vec<Vec<f32>>> {
    let [_, width] = t.dims();
    let data = t
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| ModelError::TensorData(format!("{e:?}")))?;
    Ok(data
        .chunks_exact(width.max(1))
        .map(<[f32]>::to_vec)
        .collect())
}

/// Index of the first maximum (as `torch.argmax`).
fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold(0, |best, (i, &v)| if v > values[best] { i } else { best })
}

/// `log_softmax` of one row, in f32 as PyTorch computes it (`x - max - ln Σ exp(x - max)`).
fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let log_sum = logits.iter().map(|&x| (x - max).exp()).sum::<f32>().ln();
    logits.iter().map(|&x| x - max - log_sum).collect()
}

impl<B: Backend> T5ForConditionalGeneration<B> {
    /// A randomly initialised model (HF's init: normal weights scaled by `initializer_factor`,
    /// unit norms), with every parameter materialised so clones are identical.
    pub fn new(config: &T5Config, device: &B::Device) -> Result<Self> {
        Ok(params::materialize(Self::new_lazy(
            config,
            !config.tie_word_embeddings,
            device,
        )?))
    }

    /// The module tree for `config`; `untied_head` decides whether `lm_head` exists.
    pub(crate) fn new_lazy(
        config: &T5Config,
        untied_head: bool,
        device: &B::Device,
    ) -> Result<Self> {
        config.validate()?;
        let ff = config.feed_forward()?;
        let factor = config.initializer_factor;
        let (d, dkv, heads, dff) = (config.d_model, config.d_kv, config.num_heads, config.d_ff);
        let inner = heads * dkv;
        let eps = config.layer_norm_epsilon;
        let dropout = || DropoutConfig::new(config.dropout_rate).init();
        let attention = |with_bias: bool| T5Attention {
            q: linear(d, inner, factor * ((d * dkv) as f64).powf(-0.5), device),
            k: linear(d, inner, factor * (d as f64).powf(-0.5), device),
            v: linear(d, inner, factor * (d as f64).powf(-0.5), device),
            o: linear(inner, d, factor * (inner as f64).powf(-0.5), device),
            relative_attention_bias: with_bias.then(|| {
                EmbeddingConfig::new(config.relative_attention_num_buckets, heads)
                    .with_initializer(Initializer::Normal {
                        mean: 0.0,
                        std: factor * (d as f64).powf(-0.5),
                    })
                    .init(device)
            }),
            dropout: dropout(),
            num_heads: heads,
            d_kv: dkv,
        };
        let feed_forward = || {
            let wi_std = factor * (d as f64).powf(-0.5);
            let wo = linear(dff, d, factor * (dff as f64).powf(-0.5), device);
            let dense = if ff.gated {
                T5FeedForward::Gated(T5DenseGatedActDense {
                    wi_0: linear(d, dff, wi_std, device),
                    wi_1: linear(d, dff, wi_std, device),
                    wo,
                    dropout: dropout(),
                    activation: ff.activation,
                })
            } else {
                T5FeedForward::Dense(T5DenseActDense {
                    wi: linear(d, dff, wi_std, device),
                    wo,
                    dropout: dropout(),
                    activation: ff.activation,
                })
            };
            T5SubLayer::FeedForward(T5LayerFF {
                DenseReluDense: dense,
                layer_norm: T5LayerNorm::new(d, eps, device),
                dropout: dropout(),
            })
        };
        let stack = |layers: usize, is_decoder: bool| T5Stack {
            block: (0..layers)
                .map(|i| {
                    let mut layer = vec![T5SubLayer::SelfAttention(T5LayerSelfAttention {
                        SelfAttention: attention(i == 0),
                        layer_norm: T5LayerNorm::new(d, eps, device),
                        dropout: dropout(),
                    })];
                    if is_decoder {
                        layer.push(T5SubLayer::CrossAttention(T5LayerCrossAttention {
                            EncDecAttention: attention(false),
                            layer_norm: T5LayerNorm::new(d, eps, device),
                            dropout: dropout(),
                        }));
                    }
                    layer.push(feed_forward());
                    T5Block { layer }
                })
                .collect(),
            final_layer_norm: T5LayerNorm::new(d, eps, device),
            dropout: dropout(),
            buckets: BucketSpec {
                bidirectional: !is_decoder,
                num_buckets: config.relative_attention_num_buckets,
                max_distance: config.relative_attention_max_distance,
            },
        };
        Ok(Self {
            shared: EmbeddingConfig::new(config.vocab_size, d)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: factor,
                })
                .init(device),
            encoder: stack(config.num_layers, false),
            decoder: stack(config.num_decoder_layers(), true),
            lm_head: untied_head.then(|| linear(d, config.vocab_size, factor, device)),
            settings: T5Settings {
                d_model: d,
                scale_decoder_outputs: config.scales_decoder_outputs(),
                pad_token_id: config.pad_token_id,
                decoder_start_token_id: config.decoder_start_token_id,
            },
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.shared.weight.dims()[0]
    }

    fn device(&self) -> B::Device {
        self.shared.weight.device()
    }

    fn pad_token_id(&self) -> Result<i64> {
        self.settings.pad_token_id.ok_or_else(|| {
            ModelError::unsupported("pad_token_id", "required to build decoder inputs (null)")
        })
    }

    fn decoder_start_token_id(&self) -> Result<i64> {
        self.settings.decoder_start_token_id.ok_or_else(|| {
            ModelError::unsupported(
                "decoder_start_token_id",
                "required to build decoder inputs (T5 uses the pad id, usually 0)",
            )
        })
    }

    /// The encoder's last hidden states `[batch, input_len, d_model]`.
    pub fn encode(&self, input: &Seq2SeqInput) -> Result<Tensor<B, 3>> {
        let (batch, seq) = input.check(self.vocab_size())?;
        Ok(self.encode_checked(input, batch, seq))
    }

    fn encode_checked(&self, input: &Seq2SeqInput, batch: usize, seq: usize) -> Tensor<B, 3> {
        let device = self.device();
        let mask = bool_mask::<B>(
            batch,
            seq,
            seq,
            |b, _, j| input.attention_mask[b][j] == 0,
            &device,
        );
        let embeds = self.shared.forward(int_tensor(&input.input_ids, &device));
        self.encoder.forward(embeds, &mask, None, None)
    }

    /// Cross-attention mask `[batch, 1, query_len, enc_len]` from the encoder's padding.
    fn encoder_mask(&self, attention_mask: &[Vec<i64>], query_len: usize) -> Tensor<B, 4, Bool> {
        let enc_len = attention_mask.first().map_or(0, Vec::len);
        bool_mask::<B>(
            attention_mask.len(),
            query_len,
            enc_len,
            |b, _, j| attention_mask[b][j] == 0,
            &self.device(),
        )
    }

    /// Decoder hidden states for `decoder_ids` after the `cache`d positions (none without a
    /// cache), attending causally to the decoder and fully to the encoder's real tokens.
    fn decode_hidden(
        &self,
        decoder_ids: &[Vec<i64>],
        encoder_hidden: &Tensor<B, 3>,
        encoder_mask: &Tensor<B, 4, Bool>,
        cache: Option<&mut DecoderCache<B>>,
    ) -> Tensor<B, 3> {
        let device = self.device();
        let batch = decoder_ids.len();
        let query_len = decoder_ids.first().map_or(0, Vec::len);
        let past = cache.as_ref().map_or(0, |c| c.len);
        let causal = bool_mask::<B>(
            batch,
            query_len,
            past + query_len,
            |_, i, j| j > past + i,
            &device,
        );
        let embeds = self.shared.forward(int_tensor(decoder_ids, &device));
        self.decoder
            .forward(embeds, &causal, Some((encoder_hidden, encoder_mask)), cache)
    }

    /// Decoder hidden states → logits (rescaled first when the config says so).
    fn project(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        let hidden = if self.settings.scale_decoder_outputs {
            hidden.mul_scalar((self.settings.d_model as f64).powf(-0.5))
        } else {
            hidden
        };
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => {
                let [batch, seq, d] = hidden.dims();
                hidden
                    .reshape([batch * seq, d])
                    .matmul(self.shared.weight.val().transpose())
                    .reshape([batch, seq, self.vocab_size()])
            }
        }
    }

    /// Logits `[batch, target_len, vocab]` for given decoder inputs (no decoder padding mask, as
    /// HF without `decoder_attention_mask`: positions after a row's end are computed but are
    /// meant to be ignored by the loss).
    pub fn logits(
        &self,
        input: &Seq2SeqInput,
        decoder_input_ids: &[Vec<i64>],
    ) -> Result<Tensor<B, 3>> {
        let (batch, seq) = input.check(self.vocab_size())?;
        self.check_decoder_ids(decoder_input_ids, batch)?;
        let hidden = self.encode_checked(input, batch, seq);
        Ok(self.logits_from_encoder(&hidden, &input.attention_mask, decoder_input_ids))
    }

    fn logits_from_encoder(
        &self,
        encoder_hidden: &Tensor<B, 3>,
        attention_mask: &[Vec<i64>],
        decoder_input_ids: &[Vec<i64>],
    ) -> Tensor<B, 3> {
        let target = decoder_input_ids[0].len();
        let mask = self.encoder_mask(attention_mask, target);
        self.project(self.decode_hidden(decoder_input_ids, encoder_hidden, &mask, None))
    }

    fn check_decoder_ids(&self, ids: &[Vec<i64>], batch: usize) -> Result<()> {
        let width = ids.first().map_or(0, Vec::len);
        if ids.len() != batch || width == 0 || ids.iter().any(|r| r.len() != width) {
            return Err(ModelError::InvalidInput(format!(
                "decoder inputs must be {batch} non-empty rows of equal length"
            )));
        }
        for (i, row) in ids.iter().enumerate() {
            check_ids(i, row, self.vocab_size())?;
        }
        Ok(())
    }

    /// HF's `_shift_right`: the decoder start token, then the labels without their last
    /// position, with `-100` replaced by the pad id.
    pub fn shift_right(&self, labels: &[Vec<i64>]) -> Result<Vec<Vec<i64>>> {
        let start = self.decoder_start_token_id()?;
        let pad = self.pad_token_id()?;
        Ok(labels
            .iter()
            .map(|row| {
                std::iter::once(start)
                    .chain(row.iter().take(row.len().saturating_sub(1)).copied())
                    .map(|t| if t == IGNORE_INDEX { pad } else { t })
                    .collect()
            })
            .collect())
    }

    /// Mean cross-entropy of `logits` `[batch, target_len, vocab]` against `labels`, ignoring
    /// [`IGNORE_INDEX`] (HF's `CrossEntropyLoss(ignore_index=-100)`).
    pub fn lm_loss(&self, logits: Tensor<B, 3>, labels: &[Vec<i64>]) -> Result<Tensor<B, 1>> {
        let [batch, target, vocab] = logits.dims();
        if labels.len() != batch || labels.iter().any(|r| r.len() != target) {
            return Err(ModelError::InvalidInput(format!(
                "labels must be {batch} rows of {target}"
            )));
        }
        for (i, row) in labels.iter().enumerate() {
            if let Some(bad) = row
                .iter()
                .find(|&&t| t != IGNORE_INDEX && (t < 0 || t as usize >= vocab))
            {
                return Err(ModelError::InvalidInput(format!(
                    "labels row {i}: {bad} is neither a token id (vocabulary size {vocab}) nor {IGNORE_INDEX}"
                )));
            }
        }
        if labels.iter().flatten().all(|&t| t == IGNORE_INDEX) {
            return Err(ModelError::InvalidInput(
                "every label is -100: the mean loss is undefined".into(),
            ));
        }
        let device = logits.device();
        let targets = int_tensor::<B>(labels, &device).reshape([batch * target]);
        Ok(loss::cross_entropy(
            logits.reshape([batch * target, vocab]),
            targets,
            Some(IGNORE_INDEX),
        ))
    }

    /// The teacher-forced forward of `model(input_ids, attention_mask, labels=labels)`:
    /// decoder inputs are `shift_right(labels)`.
    pub fn forward_with_labels(
        &self,
        input: &Seq2SeqInput,
        labels: &[Vec<i64>],
    ) -> Result<Seq2SeqOutput<B>> {
        let (batch, seq) = input.check(self.vocab_size())?;
        if labels.len() != batch {
            return Err(ModelError::InvalidInput(format!(
                "{batch} input rows but {} label rows",
                labels.len()
            )));
        }
        let decoder_input_ids = self.shift_right(labels)?;
        self.check_decoder_ids(&decoder_input_ids, batch)?;
        let encoder_last_hidden_state = self.encode_checked(input, batch, seq);
        let logits = self.logits_from_encoder(
            &encoder_last_hidden_state,
            &input.attention_mask,
            &decoder_input_ids,
        );
        let loss = self.lm_loss(logits.clone(), labels)?;
        Ok(Seq2SeqOutput {
            encoder_last_hidden_state,
            logits,
            loss,
        })
    }

    /// Last-position logits of one cached decoder step, one row per batch entry.
    fn step_logits(
        &self,
        tokens: &[i64],
        encoder_hidden: &Tensor<B, 3>,
        encoder_mask: &Tensor<B, 4, Bool>,
        cache: &mut DecoderCache<B>,
    ) -> Result<Vec<Vec<f32>>> {
        let ids: Vec<Vec<i64>> = tokens.iter().map(|&t| vec![t]).collect();
        let hidden = self.decode_hidden(&ids, encoder_hidden, encoder_mask, Some(cache));
        let batch = tokens.len();
        let logits = self.project(hidden).reshape([batch, self.vocab_size()]);
        tensor_rows(logits)
    }

    /// Greedy decoding as `generate(do_sample=False)`: the encoder runs once; the decoder starts
    /// from `decoder_start_token_id`, reuses its key/value caches, and a row that produced an
    /// end-of-sequence id continues with `pad_token_id`; decoding stops when every row has
    /// finished or after `max_new_tokens`. Returns the new tokens (without the start token).
    pub fn generate_greedy(
        &self,
        input: &Seq2SeqInput,
        max_new_tokens: usize,
        eos_token_ids: &[i64],
        pad_token_id: i64,
    ) -> Result<Vec<Vec<i64>>> {
        let (batch, seq) = input.check(self.vocab_size())?;
        let start = self.decoder_start_token_id()?;
        let encoder_hidden = self.encode_checked(input, batch, seq);
        let encoder_mask = self.encoder_mask(&input.attention_mask, 1);
        let mut cache = DecoderCache::new(self.decoder.block.len());
        let mut tokens = vec![start; batch];
        let mut out = vec![Vec::new(); batch];
        let mut finished = vec![false; batch];
        for _ in 0..max_new_tokens {
            let logits = self.step_logits(&tokens, &encoder_hidden, &encoder_mask, &mut cache)?;
            for (row, row_logits) in logits.iter().enumerate() {
                let token = if finished[row] {
                    pad_token_id
                } else {
                    argmax(row_logits) as i64
                };
                finished[row] |= eos_token_ids.contains(&token);
                out[row].push(token);
                tokens[row] = token;
            }
            if finished.iter().all(|&f| f) {
                break;
            }
        }
        Ok(out)
    }

    /// Beam search as `generate(num_beams=N, do_sample=False)` in transformers 5 (the
    /// vectorised implementation): per input row, the `N` running beams propose their
    /// `max(2, 1 + n_eos)·N` best continuations (summed log-probabilities); those among the top
    /// `N` that end in an end-of-sequence id (or reach the length limit) become finished
    /// hypotheses scored `sum_logprobs / generated_len^length_penalty`, the best `N` non-finished
    /// continuations run on. A row stops accepting hypotheses once its best running beam cannot
    /// beat the worst of `N` finished ones (HF's heuristic, at the current length) or, with
    /// `early_stopping`, once `N` are finished. Returns each row's best hypothesis, unpadded
    /// (ending with its end-of-sequence id unless the length limit cut it).
    pub fn generate_beam(
        &self,
        input: &Seq2SeqInput,
        config: &BeamSearchConfig,
        eos_token_ids: &[i64],
    ) -> Result<Vec<Vec<i64>>> {
        let (batch, seq) = input.check(self.vocab_size())?;
        let beams = config.num_beams;
        if beams == 0 {
            return Err(ModelError::InvalidInput(
                "num_beams must be at least 1".into(),
            ));
        }
        let start = self.decoder_start_token_id()?;
        let device = self.device();
        let vocab = self.vocab_size();
        let keep = 2.max(1 + eos_token_ids.len()) * beams;
        let stop_when_full = config.early_stopping == EarlyStopping::WhenFinished;
        // Every input row repeated `beams` times, as HF's `expand_inputs_for_generation`.
        let expanded: Vec<i64> = (0..batch as i64)
            .flat_map(|b| std::iter::repeat_n(b, beams))
            .collect();
        let mask_rows: Vec<Vec<i64>> = expanded
            .iter()
            .map(|&b| input.attention_mask[b as usize].clone())
            .collect();
        let index =
            Tensor::<B, 1, Int>::from_data(TensorData::new(expanded, [batch * beams]), &device);
        let encoder_hidden = self.encode_checked(input, batch, seq).select(0, index);
        let encoder_mask = self.encoder_mask(&mask_rows, 1);
        let mut cache = DecoderCache::new(self.decoder.block.len());
        // Only the first beam of a row starts alive (HF gives the others -1e9).
        let mut running: Vec<Vec<Hypothesis>> = (0..batch)
            .map(|_| {
                (0..beams)
                    .map(|k| Hypothesis::new(if k == 0 { 0.0 } else { -1e9 }, Vec::new(), false))
                    .collect()
            })
            .collect();
        let mut finished: Vec<Vec<Hypothesis>> =
            vec![vec![Hypothesis::new(-1e9, Vec::new(), false); beams]; batch];
        let mut improvable = vec![true; batch];
        let mut tokens = vec![start; batch * beams];
        for step in 0..config.max_new_tokens {
            let logits = self.step_logits(&tokens, &encoder_hidden, &encoder_mask, &mut cache)?;
            let at_limit = step + 1 >= config.max_new_tokens;
            let length_norm = ((step + 1) as f32).powf(config.length_penalty as f32);
            // HF's guess of the best length a running beam may still reach.
            let hypothetical_norm =
                if config.early_stopping == EarlyStopping::Never && config.length_penalty > 0.0 {
                    (config.max_new_tokens as f32).powf(config.length_penalty as f32)
                } else {
                    ((step + 1) as f32).powf(config.length_penalty as f32)
                };
            let mut sources = Vec::with_capacity(batch * beams);
            for b in 0..batch {
                // The best `keep` of all `beams × vocab` continuations (ties: lower index).
                let mut candidates: Vec<(f32, usize, i64)> = Vec::with_capacity(beams * vocab);
                for (k, beam) in running[b].iter().enumerate() {
                    for (token, lp) in log_softmax(&logits[b * beams + k]).into_iter().enumerate() {
                        candidates.push((beam.score + lp, k, token as i64));
                    }
                }
                candidates.sort_by(|x, y| y.0.total_cmp(&x.0));
                candidates.truncate(keep);
                let hits: Vec<bool> = candidates
                    .iter()
                    .map(|&(_, _, token)| at_limit || eos_token_ids.contains(&token))
                    .collect();
                let extend = |k: usize, token: i64| {
                    let mut t = running[b][k].tokens.clone();
                    t.push(token);
                    t
                };
                // Finished hypotheses: only the top `beams` candidates may finish.
                let all_finished = finished[b].iter().all(|h| h.finished);
                let mut merged = finished[b].clone();
                for (i, &(score, k, token)) in candidates.iter().enumerate() {
                    let just_finished = hits[i] && i < beams;
                    let mut s = score / length_norm;
                    if stop_when_full && all_finished {
                        s += -1e9;
                    }
                    if !improvable[b] {
                        s += -1e9;
                    }
                    if !just_finished {
                        s += -1e9;
                    }
                    merged.push(Hypothesis::new(s, extend(k, token), just_finished));
                }
                merged.sort_by(|x, y| y.score.total_cmp(&x.score));
                merged.truncate(beams);
                // Running beams: the best continuations that did not just finish.
                let mut next: Vec<(f32, usize, i64)> = candidates
                    .iter()
                    .zip(&hits)
                    .map(|(&(score, k, token), &hit)| {
                        (if hit { score - 1e9 } else { score }, k, token)
                    })
                    .collect();
                next.sort_by(|x, y| y.0.total_cmp(&x.0));
                next.truncate(beams);
                let next_running: Vec<Hypothesis> = next
                    .iter()
                    .map(|&(score, k, token)| Hypothesis::new(score, extend(k, token), false))
                    .collect();
                sources.extend(next.iter().map(|&(_, k, _)| b * beams + k));
                finished[b] = merged;
                running[b] = next_running;
                // Can a running beam still beat the worst finished hypothesis?
                let best_possible = running[b][0].score / hypothetical_norm;
                let worst = finished[b]
                    .iter()
                    .map(|h| h.score)
                    .fold(f32::INFINITY, f32::min);
                improvable[b] &= finished[b]
                    .iter()
                    .any(|h| best_possible > if h.finished { worst } else { -1e9 });
            }
            cache.select_rows(&sources, &device);
            tokens = running
                .iter()
                .flatten()
                .map(|h| h.tokens.last().copied().unwrap_or(start))
                .collect();
            let all_full = finished.iter().flatten().all(|h| h.finished);
            if at_limit || !improvable.iter().any(|&i| i) || (stop_when_full && all_full) {
                break;
            }
        }
        Ok(finished
            .into_iter()
            .map(|row| row.into_iter().next().map(|h| h.tokens).unwrap_or_default())
            .collect())
    }
}

/// A beam or a finished hypothesis: its score, its tokens after the decoder start token, and
/// (for the finished list) whether it really finished or only fills a slot.
#[derive(Debug, Clone)]
struct Hypothesis {
    score: f32,
    tokens: Vec<i64>,
    finished: bool,
}

impl Hypothesis {
    fn new(score: f32, tokens: Vec<i64>, finished: bool) -> Self {
        Self {
            score,
            tokens,
            finished,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Loading and export
// ---------------------------------------------------------------------------------------------

/// The cross-attention of the first decoder block has no bias table, but old checkpoints store
/// one; transformers ignores it, so do we.
const IGNORED_CROSS_BIAS: &str =
    "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight";
/// Copies of `shared.weight` that old checkpoints store under the stacks' names.
const EMBEDDING_ALIASES: [&str; 2] = ["encoder.embed_tokens.weight", "decoder.embed_tokens.weight"];

/// Loads a T5 model from an HF folder (`config.json` + safetensors / `.bin`).
pub fn load_t5<B: Backend>(
    dir: impl AsRef<Path>,
    device: &B::Device,
) -> Result<(T5ForConditionalGeneration<B>, T5Config)> {
    let dir = dir.as_ref();
    let config = T5Config::from_file(dir.join("config.json"))?;
    let checkpoint = weights::read_checkpoint(dir)?;
    let model = load_t5_checkpoint(&config, checkpoint, device)?;
    Ok((model, config))
}

/// Builds a model from `config` and assigns every tensor of `checkpoint`, strictly: a missing,
/// unexpected or wrongly-shaped tensor is an error naming it. Tolerated, as in `transformers`:
/// the stacks' `embed_tokens` copies of `shared.weight` (they must equal it), the unused
/// cross-attention bias table of old checkpoints, and `lm_head.weight` next to tied embeddings
/// when it equals `shared.weight`. A *different* `lm_head.weight` with tied embeddings is used as
/// an untied head, as transformers 5 does.
pub fn load_t5_checkpoint<B: Backend>(
    config: &T5Config,
    checkpoint: Checkpoint,
    device: &B::Device,
) -> Result<T5ForConditionalGeneration<B>> {
    let mut tensors = checkpoint.tensors;
    tensors.remove(IGNORED_CROSS_BIAS);
    let shared = tensors.get("shared.weight").cloned();
    for alias in EMBEDDING_ALIASES {
        if let Some(copy) = tensors.remove(alias) {
            if shared.as_ref().is_some_and(|s| *s != copy) {
                return Err(ModelError::WeightsFile {
                    path: PathBuf::from(alias),
                    message: format!(
                        "tensor `{alias}` differs from `shared.weight` (they are tied)"
                    ),
                });
            }
            if shared.is_none() {
                tensors.insert("shared.weight".into(), copy);
            }
        }
    }
    let mut untied = !config.tie_word_embeddings;
    if config.tie_word_embeddings
        && let Some(head) = tensors.get("lm_head.weight")
    {
        if tensors.get("shared.weight") == Some(head) {
            tensors.remove("lm_head.weight");
        } else {
            tracing::info!("tied config but a distinct lm_head.weight: loading it untied");
            untied = true;
        }
    }
    let model = T5ForConditionalGeneration::new_lazy(config, untied, device)?;
    let tensors: BTreeMap<String, HfTensor> = tensors;
    Ok(params::materialize(params::set_tensors(
        model,
        &tensors,
        Coverage::All,
        device,
    )?))
}

/// Writes `model` as an HF folder `transformers` loads as `T5ForConditionalGeneration`:
/// `config.json` (the original config, with `tie_word_embeddings` / `scale_decoder_outputs`
/// describing this model's head), `model.safetensors` (HF names) and, when `tokenizer_dir` is
/// given, its tokenizer files.
pub fn export_t5<B: Backend>(
    model: &T5ForConditionalGeneration<B>,
    config: &T5Config,
    out_dir: impl AsRef<Path>,
    tokenizer_dir: Option<&Path>,
) -> Result<()> {
    let out_dir = out_dir.as_ref();
    std::fs::create_dir_all(out_dir).map_err(|e| ModelError::io(out_dir, e))?;
    let mut config = config.clone();
    config.tie_word_embeddings = model.lm_head.is_none();
    config.scale_decoder_outputs = Some(model.settings.scale_decoder_outputs);
    config.extra.insert(
        "architectures".into(),
        Value::from(vec!["T5ForConditionalGeneration"]),
    );
    config.extra.insert("model_type".into(), Value::from("t5"));
    let config_path = out_dir.join("config.json");
    let text =
        serde_json::to_string_pretty(&config.to_json()?).map_err(|source| ModelError::Json {
            path: config_path.clone(),
            source,
        })?;
    std::fs::write(&config_path, text + "\n").map_err(|e| ModelError::io(&config_path, e))?;
    let tensors = params::named_tensors(model)?;
    export::write_safetensors(&out_dir.join(SAFETENSORS_FILE), &tensors)?;
    if let Some(dir) = tokenizer_dir {
        export::copy_tokenizer_files(dir, out_dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_split_near_and_far_positions() {
        // 8 bidirectional buckets: 4 per direction, 2 exact distances each.
        assert_eq!(relative_position_bucket(0, true, 8, 20), 0);
        assert_eq!(relative_position_bucket(1, true, 8, 20), 5);
        assert_eq!(relative_position_bucket(-1, true, 8, 20), 1);
        assert_eq!(relative_position_bucket(-1000, true, 8, 20), 3);
        assert_eq!(relative_position_bucket(1000, true, 8, 20), 7);
        // Unidirectional: the future shares bucket 0.
        assert_eq!(relative_position_bucket(5, false, 8, 20), 0);
        assert_eq!(relative_position_bucket(-1000, false, 8, 20), 7);
    }

    #[test]
    fn feed_forward_proj_is_parsed_like_transformers() {
        let mut config: T5Config = serde_json::from_value(serde_json::json!({
            "vocab_size": 10, "d_model": 8, "d_kv": 2, "d_ff": 16, "num_layers": 1, "num_heads": 4
        }))
        .unwrap();
        assert_eq!(
            config.feed_forward().unwrap(),
            FeedForwardKind {
                gated: false,
                activation: T5Activation::Relu
            }
        );
        config.feed_forward_proj = "gated-gelu".into();
        assert_eq!(
            config.feed_forward().unwrap().activation,
            T5Activation::GeluTanh
        );
        config.feed_forward_proj = "gated-silu".into();
        assert!(config.feed_forward().unwrap().gated);
        for bad in ["gated-mish", "ungated-relu", "gated-gelu-x"] {
            config.feed_forward_proj = bad.into();
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains("feed_forward_proj"), "{err}");
        }
    }
}
