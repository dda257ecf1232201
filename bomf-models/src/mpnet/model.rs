//! MPNet's encoder: embeddings, the relative-position bias, post-LN layers, the pooler and
//! [`MpnetModel`] with its full and first-token forward passes.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Embedding, LayerNorm, Linear};
use burn::tensor::activation;
use burn::tensor::backend::Backend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Int, Tensor, TensorData};

use super::config::{MpnetConfig, PADDING_IDX, POSITION_BUCKETS, POSITION_MAX_DISTANCE};
use crate::bert::{
    EncoderInput, FirstTokenOutput, HiddenAct, hf_embedding, hf_layer_norm, hf_linear,
    no_grad_where,
};
use crate::error::{ModelError, Result};
use crate::kernels::{self, Activation, layer_norm, linear3, linear3_then};
use crate::params;
use crate::t5::relative_position_bucket;

/// Word and position embeddings (MPNet has no token types), summed, normalised, dropped out.
#[derive(Module, Debug)]
pub struct MpnetEmbeddings<B: Backend> {
    pub word_embeddings: Embedding<B>,
    pub position_embeddings: Embedding<B>,
    pub layer_norm: LayerNorm<B>,
    dropout: Dropout,
    /// burn's LayerNorm keeps its epsilon private; the fused kernel needs it.
    layer_norm_eps: f64,
}

impl<B: Backend> MpnetEmbeddings<B> {
    fn new(c: &MpnetConfig, device: &B::Device) -> Self {
        let std = c.initializer_range;
        Self {
            word_embeddings: hf_embedding(c.vocab_size, c.hidden_size, std, device),
            position_embeddings: hf_embedding(
                c.max_position_embeddings,
                c.hidden_size,
                std,
                device,
            ),
            layer_norm: hf_layer_norm(c.hidden_size, c.layer_norm_eps, device),
            dropout: DropoutConfig::new(c.hidden_dropout_prob).init(),
            layer_norm_eps: c.layer_norm_eps,
        }
    }

    /// `create_position_ids_from_input_ids`: padding tokens sit at the padding index, the k-th
    /// real token (counted left to right) at `padding index + k`.
    fn position_ids(input_ids: &Tensor<B, 2, Int>) -> Tensor<B, 2, Int> {
        let pad = PADDING_IDX as i64;
        let not_pad = input_ids.clone().not_equal_elem(pad).int();
        not_pad.clone().cumsum(1).mul(not_pad).add_scalar(pad)
    }

    /// `[batch, seq]` ids → `[batch, seq, hidden]`. Both tables have `padding_idx` 1 in
    /// PyTorch, so padded positions get no gradient here either.
    pub fn forward(&self, input_ids: &Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let is_pad = input_ids.clone().equal_elem(PADDING_IDX as i64);
        let words = no_grad_where(self.word_embeddings.forward(input_ids.clone()), &is_pad);
        let positions = self
            .position_embeddings
            .forward(Self::position_ids(input_ids));
        let positions = no_grad_where(positions, &is_pad);
        let x = layer_norm(
            &self.layer_norm,
            self.layer_norm_eps,
            words,
            Some(positions),
        );
        kernels::dropout(&self.dropout, x)
    }
}

/// HF's `attention.attn`: Q/K/V projections, scaled dot-product attention plus the position
/// bias, and the output projection `o`.
#[derive(Module, Debug)]
pub struct MpnetSelfAttention<B: Backend> {
    pub q: Linear<B>,
    pub k: Linear<B>,
    pub v: Linear<B>,
    pub o: Linear<B>,
    dropout: Dropout,
    num_heads: usize,
    attention_dropout: f64,
}

