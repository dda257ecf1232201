//! T5's layers: relative position buckets, attention with its key/value caches, the
//! feed-forward variants, blocks and stacks.

// HF's parameter names `SelfAttention`, `EncDecAttention` and `DenseReluDense` are struct fields
// here (burn names parameters after fields), and the derived `Module` code binds them as
// variables, so the lint cannot be silenced on the structs alone.
#![allow(non_snake_case)]

use burn::module::{Initializer, Module};
use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, Linear};
use burn::tensor::activation;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};

use super::{FeedForwardKind, T5Activation, T5Config};
use crate::layers::{RmsNorm, index_tensor, normal_linear};

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
    pub layer_norm: RmsNorm<B>,
    dropout: Dropout,
}

/// HF's `T5LayerCrossAttention`: pre-norm attention over the encoder output.
#[derive(Module, Debug)]
pub struct T5LayerCrossAttention<B: Backend> {
    pub EncDecAttention: T5Attention<B>,
    pub layer_norm: RmsNorm<B>,
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
    pub layer_norm: RmsNorm<B>,
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
pub(super) struct DecoderCache<B: Backend> {
    self_attention: Vec<Option<KeyValue<B>>>,
    cross_attention: Vec<Option<KeyValue<B>>>,
    /// Decoder positions already cached.
    pub(super) len: usize,
}

impl<B: Backend> DecoderCache<B> {
    pub(super) fn new(layers: usize) -> Self {
        Self {
            self_attention: vec![None; layers],
            cross_attention: vec![None; layers],
            len: 0,
        }
    }

    /// Reorders the batch rows (beam search keeps the surviving beams' caches).
    pub(super) fn select_rows(&mut self, rows: &[usize], device: &B::Device) {
        let index = index_tensor::<B>(rows, device);
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
    pub final_layer_norm: RmsNorm<B>,
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
    pub(super) fn forward(
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

// Construction, with HF's random init for a fresh model (normal weights scaled by
// `initializer_factor` and the fan-in, unit norms; lazy until materialised).

fn dropout(config: &T5Config) -> Dropout {
    DropoutConfig::new(config.dropout_rate).init()
}

impl<B: Backend> T5Attention<B> {
    /// Self- or cross-attention; `with_bias`: owns the relative position bias table.
    fn new(config: &T5Config, with_bias: bool, device: &B::Device) -> Self {
        let factor = config.initializer_factor;
        let (d, dkv, heads) = (config.d_model, config.d_kv, config.num_heads);
        let inner = heads * dkv;
        let std_in = factor * (d as f64).powf(-0.5);
        Self {
            q: normal_linear(
                d,
                inner,
                false,
                factor * ((d * dkv) as f64).powf(-0.5),
                device,
            ),
            k: normal_linear(d, inner, false, std_in, device),
            v: normal_linear(d, inner, false, std_in, device),
            o: normal_linear(inner, d, false, factor * (inner as f64).powf(-0.5), device),
            relative_attention_bias: with_bias.then(|| {
                EmbeddingConfig::new(config.relative_attention_num_buckets, heads)
                    .with_initializer(Initializer::Normal {
                        mean: 0.0,
                        std: std_in,
                    })
                    .init(device)
            }),
            dropout: dropout(config),
            num_heads: heads,
            d_kv: dkv,
        }
    }
}

impl<B: Backend> T5LayerFF<B> {
    fn new(config: &T5Config, ff: FeedForwardKind, device: &B::Device) -> Self {
        let factor = config.initializer_factor;
        let (d, dff) = (config.d_model, config.d_ff);
        let wi = || normal_linear(d, dff, false, factor * (d as f64).powf(-0.5), device);
        let wo = normal_linear(dff, d, false, factor * (dff as f64).powf(-0.5), device);
        let dense = if ff.gated {
            T5FeedForward::Gated(T5DenseGatedActDense {
                wi_0: wi(),
                wi_1: wi(),
                wo,
                dropout: dropout(config),
                activation: ff.activation,
            })
        } else {
            T5FeedForward::Dense(T5DenseActDense {
                wi: wi(),
                wo,
                dropout: dropout(config),
                activation: ff.activation,
            })
        };
        Self {
            DenseReluDense: dense,
            layer_norm: RmsNorm::new(d, config.layer_norm_epsilon, device),
            dropout: dropout(config),
        }
    }
}

impl<B: Backend> T5Stack<B> {
    /// The encoder stack of `config`, or with `is_decoder` the decoder's (cross-attention in
    /// every block, past-only position buckets).
    pub(super) fn new(
        config: &T5Config,
        ff: FeedForwardKind,
        is_decoder: bool,
        device: &B::Device,
    ) -> Self {
        let (d, eps) = (config.d_model, config.layer_norm_epsilon);
        let layers = if is_decoder {
            config.num_decoder_layers()
        } else {
            config.num_layers
        };
        let block = (0..layers)
            .map(|i| {
                let mut layer = vec![T5SubLayer::SelfAttention(T5LayerSelfAttention {
                    SelfAttention: T5Attention::new(config, i == 0, device),
                    layer_norm: RmsNorm::new(d, eps, device),
                    dropout: dropout(config),
                })];
                if is_decoder {
                    layer.push(T5SubLayer::CrossAttention(T5LayerCrossAttention {
                        EncDecAttention: T5Attention::new(config, false, device),
                        layer_norm: RmsNorm::new(d, eps, device),
                        dropout: dropout(config),
                    }));
                }
                layer.push(T5SubLayer::FeedForward(T5LayerFF::new(config, ff, device)));
                T5Block { layer }
            })
            .collect();
        Self {
            block,
            final_layer_norm: RmsNorm::new(d, eps, device),
            dropout: dropout(config),
            buckets: BucketSpec {
                bidirectional: !is_decoder,
                num_buckets: config.relative_attention_num_buckets,
                max_distance: config.relative_attention_max_distance,
            },
        }
    }
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
}
