//! The encoder: embeddings, post-LN layers, pooler, and [`BertModel`] with its full and
//! first-token forward passes.

use burn::module::{Initializer, Module};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear,
};
use burn::tensor::activation;
use burn::tensor::backend::Backend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Int, Tensor};

use super::{BertConfig, EncoderFlavor, HiddenAct};
use crate::error::{ModelError, Result};
use crate::kernels::{
    self, Activation, Packing, Queries, layer_norm, linear, linear3, linear3_then,
};

/// A Linear layer initialised as `transformers` does (`normal(0, initializer_range)`, zero bias).
/// Stored burn-style: weight `[d_in, d_out]` (HF stores `[d_out, d_in]`).
pub(crate) fn hf_linear<B: Backend>(
    d_in: usize,
    d_out: usize,
    std: f64,
    device: &B::Device,
) -> Linear<B> {
    Linear {
        weight: Initializer::Normal { mean: 0.0, std }.init([d_in, d_out], device),
        bias: Some(Initializer::Zeros.init([d_out], device)),
    }
}

pub(crate) fn hf_embedding<B: Backend>(
    n: usize,
    d: usize,
    std: f64,
    device: &B::Device,
) -> Embedding<B> {
    EmbeddingConfig::new(n, d)
        .with_initializer(Initializer::Normal { mean: 0.0, std })
        .init(device)
}

pub(crate) fn hf_layer_norm<B: Backend>(d: usize, eps: f64, device: &B::Device) -> LayerNorm<B> {
    LayerNormConfig::new(d).with_epsilon(eps).init(device)
}

/// Inputs of an encoder forward pass, all `[batch, seq_len]`.
#[derive(Debug, Clone)]
pub struct EncoderInput<B: Backend> {
    pub input_ids: Tensor<B, 2, Int>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Tensor<B, 2, Int>,
    /// Segment ids; zeros when absent (as in HF).
    pub token_type_ids: Option<Tensor<B, 2, Int>>,
}

impl<B: Backend> EncoderInput<B> {
    /// Builds the tensors from row-major host data (`ids.len() == batch * seq_len`).
    pub fn from_rows(
        input_ids: &[i64],
        attention_mask: &[i64],
        token_type_ids: Option<&[i64]>,
        batch: usize,
        seq_len: usize,
        device: &B::Device,
    ) -> Result<Self> {
        let n = batch * seq_len;
        let check = |what: &str, len: usize| {
            if len == n {
                Ok(())
            } else {
                Err(ModelError::InvalidInput(format!(
                    "{what} has {len} values, expected batch {batch} × seq_len {seq_len} = {n}"
                )))
            }
        };
        check("input_ids", input_ids.len())?;
        check("attention_mask", attention_mask.len())?;
        if let Some(t) = token_type_ids {
            check("token_type_ids", t.len())?;
        }
        let make = |v: &[i64]| {
            Tensor::<B, 2, Int>::from_data(
                burn::tensor::TensorData::new(v.to_vec(), [batch, seq_len]),
                device,
            )
        };
        Ok(Self {
            input_ids: make(input_ids),
            attention_mask: make(attention_mask),
            token_type_ids: token_type_ids.map(make),
        })
    }
}

#[derive(Module, Debug)]
pub struct BertEmbeddings<B: Backend> {
    pub word_embeddings: Embedding<B>,
    pub position_embeddings: Embedding<B>,
    pub token_type_embeddings: Embedding<B>,
    pub layer_norm: LayerNorm<B>,
    dropout: Dropout,
    /// burn's LayerNorm keeps its epsilon private; the fused kernel needs it.
    layer_norm_eps: f64,
    /// RoBERTa: positions are offset past this padding index. `usize::MAX` for BERT.
    roberta_padding_idx: usize,
    /// `padding_idx` of the word embeddings (no gradient reaches that row).
    pad_token_id: usize,
}

