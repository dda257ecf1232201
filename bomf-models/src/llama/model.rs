//! The decoder: RoPE, grouped-query attention, SwiGLU feed-forward, RMSNorm, and
//! [`LlamaForCausalLM`] with its forward passes and loss.

use burn::module::{Initializer, Module};
use burn::nn::{Embedding, EmbeddingConfig, Linear};
use burn::tensor::activation;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor, TensorData};

use super::LlamaConfig;
use crate::error::{ModelError, Result};
use crate::layers::{
    AdaptableLinear, RmsNorm, check_token_rows, index_tensor, int_tensor, normal_linear,
};
use crate::params::{self, HfNamed, HfPart};
use crate::{kernels, loss};

/// Key/value tensors of one layer for the tokens seen so far, after RoPE, `[batch, kv_heads, t,
/// head_dim]`.
#[derive(Debug, Clone)]
struct LayerCache<B: Backend> {
    key: Tensor<B, 4>,
    value: Tensor<B, 4>,
}

/// The KV cache of a generation: every layer's keys/values, and the padding mask over all cached
/// positions (`[batch][t]`, 1 = real token).
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<Option<LayerCache<B>>>,
    key_mask: Vec<Vec<i64>>,
}

impl<B: Backend> KvCache<B> {
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: vec![None; num_layers],
            key_mask: Vec::new(),
        }
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.key_mask.first().map_or(0, Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps the cached rows `rows` (in that order; repeats allowed): beam search continues each
    /// new beam from the cache of the beam it extends.
    pub(super) fn select_rows(&mut self, rows: &[usize]) {
        let device = self.layers.iter().flatten().next().map(|c| c.key.device());
        if let Some(device) = device {
            let index = index_tensor::<B>(rows, &device);
            for layer in self.layers.iter_mut().flatten() {
                layer.key = layer.key.clone().select(0, index.clone());
                layer.value = layer.value.clone().select(0, index.clone());
            }
        }
        self.key_mask = rows.iter().map(|&r| self.key_mask[r].clone()).collect();
    }
}

/// cos/sin tables `[batch, 1, seq, head_dim]` for the given positions (HF: `cat(freqs, freqs)`).
fn rope_tables<B: Backend>(
    inv_freq: &[f32],
    positions: &[Vec<i64>],
    device: &B::Device,
) -> (Tensor<B, 4>, Tensor<B, 4>) {
    let batch = positions.len();
    let seq = positions.first().map_or(0, Vec::len);
    let half = inv_freq.len();
    let mut cos = Vec::with_capacity(batch * seq * half * 2);
    let mut sin = Vec::with_capacity(batch * seq * half * 2);
    for row in positions {
        for &p in row {
            for _ in 0..2 {
                for &f in inv_freq {
                    let angle = p as f32 * f;
                    cos.push(angle.cos());
                    sin.push(angle.sin());
                }
            }
        }
    }
    let shape = [batch, 1, seq, half * 2];
    (
        Tensor::from_data(TensorData::new(cos, shape), device),
        Tensor::from_data(TensorData::new(sin, shape), device),
    )
}

/// `x * cos + rotate_half(x) * sin`, with `rotate_half(x) = cat(-x2, x1)`.
fn apply_rope<B: Backend>(x: Tensor<B, 4>, cos: &Tensor<B, 4>, sin: &Tensor<B, 4>) -> Tensor<B, 4> {
    let half = x.dims()[3] / 2;
    let x1 = x.clone().narrow(3, 0, half);
    let x2 = x.clone().narrow(3, half, half);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * cos.clone() + rotated * sin.clone()
}

