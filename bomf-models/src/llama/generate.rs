//! Generation with LLaMA: the [`StepDecoder`] over its KV cache, and the `generate_*` entry
//! points, which hand it to [`crate::generation`]'s drivers.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::{CausalLmInput, KvCache, LlamaForCausalLM};
use crate::error::Result;
use crate::generation::{self, BeamSearchConfig, SamplingConfig, StepDecoder};

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

/// A generation in progress: the prompt rows (each input repeated once per beam), the KV cache,
/// and the padding mask over every cached position.
struct LlamaDecoder<'a, B: Backend> {
    model: &'a LlamaForCausalLM<B>,
    prompt: Vec<Vec<i64>>,
    key_mask: Vec<Vec<i64>>,
    cache: KvCache<B>,
}

impl<'a, B: Backend> LlamaDecoder<'a, B> {
    /// Checks the prompt; every row is repeated `repeat` times (beam search's beams).
    fn new(model: &'a LlamaForCausalLM<B>, prompt: &CausalLmInput, repeat: usize) -> Result<Self> {
        prompt.check(model.vocab_size())?;
        let expand = |rows: &[Vec<i64>]| -> Vec<Vec<i64>> {
            rows.iter()
                .flat_map(|r| std::iter::repeat_n(r.clone(), repeat))
                .collect()
        };
        Ok(Self {
            model,
            prompt: expand(&prompt.input_ids),
            key_mask: expand(&prompt.attention_mask),
            cache: KvCache::new(model.base.layers.len()),
        })
    }

    /// Runs `ids` through the cached decoder; the logits of each row's last position.
    fn last_logits(&mut self, ids: &[Vec<i64>], positions: &[Vec<i64>]) -> Tensor<B, 2> {
        let hidden =
            self.model
                .hidden_states(ids, positions, &self.key_mask, Some(&mut self.cache));
        let [rows, seq, h] = hidden.dims();
        self.model
            .project(hidden.narrow(1, seq - 1, 1).reshape([rows, 1, h]))
            .reshape([rows, self.model.vocab_size()])
    }
}

impl<B: Backend> StepDecoder<B> for LlamaDecoder<'_, B> {
    fn rows(&self) -> usize {
        self.key_mask.len()
    }

    fn vocab_size(&self) -> usize {
        self.model.vocab_size()
    }

    fn start(&mut self) -> Result<Tensor<B, 2>> {
        let positions = prompt_positions(&self.key_mask);
        let prompt = std::mem::take(&mut self.prompt);
        Ok(self.last_logits(&prompt, &positions))
    }

    fn step(&mut self, tokens: &[i64]) -> Result<Tensor<B, 2>> {
        for row in self.key_mask.iter_mut() {
            row.push(1);
        }
        let positions: Vec<Vec<i64>> = self
            .key_mask
            .iter()
            .map(|row| vec![row.iter().sum::<i64>() - 1])
            .collect();
        let ids: Vec<Vec<i64>> = tokens.iter().map(|&t| vec![t]).collect();
        Ok(self.last_logits(&ids, &positions))
    }

    fn select_rows(&mut self, rows: &[usize]) {
        self.cache.select_rows(rows);
        self.key_mask = rows.iter().map(|&r| self.key_mask[r].clone()).collect();
    }
}

impl<B: Backend> LlamaForCausalLM<B> {
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
        let mut decoder = LlamaDecoder::new(self, prompt, 1)?;
        generation::greedy(&mut decoder, max_new_tokens, eos_token_ids, pad_token_id)
    }

    /// Sampling with a KV cache (`generate(do_sample=True)` semantics, see
    /// [`generation::sample`]), reproducible for a given seed.
    pub fn generate_sampled(
        &self,
        prompt: &CausalLmInput,
        max_new_tokens: usize,
        eos_token_ids: &[i64],
        pad_token_id: i64,
        sampling: &SamplingConfig,
    ) -> Result<Vec<Vec<i64>>> {
        let mut decoder = LlamaDecoder::new(self, prompt, 1)?;
        generation::sample(
            &mut decoder,
            max_new_tokens,
            eos_token_ids,
            pad_token_id,
            sampling,
        )
    }

    /// Beam search with a KV cache, as `generate(num_beams=..., do_sample=False)` (see
    /// [`generation::beam_search`]). Returns the new tokens of each row's best hypothesis (its eos
    /// included), rows shorter than the longest filled with `pad_token_id`, as `generate` does.
    pub fn generate_beam(
        &self,
        prompt: &CausalLmInput,
        beam: &BeamSearchConfig,
        eos_token_ids: &[i64],
        pad_token_id: i64,
    ) -> Result<Vec<Vec<i64>>> {
        let mut decoder = LlamaDecoder::new(self, prompt, beam.num_beams)?;
        let best = generation::beam_search(&mut decoder, beam, eos_token_ids)?;
        Ok(generation::pad_to_longest(best, pad_token_id))
    }
}
