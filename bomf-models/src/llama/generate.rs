//! Generation with LLaMA: the [`StepDecoder`] over its KV cache, which [`Generate`]'s
//! `generate_*` methods hand to [`crate::generation`]'s drivers.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::{CausalLmInput, KvCache, LlamaForCausalLM};
use crate::error::Result;
use crate::generation::{Generate, StepDecoder};

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
/// and the padding mask over every cached position. Built by [`Generate::decoder`].
pub struct LlamaDecoder<'a, B: Backend> {
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

/// Greedy and sampled decoding keep a KV cache; prompts may be left-padded, positions are
/// `cumsum(mask) - 1`, as `generate` computes them.
impl<B: Backend> Generate<B> for LlamaForCausalLM<B> {
    type Input = CausalLmInput;
    type Decoder<'a> = LlamaDecoder<'a, B>;

    fn decoder<'a>(
        &'a self,
        prompt: &'a CausalLmInput,
        beams: usize,
    ) -> Result<LlamaDecoder<'a, B>> {
        LlamaDecoder::new(self, prompt, beams)
    }
}