/// The field holding projection `$p` in `$layer`, a decoder layer or its mirror of LoRA adapters
/// (both keep the projections under `self_attn` and `mlp`, with HF's names), borrowed with
/// `$borrow` (`&` or `&mut`).
macro_rules! projection_field {
    ($layer:expr, $p:expr, $($borrow:tt)+) => {
        match $p {
            Projection::Q => $($borrow)+ $layer.self_attn.q_proj,
            Projection::K => $($borrow)+ $layer.self_attn.k_proj,
            Projection::V => $($borrow)+ $layer.self_attn.v_proj,
            Projection::O => $($borrow)+ $layer.self_attn.o_proj,
            Projection::Gate => $($borrow)+ $layer.mlp.gate_proj,
            Projection::Up => $($borrow)+ $layer.mlp.up_proj,
            Projection::Down => $($borrow)+ $layer.mlp.down_proj,
        }
    };
}
pub(crate) use projection_field;

/// The linear projections of a decoder layer (the ones LoRA can adapt), in HF's module order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Projection {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl Projection {
    pub const ALL: [Projection; 7] = [
        Self::Q,
        Self::K,
        Self::V,
        Self::O,
        Self::Gate,
        Self::Up,
        Self::Down,
    ];

    /// HF's module name (`q_proj`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Q => "q_proj",
            Self::K => "k_proj",
            Self::V => "v_proj",
            Self::O => "o_proj",
            Self::Gate => "gate_proj",
            Self::Up => "up_proj",
            Self::Down => "down_proj",
        }
    }

    /// The module path inside a decoder layer (`self_attn.q_proj`, `mlp.down_proj`).
    pub fn path_in_layer(self) -> String {
        let parent = match self {
            Self::Q | Self::K | Self::V | Self::O => "self_attn",
            Self::Gate | Self::Up | Self::Down => "mlp",
        };
        format!("{parent}.{}", self.name())
    }

    /// `(in_features, out_features)` of this projection in a model with `config`.
    pub fn features(self, config: &LlamaConfig) -> (usize, usize) {
        let h = config.hidden_size;
        let q = config.num_attention_heads * config.head_dim();
        let kv = config.num_key_value_heads() * config.head_dim();
        let inter = config.intermediate_size;
        match self {
            Self::Q => (h, q),
            Self::K | Self::V => (h, kv),
            Self::O => (q, h),
            Self::Gate | Self::Up => (h, inter),
            Self::Down => (inter, h),
        }
    }
}

/// HF's `LlamaAttention`: grouped-query attention with RoPE.
#[derive(Module, Debug)]
pub struct LlamaAttention<B: Backend> {
    pub q_proj: AdaptableLinear<B>,
    pub k_proj: AdaptableLinear<B>,
    pub v_proj: AdaptableLinear<B>,
    pub o_proj: AdaptableLinear<B>,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
}

impl<B: Backend> LlamaAttention<B> {
    /// `mask`: `[batch, heads, seq, total]`, true where a key must be ignored.
    fn forward(
        &self,
        x: Tensor<B, 3>,
        cos: &Tensor<B, 4>,
        sin: &Tensor<B, 4>,
        mask: Tensor<B, 4, Bool>,
        cache: Option<&mut Option<LayerCache<B>>>,
    ) -> Tensor<B, 3> {
        let [batch, seq, _] = x.dims();
        let (heads, kv_heads, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let split = |t: Tensor<B, 3>, n: usize| t.reshape([batch, seq, n, hd]).swap_dims(1, 2);
        let q = apply_rope(split(self.q_proj.forward(x.clone()), heads), cos, sin);
        let mut k = apply_rope(split(self.k_proj.forward(x.clone()), kv_heads), cos, sin);
        let mut v = split(self.v_proj.forward(x), kv_heads);
        if let Some(slot) = cache {
            if let Some(past) = slot.take() {
                k = Tensor::cat(vec![past.key, k], 2);
                v = Tensor::cat(vec![past.value, v], 2);
            }
            *slot = Some(LayerCache {
                key: k.clone(),
                value: v.clone(),
            });
        }
        let total = k.dims()[2];
        // Grouped-query attention without a per-head copy of K and V (HF's `repeat_kv`): query
        // head `kv·group + g` uses key/value head `kv`, so the `group` query heads sharing one
        // are stacked along the sequence axis and attend to it in one product (no copy of the
        // growing KV cache per head at every generation step).
        let group = heads / kv_heads;
        let q = q.reshape([batch, kv_heads, group * seq, hd]);
        let mask = mask.reshape([batch, kv_heads, group * seq, total]);
        let scores = q
            .matmul(k.swap_dims(2, 3))
            .div_scalar((hd as f64).sqrt())
            .mask_fill(mask, f32::MIN);
        let probs = activation::softmax(scores, 3);
        let context = probs
            .matmul(v)
            .reshape([batch, heads, seq, hd])
            .swap_dims(1, 2)
            .reshape([batch, seq, heads * hd]);
        self.o_proj.forward(context)
    }
}

/// HF's `LlamaMLP`: `down(silu(gate(x)) * up(x))`.
#[derive(Module, Debug)]
pub struct LlamaMlp<B: Backend> {
    pub gate_proj: AdaptableLinear<B>,
    pub up_proj: AdaptableLinear<B>,
    pub down_proj: AdaptableLinear<B>,
}

impl<B: Backend> LlamaMlp<B> {
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gate = activation::silu(self.gate_proj.forward(x.clone()));
        let up = self.up_proj.forward(x);
        self.down_proj.forward(gate * up)
    }
}

