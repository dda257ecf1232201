//! ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum as Google's `rouge-score` computes them
//! (`RougeScorer(types, use_stemmer=...)`, both with and without the stemmer).
//!
//! - Tokens ([`tokenize`]): the text is lowercased (full Unicode lowercasing, as Python's
//!   `str.lower`), every run of characters outside `[a-z0-9]` becomes a separator. Non-ASCII
//!   letters are therefore separators, exactly as in `rouge-score`. With the stemmer, tokens
//!   longer than three characters go through nltk's Porter stemmer ([`super::porter`]).
//! - ROUGE-N: clipped n-gram overlap; ROUGE-L: longest common subsequence over the whole text;
//!   ROUGE-Lsum: the text is split on `"\n"` into sentences and the summary-level union-LCS of the
//!   ROUGE paper is used (with rouge-score's guard against counting a token twice).
//! - The reported value is the F-measure (harmonic mean of precision and recall, 0 when both are
//!   0). With several references per example, each ROUGE type takes the reference with the best
//!   F-measure (`RougeScorer.score_multi`).
//! - Corpus aggregation: the arithmetic mean of per-example F-measures. This is what Hugging
//!   Face's `evaluate` reports with `use_aggregator=False` followed by a mean; rouge-score's
//!   `BootstrapAggregator` (random resampling) is not reproduced.
//!
//! [`rouge`] (and [`super::Metric`]) use no stemmer, rouge-score's default; [`RougeScorer`]
//! chooses.

use std::collections::HashMap;

use super::{MetricResult, porter, reference_pairs};

/// Precision, recall and F-measure of one prediction against one reference.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RougeScore {
    pub precision: f64,
    pub recall: f64,
    pub fmeasure: f64,
}

impl RougeScore {
    fn new(precision: f64, recall: f64) -> Self {
        let fmeasure = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        RougeScore {
            precision,
            recall,
            fmeasure,
        }
    }
}

/// The four ROUGE types for one example, or their corpus means.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RougeScores {
    pub rouge1: f64,
    pub rouge2: f64,
    pub rouge_l: f64,
    pub rouge_lsum: f64,
}

/// rouge-score's default tokenizer without stemming.
pub fn tokenize(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// rouge-score's default tokenizer with `use_stemmer=True`: tokens longer than three characters
/// are replaced by their Porter stem.
pub fn tokenize_stemmed(text: &str) -> Vec<String> {
    tokenize(text)
        .into_iter()
        .map(|t| if t.len() > 3 { porter::stem(&t) } else { t })
        .collect()
}

/// A configured scorer, like rouge-score's `RougeScorer(["rouge1", "rouge2", "rougeL",
/// "rougeLsum"], use_stemmer=...)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RougeScorer {
    /// Apply nltk's Porter stemmer to tokens longer than three characters.
    pub use_stemmer: bool,
}

impl RougeScorer {
    /// Tokens of `text` under this configuration.
    pub fn tokenize(&self, text: &str) -> Vec<String> {
        if self.use_stemmer {
            tokenize_stemmed(text)
        } else {
            tokenize(text)
        }
    }

    /// All four scores of one prediction against one reference (rouge1, rouge2, rougeL,
    /// rougeLsum).
    pub fn score(&self, reference: &str, prediction: &str) -> [RougeScore; 4] {
        let reference_tokens = self.tokenize(reference);
        let prediction_tokens = self.tokenize(prediction);
        [
            rouge_n(&reference_tokens, &prediction_tokens, 1),
            rouge_n(&reference_tokens, &prediction_tokens, 2),
            rouge_l(&reference_tokens, &prediction_tokens),
            self.rouge_lsum(reference, prediction),
        ]
    }