impl<B: Backend> MpnetSelfAttention<B> {
    /// `x`: `[batch, seq, hidden]` (keys and values); `queries`: the rows that attend (all of
    /// `x`, or its first position); `bias`: `[1, heads, queries, seq]`; `key_padding`:
    /// `[batch, seq]`, true at padded keys. Returns `o(context)`, `[batch, queries, hidden]`.
    fn forward(
        &self,
        x: Tensor<B, 3>,
        queries: Tensor<B, 3>,
        bias: Tensor<B, 4>,
        key_padding: &Tensor<B, 2, Bool>,
    ) -> Tensor<B, 3> {
        let [batch, seq_len, hidden] = x.dims();
        let q_len = queries.dims()[1];
        let heads = self.num_heads;
        let head_dim = hidden / heads;
        let split =
            |t: Tensor<B, 3>, len: usize| t.reshape([batch, len, heads, head_dim]).swap_dims(1, 2);
        let q = split(linear3(&self.q, queries), q_len);
        let k = split(linear3(&self.k, x.clone()), seq_len);
        let v = split(linear3(&self.v, x), seq_len);
        let shape = [batch, heads, q_len, seq_len];
        let mask = key_padding
            .clone()
            .reshape([batch, 1, 1, seq_len])
            .expand(shape);
        let bias = bias.expand(shape);
        let context = if self.attention_dropout > 0.0 && B::ad_enabled(&q.device()) {
            // Training: dropout on the probabilities, which burn's fused attention lacks.
            let scores = q
                .matmul(k.swap_dims(2, 3))
                .div_scalar((head_dim as f64).sqrt())
                .add(bias)
                .mask_fill(mask, f32::MIN);
            let probs = kernels::dropout(&self.dropout, activation::softmax(scores, 3));
            probs.matmul(v)
        } else {
            attention(
                q,
                k,
                v,
                Some(mask),
                Some(bias),
                AttentionModuleOptions::default(),
            )
        };
        let context = context.swap_dims(1, 2).reshape([batch, q_len, hidden]);
        linear3(&self.o, context)
    }
}

/// HF's `attention`: `LayerNorm(x + Dropout(attn(x)))`.
#[derive(Module, Debug)]
pub struct MpnetAttention<B: Backend> {
    pub attn: MpnetSelfAttention<B>,
    pub layer_norm: LayerNorm<B>,
    dropout: Dropout,
    layer_norm_eps: f64,
}

/// HF's `intermediate`: the feed-forward expansion and its activation.
#[derive(Module, Debug)]
pub struct MpnetIntermediate<B: Backend> {
    pub dense: Linear<B>,
    #[module(skip)]
    act: HiddenAct,
}

/// HF's `output`: `LayerNorm(residual + Dropout(dense(x)))`.
#[derive(Module, Debug)]
pub struct MpnetOutput<B: Backend> {
    pub dense: Linear<B>,
    pub layer_norm: LayerNorm<B>,
    dropout: Dropout,
    layer_norm_eps: f64,
}

#[derive(Module, Debug)]
pub struct MpnetLayer<B: Backend> {
    pub attention: MpnetAttention<B>,
    pub intermediate: MpnetIntermediate<B>,
    pub output: MpnetOutput<B>,
}

impl<B: Backend> MpnetLayer<B> {
    fn new(c: &MpnetConfig, act: HiddenAct, device: &B::Device) -> Self {
        let (h, std) = (c.hidden_size, c.initializer_range);
        let dropout = || DropoutConfig::new(c.hidden_dropout_prob).init();
        Self {
            attention: MpnetAttention {
                attn: MpnetSelfAttention {
                    q: hf_linear(h, h, std, device),
                    k: hf_linear(h, h, std, device),
                    v: hf_linear(h, h, std, device),
                    o: hf_linear(h, h, std, device),
                    dropout: DropoutConfig::new(c.attention_probs_dropout_prob).init(),
                    num_heads: c.num_attention_heads,
                    attention_dropout: c.attention_probs_dropout_prob,
                },
                layer_norm: hf_layer_norm(h, c.layer_norm_eps, device),
                dropout: dropout(),
                layer_norm_eps: c.layer_norm_eps,
            },
            intermediate: MpnetIntermediate {
                dense: hf_linear(h, c.intermediate_size, std, device),
                act,
            },
            output: MpnetOutput {
                dense: hf_linear(c.intermediate_size, h, std, device),
                layer_norm: hf_layer_norm(h, c.layer_norm_eps, device),
                dropout: dropout(),
                layer_norm_eps: c.layer_norm_eps,
            },
        }
    }