/// One pre-norm decoder block.
#[derive(Module, Debug)]
pub struct LlamaDecoderLayer<B: Backend> {
    pub self_attn: LlamaAttention<B>,
    pub mlp: LlamaMlp<B>,
    pub input_layernorm: RmsNorm<B>,
    pub post_attention_layernorm: RmsNorm<B>,
}

impl<B: Backend> LlamaDecoderLayer<B> {
    /// The projection `p` of this layer.
    pub fn projection(&self, p: Projection) -> &AdaptableLinear<B> {
        projection_field!(self, p, &)
    }

    pub fn projection_mut(&mut self, p: Projection) -> &mut AdaptableLinear<B> {
        projection_field!(self, p, &mut)
    }
}

/// HF's `LlamaModel`: embeddings, decoder blocks, final norm.
#[derive(Module, Debug)]
pub struct LlamaModel<B: Backend> {
    pub embed_tokens: Embedding<B>,
    pub layers: Vec<LlamaDecoderLayer<B>>,
    pub norm: RmsNorm<B>,
    #[module(skip)]
    rope_inv_freq: Vec<f32>,
}

/// HF's `LlamaForCausalLM`. With tied embeddings `lm_head` is `None` and the output projection is
/// the embedding matrix. Its projections may carry LoRA adapters (see
/// [`crate::lora::LlamaLoraAdapters::attach`]); every entry point runs them.
#[derive(Module, Debug)]
pub struct LlamaForCausalLM<B: Backend> {
    pub base: LlamaModel<B>,
    pub lm_head: Option<Linear<B>>,
}

impl<B: Backend> HfNamed<B> for LlamaForCausalLM<B> {
    fn hf_base_prefix(&self) -> &str {
        "model"
    }

    /// HF's names except for the projections' wrapper: `q_proj.weight`, and peft's
    /// `q_proj.lora_A.weight` for an attached adapter.
    fn hf_part(field: &str, container: &str) -> HfPart {
        AdaptableLinear::<B>::hf_part(field, container)
    }
}

/// A batch of token rows for the decoder, kept on the host because masks and positions are built
/// from it. `attention_mask` is 1 for real tokens, 0 for padding (left or right).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CausalLmInput {
    pub input_ids: Vec<Vec<i64>>,
    pub attention_mask: Vec<Vec<i64>>,
}

impl CausalLmInput {
    /// Rows without padding.
    pub fn unpadded(input_ids: Vec<Vec<i64>>) -> Self {
        let attention_mask = input_ids.iter().map(|r| vec![1; r.len()]).collect();
        Self {
            input_ids,
            attention_mask,
        }
    }

    pub(super) fn check(&self, vocab: usize) -> Result<(usize, usize)> {
        check_token_rows(&self.input_ids, &self.attention_mask, vocab, |_, _| Ok(()))
    }
}

