//! Beam search, as `generate(num_beams=..., do_sample=False)` in transformers ≥ 4.50 (its
//! vectorised beam search), token for token.

use burn::tensor::activation;
use burn::tensor::backend::Backend;

use super::{StepDecoder, host_values};
use crate::error::{ModelError, Result};

/// Beam search over `decoder`'s rows, `config.num_beams` consecutive rows per input (the
/// decoder was built with every input repeated that often):
/// - each step keeps the best `max(2, 1 + #eos) · num_beams` continuations of all beams of an
///   input (first step: only beam 0 counts, the others start at -1e9); the best `num_beams` of
///   them that do not end (in an eos id, or at the length limit) continue;
/// - an ending continuation among the best `num_beams` becomes a finished hypothesis scored
///   `sum of log-probabilities / generated_length ^ length_penalty`; the best `num_beams`
///   finished ones are kept;
/// - an input stops improving per [`EarlyStopping`]; decoding ends when no input can improve,
///   or at `max_new_tokens`.
///
/// Log-probabilities are the log-softmax of the logits on the device; scores stay in f32, as in
/// transformers. Returns each input's best hypothesis (its eos included), unpadded.
pub fn beam_search<B: Backend>(
    decoder: &mut impl StepDecoder<B>,
    config: &BeamSearchConfig,
    eos_token_ids: &[i64],
) -> Result<Vec<Vec<i64>>> {
    let vocab = decoder.vocab_size();
    config.validate(vocab, eos_token_ids)?;
    let beams = config.num_beams;
    let batch = decoder.rows() / beams;
    let mut search: Vec<BeamRow> = (0..batch).map(|_| BeamRow::new(beams)).collect();
    let mut tokens: Vec<i64> = Vec::new();
    for step in 0..config.max_new_tokens {
        let logits = if step == 0 {
            decoder.start()?
        } else {
            decoder.step(&tokens)?
        };
        let log_probs = host_values(activation::log_softmax(logits, 1))?;
        let mut all_end = true;
        for (row, chunk) in search.iter_mut().zip(log_probs.chunks_exact(beams * vocab)) {
            all_end &= row.advance(chunk, vocab, step, config, eos_token_ids);
        }
        let all_finished = search.iter().all(|r| r.done.iter().all(|d| d.finished));
        let stop = !search.iter().any(|r| r.improvable)
            || (config.early_stopping == EarlyStopping::WhenFinished && all_finished)
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
        decoder.select_rows(&parents);
        tokens = search
            .iter()
            .flat_map(|row| &row.running)
            .map(|h| h.tokens[h.tokens.len() - 1])
            .collect();
    }
    Ok(search
        .into_iter()
        .map(|row| {
            row.done
                .into_iter()
                .next()
                .map(|h| h.tokens)
                .unwrap_or_default()
        })
        .collect())
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

        // a. The best `keep` continuations over all beams.
        let candidates = self.best_continuations(log_probs, vocab, keep);
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
            let mut score = penalised(score, generated, config.length_penalty);
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
            self.improvable = self.may_improve(config, generated);
        }
        ends.iter().all(|&e| e)
    }

    /// The best `keep` continuations `(summed log-probability, beam · vocab + token)` of the
    /// running beams, best first (ties: the lower index).
    fn best_continuations(
        &self,
        log_probs: &[f32],
        vocab: usize,
        keep: usize,
    ) -> Vec<(f32, usize)> {
        let mut candidates: Vec<(f32, usize)> = Vec::with_capacity(log_probs.len());
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
        candidates
    }

    /// `early_stopping`'s test after `generated` tokens: whether the best running beam, at the
    /// length it is assumed to reach, beats the worst finished hypothesis (or an unfilled slot).
    fn may_improve(&self, config: &BeamSearchConfig, generated: usize) -> bool {
        let length = match config.early_stopping {
            EarlyStopping::Never if config.length_penalty > 0.0 => config.max_new_tokens,
            _ => generated,
        };
        let best_running = penalised(self.running[0].score, length, config.length_penalty);
        let worst_done = self
            .done
            .iter()
            .map(|d| d.score)
            .fold(f32::INFINITY, f32::min);
        self.done
            .iter()
            .any(|d| best_running > if d.finished { worst_done } else { BEAM_OUT })
    }
}

/// A summed log-probability scored for `length` generated tokens: `score / length^penalty`, the
/// power taken in f64 as Python does before PyTorch divides the f32 scores by it.
fn penalised(score: f32, length: usize, length_penalty: f64) -> f32 {
    score / (length as f64).powf(length_penalty) as f32
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

/// Parameters of [`beam_search`], named as in HF's `GenerationConfig`.
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

    /// Checks the settings against the vocabulary: at least one beam, enough candidates to keep
    /// (`max(2, 1 + #eos) · num_beams` of `num_beams · vocab`), a finite length penalty.
    pub fn validate(&self, vocab: usize, eos_token_ids: &[i64]) -> Result<()> {
        let beams = self.num_beams;
        let keep = 2.max(1 + eos_token_ids.len()) * beams;
        if beams == 0 || keep > beams * vocab {
            return Err(ModelError::InvalidInput(format!(
                "num_beams must be at least 1 and keep {keep} candidates among {} (vocabulary \
                 {vocab}), got {beams}",
                beams * vocab
            )));
        }
        if !self.length_penalty.is_finite() {
            return Err(ModelError::InvalidInput(format!(
                "length_penalty must be finite, got {}",
                self.length_penalty
            )));
        }
        Ok(())
    }
}
