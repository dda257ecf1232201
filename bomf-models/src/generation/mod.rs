//! Autoregressive generation, once for every decoder of the crate: a greedy / sampling loop and a
//! beam search, driving a model through [`StepDecoder`] (what one decoding step of a model is).
//! LLaMA and T5 implement it over their KV caches, and implement [`Generate`], whose
//! `generate_*` methods build such a decoder for a batch and hand it to these drivers.
//!
//! Semantics are `transformers`' `generate` (checked against it by `tests/llama_parity.rs`,
//! `tests/llama_lora.rs` and `tests/t5_parity.rs`): a row that produced an end-of-sequence id
//! continues with the pad id until every row has finished; beam search is the vectorised beam
//! search of transformers ≥ 4.50 (see [`beam_search`]).

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::error::{ModelError, Result};

mod beam;
mod sampling;

pub use beam::{BeamSearchConfig, EarlyStopping, beam_search};
pub use sampling::{SamplingConfig, argmax};

/// One decoding step of a model over a batch of rows, each with its own cache of what it has
/// seen (prompt or encoder output, and the tokens generated so far).
pub trait StepDecoder<B: Backend> {
    /// The number of rows decoded together (input rows × beams).
    fn rows(&self) -> usize;

    /// The width of a logits row.
    fn vocab_size(&self) -> usize;

    /// The first step: next-token logits `[rows, vocab]` after the prompt (decoder-only) or the
    /// decoder start token (encoder–decoder).
    fn start(&mut self) -> Result<Tensor<B, 2>>;

    /// Feeds one token per row; next-token logits `[rows, vocab]`.
    fn step(&mut self, tokens: &[i64]) -> Result<Tensor<B, 2>>;

    /// Row `i` continues from what row `rows[i]` has seen (repeats allowed): beam search moves
    /// each new beam onto the cache of the beam it extends.
    fn select_rows(&mut self, rows: &[usize]);
}

/// Generation for a model that builds a [`StepDecoder`] over its input: the greedy, sampled and
/// beam-search entry points every decoder of the crate shares (LLaMA's prompt, T5's encoder
/// input). The decoder keeps the model's caches; the methods hand it to this module's drivers.
pub trait Generate<B: Backend> {
    /// What a batch is generated from.
    type Input;
    /// The step decoder over one batch, borrowing the model and the input.
    type Decoder<'a>: StepDecoder<B>
    where
        Self: 'a;

    /// Checks `input` and builds a decoder in which every input row is decoded `beams` times
    /// (consecutive rows, once per beam).
    fn decoder<'a>(&'a self, input: &'a Self::Input, beams: usize) -> Result<Self::Decoder<'a>>;

    /// Greedy decoding (`generate(do_sample=False)`, see [`greedy`]): a row that produced an
    /// end-of-sequence id continues with `pad_token_id`; decoding stops when every row has
    /// finished or after `max_new_tokens`. Returns the new tokens only.
    fn generate_greedy(
        &self,
        input: &Self::Input,
        max_new_tokens: usize,
        eos_token_ids: &[i64],
        pad_token_id: i64,
    ) -> Result<Vec<Vec<i64>>> {
        let mut decoder = self.decoder(input, 1)?;
        greedy(&mut decoder, max_new_tokens, eos_token_ids, pad_token_id)
    }

    /// Seeded sampling (`generate(do_sample=True)` semantics, see [`sample`]), otherwise as
    /// [`Self::generate_greedy`]; reproducible for a given seed.
    fn generate_sampled(
        &self,
        input: &Self::Input,
        max_new_tokens: usize,
        eos_token_ids: &[i64],
        pad_token_id: i64,
        sampling: &SamplingConfig,
    ) -> Result<Vec<Vec<i64>>> {
        let mut decoder = self.decoder(input, 1)?;
        sample(
            &mut decoder,
            max_new_tokens,
            eos_token_ids,
            pad_token_id,
            sampling,
        )
    }

    /// Beam search as `generate(num_beams=N, do_sample=False)` (see [`beam_search`]). Returns
    /// each row's best hypothesis, unpadded (ending with its end-of-sequence id unless the length
    /// limit cut it); [`pad_to_longest`] makes the batch rectangular as `generate` returns it.
    fn generate_beam(
        &self,
        input: &Self::Input,
        config: &BeamSearchConfig,
        eos_token_ids: &[i64],
    ) -> Result<Vec<Vec<i64>>> {
        let mut decoder = self.decoder(input, config.num_beams)?;
        beam_search(&mut decoder, config, eos_token_ids)
    }
}

/// A tensor's values as `f32` on the host.
pub(crate) fn host_values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| ModelError::TensorData(format!("{e:?}")))
}

/// The loop shared by greedy and sampled decoding: `choose` picks a row's next token from its
/// logits. A row that produced an end-of-sequence id continues with `pad_token_id`; decoding
/// stops when every row has finished, or after `max_new_tokens`. Returns the new tokens.
pub fn decode<B: Backend>(
    decoder: &mut impl StepDecoder<B>,
    max_new_tokens: usize,
    eos_token_ids: &[i64],
    pad_token_id: i64,
    mut choose: impl FnMut(&[f32]) -> i64,
) -> Result<Vec<Vec<i64>>> {
    let rows = decoder.rows();
    let vocab = decoder.vocab_size();
    let mut out = vec![Vec::new(); rows];
    let mut finished = vec![false; rows];
    let mut last: Vec<i64> = Vec::new();
    for step in 0..max_new_tokens {
        let logits = if step == 0 {
            decoder.start()?
        } else {
            decoder.step(&last)?
        };
        let logits = host_values(logits)?;
        for (row, row_logits) in logits.chunks_exact(vocab).enumerate() {
            let token = if finished[row] {
                pad_token_id
            } else {
                choose(row_logits)
            };
            finished[row] |= eos_token_ids.contains(&token);
            out[row].push(token);
        }
        if finished.iter().all(|&f| f) {
            break;
        }
        last = out.iter().map(|r| r[r.len() - 1]).collect();
    }
    Ok(out)
}

/// Greedy decoding (`generate(do_sample=False)`), through [`decode`].
pub fn greedy<B: Backend>(
    decoder: &mut impl StepDecoder<B>,
    max_new_tokens: usize,
    eos_token_ids: &[i64],
    pad_token_id: i64,
) -> Result<Vec<Vec<i64>>> {
    decode(
        decoder,
        max_new_tokens,
        eos_token_ids,
        pad_token_id,
        |logits| argmax(logits) as i64,
    )
}

/// Seeded sampling (`generate(do_sample=True)` semantics, see [`SamplingConfig`]), through
/// [`decode`]. The random stream is our own, so the tokens differ from PyTorch's for the same
/// seed.
pub fn sample<B: Backend>(
    decoder: &mut impl StepDecoder<B>,
    max_new_tokens: usize,
    eos_token_ids: &[i64],
    pad_token_id: i64,
    sampling: &SamplingConfig,
) -> Result<Vec<Vec<i64>>> {
    sampling.validate()?;
    let mut draw = sampling.sampler();
    decode(
        decoder,
        max_new_tokens,
        eos_token_ids,
        pad_token_id,
        |logits| draw(logits) as i64,
    )
}

/// Rows filled with `pad_token_id` to the longest one's length, as `generate` returns a batch.
pub fn pad_to_longest(mut rows: Vec<Vec<i64>>, pad_token_id: i64) -> Vec<Vec<i64>> {
    let longest = rows.iter().map(Vec::len).max().unwrap_or(0);
    for row in &mut rows {
        row.resize(longest, pad_token_id);
    }
    rows
}