impl<B: Backend> LlamaForCausalLM<B> {
    /// A randomly initialised model (normal(0, initializer_range) weights, unit norms), with every
    /// parameter materialised so clones are identical.
    pub fn new(config: &LlamaConfig, device: &B::Device) -> Result<Self> {
        Ok(params::materialize(Self::new_lazy(config, device)?))
    }

    pub(crate) fn new_lazy(config: &LlamaConfig, device: &B::Device) -> Result<Self> {
        config.validate()?;
        let (h, std) = (config.hidden_size, config.initializer_range);
        let (heads, kv_heads, hd) = (
            config.num_attention_heads,
            config.num_key_value_heads(),
            config.head_dim(),
        );
        let eps = config.rms_norm_eps;
        let projection = |p: Projection| {
            let (d_in, d_out) = p.features(config);
            let bias = match p {
                Projection::Q | Projection::K | Projection::V | Projection::O => {
                    config.attention_bias
                }
                Projection::Gate | Projection::Up | Projection::Down => config.mlp_bias,
            };
            AdaptableLinear::plain(normal_linear(d_in, d_out, bias, std, device))
        };
        let layers = (0..config.num_hidden_layers)
            .map(|_| LlamaDecoderLayer {
                self_attn: LlamaAttention {
                    q_proj: projection(Projection::Q),
                    k_proj: projection(Projection::K),
                    v_proj: projection(Projection::V),
                    o_proj: projection(Projection::O),
                    num_heads: heads,
                    num_kv_heads: kv_heads,
                    head_dim: hd,
                },
                mlp: LlamaMlp {
                    gate_proj: projection(Projection::Gate),
                    up_proj: projection(Projection::Up),
                    down_proj: projection(Projection::Down),
                },
                input_layernorm: RmsNorm::new(h, eps, device),
                post_attention_layernorm: RmsNorm::new(h, eps, device),
            })
            .collect();
        Ok(Self {
            base: LlamaModel {
                embed_tokens: EmbeddingConfig::new(config.vocab_size, h)
                    .with_initializer(Initializer::Normal { mean: 0.0, std })
                    .init(device),
                layers,
                norm: RmsNorm::new(h, eps, device),
                rope_inv_freq: config.rope_inv_freq()?,
            },
            lm_head: (!config.tie_word_embeddings)
                .then(|| normal_linear(h, config.vocab_size, false, std, device)),
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.base.embed_tokens.weight.dims()[0]
    }

    /// The model with every attached LoRA adapter folded into its dense weight
    /// (`W ← W + s·B·A`): a plain model with the same outputs, which exports like any LLaMA.
    pub fn merged(mut self) -> Self {
        for layer in &mut self.base.layers {
            for p in Projection::ALL {
                layer.projection_mut(p).merge();
            }
        }
        self
    }

    /// The decoder core: `ids` `[batch, seq]` at `positions`, attending to the cached keys plus
    /// these, with `key_mask` covering all of them. Returns final-normed hidden states.
    pub(super) fn hidden_states(
        &self,
        ids: &[Vec<i64>],
        positions: &[Vec<i64>],
        key_mask: &[Vec<i64>],
        mut cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        let device = self.base.embed_tokens.weight.device();
        let batch = ids.len();
        let seq = ids[0].len();
        let total = key_mask[0].len();
        let past = total - seq;
        let heads = self
            .base
            .layers
            .first()
            .map_or(1, |l| l.self_attn.num_heads);
        let mut masked = Vec::with_capacity(batch * seq * total);
        for row in key_mask {
            for i in 0..seq {
                for (j, &m) in row.iter().enumerate() {
                    masked.push(j > past + i || m == 0);
                }
            }
        }
        let mask = Tensor::<B, 4, Bool>::from_data(
            TensorData::new(masked, [batch, 1, seq, total]),
            &device,
        )
        .expand([batch, heads, seq, total]);
        let (cos, sin) = rope_tables::<B>(&self.base.rope_inv_freq, positions, &device);
        let mut x = self.base.embed_tokens.forward(int_tensor(ids, &device));
        for (index, layer) in self.base.layers.iter().enumerate() {
            let slot = cache.as_deref_mut().map(|c| &mut c.layers[index]);
            let normed = layer.input_layernorm.forward(x.clone());
            x = x + layer
                .self_attn
                .forward(normed, &cos, &sin, mask.clone(), slot);
            let normed = layer.post_attention_layernorm.forward(x.clone());
            x = x + layer.mlp.forward(normed);
        }
        if let Some(c) = cache {
            c.key_mask = key_mask.to_vec();
        }
        self.base.norm.forward(x)
    }

    /// Hidden states `[batch, seq, hidden]` → logits `[batch, seq, vocab]`.
    pub(super) fn project(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => {
                let [batch, seq, h] = hidden.dims();
                let weight = self.base.embed_tokens.weight.val();
                kernels::matmul_transposed(hidden.reshape([batch * seq, h]), weight).reshape([
                    batch,
                    seq,
                    self.vocab_size(),
                ])
            }
        }
    }

    /// Logits `[batch, seq, vocab]` of a plain forward (positions `0..seq`, as HF's forward).
    pub fn logits(&self, input: &CausalLmInput) -> Result<Tensor<B, 3>> {
        Ok(self.project(self.full_hidden_states(input)?))
    }

    /// Final hidden states of a plain forward of `input` (positions `0..seq`, no cache).
    fn full_hidden_states(&self, input: &CausalLmInput) -> Result<Tensor<B, 3>> {
        let (batch, seq) = input.check(self.vocab_size())?;
        let positions = vec![(0..seq as i64).collect::<Vec<_>>(); batch];
        Ok(self.hidden_states(&input.input_ids, &positions, &input.attention_mask, None))
    }

    /// Logits `[index.len(), vocab]` at the flat positions `index` (`row · seq + t`) of a plain
    /// forward: [`Self::logits`] gathered, but the LM head (a large share of a small model's
    /// forward) and anything after it run on those positions only — a loss over a short target,
    /// or a multiple-choice option after a long prompt, needs few of them.
    pub fn logits_at(&self, input: &CausalLmInput, index: &[usize]) -> Result<Tensor<B, 2>> {
        let (batch, seq) = input.check(self.vocab_size())?;
        if let Some(&bad) = index.iter().find(|&&i| i >= batch * seq) {
            return Err(ModelError::InvalidInput(format!(
                "position {bad} is outside the batch ({batch} rows of {seq})"
            )));
        }
        let hidden = self.full_hidden_states(input)?;
        let h = hidden.dims()[2];
        let device = hidden.device();
        let picked = hidden
            .reshape([batch * seq, h])
            .select(0, index_tensor::<B>(index, &device));
        let n = picked.dims()[0];
        Ok(self
            .project(picked.reshape([1, n, h]))
            .reshape([n, self.vocab_size()]))
    }

    /// HF's causal-LM loss: logits at `t` predict `labels[t + 1]`; `-100` labels are ignored; mean
    /// over the rest.
    pub fn causal_lm_loss(
        &self,
        logits: Tensor<B, 3>,
        labels: &[Vec<i64>],
    ) -> Result<Tensor<B, 1>> {
        let [batch, seq, vocab] = logits.dims();
        if labels.len() != batch || labels.iter().any(|r| r.len() != seq) {
            return Err(ModelError::InvalidInput(format!(
                "labels must be {batch} rows of {seq}"
            )));
        }
        if seq < 2 {
            return Err(ModelError::InvalidInput(
                "the causal-LM loss needs sequences of at least 2 tokens".into(),
            ));
        }
        let shifted: Vec<Vec<i64>> = labels.iter().map(|r| r[1..].to_vec()).collect();
        let logits = logits
            .narrow(1, 0, seq - 1)
            .reshape([batch * (seq - 1), vocab]);
        let device = logits.device();
        let targets = int_tensor::<B>(&shifted, &device).reshape([batch * (seq - 1)]);
        Ok(loss::cross_entropy(logits, targets, Some(-100)))
    }
}