impl<B: Backend> BertEmbeddings<B> {
    fn new(c: &BertConfig, device: &B::Device) -> Self {
        Self {
            word_embeddings: hf_embedding(c.vocab_size, c.hidden_size, c.initializer_range, device),
            position_embeddings: hf_embedding(
                c.max_position_embeddings,
                c.hidden_size,
                c.initializer_range,
                device,
            ),
            token_type_embeddings: hf_embedding(
                c.type_vocab_size,
                c.hidden_size,
                c.initializer_range,
                device,
            ),
            layer_norm: hf_layer_norm(c.hidden_size, c.layer_norm_eps, device),
            dropout: DropoutConfig::new(c.hidden_dropout_prob).init(),
            layer_norm_eps: c.layer_norm_eps,
            pad_token_id: c.pad_token_id,
            roberta_padding_idx: match c.flavor {
                EncoderFlavor::Bert => usize::MAX,
                EncoderFlavor::Roberta => c.pad_token_id,
            },
        }
    }

    /// Position ids as HF computes them: `0..L` for BERT; for RoBERTa, running count of non-pad
    /// tokens offset by the padding index (pads get the padding index itself).
    fn position_ids(&self, input_ids: &Tensor<B, 2, Int>) -> Tensor<B, 2, Int> {
        let [batch, seq_len] = input_ids.dims();
        let device = input_ids.device();
        if self.roberta_padding_idx == usize::MAX {
            Tensor::<B, 1, Int>::arange(0..seq_len as i64, &device)
                .unsqueeze::<2>()
                .expand([batch, seq_len])
        } else {
            let pad = self.roberta_padding_idx as i64;
            let not_pad = input_ids.clone().not_equal_elem(pad).int();
            not_pad.clone().cumsum(1).mul(not_pad).add_scalar(pad)
        }
    }

    pub fn forward(&self, input: &EncoderInput<B>) -> Tensor<B, 3> {
        let ids = input.input_ids.clone();
        let position_ids = self.position_ids(&ids);
        let token_types = input
            .token_type_ids
            .clone()
            .unwrap_or_else(|| ids.zeros_like());
        let is_pad = ids.clone().equal_elem(self.pad_token_id as i64);
        let words = no_grad_where(self.word_embeddings.forward(ids), &is_pad);
        let positions = self.position_embeddings.forward(position_ids);
        // RoBERTa's position table also has `padding_idx` (padding tokens sit at that position).
        let positions = if self.roberta_padding_idx == usize::MAX {
            positions
        } else {
            no_grad_where(positions, &is_pad)
        };
        let x = words + self.token_type_embeddings.forward(token_types);
        let x = layer_norm(&self.layer_norm, self.layer_norm_eps, x, Some(positions));
        kernels::dropout(&self.dropout, x)
    }
}

/// PyTorch's `nn.Embedding(padding_idx=...)` never updates the padding row: its gradient is zero.
/// burn's Embedding has no such option, so padded positions are detached instead (same values,
/// no gradient into the padding row). A no-op without autodiff.
pub(crate) fn no_grad_where<B: Backend>(
    x: Tensor<B, 3>,
    is_pad: &Tensor<B, 2, Bool>,
) -> Tensor<B, 3> {
    if !B::ad_enabled(&x.device()) {
        return x;
    }
    let [batch, seq_len, d] = x.dims();
    let mask = is_pad
        .clone()
        .reshape([batch, seq_len, 1])
        .expand([batch, seq_len, d]);
    x.clone().mask_where(mask, x.detach())
}

/// HF's `attention.self`: the Q/K/V projections and scaled dot-product attention.
#[derive(Module, Debug)]
pub struct BertSelfAttention<B: Backend> {
    pub query: Linear<B>,
    pub key: Linear<B>,
    pub value: Linear<B>,
    dropout: Dropout,
    num_heads: usize,
    attention_dropout: f64,
}

