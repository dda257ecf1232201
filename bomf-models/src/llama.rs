//! LLaMA-style decoder (LLaMA 2/3, SmolLM2, ...) mirroring `transformers.LlamaForCausalLM`.
//!
//! The module tree follows HF's so that parameter names map one to one (`model.layers.N.self_attn.
//! q_proj`, `mlp.gate_proj`, `input_layernorm`, `model.norm`, `lm_head`; the root field `base` is
//! HF's `model` prefix, see [`crate::params`]).
//!
//! Numerics follow `transformers` (checked by `tests/llama_parity.rs` against fixtures from
//! `tests/fixtures/gen_llama.py`):
//! - RMSNorm: `weight * x / sqrt(mean(x²) + eps)`;
//! - RoPE with HF's `rotate_half` convention (the two halves of a head are the rotated pairs, not
//!   interleaved elements), optional `linear` or `llama3` frequency scaling;
//! - grouped-query attention: query head `h` reads key/value head `h / (heads / kv_heads)`;
//! - the causal mask is combined with the padding mask on keys; positions are `0..seq` in a plain
//!   forward and `cumsum(mask) - 1` during generation, as `generate` computes them;
//! - causal-LM loss: logits at `t` predict label `t + 1`, labels `-100` are ignored;
//! - generation: greedy and seeded sampling, and beam search reproducing `generate(num_beams=…)`
//!   token for token (length penalty, the three `early_stopping` modes, eos handling; checked by
//!   `tests/llama_lora.rs` against `tests/fixtures/gen_llama_lora.py`).
//!
//! Every projection goes through `lora::adapted_forward`, so the same forward runs the
//! plain model or the model with LoRA adapters ([`crate::lora`]); the public entry points here
//! are the plain ones, [`crate::lora::AdaptedLlama`] offers the adapted ones.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::{Initializer, Module, Param};
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::tensor::activation;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{ModelError, Result};
use crate::lora::{LlamaLoraAdapters, LoraAttention, LoraMlp, adapted_forward};
use crate::params::{self, Coverage, HfNamed};
use crate::weights::{self, Checkpoint};
use crate::{export, loss};

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

fn default_rms_eps() -> f64 {
    1e-6
}
fn default_rope_theta() -> f64 {
    10_000.0
}
fn default_max_pos() -> usize {
    2048
}
fn default_act() -> String {
    "silu".into()
}
fn default_init_range() -> f64 {
    0.02
}

/// A LLaMA `config.json`, field for field as `transformers.LlamaConfig` writes it. Fields we do not
/// interpret are kept in `extra` and written back unchanged on export.
///
/// Both RoPE spellings are accepted: transformers ≤ 4 (`rope_theta` + `rope_scaling`) and ≥ 5
/// (`rope_parameters` holding `rope_type`, `rope_theta` and the scaling fields).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LlamaConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_key_value_heads: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    #[serde(default = "default_rms_eps")]
    pub rms_norm_eps: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_parameters: Option<Value>,
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_token_id: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// How RoPE frequencies are rescaled for longer contexts (HF's `rope_type`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    None,
    /// Position interpolation: every frequency divided by `factor`.
    Linear {
        factor: f64,
    },
    /// LLaMA 3.1's band-wise scaling.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
}