    /// Per type, the score against the reference with the best F-measure (the first on ties,
    /// like `np.argmax` in `score_multi`). With no reference every score is 0.
    pub fn score_multi<S: AsRef<str>>(
        &self,
        references: &[S],
        prediction: &str,
    ) -> [RougeScore; 4] {
        if references.is_empty() {
            return [RougeScore::default(); 4];
        }
        let mut best = [RougeScore {
            fmeasure: f64::NEG_INFINITY,
            ..RougeScore::default()
        }; 4];
        for reference in references {
            let scores = self.score(reference.as_ref(), prediction);
            for (slot, score) in best.iter_mut().zip(scores) {
                if score.fmeasure > slot.fmeasure {
                    *slot = score;
                }
            }
        }
        best
    }

    /// Corpus ROUGE: the mean over examples of each type's F-measure (see the module docs).
    pub fn corpus<P, R, S>(&self, predictions: &[P], references: &[R]) -> MetricResult<RougeScores>
    where
        P: AsRef<str>,
        R: AsRef<[S]>,
        S: AsRef<str>,
    {
        let mut sums = [0.0f64; 4];
        for (prediction, refs) in reference_pairs("rouge", "predictions", predictions, references)?
        {
            let scores = self.score_multi(refs, prediction);
            for (sum, score) in sums.iter_mut().zip(scores) {
                *sum += score.fmeasure;
            }
        }
        let n = predictions.len() as f64;
        Ok(RougeScores {
            rouge1: sums[0] / n,
            rouge2: sums[1] / n,
            rouge_l: sums[2] / n,
            rouge_lsum: sums[3] / n,
        })
    }

    /// Summary-level ROUGE-L (union LCS) between texts whose sentences are separated by newlines.
    pub fn rouge_lsum(&self, reference: &str, prediction: &str) -> RougeScore {
        summary_level_lcs(
            &self.summary_sentences(reference),
            &self.summary_sentences(prediction),
        )
    }

    /// rouge-score's sentence split for ROUGE-Lsum: on `"\n"`, dropping empty lines (a line of
    /// spaces is kept and yields no tokens).
    fn summary_sentences(&self, text: &str) -> Vec<Vec<String>> {
        text.split('\n')
            .filter(|s| !s.is_empty())
            .map(|s| self.tokenize(s))
            .collect()
    }
}

fn ngram_counts(tokens: &[String], n: usize) -> HashMap<&[String], usize> {
    let mut counts = HashMap::new();
    if tokens.len() >= n {
        for gram in tokens.windows(n) {
            *counts.entry(gram).or_insert(0) += 1;
        }
    }
    counts
}

/// ROUGE-N between token lists.
pub fn rouge_n(reference: &[String], prediction: &[String], n: usize) -> RougeScore {
    let reference_grams = ngram_counts(reference, n);
    let prediction_grams = ngram_counts(prediction, n);
    let overlap: usize = reference_grams
        .iter()
        .map(|(gram, &count)| count.min(prediction_grams.get(gram).copied().unwrap_or(0)))
        .sum();
    let reference_total: usize = reference_grams.values().sum();
    let prediction_total: usize = prediction_grams.values().sum();
    RougeScore::new(
        overlap as f64 / prediction_total.max(1) as f64,
        overlap as f64 / reference_total.max(1) as f64,
    )
}

/// Dynamic-programming LCS table: `table[i][j]` = LCS length of `a[..i]` and `b[..j]`.
fn lcs_table(a: &[String], b: &[String]) -> Vec<Vec<u32>> {
    let mut table = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            table[i][j] = if a[i - 1] == b[j - 1] {
                table[i - 1][j - 1] + 1
            } else {
                table[i - 1][j].max(table[i][j - 1])
            };
        }
    }
    table
}

/// ROUGE-L between token lists.
pub fn rouge_l(reference: &[String], prediction: &[String]) -> RougeScore {
    if reference.is_empty() || prediction.is_empty() {
        return RougeScore::default();
    }
    let lcs = lcs_table(reference, prediction)[reference.len()][prediction.len()] as f64;
    RougeScore::new(lcs / prediction.len() as f64, lcs / reference.len() as f64)
}

