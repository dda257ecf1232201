//! Dataset-level metrics: every score is computed over the whole evaluation set at once.
//!
//! The reference implementation of the paper averages F1 over mini-batches, which is not the
//! dataset F1 (F1 is not additive). Here each metric is a pure function over the full prediction
//! and reference slices, and each one reproduces a named, independent implementation exactly:
//!
//! | metric | module | reference it matches | scale |
//! | --- | --- | --- | --- |
//! | accuracy, F1 (binary / one-vs-rest / macro), Matthews correlation | [`classification`] | scikit-learn | 0–1 (MCC −1–1) |
//! | Pearson, Spearman | [`regression`] | `scipy.stats` | −1–1 |
//! | SQuAD v1.1 / v2.0 exact match and F1 | [`squad`] | the official `evaluate-v1.1.py` / `evaluate-v2.0.py` | 0–100 |
//! | ROUGE-1/2/L/Lsum | [`mod@rouge`] | Google's `rouge-score`, with or without its (nltk) Porter stemmer | 0–1 |
//! | BLEU | [`bleu`] | `sacrebleu` corpus BLEU (13a, exp smoothing) | 0–100 |
//!
//! Each metric keeps its reference's scale so numbers can be compared with published tables;
//! [`Metric::range`] tells the scale when a caller needs to normalise.
//!
//! Parity is checked by `bomf-data/tests/metrics_parity.rs` against JSON fixtures written by
//! `bomf-data/tests/fixtures/metrics/gen_metrics.py`, which calls the Python references.
//!
//! Bad input is a [`MetricError`], never a panic and never a silent NaN.

pub mod bleu;
pub mod classification;
pub mod porter;
mod pytext;
pub mod regression;
pub mod rouge;
pub mod squad;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use bleu::{BleuScore, corpus_bleu};
pub use classification::{accuracy, f1_binary, f1_macro, matthews_corrcoef};
pub use regression::{pearson, spearman};
pub use rouge::{RougeScorer, RougeScores, rouge};
pub use squad::{SquadV1Score, SquadV2Options, SquadV2Score, squad_v1, squad_v2};

/// Why a metric could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricError {
    /// There is nothing to score.
    #[error("{metric}: empty input (no examples to score)")]
    Empty { metric: &'static str },
    /// Predictions and references (or two paired inputs) have different lengths.
    #[error("{metric}: length mismatch: {left_name} has {left} items but {right_name} has {right}")]
    LengthMismatch {
        metric: &'static str,
        left_name: &'static str,
        left: usize,
        right_name: &'static str,
        right: usize,
    },
    /// A class label is not below the number of classes.
    #[error("{metric}: {what}[{index}] = {label} is out of range for {num_classes} classes")]
    LabelOutOfRange {
        metric: &'static str,
        what: &'static str,
        index: usize,
        label: usize,
        num_classes: usize,
    },
    /// A NaN or infinite value in a real-valued input.
    #[error("{metric}: {what}[{index}] is {value}, not a finite number")]
    NotFinite {
        metric: &'static str,
        what: &'static str,
        index: usize,
        value: f64,
    },
    /// A correlation with a constant input is undefined. scipy returns NaN with a
    /// `ConstantInputWarning`; we refuse instead so a NaN never reaches the optimiser.
    #[error(
        "{metric}: {what} is constant, so the correlation is undefined (scipy would return NaN)"
    )]
    ConstantInput {
        metric: &'static str,
        what: &'static str,
    },
    /// Too few examples for the metric to be defined (scipy raises for correlations of < 2 points).
    #[error("{metric}: needs at least {needed} examples, got {got}")]
    TooFewExamples {
        metric: &'static str,
        needed: usize,
        got: usize,
    },
    /// An example has no reference where the metric needs at least one.
    #[error("{metric}: example {index} has no reference")]
    NoReference { metric: &'static str, index: usize },
    /// An argument other than the data is invalid (e.g. the positive label).
    #[error("{metric}: {message}")]
    InvalidArgument {
        metric: &'static str,
        message: String,
    },
    /// [`Metric::compute`] was given inputs of the wrong kind for the metric.
    #[error("{metric} needs {expected} inputs, got {got}")]
    WrongInputKind {
        metric: &'static str,
        expected: &'static str,
        got: &'static str,
    },
}

/// Result of a metric computation.
pub type MetricResult<T> = std::result::Result<T, MetricError>;

