//! SQuAD exact match and token F1, as the official evaluation scripts compute them.
//!
//! Both versions normalise answers the same way ([`normalize_answer`]): lowercase, drop ASCII
//! punctuation, drop the articles "a", "an", "the" as whole words, collapse whitespace. Each
//! prediction is scored against every gold answer and the best score is kept; corpus scores are
//! the means over questions, times 100.
//!
//! They differ in the empty cases:
//! - v1.1 ([`squad_v1`]): every question has answers; F1 is 0 whenever no token is shared, even
//!   if both sides normalise to nothing.
//! - v2.0 ([`squad_v2`]): gold answers that normalise to the empty string are dropped; a question
//!   left with none is "unanswerable" and only a prediction that normalises to the empty string
//!   scores 1 (for both EM and F1). Scores are broken down into `HasAns` (questions with at least
//!   one raw gold answer) and `NoAns`; with no-answer probabilities the script's threshold
//!   ([`SquadV2Options`]) and best-threshold search ([`BestThresholds`]) are reproduced too.

use std::collections::HashMap;

use super::pytext::{WORD_RUN, collapse_whitespace, split_whitespace};
use super::{MetricError, MetricResult, check_pair_lengths, reference_pairs};

/// The official `normalize_answer`: lower, remove punctuation, remove articles, fix whitespace.
pub fn normalize_answer(text: &str) -> String {
    let lowered = text.to_lowercase();
    // `string.punctuation` is exactly the 32 ASCII punctuation characters.
    let without_punctuation: String = lowered
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    // `re.sub(r"\b(a|an|the)\b", " ", text)`: a match is a whole run of word characters.
    let mut without_articles = String::with_capacity(without_punctuation.len());
    let mut last = 0;
    for word in WORD_RUN.find_iter(&without_punctuation) {
        if matches!(word.as_str(), "a" | "an" | "the") {
            without_articles.push_str(&without_punctuation[last..word.start()]);
            without_articles.push(' ');
            last = word.end();
        }
    }
    without_articles.push_str(&without_punctuation[last..]);
    collapse_whitespace(&without_articles)
}

/// Normalised answer tokens.
fn answer_tokens(text: &str) -> Vec<String> {
    split_whitespace(&normalize_answer(text))
        .map(str::to_owned)
        .collect()
}

/// Number of tokens the two bags share (`sum((Counter(a) & Counter(b)).values())`).
fn shared_token_count(a: &[String], b: &[String]) -> usize {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for token in a {
        *counts.entry(token).or_default() += 1;
    }
    let mut shared = 0;
    for token in b {
        if let Some(n) = counts.get_mut(token.as_str())
            && *n > 0
        {
            *n -= 1;
            shared += 1;
        }
    }
    shared
}

/// Token F1 from the shared count and the two lengths (the scripts' exact formula).
fn token_f1(shared: usize, prediction_len: usize, gold_len: usize) -> f64 {
    if shared == 0 {
        return 0.0;
    }
    let precision = shared as f64 / prediction_len as f64;
    let recall = shared as f64 / gold_len as f64;
    (2.0 * precision * recall) / (precision + recall)
}

/// v1.1 token F1 of one prediction against one gold answer.
pub fn f1_v1(prediction: &str, gold: &str) -> f64 {
    let (pred, gold) = (answer_tokens(prediction), answer_tokens(gold));
    token_f1(shared_token_count(&pred, &gold), pred.len(), gold.len())
}

/// v2.0 token F1 of one prediction against one gold answer: if either side has no token, 1 when
/// both have none, else 0.
pub fn f1_v2(prediction: &str, gold: &str) -> f64 {
    let (pred, gold) = (answer_tokens(prediction), answer_tokens(gold));
    if pred.is_empty() || gold.is_empty() {
        return if pred == gold { 1.0 } else { 0.0 };
    }
    token_f1(shared_token_count(&pred, &gold), pred.len(), gold.len())
}

/// Exact match after normalisation (both versions).
pub fn exact_match(prediction: &str, gold: &str) -> bool {
    normalize_answer(prediction) == normalize_answer(gold)
}

/// Corpus scores of the official v1.1 script.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SquadV1Score {
    /// Percentage of questions whose prediction matches a gold answer exactly (0–100).
    pub exact_match: f64,
    /// Mean best token F1, times 100.
    pub f1: f64,
}