impl<B: Backend> BertSelfAttention<B> {
    /// `x`: `[batch, seq, hidden]`; `key_padding`: `[batch, seq]`, true at padded keys.
    fn forward(&self, x: Tensor<B, 3>, key_padding: &Tensor<B, 2, Bool>) -> Tensor<B, 3> {
        let [batch, seq_len, hidden] = x.dims();
        let heads = self.num_heads;
        let head_dim = hidden / heads;
        let q = linear3(&self.query, x.clone());
        let k = linear3(&self.key, x.clone());
        let v = linear3(&self.value, x);
        let training_dropout = self.attention_dropout > 0.0 && B::ad_enabled(&q.device());
        let fast = if training_dropout {
            kernels::encoder_attention_train(&q, &k, &v, key_padding, heads, self.attention_dropout)
        } else {
            kernels::encoder_attention(&q, &k, &v, key_padding, heads)
        };
        if let Some(context) = fast {
            return context;
        }
        let split = |t: Tensor<B, 3>| t.reshape([batch, seq_len, heads, head_dim]).swap_dims(1, 2);
        let (q, k, v) = (split(q), split(k), split(v));
        let mask = key_padding
            .clone()
            .reshape([batch, 1, 1, seq_len])
            .expand([batch, heads, seq_len, seq_len]);
        let context = if training_dropout {
            // Training with attention dropout on backends without the fused training kernel.
            let scores = q
                .matmul(k.swap_dims(2, 3))
                .div_scalar((head_dim as f64).sqrt());
            let scores = scores.mask_fill(mask, f32::MIN);
            let probs = kernels::dropout(&self.dropout, activation::softmax(scores, 3));
            probs.matmul(v)
        } else {
            attention(q, k, v, Some(mask), None, AttentionModuleOptions::default())
        };
        context.swap_dims(1, 2).reshape([batch, seq_len, hidden])
    }
}

impl<B: Backend> BertSelfAttention<B> {
    /// [`Self::forward`] for the first position's query only: keys and values of every
    /// position, `[batch, 1, hidden]` out. Composed burn ops (one query row per head is cheap),
    /// so it runs on every backend, with autodiff and attention dropout.
    fn forward_first_query(
        &self,
        x: Tensor<B, 3>,
        key_padding: &Tensor<B, 2, Bool>,
    ) -> Tensor<B, 3> {
        let [batch, seq_len, hidden] = x.dims();
        let heads = self.num_heads;
        let head_dim = hidden / heads;
        let q = linear3(&self.query, x.clone().slice([0..batch, 0..1, 0..hidden]));
        let k = linear3(&self.key, x.clone());
        let v = linear3(&self.value, x);
        let split =
            |t: Tensor<B, 3>, len: usize| t.reshape([batch, len, heads, head_dim]).swap_dims(1, 2);
        let (q, k, v) = (split(q, 1), split(k, seq_len), split(v, seq_len));
        let mask = key_padding
            .clone()
            .reshape([batch, 1, 1, seq_len])
            .expand([batch, heads, 1, seq_len]);
        let scores = q
            .matmul(k.swap_dims(2, 3))
            .div_scalar((head_dim as f64).sqrt())
            .mask_fill(mask, f32::MIN);
        let probs = activation::softmax(scores, 3);
        let probs = if self.attention_dropout > 0.0 && B::ad_enabled(&probs.device()) {
            kernels::dropout(&self.dropout, probs)
        } else {
            probs
        };
        probs.matmul(v).swap_dims(1, 2).reshape([batch, 1, hidden])
    }
}

/// HF's `attention.output` / `output`: `LayerNorm(residual + Dropout(Dense(x)))`.
#[derive(Module, Debug)]
pub struct BertResidualOutput<B: Backend> {
    pub dense: Linear<B>,
    pub layer_norm: LayerNorm<B>,
    dropout: Dropout,
    layer_norm_eps: f64,
}

impl<B: Backend> BertResidualOutput<B> {
    fn new(d_in: usize, c: &BertConfig, device: &B::Device) -> Self {
        Self {
            dense: hf_linear(d_in, c.hidden_size, c.initializer_range, device),
            layer_norm: hf_layer_norm(c.hidden_size, c.layer_norm_eps, device),
            dropout: DropoutConfig::new(c.hidden_dropout_prob).init(),
            layer_norm_eps: c.layer_norm_eps,
        }
    }

    fn forward(&self, x: Tensor<B, 3>, residual: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = kernels::dropout(&self.dropout, linear3(&self.dense, x));
        layer_norm(&self.layer_norm, self.layer_norm_eps, x, Some(residual))
    }