impl LlamaConfig {
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
        if !matches!(self.hidden_act.as_str(), "silu" | "swish") {
            return Err(ModelError::unsupported(
                "hidden_act",
                format!("`{}` is not supported (LLaMA uses silu)", self.hidden_act),
            ));
        }
        let heads = self.num_attention_heads;
        if heads == 0
            || self.num_key_value_heads() == 0
            || !heads.is_multiple_of(self.num_key_value_heads())
        {
            return Err(ModelError::unsupported(
                "num_key_value_heads",
                format!(
                    "{} attention heads cannot be grouped over {} key/value heads",
                    heads,
                    self.num_key_value_heads()
                ),
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(ModelError::unsupported(
                "head_dim",
                "RoPE needs an even head size",
            ));
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(heads) {
            return Err(ModelError::unsupported(
                "hidden_size",
                "not divisible by num_attention_heads",
            ));
        }
        self.rope_scaling()?;
        if let Some(v) = self.extra.get("pretraining_tp")
            && v.as_u64().is_some_and(|tp| tp > 1)
        {
            return Err(ModelError::unsupported(
                "pretraining_tp",
                "values > 1 are not supported",
            ));
        }
        Ok(())
    }

    pub fn num_key_value_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// RoPE base frequency, from either spelling.
    pub fn rope_theta(&self) -> f64 {
        self.rope_parameters
            .as_ref()
            .and_then(|p| p.get("rope_theta"))
            .and_then(Value::as_f64)
            .or(self.rope_theta)
            .unwrap_or_else(default_rope_theta)
    }

    /// The RoPE scaling, from `rope_parameters` (transformers 5) or `rope_scaling` (older).
    pub fn rope_scaling(&self) -> Result<RopeScaling> {
        let (field, params) = match (&self.rope_parameters, &self.rope_scaling) {
            (Some(p), _) if !p.is_null() => ("rope_parameters", p),
            (_, Some(s)) if !s.is_null() => ("rope_scaling", s),
            _ => return Ok(RopeScaling::None),
        };
        let kind = params
            .get("rope_type")
            .or_else(|| params.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        let num = |name: &str| -> Result<f64> {
            params.get(name).and_then(Value::as_f64).ok_or_else(|| {
                ModelError::unsupported(
                    field,
                    format!("rope type `{kind}` needs a numeric `{name}`"),
                )
            })
        };
        match kind {
            "default" => Ok(RopeScaling::None),
            "linear" => Ok(RopeScaling::Linear {
                factor: num("factor")?,
            }),
            "llama3" => Ok(RopeScaling::Llama3 {
                factor: num("factor")?,
                low_freq_factor: num("low_freq_factor")?,
                high_freq_factor: num("high_freq_factor")?,
                original_max_position_embeddings: num("original_max_position_embeddings")?,
            }),
            other => Err(ModelError::unsupported(
                field,
                format!(
                    "rope type `{other}` is not supported (supported: default, linear, llama3)"
                ),
            )),
        }
    }

    /// The inverse frequencies of RoPE, `head_dim / 2` of them, scaled as configured.
    pub fn rope_inv_freq(&self) -> Result<Vec<f32>> {
        let dim = self.head_dim();
        let theta = self.rope_theta();
        // HF computes these in f32: `1 / theta^(arange(0, dim, 2) / dim)`.
        let base: Vec<f32> = (0..dim / 2)
            .map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / dim as f32))
            .collect();
        Ok(match self.rope_scaling()? {
            RopeScaling::None => base,
            RopeScaling::Linear { factor } => base.iter().map(|f| f / factor as f32).collect(),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: old_len,
            } => {
                let (factor, low, high, old_len) = (
                    factor as f32,
                    low_freq_factor as f32,
                    high_freq_factor as f32,
                    old_len as f32,
                );
                let low_freq_wavelen = old_len / low;
                let high_freq_wavelen = old_len / high;
                base.iter()
                    .map(|&f| {
                        let wavelen = 2.0 * std::f32::consts::PI / f;
                        let scaled = if wavelen > low_freq_wavelen {
                            f / factor
                        } else {
                            f
                        };
                        let medium = wavelen >= high_freq_wavelen && wavelen <= low_freq_wavelen;
                        if medium {
                            let smooth = (old_len / wavelen - low) / (high - low);
                            (1.0 - smooth) * scaled / factor + smooth * scaled
                        } else {
                            scaled
                        }
                    })
                    .collect()
            }
        })
    }

    /// The config as `transformers` would write it (our fields plus the untouched extras).
    pub fn to_json(&self) -> Result<Value> {
        serde_json::to_value(self).map_err(|e| ModelError::InvalidInput(e.to_string()))
    }