    /// One layer for the rows `queries` of `x` (all of them, or the first position only):
    /// attention over every key, then the feed-forward block on the query rows.
    fn forward(
        &self,
        x: Tensor<B, 3>,
        queries: Tensor<B, 3>,
        bias: Tensor<B, 4>,
        key_padding: &Tensor<B, 2, Bool>,
    ) -> Tensor<B, 3> {
        let attention = &self.attention;
        let context = attention
            .attn
            .forward(x, queries.clone(), bias, key_padding);
        let context = kernels::dropout(&attention.dropout, context);
        let attn = layer_norm(
            &attention.layer_norm,
            attention.layer_norm_eps,
            context,
            Some(queries),
        );
        let dense = &self.intermediate.dense;
        let inner = match self.intermediate.act {
            HiddenAct::Gelu => linear3_then(dense, attn.clone(), Activation::Gelu),
            act => act.apply(linear3(dense, attn.clone())),
        };
        let out = &self.output;
        let projected = kernels::dropout(&out.dropout, linear3(&out.dense, inner));
        layer_norm(&out.layer_norm, out.layer_norm_eps, projected, Some(attn))
    }
}

/// The layers and the relative-attention bias table they share (`[buckets, heads]`).
#[derive(Module, Debug)]
pub struct MpnetEncoder<B: Backend> {
    pub layer: Vec<MpnetLayer<B>>,
    pub relative_attention_bias: Embedding<B>,
}

/// The relative-position bucket of key `key` for query `query`, as `compute_position_bias`
/// computes it (bidirectional, [`POSITION_BUCKETS`] buckets up to [`POSITION_MAX_DISTANCE`]).
pub fn position_bucket(query: usize, key: usize) -> usize {
    relative_position_bucket(
        key as i64 - query as i64,
        true,
        POSITION_BUCKETS,
        POSITION_MAX_DISTANCE,
    )
}

impl<B: Backend> MpnetEncoder<B> {
    /// `[1, heads, queries, seq]`: the learned bias of each key position for the first
    /// `queries` query positions. It depends on positions only (never on padding), as in HF.
    fn position_bias(&self, queries: usize, seq_len: usize, device: &B::Device) -> Tensor<B, 4> {
        let buckets: Vec<i64> = (0..queries)
            .flat_map(|i| (0..seq_len).map(move |j| position_bucket(i, j) as i64))
            .collect();
        let ids =
            Tensor::<B, 2, Int>::from_data(TensorData::new(buckets, [queries, seq_len]), device);
        // [queries, seq, heads] → [heads, queries, seq]
        let values = self.relative_attention_bias.forward(ids).permute([2, 0, 1]);
        values.unsqueeze::<4>()
    }
}

/// `pooler.dense` + tanh on the first token.
#[derive(Module, Debug)]
pub struct MpnetPooler<B: Backend> {
    pub dense: Linear<B>,
}

/// Outputs of the base encoder.
#[derive(Debug, Clone)]
pub struct MpnetOutputs<B: Backend> {
    /// `[batch, seq_len, hidden]`.
    pub last_hidden_state: Tensor<B, 3>,
    /// `[batch, hidden]`, present when the model has a pooler.
    pub pooled: Option<Tensor<B, 2>>,
}

/// The base encoder (`MPNetModel`). Inputs are [`EncoderInput`]s; MPNet has no segment
/// embeddings, so their `token_type_ids` are ignored (as `transformers`' MPNet never takes them).
#[derive(Module, Debug)]
pub struct MpnetModel<B: Backend> {
    pub embeddings: MpnetEmbeddings<B>,
    pub encoder: MpnetEncoder<B>,
    pub pooler: Option<MpnetPooler<B>>,
    max_position_embeddings: usize,
}

impl<B: Backend> MpnetModel<B> {
    /// A randomly initialised encoder (HF's initialisation scheme), parameters materialised so
    /// that clones share their values.
    pub fn new(config: &MpnetConfig, with_pooler: bool, device: &B::Device) -> Result<Self> {
        Ok(params::materialize(Self::new_lazy(
            config,
            with_pooler,
            device,
        )?))
    }