/// A metric a task can ask for, by the name used in configuration files.
///
/// Serialised names: `accuracy`, `f1`, `f1_macro`, `mcc`, `pearson`, `spearman`, `exact_match`,
/// `squad_f1`, `rouge1`, `rouge2`, `rougeL`, `rougeLsum`, `bleu` (the ROUGE names keep the
/// capital L that `rouge-score` and the literature use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Metric {
    #[serde(rename = "accuracy")]
    Accuracy,
    /// F1 of the positive class, label 1 (sklearn `average="binary"`).
    #[serde(rename = "f1")]
    F1Binary,
    /// Unweighted mean of per-class F1 (sklearn `average="macro"`).
    #[serde(rename = "f1_macro")]
    F1Macro,
    /// Matthews correlation coefficient (multiclass, sklearn's formula).
    #[serde(rename = "mcc")]
    MatthewsCorrelation,
    #[serde(rename = "pearson")]
    Pearson,
    #[serde(rename = "spearman")]
    Spearman,
    /// SQuAD v2.0 exact match (official script; equal to v1.1 when every question has an answer
    /// that does not normalise to the empty string).
    #[serde(rename = "exact_match")]
    SquadExactMatch,
    /// SQuAD v2.0 token F1 (same remark as [`Metric::SquadExactMatch`]).
    #[serde(rename = "squad_f1")]
    SquadF1,
    #[serde(rename = "rouge1")]
    Rouge1,
    #[serde(rename = "rouge2")]
    Rouge2,
    #[serde(rename = "rougeL")]
    RougeL,
    #[serde(rename = "rougeLsum")]
    RougeLsum,
    #[serde(rename = "bleu")]
    Bleu,
}

/// What a metric is computed from, for [`Metric::compute`].
#[derive(Debug, Clone, Copy)]
pub enum MetricInput<'a> {
    /// Class indices in `0..num_classes`.
    Labels {
        truth: &'a [usize],
        predicted: &'a [usize],
        num_classes: usize,
    },
    /// Real-valued targets and predictions.
    Scores {
        truth: &'a [f64],
        predicted: &'a [f64],
    },
    /// Generated or extracted text, with one or more references per example (SQuAD v2 allows
    /// none: an unanswerable question).
    Texts {
        references: &'a [Vec<String>],
        predicted: &'a [String],
    },
}

impl MetricInput<'_> {
    fn kind_name(&self) -> &'static str {
        match self {
            MetricInput::Labels { .. } => "label",
            MetricInput::Scores { .. } => "score",
            MetricInput::Texts { .. } => "text",
        }
    }
}

impl Metric {
    /// Every metric, in a stable order.
    pub const ALL: [Metric; 13] = [
        Metric::Accuracy,
        Metric::F1Binary,
        Metric::F1Macro,
        Metric::MatthewsCorrelation,
        Metric::Pearson,
        Metric::Spearman,
        Metric::SquadExactMatch,
        Metric::SquadF1,
        Metric::Rouge1,
        Metric::Rouge2,
        Metric::RougeL,
        Metric::RougeLsum,
        Metric::Bleu,
    ];