/// SQuAD v1.1: every question must have at least one gold answer.
pub fn squad_v1<P, R, S>(predictions: &[P], references: &[R]) -> MetricResult<SquadV1Score>
where
    P: AsRef<str>,
    R: AsRef<[S]>,
    S: AsRef<str>,
{
    let (mut exact_sum, mut f1_sum) = (0.0, 0.0);
    for (prediction, golds) in reference_pairs("squad_v1", "predictions", predictions, references)?
    {
        let exact = golds.iter().any(|g| exact_match(prediction, g.as_ref()));
        exact_sum += if exact { 1.0 } else { 0.0 };
        f1_sum += golds
            .iter()
            .map(|g| f1_v1(prediction, g.as_ref()))
            .fold(f64::NEG_INFINITY, f64::max);
    }
    let total = predictions.len() as f64;
    Ok(SquadV1Score {
        exact_match: 100.0 * exact_sum / total,
        f1: 100.0 * f1_sum / total,
    })
}

/// How v2.0 treats a model's no-answer probabilities (the script's `--na-prob-file` and
/// `--na-prob-thresh`).
#[derive(Debug, Clone, Copy)]
pub struct SquadV2Options<'a> {
    /// Probability, per question, that it has no answer. `None` = all 0 (the script's default).
    pub no_answer_probabilities: Option<&'a [f64]>,
    /// A question whose probability is strictly above this counts as answered with "" (the
    /// script's default, 1.0, never fires).
    pub no_answer_threshold: f64,
}

impl Default for SquadV2Options<'_> {
    fn default() -> Self {
        SquadV2Options {
            no_answer_probabilities: None,
            no_answer_threshold: 1.0,
        }
    }
}

/// Exact match and F1 (0–100) over a subset of questions, with its size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SquadSubsetScore {
    pub exact: f64,
    pub f1: f64,
    pub total: usize,
}

/// The script's `best_exact`/`best_f1`: the scores reached with the best no-answer threshold,
/// and that threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BestThresholds {
    pub best_exact: f64,
    pub best_exact_thresh: f64,
    pub best_f1: f64,
    pub best_f1_thresh: f64,
}

/// Everything the official v2.0 script reports.
#[derive(Debug, Clone, PartialEq)]
pub struct SquadV2Score {
    /// Exact match over all questions, 0–100 (the script's `exact`).
    pub exact: f64,
    /// Mean best token F1 over all questions, 0–100 (`f1`).
    pub f1: f64,
    /// Number of questions (`total`).
    pub total: usize,
    /// Questions with at least one gold answer (`HasAns_*`); `None` when there are none.
    pub has_answer: Option<SquadSubsetScore>,
    /// Questions without gold answers (`NoAns_*`); `None` when there are none.
    pub no_answer: Option<SquadSubsetScore>,
    /// Best-threshold search, only when no-answer probabilities were given.
    pub best: Option<BestThresholds>,
    /// Per-question exact match (0 or 1) before any threshold (the script's `exact_raw`).
    pub exact_per_example: Vec<f64>,
    /// Per-question best F1 (0–1) before any threshold (`f1_raw`).
    pub f1_per_example: Vec<f64>,
}