    /// Like [`Self::new`] with lazy parameters, for the loader, which overwrites them.
    pub(crate) fn new_lazy(
        config: &MpnetConfig,
        with_pooler: bool,
        device: &B::Device,
    ) -> Result<Self> {
        config.validate()?;
        let act = config.activation()?;
        let (h, std) = (config.hidden_size, config.initializer_range);
        Ok(Self {
            embeddings: MpnetEmbeddings::new(config, device),
            encoder: MpnetEncoder {
                layer: (0..config.num_hidden_layers)
                    .map(|_| MpnetLayer::new(config, act, device))
                    .collect(),
                relative_attention_bias: hf_embedding(
                    config.relative_attention_num_buckets,
                    config.num_attention_heads,
                    std,
                    device,
                ),
            },
            pooler: with_pooler.then(|| MpnetPooler {
                dense: hf_linear(h, h, std, device),
            }),
            max_position_embeddings: config.max_position_embeddings,
        })
    }

    /// Refuses inputs the model cannot embed: mismatched mask, an empty batch or sequence, or
    /// a sequence longer than the position table allows (positions start past the padding index).
    fn check_input(&self, input: &EncoderInput<B>) -> Result<(usize, usize)> {
        let [batch, seq_len] = input.input_ids.dims();
        if input.attention_mask.dims() != [batch, seq_len] {
            return Err(ModelError::InvalidInput(format!(
                "attention_mask is {:?}, input_ids {:?}",
                input.attention_mask.dims(),
                [batch, seq_len]
            )));
        }
        if batch == 0 || seq_len == 0 {
            return Err(ModelError::InvalidInput("empty batch or sequence".into()));
        }
        let limit = self.max_position_embeddings.saturating_sub(PADDING_IDX + 1);
        if seq_len > limit {
            return Err(ModelError::InvalidInput(format!(
                "sequence length {seq_len} exceeds MPNet's {limit} positions \
                 (max_position_embeddings {} less the padding offset)",
                self.max_position_embeddings
            )));
        }
        Ok((batch, seq_len))
    }

    pub fn forward(&self, input: &EncoderInput<B>) -> Result<MpnetOutputs<B>> {
        let (_, seq_len) = self.check_input(input)?;
        let device = input.input_ids.device();
        let key_padding = input.attention_mask.clone().equal_elem(0);
        let bias = self.encoder.position_bias(seq_len, seq_len, &device);
        let mut x = self.embeddings.forward(&input.input_ids);
        for layer in &self.encoder.layer {
            x = layer.forward(x.clone(), x, bias.clone(), &key_padding);
        }
        let pooled = self
            .pooler
            .as_ref()
            .map(|p| p.dense.forward(first_token(x.clone())).tanh());
        Ok(MpnetOutputs {
            last_hidden_state: x,
            pooled,
        })
    }

    /// What [`Self::forward`] gives at the first token (position 0), all that the
    /// classification head reads: the last layer computes its query, feed-forward and the
    /// pooler for the first token alone (keys and values still cover every token). The
    /// gradients are the full forward's: nothing else reaches a loss read at position 0.
    pub fn forward_first_token(&self, input: &EncoderInput<B>) -> Result<FirstTokenOutput<B>> {
        let (batch, seq_len) = self.check_input(input)?;
        let device = input.input_ids.device();
        let key_padding = input.attention_mask.clone().equal_elem(0);
        let mut x = self.embeddings.forward(&input.input_ids);
        let hidden = match self.encoder.layer.split_last() {
            None => first_token(x),
            Some((last, lower)) => {
                let bias = self.encoder.position_bias(seq_len, seq_len, &device);
                for layer in lower {
                    x = layer.forward(x.clone(), x, bias.clone(), &key_padding);
                }
                let hidden = x.dims()[2];
                let first = x.clone().slice([0..batch, 0..1, 0..hidden]);
                let first_bias = self.encoder.position_bias(1, seq_len, &device);
                first_token(last.forward(x, first, first_bias, &key_padding))
            }
        };
        let pooled = self
            .pooler
            .as_ref()
            .map(|p| p.dense.forward(hidden.clone()).tanh());
        Ok(FirstTokenOutput { hidden, pooled })
    }
}