    /// The configuration name (the same as the serde name).
    pub fn name(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::F1Binary => "f1",
            Metric::F1Macro => "f1_macro",
            Metric::MatthewsCorrelation => "mcc",
            Metric::Pearson => "pearson",
            Metric::Spearman => "spearman",
            Metric::SquadExactMatch => "exact_match",
            Metric::SquadF1 => "squad_f1",
            Metric::Rouge1 => "rouge1",
            Metric::Rouge2 => "rouge2",
            Metric::RougeL => "rougeL",
            Metric::RougeLsum => "rougeLsum",
            Metric::Bleu => "bleu",
        }
    }

    /// Every metric here is a score (bigger is better); kept explicit so a future loss-like
    /// metric cannot be maximised by mistake.
    pub fn higher_is_better(self) -> bool {
        true
    }

    /// The interval the metric's values lie in, on the scale its reference reports.
    pub fn range(self) -> (f64, f64) {
        match self {
            Metric::MatthewsCorrelation | Metric::Pearson | Metric::Spearman => (-1.0, 1.0),
            Metric::SquadExactMatch | Metric::SquadF1 | Metric::Bleu => (0.0, 100.0),
            Metric::Accuracy
            | Metric::F1Binary
            | Metric::F1Macro
            | Metric::Rouge1
            | Metric::Rouge2
            | Metric::RougeL
            | Metric::RougeLsum => (0.0, 1.0),
        }
    }

    /// Computes the metric over a whole dataset.
    ///
    /// [`Metric::F1Binary`] takes label 1 as the positive class; call
    /// [`classification::f1_binary`] directly for another one.
    pub fn compute(self, input: MetricInput<'_>) -> MetricResult<f64> {
        let wrong = |expected: &'static str| MetricError::WrongInputKind {
            metric: self.name(),
            expected,
            got: input.kind_name(),
        };
        match (self, input) {
            (
                Metric::Accuracy,
                MetricInput::Labels {
                    truth,
                    predicted,
                    num_classes,
                },
            ) => accuracy(truth, predicted, num_classes),
            (
                Metric::F1Binary,
                MetricInput::Labels {
                    truth,
                    predicted,
                    num_classes,
                },
            ) => f1_binary(truth, predicted, num_classes, 1),
            (
                Metric::F1Macro,
                MetricInput::Labels {
                    truth,
                    predicted,
                    num_classes,
                },
            ) => f1_macro(truth, predicted, num_classes),
            (
                Metric::MatthewsCorrelation,
                MetricInput::Labels {
                    truth,
                    predicted,
                    num_classes,
                },
            ) => matthews_corrcoef(truth, predicted, num_classes),
            (
                Metric::Accuracy | Metric::F1Binary | Metric::F1Macro | Metric::MatthewsCorrelation,
                _,
            ) => Err(wrong("label")),
            (Metric::Pearson, MetricInput::Scores { truth, predicted }) => {
                pearson(truth, predicted)
            }
            (Metric::Spearman, MetricInput::Scores { truth, predicted }) => {
                spearman(truth, predicted)
            }
            (Metric::Pearson | Metric::Spearman, _) => Err(wrong("score")),
            (
                Metric::SquadExactMatch | Metric::SquadF1,
                MetricInput::Texts {
                    references,
                    predicted,
                },
            ) => {
                let score = squad_v2(predicted, references, &SquadV2Options::default())?;
                Ok(if self == Metric::SquadExactMatch {
                    score.exact
                } else {
                    score.f1
                })
            }
            (
                Metric::Rouge1 | Metric::Rouge2 | Metric::RougeL | Metric::RougeLsum,
                MetricInput::Texts {
                    references,
                    predicted,
                },
            ) => {
                let scores = rouge(predicted, references)?;
                Ok(match self {
                    Metric::Rouge1 => scores.rouge1,
                    Metric::Rouge2 => scores.rouge2,
                    Metric::RougeL => scores.rouge_l,
                    _ => scores.rouge_lsum,
                })
            }
            (
                Metric::Bleu,
                MetricInput::Texts {
                    references,
                    predicted,
                },
            ) => Ok(corpus_bleu(predicted, references)?.score),
            (_, _) => Err(wrong("text")),
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The name given to [`Metric::from_str`] is not a known metric.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown metric {0:?} (known: accuracy, f1, f1_macro, mcc, pearson, spearman, exact_match, squad_f1, rouge1, rouge2, rougeL, rougeLsum, bleu)"
)]
pub struct UnknownMetric(pub String);

impl FromStr for Metric {
    type Err = UnknownMetric;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Metric::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| UnknownMetric(s.to_string()))
    }
}

/// Checks that two paired inputs are non-empty and equally long.
fn check_pair_lengths(
    metric: &'static str,
    left_name: &'static str,
    left: usize,
    right_name: &'static str,
    right: usize,
) -> MetricResult<()> {
    if left != right {
        return Err(MetricError::LengthMismatch {
            metric,
            left_name,
            left,
            right_name,
            right,
        });
    }
    if left == 0 {
        return Err(MetricError::Empty { metric });
    }
    Ok(())
}

/// The (output, references) pairs of a corpus metric over texts: as many outputs (named
/// `outputs_name`: predictions, hypotheses) as lists of references, at least one, and no list
/// empty.
fn reference_pairs<'a, P, R, S>(
    metric: &'static str,
    outputs_name: &'static str,
    outputs: &'a [P],
    references: &'a [R],
) -> MetricResult<Vec<(&'a str, &'a [S])>>
where
    P: AsRef<str>,
    R: AsRef<[S]>,
{
    check_pair_lengths(
        metric,
        outputs_name,
        outputs.len(),
        "references",
        references.len(),
    )?;
    outputs
        .iter()
        .zip(references)
        .enumerate()
        .map(|(index, (output, refs))| match refs.as_ref() {
            [] => Err(MetricError::NoReference { metric, index }),
            refs => Ok((output.as_ref(), refs)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The corpus metrics over texts refuse an output without references, naming its index.
    #[test]
    fn no_reference_is_an_error() {
        let refs: Vec<Vec<String>> = vec![vec![]];
        assert!(matches!(
            corpus_bleu(&["x"], &refs),
            Err(MetricError::NoReference { index: 0, .. })
        ));
        assert!(matches!(
            rouge(&["x"], &refs),
            Err(MetricError::NoReference { index: 0, .. })
        ));
    }
}