    /// The first `eos_token_id` (HF allows a list).
    pub fn eos_token_ids(&self) -> Vec<i64> {
        match &self.eos_token_id {
            Some(Value::Number(n)) => n.as_i64().into_iter().collect(),
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_i64).collect(),
            _ => Vec::new(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Layers
// ---------------------------------------------------------------------------------------------

/// HF's `LlamaRMSNorm`: a learned scale, no bias, no mean subtraction.
#[derive(Module, Debug)]
pub struct LlamaRmsNorm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
    eps: f64,
}

impl<B: Backend> LlamaRmsNorm<B> {
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
    fn select_rows(&mut self, rows: &[usize]) {
        let device = self.layers.iter().flatten().next().map(|c| c.key.device());
        if let Some(device) = device {
            let index = Tensor::<B, 1, Int>::from_data(
                TensorData::new(
                    rows.iter().map(|&r| r as i64).collect::<Vec<_>>(),
                    [rows.len()],
                ),
                &device,
            );
            for layer in self.layers.iter_mut().flatten() {
                layer.key = layer.key.clone().select(0, index.clone());
                layer.value = layer.value.clone().select(0, index.clone());
            }
        }
        self.key_mask = rows.iter().map(|&r| self.key_mask[r].clone()).collect();
    }
}

/// Positions of a (possibly left-padded) prompt as `generate` computes them: `cumsum(mask) - 1`,
/// and 1 at padding.
fn prompt_positions(key_mask: &[Vec<i64>]) -> Vec<Vec<i64>> {
    key_mask
        .iter()
        .map(|row| {
            let mut count = 0;
            row.iter()
                .map(|&m| {
                    count += m;
                    if m == 0 { 1 } else { count - 1 }
                })
                .collect()
        })
        .collect()
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

/// HF's `LlamaAttention`: grouped-query attention with RoPE.
#[derive(Module, Debug)]
pub struct LlamaAttention<B: Backend> {
    pub q_proj: Linear<B>,
    pub k_proj: Linear<B>,
    pub v_proj: Linear<B>,
    pub o_proj: Linear<B>,
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
        lora: Option<&LoraAttention<B>>,
    ) -> Tensor<B, 3> {
        let [batch, seq, _] = x.dims();
        let (heads, kv_heads, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let split = |t: Tensor<B, 3>, n: usize| t.reshape([batch, seq, n, hd]).swap_dims(1, 2);
        let q_lora = lora.and_then(|l| l.q_proj.as_ref());
        let k_lora = lora.and_then(|l| l.k_proj.as_ref());
        let v_lora = lora.and_then(|l| l.v_proj.as_ref());
        let o_lora = lora.and_then(|l| l.o_proj.as_ref());
        let q = adapted_forward(&self.q_proj, q_lora, x.clone());
        let q = apply_rope(split(q, heads), cos, sin);
        let k = adapted_forward(&self.k_proj, k_lora, x.clone());
        let mut k = apply_rope(split(k, kv_heads), cos, sin);
        let mut v = split(adapted_forward(&self.v_proj, v_lora, x), kv_heads);
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
        // are stacked along the sequence axis and attend to it in one product. (Copying the
        // growing KV cache per head dominated a generation step.)
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
        adapted_forward(&self.o_proj, o_lora, context)
    }
}

/// HF's `LlamaMLP`: `down(silu(gate(x)) * up(x))`.
#[derive(Module, Debug)]
pub struct LlamaMlp<B: Backend> {
    pub gate_proj: Linear<B>,
    pub up_proj: Linear<B>,
    pub down_proj: Linear<B>,
}

impl<B: Backend> LlamaMlp<B> {
    fn forward(&self, x: Tensor<B, 3>, lora: Option<&LoraMlp<B>>) -> Tensor<B, 3> {
        let gate_lora = lora.and_then(|l| l.gate_proj.as_ref());
        let up_lora = lora.and_then(|l| l.up_proj.as_ref());
        let down_lora = lora.and_then(|l| l.down_proj.as_ref());
        let gate = activation::silu(adapted_forward(&self.gate_proj, gate_lora, x.clone()));
        let up = adapted_forward(&self.up_proj, up_lora, x);
        adapted_forward(&self.down_proj, down_lora, gate * up)
    }
}

/// One pre-norm decoder block.
#[derive(Module, Debug)]
pub struct LlamaDecoderLayer<B: Backend> {
    pub self_attn: LlamaAttention<B>,
    pub mlp: LlamaMlp<B>,
    pub input_layernorm: LlamaRmsNorm<B>,
    pub post_attention_layernorm: LlamaRmsNorm<B>,
}

/// HF's `LlamaModel`: embeddings, decoder blocks, final norm.
#[derive(Module, Debug)]
pub struct LlamaModel<B: Backend> {
    pub embed_tokens: Embedding<B>,
    pub layers: Vec<LlamaDecoderLayer<B>>,
    pub norm: LlamaRmsNorm<B>,
    #[module(skip)]
    rope_inv_freq: Vec<f32>,
}

/// HF's `LlamaForCausalLM`. With tied embeddings `lm_head` is `None` and the output projection is
/// the embedding matrix.
#[derive(Module, Debug)]
pub struct LlamaForCausalLM<B: Backend> {
    pub base: LlamaModel<B>,
    pub lm_head: Option<Linear<B>>,
}

impl<B: Backend> HfNamed<B> for LlamaForCausalLM<B> {
    fn hf_base_prefix(&self) -> &str {
        "model"
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
            if let Some(bad) = ids.iter().find(|&&t| t < 0 || t as usize >= vocab) {
                return Err(ModelError::InvalidInput(format!(
                    "row {i}: token id {bad} outside the vocabulary (size {vocab})"
                )));
            }
        }
        Ok((batch, seq))
    }
}

fn int_tensor<B: Backend>(rows: &[Vec<i64>], device: &B::Device) -> Tensor<B, 2, Int> {
    let shape = [rows.len(), rows.first().map_or(0, Vec::len)];
    let flat: Vec<i64> = rows.iter().flatten().copied().collect();
    Tensor::from_data(TensorData::new(flat, shape), device)
}

fn hf_linear<B: Backend>(
    d_in: usize,
    d_out: usize,
    bias: bool,
    std: f64,
    device: &B::Device,
) -> Linear<B> {
    LinearConfig::new(d_in, d_out)
        .with_bias(bias)
        .with_initializer(Initializer::Normal { mean: 0.0, std })
        .init(device)
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
        let layers = (0..config.num_hidden_layers)
            .map(|_| LlamaDecoderLayer {
                self_attn: LlamaAttention {
                    q_proj: hf_linear(h, heads * hd, config.attention_bias, std, device),
                    k_proj: hf_linear(h, kv_heads * hd, config.attention_bias, std, device),
                    v_proj: hf_linear(h, kv_heads * hd, config.attention_bias, std, device),
                    o_proj: hf_linear(heads * hd, h, config.attention_bias, std, device),
                    num_heads: heads,
                    num_kv_heads: kv_heads,
                    head_dim: hd,
                },
                mlp: LlamaMlp {
                    gate_proj: hf_linear(h, config.intermediate_size, config.mlp_bias, std, device),
                    up_proj: hf_linear(h, config.intermediate_size, config.mlp_bias, std, device),
                    down_proj: hf_linear(config.intermediate_size, h, config.mlp_bias, std, device),
                },
                input_layernorm: LlamaRmsNorm::new(h, eps, device),
                post_attention_layernorm: LlamaRmsNorm::new(h, eps, device),
            })
            .collect();
        Ok(Self {
            base: LlamaModel {
                embed_tokens: EmbeddingConfig::new(config.vocab_size, h)
                    .with_initializer(Initializer::Normal { mean: 0.0, std })
                    .init(device),
                layers,
                norm: LlamaRmsNorm::new(h, eps, device),
                rope_inv_freq: config.rope_inv_freq()?,
            },
            lm_head: (!config.tie_word_embeddings)
                .then(|| hf_linear(h, config.vocab_size, false, std, device)),
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.base.embed_tokens.weight.dims()[0]
    }

    /// The decoder core: `ids` `[batch, seq]` at `positions`, attending to the cached keys plus
    /// these, with `key_mask` covering all of them, through `adapters` when given (checked to
    /// fit by the caller). Returns final-normed hidden states.
    fn hidden_states(
        &self,
        ids: &[Vec<i64>],
        positions: &[Vec<i64>],
        key_mask: &[Vec<i64>],
        mut cache: Option<&mut KvCache<B>>,
        adapters: Option<&LlamaLoraAdapters<B>>,
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
            let lora = adapters.and_then(|a| a.base.layers.get(index));
            let attn = layer.self_attn.forward(
                layer.input_layernorm.forward(x.clone()),
                &cos,
                &sin,
                mask.clone(),
                slot,
                lora.map(|l| &l.self_attn),
            );
            x = x + attn;
            let normed = layer.post_attention_layernorm.forward(x.clone());
            x = x + layer.mlp.forward(normed, lora.map(|l| &l.mlp));
        }
        if let Some(c) = cache {
            c.key_mask = key_mask.to_vec();
        }
        self.base.norm.forward(x)
    }

    fn project(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => {
                let [batch, seq, h] = hidden.dims();
                let weight = self.base.embed_tokens.weight.val();
                crate::kernels::matmul_transposed(hidden.reshape([batch * seq, h]), weight)
                    .reshape([batch, seq, self.vocab_size()])
            }
        }
    }

    /// Logits `[batch, seq, vocab]` of a plain forward (positions `0..seq`, as HF's forward).
    pub fn logits(&self, input: &CausalLmInput) -> Result<Tensor<B, 3>> {
        self.logits_adapted(input, None)
    }

    pub(crate) fn logits_adapted(
        &self,
        input: &CausalLmInput,
        adapters: Option<&LlamaLoraAdapters<B>>,
    ) -> Result<Tensor<B, 3>> {
        Ok(self.project(self.full_hidden_states(input, adapters)?))
    }

    /// Final hidden states of a plain forward of `input` (positions `0..seq`, no cache).
    fn full_hidden_states(
        &self,
        input: &CausalLmInput,
        adapters: Option<&LlamaLoraAdapters<B>>,
    ) -> Result<Tensor<B, 3>> {
        let (batch, seq) = input.check(self.vocab_size())?;
        let positions = vec![(0..seq as i64).collect::<Vec<_>>(); batch];
        Ok(self.hidden_states(
            &input.input_ids,
            &positions,
            &input.attention_mask,
            None,
            adapters,
        ))
    }

    /// Logits `[index.len(), vocab]` at the flat positions `index` (`row · seq + t`) of a plain
    /// forward: [`Self::logits`] gathered, but the LM head (a fifth of a small model's forward)
    /// and anything after it run on those positions only — a loss over a short target, or a
    /// multiple-choice option after a long prompt, needs few of them.
    pub fn logits_at(&self, input: &CausalLmInput, index: &[usize]) -> Result<Tensor<B, 2>> {
        self.logits_at_adapted(input, index, None)
    }

    pub(crate) fn logits_at_adapted(
        &self,
        input: &CausalLmInput,
        index: &[usize],
        adapters: Option<&LlamaLoraAdapters<B>>,
    ) -> Result<Tensor<B, 2>> {
        let (batch, seq) = input.check(self.vocab_size())?;
        if let Some(&bad) = index.iter().find(|&&i| i >= batch * seq) {
            return Err(ModelError::InvalidInput(format!(
                "position {bad} is outside the batch ({batch} rows of {seq})"
            )));
        }
        let hidden = self.full_hidden_states(input, adapters)?;
        let h = hidden.dims()[2];
        let device = hidden.device();
        let index = Tensor::<B, 1, Int>::from_data(
            TensorData::new(
                index.iter().map(|&i| i as i64).collect::<Vec<_>>(),
                [index.len()],
            ),
            &device,
        );
        let picked = hidden.reshape([batch * seq, h]).select(0, index);
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

    /// Greedy decoding with a KV cache, as `generate(do_sample=False)`: prompts may be left-padded;
    /// positions are `cumsum(mask) - 1`; a row that produced an end-of-sequence id continues with
    /// `pad_token_id`; decoding stops when every row has finished. Returns the new tokens only.
    pub fn generate_greedy(
        &self,
        prompt: &CausalLmInput,
        max_new_tokens: usize,
        eos_token_ids: &[i64],
        pad_token_id: i64,
    ) -> Result<Vec<Vec<i64>>> {
        self.generate_greedy_adapted(prompt, max_new_tokens, eos_token_ids, pad_token_id, None)
    }

    pub(crate) fn generate_greedy_adapted(
        &self,
        prompt: &CausalLmInput,
        max_new_tokens: usize,
        eos_token_ids: &[i64],
        pad_token_id: i64,
        adapters: Option<&LlamaLoraAdapters<B>>,
    ) -> Result<Vec<Vec<i64>>> {
        self.decode(
            prompt,
            max_new_tokens,
            eos_token_ids,
            pad_token_id,
            adapters,
            |logits| argmax(logits) as i64,
        )
    }

    /// Sampling with a KV cache (`generate(do_sample=True)` semantics: temperature, then top-k,
    /// then top-p, then a draw from the softmax), reproducible for a given seed. The random
    /// stream is our own, so the tokens differ from PyTorch's for the same seed.
    pub fn generate_sampled(
        &self,
        prompt: &CausalLmInput,
        max_new_tokens: usize,
        eos_token_ids: &[i64],
        pad_token_id: i64,
        sampling: &SamplingConfig,
    ) -> Result<Vec<Vec<i64>>> {
        self.generate_sampled_adapted(
            prompt,
            max_new_tokens,
            eos_token_ids,
            pad_token_id,
            sampling,
            None,
        )
    }

    pub(crate) fn generate_sampled_adapted(
        &self,
        prompt: &CausalLmInput,
        max_new_tokens: usize,
        eos_token_ids: &[i64],
        pad_token_id: i64,
        sampling: &SamplingConfig,
        adapters: Option<&LlamaLoraAdapters<B>>,
    ) -> Result<Vec<Vec<i64>>> {
        if sampling.temperature <= 0.0 || !sampling.temperature.is_finite() {
            return Err(ModelError::InvalidInput(format!(
                "sampling temperature must be positive, got {}",
                sampling.temperature
            )));
        }
        let mut rng = SplitMix64(sampling.seed);
        self.decode(
            prompt,
            max_new_tokens,
            eos_token_ids,
            pad_token_id,
            adapters,
            |logits| sample(logits, sampling, rng.next_f64()) as i64,
        )
    }

    /// The decoding loop shared by greedy and sampled generation; `choose` picks the next token
    /// of one row from its last-position logits.
    fn decode(
        &self,
        prompt: &CausalLmInput,
        max_new_tokens: usize,
        eos_token_ids: &[i64],
        pad_token_id: i64,
        adapters: Option<&LlamaLoraAdapters<B>>,
        mut choose: impl FnMut(&[f32]) -> i64,
    ) -> Result<Vec<Vec<i64>>> {
        let (batch, _) = prompt.check(self.vocab_size())?;
        let vocab = self.vocab_size();
        let mut cache = KvCache::new(self.base.layers.len());
        let mut key_mask = prompt.attention_mask.clone();
        let mut ids = prompt.input_ids.clone();
        let mut positions = prompt_positions(&key_mask);
        let mut out = vec![Vec::new(); batch];
        let mut finished = vec![false; batch];
        for _ in 0..max_new_tokens {
            let hidden =
                self.hidden_states(&ids, &positions, &key_mask, Some(&mut cache), adapters);
            let [b, s, h] = hidden.dims();
            let last = self
                .project(hidden.narrow(1, s - 1, 1).reshape([b, 1, h]))
                .into_data()
                .convert::<f32>()
                .into_vec::<f32>()
                .map_err(|e| ModelError::TensorData(format!("{e:?}")))?;
            for (row, logits) in last.chunks_exact(vocab).enumerate() {
                let token = if finished[row] {
                    pad_token_id
                } else {
                    choose(logits)
                };
                if eos_token_ids.contains(&token) {
                    finished[row] = true;
                }
                out[row].push(token);
            }
            if finished.iter().all(|&f| f) {
                break;
            }
            ids = out.iter().map(|r| vec![r[r.len() - 1]]).collect();
            for row in key_mask.iter_mut() {
                row.push(1);
            }
            positions = key_mask
                .iter()
                .map(|row| vec![row.iter().sum::<i64>() - 1])
                .collect();
        }
        Ok(out)
    }

    /// Beam search with a KV cache, as `generate(num_beams=..., do_sample=False)` in
    /// transformers ≥ 4.50 (its vectorised beam search), token for token:
    /// - each step keeps the best `max(2, 1 + #eos) · num_beams` continuations of all beams of a
    ///   row (first step: only beam 0 counts, the others start at -1e9); the best `num_beams` of
    ///   them that do not end (in an eos id, or at the length limit) continue;
    /// - an ending continuation among the best `num_beams` becomes a finished hypothesis scored
    ///   `sum of log-probabilities / generated_length ^ length_penalty`; the best `num_beams`
    ///   finished ones are kept;
    /// - a row stops improving per [`EarlyStopping`]; decoding ends when no row can improve,
    ///   or at `max_new_tokens`.
    ///
    /// Returns the new tokens of each row's best hypothesis (its eos included), rows shorter than
    /// the longest filled with `pad_token_id`.
    pub fn generate_beam(
        &self,
        prompt: &CausalLmInput,
        beam: &BeamSearchConfig,
        eos_token_ids: &[i64],
        pad_token_id: i64,
    ) -> Result<Vec<Vec<i64>>> {
        self.beam_search(prompt, beam, eos_token_ids, pad_token_id, None)
    }

    pub(crate) fn beam_search(
        &self,
        prompt: &CausalLmInput,
        beam: &BeamSearchConfig,
        eos_token_ids: &[i64],
        pad_token_id: i64,
        adapters: Option<&LlamaLoraAdapters<B>>,
    ) -> Result<Vec<Vec<i64>>> {
        let (batch, _) = prompt.check(self.vocab_size())?;
        let vocab = self.vocab_size();
        let beams = beam.num_beams;
        let keep = 2.max(1 + eos_token_ids.len()) * beams;
        if beams == 0 || keep > beams * vocab {
            return Err(ModelError::InvalidInput(format!(
                "num_beams must be at least 1 and keep {keep} candidates among {} (vocabulary \
                 {vocab}), got {beams}",
                beams * vocab
            )));
        }
        if !beam.length_penalty.is_finite() {
            return Err(ModelError::InvalidInput(format!(
                "length_penalty must be finite, got {}",
                beam.length_penalty
            )));
        }
        if beam.max_new_tokens == 0 {
            return Ok(vec![Vec::new(); batch]);
        }
        let expand = |rows: &[Vec<i64>]| -> Vec<Vec<i64>> {
            rows.iter()
                .flat_map(|r| std::iter::repeat_n(r.clone(), beams))
                .collect()
        };
        let mut ids = expand(&prompt.input_ids);
        let mut key_mask = expand(&prompt.attention_mask);
        let mut positions = prompt_positions(&key_mask);
        let mut cache = KvCache::new(self.base.layers.len());
        let mut search: Vec<BeamRow> = (0..batch).map(|_| BeamRow::new(beams)).collect();
        for step in 0..beam.max_new_tokens {
            let hidden =
                self.hidden_states(&ids, &positions, &key_mask, Some(&mut cache), adapters);
            let [rows, s, _] = hidden.dims();
            let last = self
                .project(hidden.narrow(1, s - 1, 1))
                .reshape([rows, vocab]);
            let log_probs = activation::log_softmax(last, 1)
                .into_data()
                .convert::<f32>()
                .into_vec::<f32>()
                .map_err(|e| ModelError::TensorData(format!("{e:?}")))?;
            let mut all_end = true;
            for (row, chunk) in search.iter_mut().zip(log_probs.chunks_exact(beams * vocab)) {
                all_end &= row.advance(chunk, vocab, step, beam, eos_token_ids);
            }
            let all_finished = search.iter().all(|r| r.done.iter().all(|d| d.finished));
            let stop = !search.iter().any(|r| r.improvable)
                || (beam.early_stopping == EarlyStopping::WhenFinished && all_finished)
                || all_end;
            if stop {
                break;
            }
            // Each new beam continues from the cache of the beam it extends.
            let parents: Vec<usize> = search
                .iter()
                .enumerate()
                .flat_map(|(b, row)| row.running.iter().map(move |h| b * beams + h.parent))
                .collect();
            cache.select_rows(&parents);
            key_mask = parents.iter().map(|&r| key_mask[r].clone()).collect();
            for row in key_mask.iter_mut() {
                row.push(1);
            }
            positions = key_mask
                .iter()
                .map(|row| vec![row.iter().sum::<i64>() - 1])
                .collect();
            ids = search
                .iter()
                .flat_map(|row| &row.running)
                .map(|h| vec![h.tokens[h.tokens.len() - 1]])
                .collect();
        }
        let mut best: Vec<Vec<i64>> = search
            .into_iter()
            .map(|row| {
                row.done
                    .into_iter()
                    .next()
                    .map(|h| h.tokens)
                    .unwrap_or_default()
            })
            .collect();
        let longest = best.iter().map(Vec::len).max().unwrap_or(0);
        for row in &mut best {
            row.resize(longest, pad_token_id);
        }
        Ok(best)
    }
}

/// transformers' "impossible" score: scores stay in f32 and this is added exactly where
/// transformers adds it, so candidate orderings come out the same.
const BEAM_OUT: f32 = -1.0e9;

/// A beam-search hypothesis: its generated tokens, its score, whether it ended, and the index of
/// the running beam it extends (for reordering the KV cache).
#[derive(Debug, Clone)]
struct Hypothesis {
    tokens: Vec<i64>,
    score: f32,
    finished: bool,
    parent: usize,
}

impl Hypothesis {
    fn placeholder(score: f32) -> Self {
        Self {
            tokens: Vec::new(),
            score,
            finished: false,
            parent: 0,
        }
    }
}

/// The `n` best hypotheses, best first (ties: the earlier one).
fn best_hypotheses(all: Vec<Hypothesis>, n: usize) -> Vec<Hypothesis> {
    let mut order: Vec<usize> = (0..all.len()).collect();
    order.sort_by(|&x, &y| all[y].score.total_cmp(&all[x].score).then(x.cmp(&y)));
    order.truncate(n);
    let mut slots: Vec<Option<Hypothesis>> = all.into_iter().map(Some).collect();
    order.into_iter().filter_map(|k| slots[k].take()).collect()
}

/// The beam-search state of one prompt (one batch row of transformers' tensors).
struct BeamRow {
    /// The running beams, best first; initially beam 0 at 0 and the others at -1e9, so that the
    /// first step expands beam 0 only.
    running: Vec<Hypothesis>,
    /// The best finished hypotheses, best first; unfilled slots are placeholders at -1e9.
    done: Vec<Hypothesis>,
    /// Whether a running beam may still beat the finished ones (`early_stopping`'s test).
    improvable: bool,
}

impl BeamRow {
    fn new(beams: usize) -> Self {
        Self {
            running: (0..beams)
                .map(|j| Hypothesis::placeholder(if j == 0 { 0.0 } else { BEAM_OUT }))
                .collect(),
            done: (0..beams)
                .map(|_| Hypothesis::placeholder(BEAM_OUT))
                .collect(),
            improvable: true,
        }
    }

    /// One decoding step from the next-token log-probabilities of the running beams
    /// (`[beams, vocab]`, flattened). Returns whether every kept continuation ended.
    fn advance(
        &mut self,
        log_probs: &[f32],
        vocab: usize,
        step: usize,
        config: &BeamSearchConfig,
        eos_token_ids: &[i64],
    ) -> bool {
        let beams = self.running.len();
        let keep = 2.max(1 + eos_token_ids.len()) * beams;
        let generated = step + 1;
        let penalised =
            |score: f32, length: usize| score / (length as f64).powf(config.length_penalty) as f32;

        // a. The best `keep` continuations over all beams.
        let mut candidates: Vec<(f32, usize)> = Vec::with_capacity(beams * vocab);
        for (j, (hyp, row)) in self
            .running
            .iter()
            .zip(log_probs.chunks_exact(vocab))
            .enumerate()
        {
            candidates.extend(
                row.iter()
                    .enumerate()
                    .map(|(t, &lp)| (lp + hyp.score, j * vocab + t)),
            );
        }
        let order = |a: &(f32, usize), b: &(f32, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        candidates.select_nth_unstable_by(keep - 1, order);
        candidates.truncate(keep);
        candidates.sort_by(order);
        let at_limit = generated == config.max_new_tokens;
        let ends: Vec<bool> = candidates
            .iter()
            .map(|&(_, i)| at_limit || eos_token_ids.contains(&((i % vocab) as i64)))
            .collect();
        let extend = |k: usize, score: f32, finished: bool| {
            let (_, i) = candidates[k];
            let parent = i / vocab;
            let mut tokens = self.running[parent].tokens.clone();
            tokens.push((i % vocab) as i64);
            Hypothesis {
                tokens,
                score,
                finished,
                parent,
            }
        };

        // b. Running beams: the best continuations that do not end.
        let next: Vec<Hypothesis> = candidates
            .iter()
            .zip(&ends)
            .enumerate()
            .map(|(k, (&(score, _), &end))| {
                extend(k, if end { score + BEAM_OUT } else { score }, false)
            })
            .collect();

        // c. Finished hypotheses: the ending continuations among the best `beams`, scored with
        //    the length penalty, merged with the earlier ones.
        let full = config.early_stopping == EarlyStopping::WhenFinished
            && self.done.iter().all(|d| d.finished);
        let mut merged = std::mem::take(&mut self.done);
        for (k, &(score, _)) in candidates.iter().enumerate() {
            let finishes = k < beams && ends[k];
            let mut score = penalised(score, generated);
            if full {
                score += BEAM_OUT;
            }
            if !self.improvable {
                score += BEAM_OUT;
            }
            if !finishes {
                score += BEAM_OUT;
            }
            merged.push(extend(k, score, finishes));
        }
        self.done = best_hypotheses(merged, beams);
        self.running = best_hypotheses(next, beams);

        // d. Can a running beam still beat the worst finished one?
        if self.improvable {
            let length = match config.early_stopping {
                EarlyStopping::Never if config.length_penalty > 0.0 => config.max_new_tokens,
                _ => generated,
            };
            let best_running = penalised(self.running[0].score, length);
            let worst_done = self
                .done
                .iter()
                .map(|d| d.score)
                .fold(f32::INFINITY, f32::min);
            self.improvable = self
                .done
                .iter()
                .any(|d| best_running > if d.finished { worst_done } else { BEAM_OUT });
        }
        ends.iter().all(|&e| e)
    }
}

/// When beam search stops for a row (HF's `early_stopping`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EarlyStopping {
    /// `early_stopping=False`, HF's default: stop once the best running beam, scored at the
    /// current length, cannot beat the worst of `num_beams` finished hypotheses.
    #[default]
    Heuristic,
    /// `early_stopping=True`: stop as soon as `num_beams` hypotheses are finished.
    WhenFinished,
    /// `early_stopping="never"`: like `Heuristic`, but with a positive length penalty a running
    /// beam is assumed to reach the maximum length (the canonical beam search criterion).
    Never,
}

/// Parameters of [`LlamaForCausalLM::generate_beam`], named as in HF's `GenerationConfig`.
#[derive(Debug, Clone, PartialEq)]
pub struct BeamSearchConfig {
    pub num_beams: usize,
    pub max_new_tokens: usize,
    /// Finished hypotheses are scored `sum_logprobs / length^length_penalty` (HF default 1.0;
    /// > 0 favours longer sequences, < 0 shorter ones).
    pub length_penalty: f64,
    pub early_stopping: EarlyStopping,
}

impl BeamSearchConfig {
    /// HF's defaults: length penalty 1, `early_stopping=False`.
    pub fn new(num_beams: usize, max_new_tokens: usize) -> Self {
        Self {
            num_beams,
            max_new_tokens,
            length_penalty: 1.0,
            early_stopping: EarlyStopping::Heuristic,
        }
    }
}

/// How [`LlamaForCausalLM::generate_sampled`] draws tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingConfig {
    pub temperature: f64,
    /// Keep only the `k` most likely tokens (HF's `top_k`; `None` or 0 = all).
    pub top_k: Option<usize>,
    /// Keep the smallest set of most likely tokens whose probability reaches `p` (HF's `top_p`).
    pub top_p: Option<f64>,
    pub seed: u64,
}

/// Index of the first maximum (as `torch.argmax`).
fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold(0, |best, (i, &v)| if v > values[best] { i } else { best })
}