/// SQuAD v2.0: an empty reference list marks an unanswerable question.
pub fn squad_v2<P, R, S>(
    predictions: &[P],
    references: &[R],
    options: &SquadV2Options<'_>,
) -> MetricResult<SquadV2Score>
where
    P: AsRef<str>,
    R: AsRef<[S]>,
    S: AsRef<str>,
{
    let metric = "squad_v2";
    let n = predictions.len();
    check_pair_lengths(metric, "predictions", n, "references", references.len())?;
    let no_answer_probabilities: Vec<f64> = match options.no_answer_probabilities {
        None => vec![0.0; n],
        Some(probabilities) => {
            check_pair_lengths(
                metric,
                "predictions",
                n,
                "no_answer_probabilities",
                probabilities.len(),
            )?;
            if let Some((index, &value)) = probabilities
                .iter()
                .enumerate()
                .find(|(_, p)| !p.is_finite())
            {
                return Err(MetricError::NotFinite {
                    metric,
                    what: "no_answer_probabilities",
                    index,
                    value,
                });
            }
            probabilities.to_vec()
        }
    };
    if !options.no_answer_threshold.is_finite() {
        return Err(MetricError::InvalidArgument {
            metric,
            message: format!(
                "no_answer_threshold is {}, not a finite number",
                options.no_answer_threshold
            ),
        });
    }

    // `qid_to_has_ans` looks at the raw gold list; the scores drop golds that normalise to "".
    let has_answer: Vec<bool> = references.iter().map(|r| !r.as_ref().is_empty()).collect();
    let mut exact_raw = Vec::with_capacity(n);
    let mut f1_raw = Vec::with_capacity(n);
    for (prediction, golds) in predictions.iter().zip(references) {
        let prediction = prediction.as_ref();
        let mut golds: Vec<&str> = golds
            .as_ref()
            .iter()
            .map(AsRef::as_ref)
            .filter(|g| !normalize_answer(g).is_empty())
            .collect();
        if golds.is_empty() {
            golds.push("");
        }
        let exact = golds.iter().any(|g| exact_match(prediction, g));
        exact_raw.push(if exact { 1.0 } else { 0.0 });
        f1_raw.push(
            golds
                .iter()
                .map(|g| f1_v2(prediction, g))
                .fold(f64::NEG_INFINITY, f64::max),
        );
    }

    // `apply_no_ans_threshold`: above the threshold the model abstains, which is right exactly
    // for unanswerable questions.
    let thresholded = |raw: &[f64]| -> Vec<f64> {
        (0..n)
            .map(|i| {
                if no_answer_probabilities[i] > options.no_answer_threshold {
                    if has_answer[i] { 0.0 } else { 1.0 }
                } else {
                    raw[i]
                }
            })
            .collect()
    };
    let exact = thresholded(&exact_raw);
    let f1 = thresholded(&f1_raw);

    let subset = |keep: bool| -> Option<SquadSubsetScore> {
        let indices: Vec<usize> = (0..n).filter(|&i| has_answer[i] == keep).collect();
        if indices.is_empty() {
            return None;
        }
        let total = indices.len();
        Some(SquadSubsetScore {
            exact: 100.0 * indices.iter().map(|&i| exact[i]).sum::<f64>() / total as f64,
            f1: 100.0 * indices.iter().map(|&i| f1[i]).sum::<f64>() / total as f64,
            total,
        })
    };

    let best = options.no_answer_probabilities.map(|_| {
        let (best_exact, best_exact_thresh) = best_threshold(
            predictions,
            &exact_raw,
            &no_answer_probabilities,
            &has_answer,
        );
        let (best_f1, best_f1_thresh) =
            best_threshold(predictions, &f1_raw, &no_answer_probabilities, &has_answer);
        BestThresholds {
            best_exact,
            best_exact_thresh,
            best_f1,
            best_f1_thresh,
        }
    });

    Ok(SquadV2Score {
        exact: 100.0 * exact.iter().sum::<f64>() / n as f64,
        f1: 100.0 * f1.iter().sum::<f64>() / n as f64,
        total: n,
        has_answer: subset(true),
        no_answer: subset(false),
        best,
        exact_per_example: exact_raw,
        f1_per_example: f1_raw,
    })
}

/// The script's `find_best_thresh`: sweep questions by increasing no-answer probability; start
/// from "abstain everywhere" (all unanswerable questions right) and, question by question, switch
/// to answering, keeping the best running score and the probability where it was reached.
fn best_threshold<P: AsRef<str>>(
    predictions: &[P],
    raw_scores: &[f64],
    no_answer_probabilities: &[f64],
    has_answer: &[bool],
) -> (f64, f64) {
    let no_answer_count = has_answer.iter().filter(|h| !**h).count();
    let mut score = no_answer_count as f64;
    let mut best_score = score;
    let mut best_thresh = 0.0;
    let mut order: Vec<usize> = (0..raw_scores.len()).collect();
    // Python's `sorted` is stable; so is `sort_by`.
    order.sort_by(|&a, &b| no_answer_probabilities[a].total_cmp(&no_answer_probabilities[b]));
    for i in order {
        let diff = if has_answer[i] {
            raw_scores[i]
        } else if predictions[i].as_ref().is_empty() {
            0.0
        } else {
            -1.0
        };
        score += diff;
        if score > best_score {
            best_score = score;
            best_thresh = no_answer_probabilities[i];
        }
    }
    (100.0 * best_score / raw_scores.len() as f64, best_thresh)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_follows_the_script() {
        assert_eq!(normalize_answer("The  Denver-Broncos!"), "denverbroncos");
        assert_eq!(normalize_answer("an apple, a day"), "apple day");
        // "_" is punctuation, so it goes before articles are looked for
        assert_eq!(normalize_answer("theater a_b an"), "theater ab");
        assert_eq!(normalize_answer("Ünïcödé THE café"), "ünïcödé café");
        assert_eq!(normalize_answer("the the the"), "");
    }

    #[test]
    fn empty_cases_differ_between_versions() {
        assert_eq!(f1_v1("", ""), 0.0);
        assert_eq!(f1_v2("", ""), 1.0);
        assert_eq!(f1_v2("the", ""), 1.0);
        assert_eq!(f1_v2("x", ""), 0.0);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let refs: Vec<Vec<&str>> = vec![vec![]];
        assert!(matches!(
            squad_v1(&["x"], &refs),
            Err(MetricError::NoReference { index: 0, .. })
        ));
        let probs = [f64::NAN];
        let options = SquadV2Options {
            no_answer_probabilities: Some(&probs),
            ..SquadV2Options::default()
        };
        assert!(matches!(
            squad_v2(&["x"], &refs, &options),
            Err(MetricError::NotFinite { .. })
        ));
    }
}