    /// [`Self::forward`] on packed `[tokens, d]` rows.
    fn forward_rows(&self, x: Tensor<B, 2>, residual: Tensor<B, 2>) -> Tensor<B, 2> {
        let x = linear(&self.dense, x, Activation::Identity);
        let x = kernels::dropout(&self.dropout, x);
        layer_norm(&self.layer_norm, self.layer_norm_eps, x, Some(residual))
    }
}

#[derive(Module, Debug)]
pub struct BertAttention<B: Backend> {
    /// HF name: `self` (a Rust keyword).
    pub self_attn: BertSelfAttention<B>,
    pub output: BertResidualOutput<B>,
}

#[derive(Module, Debug)]
pub struct BertIntermediate<B: Backend> {
    pub dense: Linear<B>,
    #[module(skip)]
    act: HiddenAct,
}

#[derive(Module, Debug)]
pub struct BertLayer<B: Backend> {
    pub attention: BertAttention<B>,
    pub intermediate: BertIntermediate<B>,
    pub output: BertResidualOutput<B>,
}

impl<B: Backend> BertLayer<B> {
    fn new(c: &BertConfig, device: &B::Device) -> Self {
        let std = c.initializer_range;
        Self {
            attention: BertAttention {
                self_attn: BertSelfAttention {
                    query: hf_linear(c.hidden_size, c.hidden_size, std, device),
                    key: hf_linear(c.hidden_size, c.hidden_size, std, device),
                    value: hf_linear(c.hidden_size, c.hidden_size, std, device),
                    dropout: DropoutConfig::new(c.attention_probs_dropout_prob).init(),
                    num_heads: c.num_attention_heads,
                    attention_dropout: c.attention_probs_dropout_prob,
                },
                output: BertResidualOutput::new(c.hidden_size, c, device),
            },
            intermediate: BertIntermediate {
                dense: hf_linear(c.hidden_size, c.intermediate_size, std, device),
                act: c.hidden_act,
            },
            output: BertResidualOutput::new(c.intermediate_size, c, device),
        }
    }

    fn forward(&self, x: Tensor<B, 3>, key_padding: &Tensor<B, 2, Bool>) -> Tensor<B, 3> {
        let attn = self.attention.self_attn.forward(x.clone(), key_padding);
        let attn = self.attention.output.forward(attn, x);
        self.feed_forward(attn)
    }

    /// [`Self::forward`] read at the first position only (`[batch, hidden]`): keys and values of
    /// every position, the query, attention output and feed-forward of the first alone.
    fn forward_first_token(
        &self,
        x: Tensor<B, 3>,
        key_padding: &Tensor<B, 2, Bool>,
    ) -> Tensor<B, 2> {
        let [batch, _, hidden] = x.dims();
        let first = x.clone().slice([0..batch, 0..1, 0..hidden]);
        let context = self.attention.self_attn.forward_first_query(x, key_padding);
        let attn = self.attention.output.forward(context, first);
        self.feed_forward(attn).reshape([batch, hidden])
    }

    /// The feed-forward block after attention: `output(act(intermediate(attn)), attn)`.
    fn feed_forward(&self, attn: Tensor<B, 3>) -> Tensor<B, 3> {
        let dense = &self.intermediate.dense;
        let inner = match self.intermediate.act {
            HiddenAct::Gelu => linear3_then(dense, attn.clone(), Activation::Gelu),
            act => act.apply(linear3(dense, attn.clone())),
        };
        self.output.forward(inner, attn)
    }

    /// [`Self::feed_forward`] on `[tokens, hidden]` rows.
    fn feed_forward_rows(&self, attn: Tensor<B, 2>) -> Tensor<B, 2> {
        let dense = &self.intermediate.dense;
        let inner = match self.intermediate.act {
            HiddenAct::Gelu => linear(dense, attn.clone(), Activation::Gelu),
            act => act.apply(linear(dense, attn.clone(), Activation::Identity)),
        };
        self.output.forward_rows(inner, attn)
    }