/// Draws one token from `logits` with `uniform` in [0, 1).
fn sample(logits: &[f32], config: &SamplingConfig, uniform: f64) -> usize {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    if let Some(k) = config.top_k.filter(|&k| k > 0) {
        order.truncate(k);
    }
    let max = logits[order[0]] as f64;
    let mut probs: Vec<f64> = order
        .iter()
        .map(|&i| ((logits[i] as f64 - max) / config.temperature).exp())
        .collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    if let Some(top_p) = config.top_p.filter(|&p| p < 1.0) {
        // Keep tokens until the cumulative probability reaches top_p (always at least one).
        let mut cumulative = 0.0;
        let keep = probs
            .iter()
            .position(|&p| {
                cumulative += p;
                cumulative >= top_p
            })
            .map_or(probs.len(), |i| i + 1);
        order.truncate(keep);
        probs.truncate(keep);
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
    }
    let mut cumulative = 0.0;
    for (&token, &p) in order.iter().zip(&probs) {
        cumulative += p;
        if uniform < cumulative {
            return token;
        }
    }
    order[order.len() - 1]
}

/// A tiny deterministic generator (SplitMix64) so sampling is reproducible without a dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

/// Writes `model` as an HF LLaMA folder (`config.json`, `model.safetensors` with HF names; the
/// tokenizer files of `tokenizer_dir` copied along when given) that `transformers` loads
/// unchanged. A merged LoRA model ([`LlamaLoraAdapters::merge_into`]) exports like any other.
pub fn export_llama<B: Backend>(
    model: &LlamaForCausalLM<B>,
    config: &LlamaConfig,
    out_dir: impl AsRef<Path>,
    tokenizer_dir: Option<&Path>,
) -> Result<()> {
    let out_dir = out_dir.as_ref();
    std::fs::create_dir_all(out_dir).map_err(|e| ModelError::io(out_dir, e))?;
    let mut json = config.to_json()?;
    if let Some(fields) = json.as_object_mut() {
        fields.insert("model_type".into(), Value::from("llama"));
        fields.insert(
            "architectures".into(),
            serde_json::json!(["LlamaForCausalLM"]),
        );
    }
    let config_path = out_dir.join("config.json");
    let text = serde_json::to_string_pretty(&json).map_err(|source| ModelError::Json {
        path: config_path.clone(),
        source,
    })?;
    std::fs::write(&config_path, text + "\n").map_err(|e| ModelError::io(&config_path, e))?;
    let tensors = params::named_tensors(model)?;
    export::write_safetensors(&out_dir.join(weights::SAFETENSORS_FILE), &tensors)?;
    if let Some(dir) = tokenizer_dir {
        export::copy_tokenizer_files(dir, out_dir)?;
    }
    Ok(())
}