/// Indices into `reference` of one LCS with `candidate`, chosen exactly like rouge-score's
/// `_backtrack_norec` (the choice matters for the union in ROUGE-Lsum).
fn lcs_indices(reference: &[String], candidate: &[String]) -> Vec<usize> {
    let table = lcs_table(reference, candidate);
    let (mut i, mut j) = (reference.len(), candidate.len());
    let mut indices = Vec::new();
    while i > 0 && j > 0 {
        if reference[i - 1] == candidate[j - 1] {
            indices.push(i - 1);
            i -= 1;
            j -= 1;
        } else if table[i][j - 1] > table[i - 1][j] {
            j -= 1;
        } else {
            i -= 1;
        }
    }
    indices.reverse();
    indices
}

/// Summary-level union-LCS score of tokenised sentences (rouge-score's `_summary_level_lcs`).
fn summary_level_lcs(
    reference_sentences: &[Vec<String>],
    prediction_sentences: &[Vec<String>],
) -> RougeScore {
    let reference_len: usize = reference_sentences.iter().map(Vec::len).sum();
    let prediction_len: usize = prediction_sentences.iter().map(Vec::len).sum();
    if reference_len == 0 || prediction_len == 0 {
        return RougeScore::default();
    }
    // Budgets stop a token from being counted more often than it occurs on either side.
    let mut reference_budget: HashMap<&str, usize> = HashMap::new();
    for token in reference_sentences.iter().flatten() {
        *reference_budget.entry(token).or_default() += 1;
    }
    let mut prediction_budget: HashMap<&str, usize> = HashMap::new();
    for token in prediction_sentences.iter().flatten() {
        *prediction_budget.entry(token).or_default() += 1;
    }
    let mut hits = 0usize;
    for sentence in reference_sentences {
        let mut union: Vec<usize> = prediction_sentences
            .iter()
            .flat_map(|candidate| lcs_indices(sentence, candidate))
            .collect();
        union.sort_unstable();
        union.dedup();
        for index in union {
            let token = sentence[index].as_str();
            let in_reference = reference_budget.get(token).copied().unwrap_or(0);
            let in_prediction = prediction_budget.get(token).copied().unwrap_or(0);
            if in_reference > 0 && in_prediction > 0 {
                hits += 1;
                reference_budget.insert(token, in_reference - 1);
                prediction_budget.insert(token, in_prediction - 1);
            }
        }
    }
    RougeScore::new(
        hits as f64 / prediction_len as f64,
        hits as f64 / reference_len as f64,
    )
}

/// Summary-level ROUGE-L without stemming (see [`RougeScorer::rouge_lsum`]).
pub fn rouge_lsum(reference: &str, prediction: &str) -> RougeScore {
    RougeScorer::default().rouge_lsum(reference, prediction)
}

/// All four scores without stemming (see [`RougeScorer::score`]).
pub fn score_pair(reference: &str, prediction: &str) -> [RougeScore; 4] {
    RougeScorer::default().score(reference, prediction)
}

/// Best-reference scores without stemming (see [`RougeScorer::score_multi`]).
pub fn score_multi<S: AsRef<str>>(references: &[S], prediction: &str) -> [RougeScore; 4] {
    RougeScorer::default().score_multi(references, prediction)
}

/// Corpus ROUGE without stemming, rouge-score's default (see [`RougeScorer::corpus`]).
pub fn rouge<P, R, S>(predictions: &[P], references: &[R]) -> MetricResult<RougeScores>
where
    P: AsRef<str>,
    R: AsRef<[S]>,
    S: AsRef<str>,
{
    RougeScorer::default().corpus(predictions, references)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_keeps_only_ascii_alphanumerics() {
        assert_eq!(
            tokenize("The café's 3.5% RISE"),
            ["the", "caf", "s", "3", "5", "rise"]
        );
        // U+212A KELVIN SIGN lowercases to an ASCII "k", as in Python.
        assert_eq!(tokenize("\u{212a}m"), ["km"]);
    }
}