    /// [`Self::forward`] on the real tokens only, packed as `[tokens, hidden]` rows.
    fn forward_packed(&self, x: Tensor<B, 2>, packing: &Packing) -> Tensor<B, 2> {
        let sa = &self.attention.self_attn;
        let project = |layer: &Linear<B>| linear(layer, x.clone(), Activation::Identity);
        let (q, k, v) = (project(&sa.query), project(&sa.key), project(&sa.value));
        let context = packing.attention(&q, &k, &v, sa.num_heads, Queries::EveryToken);
        let attn = self.attention.output.forward_rows(context, x);
        self.feed_forward_rows(attn)
    }

    /// [`Self::forward_packed`] read at each sequence's first token only: keys and values of
    /// every token, the rest for the first rows alone; returns `[batch, hidden]`.
    fn forward_packed_first_token(&self, x: Tensor<B, 2>, packing: &Packing) -> Tensor<B, 2> {
        let sa = &self.attention.self_attn;
        let first = packing.first_rows(&x);
        let q = linear(&sa.query, first.clone(), Activation::Identity);
        let k = linear(&sa.key, x.clone(), Activation::Identity);
        let v = linear(&sa.value, x, Activation::Identity);
        let context = packing.attention(&q, &k, &v, sa.num_heads, Queries::FirstToken);
        let attn = self.attention.output.forward_rows(context, first);
        self.feed_forward_rows(attn)
    }
}

#[derive(Module, Debug)]
pub struct BertEncoder<B: Backend> {
    pub layer: Vec<BertLayer<B>>,
}

/// `pooler.dense` + tanh on the first token.
#[derive(Module, Debug)]
pub struct BertPooler<B: Backend> {
    pub dense: Linear<B>,
}

impl<B: Backend> BertPooler<B> {
    fn forward(&self, hidden: Tensor<B, 3>) -> Tensor<B, 2> {
        self.forward_first(first_token(hidden))
    }

    /// The pooler on the first token's hidden state, `[batch, hidden]`.
    fn forward_first(&self, first: Tensor<B, 2>) -> Tensor<B, 2> {
        self.dense.forward(first).tanh()
    }
}

fn first_token<B: Backend>(hidden: Tensor<B, 3>) -> Tensor<B, 2> {
    let [batch, _, d] = hidden.dims();
    hidden.slice([0..batch, 0..1, 0..d]).squeeze_dim::<2>(1)
}

/// Outputs of the base encoder.
#[derive(Debug, Clone)]
pub struct BertOutput<B: Backend> {
    /// `[batch, seq_len, hidden]`.
    pub last_hidden_state: Tensor<B, 3>,
    /// `[batch, hidden]`, present when the model has a pooler.
    pub pooled: Option<Tensor<B, 2>>,
}

/// The base encoder (`BertModel` / `RobertaModel`).
#[derive(Module, Debug)]
pub struct BertModel<B: Backend> {
    pub embeddings: BertEmbeddings<B>,
    pub encoder: BertEncoder<B>,
    pub pooler: Option<BertPooler<B>>,
}

impl<B: Backend> BertModel<B> {
    /// A randomly initialised encoder (HF's initialisation scheme).
    pub fn new(config: &BertConfig, with_pooler: bool, device: &B::Device) -> Self {
        Self {
            embeddings: BertEmbeddings::new(config, device),
            encoder: BertEncoder {
                layer: (0..config.num_hidden_layers)
                    .map(|_| BertLayer::new(config, device))
                    .collect(),
            },
            pooler: with_pooler.then(|| BertPooler {
                dense: hf_linear(
                    config.hidden_size,
                    config.hidden_size,
                    config.initializer_range,
                    device,
                ),
            }),
        }
    }

    pub fn forward(&self, input: &EncoderInput<B>) -> BertOutput<B> {
        let key_padding = input.attention_mask.clone().equal_elem(0);
        let mut x = self.embeddings.forward(input);
        for layer in &self.encoder.layer {
            x = layer.forward(x, &key_padding);
        }
        let pooled = self.pooler.as_ref().map(|p| p.forward(x.clone()));
        BertOutput {
            last_hidden_state: x,
            pooled,
        }
    }

