//! [`T5ForConditionalGeneration`]: encoding, teacher-forced decoding, the LM head and the loss.

use burn::module::{Initializer, Module};
use burn::nn::{Embedding, EmbeddingConfig, Linear};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor, TensorData};

use super::T5Config;
use super::layers::{DecoderCache, T5Stack};
use crate::error::{ModelError, Result};
use crate::layers::{check_ids, check_token_rows, int_tensor, normal_linear};
use crate::loss;
use crate::params::{self, HfNamed};

/// Labels equal to this are left out of the loss (PyTorch's default `ignore_index`).
pub const IGNORE_INDEX: i64 = -100;

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

    pub(super) fn check(&self, vocab: usize) -> Result<(usize, usize)> {
        check_token_rows(&self.input_ids, &self.attention_mask, vocab, |i, mask| {
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
            Ok(())
        })
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
pub(super) struct T5Settings {
    d_model: usize,
    pub(super) scale_decoder_outputs: bool,
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
    pub(super) settings: T5Settings,
}

impl<B: Backend> HfNamed<B> for T5ForConditionalGeneration<B> {
    fn hf_base_prefix(&self) -> &str {
        ""
    }
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
        let (d, factor) = (config.d_model, config.initializer_factor);
        Ok(Self {
            shared: EmbeddingConfig::new(config.vocab_size, d)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: factor,
                })
                .init(device),
            encoder: T5Stack::new(config, ff, false, device),
            decoder: T5Stack::new(config, ff, true, device),
            lm_head: untied_head
                .then(|| normal_linear(d, config.vocab_size, false, factor, device)),
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

    pub(super) fn device(&self) -> B::Device {
        self.shared.weight.device()
    }

    fn pad_token_id(&self) -> Result<i64> {
        self.settings.pad_token_id.ok_or_else(|| {
            ModelError::unsupported("pad_token_id", "required to build decoder inputs (null)")
        })
    }

    pub(super) fn decoder_start_token_id(&self) -> Result<i64> {
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

    pub(super) fn encode_checked(
        &self,
        input: &Seq2SeqInput,
        batch: usize,
        seq: usize,
    ) -> Tensor<B, 3> {
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
    pub(super) fn encoder_mask(
        &self,
        attention_mask: &[Vec<i64>],
        query_len: usize,
    ) -> Tensor<B, 4, Bool> {
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
    pub(super) fn decode_hidden(
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
    pub(super) fn project(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
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
}
