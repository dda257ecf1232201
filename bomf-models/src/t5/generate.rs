//! Generation with T5: the [`StepDecoder`] over the decoder's caches (the encoder runs once),
//! which [`Generate`]'s `generate_*` methods hand to [`crate::generation`]'s drivers.

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor};

use super::layers::DecoderCache;
use super::{Seq2SeqInput, T5ForConditionalGeneration};
use crate::error::Result;
use crate::generation::{Generate, StepDecoder};
use crate::layers::index_tensor;

/// The encoder's output for every decoded row, and the cross-attention mask over it.
struct Encoded<B: Backend> {
    hidden: Tensor<B, 3>,
    mask: Tensor<B, 4, Bool>,
}

/// A generation in progress: the input (each row decoded `repeat` times, once per beam), its
/// encoding once the first step has run, and the decoder's caches. Built by [`Generate::decoder`].
pub struct T5Decoder<'a, B: Backend> {
    model: &'a T5ForConditionalGeneration<B>,
    input: &'a Seq2SeqInput,
    repeat: usize,
    start_token: i64,
    encoded: Option<Encoded<B>>,
    cache: DecoderCache<B>,
}

impl<'a, B: Backend> T5Decoder<'a, B> {
    /// Checks the input and the decoder start token.
    fn new(
        model: &'a T5ForConditionalGeneration<B>,
        input: &'a Seq2SeqInput,
        repeat: usize,
    ) -> Result<Self> {
        input.check(model.vocab_size())?;
        Ok(Self {
            model,
            input,
            repeat,
            start_token: model.decoder_start_token_id()?,
            encoded: None,
            cache: DecoderCache::new(model.decoder.block.len()),
        })
    }
}

impl<B: Backend> Encoded<B> {
    /// Runs the encoder on the (checked) `input`; every row's output is repeated `repeat` times,
    /// as HF's `expand_inputs_for_generation`.
    fn new(model: &T5ForConditionalGeneration<B>, input: &Seq2SeqInput, repeat: usize) -> Self {
        let [batch, seq] = [input.input_ids.len(), input.input_ids[0].len()];
        let hidden = model.encode_checked(input, batch, seq);
        if repeat == 1 {
            let mask = model.encoder_mask(&input.attention_mask, 1);
            return Self { hidden, mask };
        }
        let rows: Vec<usize> = (0..batch)
            .flat_map(|b| std::iter::repeat_n(b, repeat))
            .collect();
        let mask_rows: Vec<Vec<i64>> = rows
            .iter()
            .map(|&b| input.attention_mask[b].clone())
            .collect();
        Self {
            hidden: hidden.select(0, index_tensor::<B>(&rows, &model.device())),
            mask: model.encoder_mask(&mask_rows, 1),
        }
    }
}

impl<B: Backend> StepDecoder<B> for T5Decoder<'_, B> {
    fn rows(&self) -> usize {
        self.input.input_ids.len() * self.repeat
    }

    fn vocab_size(&self) -> usize {
        self.model.vocab_size()
    }

    fn start(&mut self) -> Result<Tensor<B, 2>> {
        let tokens = vec![self.start_token; self.rows()];
        self.step(&tokens)
    }

    fn step(&mut self, tokens: &[i64]) -> Result<Tensor<B, 2>> {
        let encoded = self
            .encoded
            .get_or_insert_with(|| Encoded::new(self.model, self.input, self.repeat));
        let ids: Vec<Vec<i64>> = tokens.iter().map(|&t| vec![t]).collect();
        let hidden =
            self.model
                .decode_hidden(&ids, &encoded.hidden, &encoded.mask, Some(&mut self.cache));
        Ok(self
            .model
            .project(hidden)
            .reshape([tokens.len(), self.model.vocab_size()]))
    }

    fn select_rows(&mut self, rows: &[usize]) {
        self.cache.select_rows(rows, &self.model.device());
    }
}

/// The encoder runs once; the decoder starts from `decoder_start_token_id` and reuses its
/// key/value caches. The new tokens do not include the start token.
impl<B: Backend> Generate<B> for T5ForConditionalGeneration<B> {
    type Input = Seq2SeqInput;
    type Decoder<'a> = T5Decoder<'a, B>;

    fn decoder<'a>(&'a self, input: &'a Seq2SeqInput, beams: usize) -> Result<T5Decoder<'a, B>> {
        T5Decoder::new(self, input, beams)
    }
}