    /// What [`Self::forward`] gives at the first token (position 0), which is all that the
    /// classification and multiple-choice heads read. The last layer computes its query,
    /// feed-forward and the pooler for the first token alone (its keys and values still cover
    /// every token): a sixth less work for a 6-layer model, in training too (the gradients are
    /// the same: nothing else reaches the loss). On the CPU backend without autodiff, for
    /// right-padded batches, the layers also run on the real tokens only (see `kernels::Packing`).
    pub fn forward_first_token(&self, input: &EncoderInput<B>) -> FirstTokenOutput<B> {
        let x = self.embeddings.forward(input);
        let packing = Packing::of(&input.attention_mask).filter(Packing::starts_at_position_zero);
        let hidden = match (packing, self.encoder.layer.split_last()) {
            (_, None) => first_token(x),
            (Some(packing), Some((last, lower))) => {
                let mut rows = packing.pack(x);
                for layer in lower {
                    rows = layer.forward_packed(rows, &packing);
                }
                last.forward_packed_first_token(rows, &packing)
            }
            (None, Some((last, lower))) => {
                let key_padding = input.attention_mask.clone().equal_elem(0);
                let mut x = x;
                for layer in lower {
                    x = layer.forward(x, &key_padding);
                }
                last.forward_first_token(x, &key_padding)
            }
        };
        let pooled = self
            .pooler
            .as_ref()
            .map(|p| p.forward_first(hidden.clone()));
        FirstTokenOutput { hidden, pooled }
    }
}

/// The encoder's output at the first token of each sequence.
#[derive(Debug, Clone)]
pub struct FirstTokenOutput<B: Backend> {
    /// `[batch, hidden]`: the last hidden state at position 0.
    pub hidden: Tensor<B, 2>,
    /// `[batch, hidden]`, present when the model has a pooler.
    pub pooled: Option<Tensor<B, 2>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CpuBackend as B;
    use proptest::prelude::*;

    fn roberta_config(pad: usize) -> BertConfig {
        BertConfig::from_json(serde_json::json!({
            "model_type": "roberta", "vocab_size": 20, "hidden_size": 8, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 8, "max_position_embeddings": 40,
            "type_vocab_size": 1, "pad_token_id": pad
        }))
        .unwrap()
    }