/// Loads a LLaMA model from an HF folder (`config.json` + safetensors / `.bin`).
pub fn load_llama<B: Backend>(
    dir: impl AsRef<Path>,
    device: &B::Device,
) -> Result<(LlamaForCausalLM<B>, LlamaConfig)> {
    let dir = dir.as_ref();
    let config = LlamaConfig::from_file(dir.join("config.json"))?;
    let checkpoint = weights::read_checkpoint(dir)?;
    let model = load_llama_checkpoint(&config, checkpoint, device)?;
    Ok((model, config))
}

/// Builds a model from `config` and assigns every tensor of `checkpoint`, strictly: a missing,
/// unexpected or wrongly-shaped tensor is an error naming it. Tolerated, as in `transformers`:
/// `lm_head.weight` when embeddings are tied (a copy of the embeddings) and the old
/// `rotary_emb.inv_freq` buffers.
pub fn load_llama_checkpoint<B: Backend>(
    config: &LlamaConfig,
    checkpoint: Checkpoint,
    device: &B::Device,
) -> Result<LlamaForCausalLM<B>> {
    let model = LlamaForCausalLM::new_lazy(config, device)?;
    let tensors: BTreeMap<_, _> = checkpoint
        .tensors
        .into_iter()
        .filter(|(name, _)| {
            let tied_copy = config.tie_word_embeddings && name == "lm_head.weight";
            !(tied_copy || name.ends_with("rotary_emb.inv_freq"))
        })
        .collect();
    Ok(params::materialize(params::set_tensors(
        model,
        &tensors,
        Coverage::All,
        device,
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(top_k: Option<usize>, top_p: Option<f64>) -> SamplingConfig {
        SamplingConfig {
            temperature: 1.0,
            top_k,
            top_p,
            seed: 0,
        }
    }

    #[test]
    fn top_k_one_is_greedy_and_top_p_keeps_the_head() {
        let logits = [0.1f32, 3.0, 2.9, -1.0];
        for u in [0.0, 0.5, 0.999] {
            assert_eq!(sample(&logits, &config(Some(1), None), u), 1);
            // p(1) ≈ 0.50, p(2) ≈ 0.45: top_p = 0.3 keeps token 1 only.
            assert_eq!(sample(&logits, &config(None, Some(0.3)), u), 1);
            assert!([1, 2].contains(&sample(&logits, &config(None, Some(0.9)), u)));
        }
        assert_eq!(argmax(&logits), 1);
    }

    #[test]
    fn draws_follow_the_softmax() {
        let logits = [0.0f32, (3.0f32).ln()];
        let mut rng = SplitMix64(42);
        let n = 20_000;
        let ones = (0..n)
            .filter(|_| sample(&logits, &config(None, None), rng.next_f64()) == 1)
            .count();
        let share = ones as f64 / n as f64;
        assert!((share - 0.75).abs() < 0.02, "{share}");
    }
}