fn first_token<B: Backend>(hidden: Tensor<B, 3>) -> Tensor<B, 2> {
    let [batch, _, d] = hidden.dims();
    hidden.slice([0..batch, 0..1, 0..d]).squeeze_dim::<2>(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CpuBackend as B;
    use burn::tensor::Tolerance;

    fn tiny_config(layers: usize) -> MpnetConfig {
        MpnetConfig::from_json(serde_json::json!({
            "model_type": "mpnet", "vocab_size": 30, "hidden_size": 16, "num_hidden_layers": layers,
            "num_attention_heads": 4, "intermediate_size": 24, "max_position_embeddings": 20
        }))
        .unwrap()
    }

    /// `relative_position_bucket` of `transformers`' MPNet, at the points where its branches
    /// change: exact distances below 8, log-spaced bins up to 128, the last bin beyond; the
    /// upper half of the buckets for keys after the query.
    #[test]
    fn buckets_follow_the_transformers_formula() {
        assert_eq!(position_bucket(0, 0), 0);
        assert_eq!(position_bucket(5, 0), 5);
        assert_eq!(position_bucket(0, 5), 21);
        assert_eq!(position_bucket(8, 0), 8);
        assert_eq!(position_bucket(200, 0), 15);
        assert_eq!(position_bucket(0, 200), 31);
        let within = |b: usize| b < POSITION_BUCKETS;
        assert!((0..300).all(|d| within(position_bucket(d, 0)) && within(position_bucket(0, d))));
    }

    #[test]
    fn position_ids_skip_padding_wherever_it_sits() {
        let device = Default::default();
        let ids = Tensor::<B, 2, Int>::from_data(
            TensorData::new(vec![0i64, 5, 1, 7, 1, 1, 4, 2], [2, 4]),
            &device,
        );
        let got: Vec<i64> = MpnetEmbeddings::<B>::position_ids(&ids)
            .into_data()
            .convert::<i64>()
            .into_vec()
            .unwrap();
        assert_eq!(got, [2, 3, 1, 4, 1, 1, 2, 3]);
    }

    #[test]
    fn first_token_output_equals_the_full_forward_at_position_zero() {
        let device = Default::default();
        for layers in [1, 3] {
            B::seed(&device, 11);
            let model = MpnetModel::<B>::new(&tiny_config(layers), true, &device).unwrap();
            let (batch, seq) = (3, 7);
            let ids: Vec<i64> = (0..batch * seq).map(|i| (i * 7 % 25 + 2) as i64).collect();
            let mask: Vec<i64> = (0..batch * seq)
                .map(|i| i64::from(i % seq < [7, 2, 5][i / seq]))
                .collect();
            let input =
                EncoderInput::<B>::from_rows(&ids, &mask, None, batch, seq, &device).unwrap();
            let full = model.forward(&input).unwrap();
            let first = model.forward_first_token(&input).unwrap();
            first.hidden.into_data().assert_approx_eq::<f32>(
                &first_token(full.last_hidden_state).into_data(),
                Tolerance::absolute(1e-5),
            );
            first.pooled.unwrap().into_data().assert_approx_eq::<f32>(
                &full.pooled.unwrap().into_data(),
                Tolerance::absolute(1e-5),
            );
        }
    }

    #[test]
    fn sequences_past_the_position_table_are_refused() {
        let device = Default::default();
        let model = MpnetModel::<B>::new(&tiny_config(1), false, &device).unwrap();
        // 20 positions, of which 0 and 1 are taken by the padding offset.
        for (seq, ok) in [(18, true), (19, false)] {
            let ids = vec![3i64; seq];
            let mask = vec![1i64; seq];
            let input = EncoderInput::<B>::from_rows(&ids, &mask, None, 1, seq, &device).unwrap();
            let result = model.forward(&input);
            assert_eq!(result.is_ok(), ok, "{seq}");
            if let Err(e) = result {
                assert!(e.to_string().contains("exceeds"), "{e}");
            }
        }
    }
}