    proptest! {
        /// RoBERTa position ids, as `create_position_ids_from_input_ids` defines them: padding
        /// tokens get `pad`, the k-th real token (1-based, counted left to right) gets `pad + k`,
        /// wherever the padding sits.
        #[test]
        fn roberta_position_ids_follow_transformers(
            ids in proptest::collection::vec(0i64..20, 12),
            pad in 0usize..4,
        ) {
            let device = Default::default();
            let embeddings = BertEmbeddings::<B>::new(&roberta_config(pad), &device);
            let t = Tensor::<B, 2, Int>::from_data(burn::tensor::TensorData::new(ids.clone(), [2, 6]), &device);
            let got: Vec<i64> = embeddings.position_ids(&t).into_data().convert::<i64>().into_vec().unwrap();
            let mut want = Vec::new();
            for row in ids.chunks(6) {
                let mut count = 0;
                for &id in row {
                    if id == pad as i64 {
                        want.push(pad as i64);
                    } else {
                        count += 1;
                        want.push(pad as i64 + count);
                    }
                }
            }
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn bert_position_ids_are_a_plain_range() {
        let device = Default::default();
        let mut config = roberta_config(1);
        config.flavor = EncoderFlavor::Bert;
        let embeddings = BertEmbeddings::<B>::new(&config, &device);
        let t = Tensor::<B, 2, Int>::from_data(
            burn::tensor::TensorData::new(vec![5i64, 1, 1, 7, 0, 1], [2, 3]),
            &device,
        );
        let got: Vec<i64> = embeddings
            .position_ids(&t)
            .into_data()
            .convert::<i64>()
            .into_vec()
            .unwrap();
        assert_eq!(got, [0, 1, 2, 0, 1, 2]);
    }

    /// The packed first-token path (last layer on the first token only) gives what the full
    /// padded forward gives at position 0, hidden state and pooler, for right padding (packed)
    /// and left padding (the padded fallback), with 1 and 3 layers.
    #[test]
    fn first_token_output_equals_the_full_forward_at_position_zero() {
        let device = Default::default();
        for layers in [1, 3] {
            let mut config = roberta_config(1);
            config.flavor = EncoderFlavor::Bert;
            config.num_hidden_layers = layers;
            config.hidden_size = 16;
            config.num_attention_heads = 4;
            config.intermediate_size = 24;
            B::seed(&device, 7);
            let model = BertModel::<B>::new(&config, true, &device);
            let (batch, seq) = (3, 7);
            let ids: Vec<i64> = (0..batch * seq).map(|i| (i * 7 % 17 + 2) as i64).collect();
            let right: Vec<i64> = (0..batch * seq)
                .map(|i| i64::from(i % seq < [7, 2, 5][i / seq]))
                .collect();
            let left: Vec<i64> = right
                .chunks(seq)
                .flat_map(|row| row.iter().rev().copied().collect::<Vec<_>>())
                .collect();
            for (mask, packs) in [(right, true), (left, false)] {
                let input =
                    EncoderInput::<B>::from_rows(&ids, &mask, None, batch, seq, &device).unwrap();
                let packing =
                    Packing::of(&input.attention_mask).filter(Packing::starts_at_position_zero);
                assert_eq!(packing.is_some(), packs);
                let full = model.forward(&input);
                let first = model.forward_first_token(&input);
                first.hidden.into_data().assert_approx_eq::<f32>(
                    &first_token(full.last_hidden_state).into_data(),
                    burn::tensor::Tolerance::absolute(1e-5),
                );
                first.pooled.unwrap().into_data().assert_approx_eq::<f32>(
                    &full.pooled.unwrap().into_data(),
                    burn::tensor::Tolerance::absolute(1e-5),
                );
            }
        }
    }

    /// In training (autodiff, padded path) the first-token forward gives the full forward's
    /// gradients: the last layer's other positions never reach a loss read at position 0.
    #[test]
    fn first_token_training_gradients_equal_the_full_forward() {
        use crate::CpuAutodiffBackend as AD;
        let device = Default::default();
        let mut config = roberta_config(1);
        config.num_hidden_layers = 2;
        config.hidden_size = 16;
        config.num_attention_heads = 4;
        config.intermediate_size = 24;
        let config = config.without_dropout();
        AD::seed(&device, 3);
        let model = BertModel::<AD>::new(&config, true, &device);
        let (batch, seq) = (3, 6);
        let ids: Vec<i64> = (0..batch * seq).map(|i| (i * 5 % 17 + 2) as i64).collect();
        let mask: Vec<i64> = (0..batch * seq)
            .map(|i| i64::from(i % seq < [6, 3, 4][i / seq]))
            .collect();
        let input = EncoderInput::<AD>::from_rows(&ids, &mask, None, batch, seq, &device).unwrap();
        let weights = |x: Tensor<AD, 2>| {
            let w: Vec<f32> = (0..16).map(|j| (j as f32 - 7.5) / 8.0).collect();
            x * Tensor::<AD, 1>::from_floats(w.as_slice(), &device).reshape([1, 16])
        };
        let full = weights(model.forward(&input).pooled.unwrap()).sum();
        let first = weights(model.forward_first_token(&input).pooled.unwrap()).sum();
        full.clone().into_data().assert_approx_eq::<f32>(
            &first.clone().into_data(),
            burn::tensor::Tolerance::absolute(1e-5),
        );
        let (g_full, g_first) = (full.backward(), first.backward());
        let params = [
            &model.encoder.layer[1].attention.self_attn.query.weight,
            &model.encoder.layer[1].attention.self_attn.key.weight,
            &model.encoder.layer[0].intermediate.dense.weight,
            &model.embeddings.word_embeddings.weight,
        ];
        for p in params {
            let a = p.grad(&g_full).unwrap();
            let b = p.grad(&g_first).unwrap();
            a.into_data()
                .assert_approx_eq::<f32>(&b.into_data(), burn::tensor::Tolerance::absolute(1e-5));
        }
    }
}
