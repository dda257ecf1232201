//! Evaluation of a model on a split in one pass: the mean loss over examples and every metric of
//! the task, computed by `bomf_data::metrics` over the whole split (never averaged per batch).
//!
//! An [`EvalSet`] tokenises and batches a split once (length-sorted, dynamic padding), so the many
//! evaluations of stage 3 and of the baselines only pay for forward passes.
//!
//! How predictions are scored is the set's [`Scoring`]:
//! - class/score targets of the batches (classification, regression: [`EvalSet::new`]);
//! - generation ([`EvalSet::generative`]): greedy decoding of every example, decoded with the
//!   tokenizer, scored against all references by the task's metrics plus ROUGE-1/2/L/Lsum and
//!   BLEU (the task's first metric stays the selection metric);
//! - multiple choice ([`EvalSet::multiple_choice`]): each option is an item, the model's row score
//!   (mean token log-likelihood of the option) picks the answer; accuracy over examples.
//!
//! The loss is the mean over items of each batch's mean loss (weighted by its rows), as HF's
//! `Trainer` reports `eval_loss`; for token targets that is the mean token cross-entropy. For
//! multiple choice it is the mean over questions of the correct option's mean token negative
//! log-likelihood, `L = -(1/N) Σ_e s_e[a_e]` — what training minimises; the wrong options'
//! likelihoods never enter it (they only decide the accuracy).

use std::collections::BTreeMap;
use std::sync::Arc;

use bomf_data::batch::{Batch, BatchConfig, BatchTargets, Batcher, Item};
use bomf_data::metrics::{Metric, MetricInput};
use bomf_data::task::{Task as DataTask, TaskKind};
use bomf_data::tokenize::TextEncoder;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::generative::decode_generation;
use crate::model::{GenerationConfig, TaskModel, scalar};

/// A split ready for repeated evaluation.
#[derive(Debug, Clone)]
pub struct EvalSet {
    pub task: DataTask,
    pub batches: Vec<Batch>,
    /// Items in the batches (examples; options of examples for multiple choice).
    pub num_examples: usize,
    pub scoring: Scoring,
}

/// How an [`EvalSet`] turns model outputs into metrics (see the module docs).
#[derive(Debug, Clone)]
pub enum Scoring {
    /// From the class or score targets carried by the batches.
    Targets,
    /// Greedy generation decoded by `encoder`, against `references[item]`.
    Generation {
        references: Vec<Vec<String>>,
        encoder: Arc<TextEncoder>,
        config: GenerationConfig,
    },
    /// Item `i` is an option of example `item_examples[i]`; `answers[e]` is the correct option
    /// of example `e`, counted among its items in order. `correct_batches` hold the correct
    /// options only: what the loss is, and what loss-driven methods (the learned soup) train on.
    Choices {
        item_examples: Vec<usize>,
        answers: Vec<usize>,
        correct_batches: Vec<Batch>,
    },
}

/// The metrics a generation set reports besides its task's own.
pub const GENERATION_METRICS: [Metric; 5] = [
    Metric::Rouge1,
    Metric::Rouge2,
    Metric::RougeL,
    Metric::RougeLsum,
    Metric::Bleu,
];

impl EvalSet {
    /// Batches `items` (from `bomf_data::batch::items_for_dataset`) with evaluation defaults:
    /// no shuffle, sorted by length, padded to each batch's longest row.
    pub fn new(task: DataTask, items: Vec<Item>, pad_id: u32, batch_size: usize) -> Result<Self> {
        if items.is_empty() {
            return Err(CoreError::InvalidInput(format!(
                "the evaluation split of {} is empty",
                task.name
            )));
        }
        let num_examples = items.len();
        let batcher = Batcher::new(items, pad_id, BatchConfig::eval(batch_size))?;
        Ok(Self {
            task,
            batches: batcher.epoch(0),
            num_examples,
            scoring: Scoring::Targets,
        })
    }

    /// A generation split (items from [`crate::generative::generation_items`]): loss on the
    /// first reference, metrics on greedy generations decoded by `encoder` against every
    /// reference of `references` (aligned with `items`).
    pub fn generative(
        task: DataTask,
        items: Vec<Item>,
        references: Vec<Vec<String>>,
        encoder: Arc<TextEncoder>,
        config: GenerationConfig,
        batch_size: usize,
    ) -> Result<Self> {
        check_one_per_item("references", references.len(), &items)?;
        if config.max_new_tokens == 0 {
            return Err(CoreError::config(
                "generation.max_new_tokens",
                "must be at least 1",
            ));
        }
        let pad_id = encoder.pad_id();
        let set = Self::new(task, items, pad_id, batch_size)?;
        Ok(set.scored_by(Scoring::Generation {
            references,
            encoder,
            config,
        }))
    }

    /// A multiple-choice split (from [`crate::generative::choice_items`]).
    pub fn multiple_choice(
        task: DataTask,
        items: Vec<Item>,
        item_examples: Vec<usize>,
        answers: Vec<usize>,
        pad_id: u32,
        batch_size: usize,
    ) -> Result<Self> {
        check_one_per_item("item examples", item_examples.len(), &items)?;
        let mut options = vec![0usize; answers.len()];
        for &e in &item_examples {
            *options.get_mut(e).ok_or_else(|| {
                CoreError::InvalidInput(format!(
                    "item of example {e}, but only {} answers",
                    answers.len()
                ))
            })? += 1;
        }
        if let Some((e, (&a, &n))) = answers
            .iter()
            .zip(&options)
            .enumerate()
            .find(|(_, (a, n))| **a >= **n)
        {
            return Err(CoreError::InvalidInput(format!(
                "example {e}: answer {a} but {n} options"
            )));
        }
        let mut seen = vec![0usize; answers.len()];
        let mut correct = Vec::with_capacity(answers.len());
        for (item, &e) in items.iter().zip(&item_examples) {
            if seen[e] == answers[e] {
                correct.push(item.clone());
            }
            seen[e] += 1;
        }
        let correct_batches =
            Batcher::new(correct, pad_id, BatchConfig::eval(batch_size))?.epoch(0);
        let set = Self::new(task, items, pad_id, batch_size)?;
        Ok(set.scored_by(Scoring::Choices {
            item_examples,
            answers,
            correct_batches,
        }))
    }

    /// The batches whose mean loss is this set's loss: every batch, except for multiple choice,
    /// where only the correct options count (the training loss; see [`evaluate`]).
    pub fn loss_batches(&self) -> &[Batch] {
        match &self.scoring {
            Scoring::Choices {
                correct_batches, ..
            } => correct_batches,
            _ => &self.batches,
        }
    }

    /// The set scored by `scoring` instead of its items' targets.
    fn scored_by(self, scoring: Scoring) -> Self {
        Self { scoring, ..self }
    }

    /// The name of the task's selection metric (its first), the one runs optimise with the loss.
    pub fn primary_metric(&self) -> Result<String> {
        self.task
            .metrics
            .first()
            .map(|m| m.name().to_string())
            .ok_or_else(|| CoreError::config("task.metrics", "the task has no metric"))
    }

    /// The metrics [`evaluate`] reports for this set, in order, without repeats.
    pub fn metric_list(&self) -> Vec<Metric> {
        let mut list = self.task.metrics.clone();
        if matches!(self.scoring, Scoring::Generation { .. }) {
            for m in GENERATION_METRICS {
                if !list.contains(&m) {
                    list.push(m);
                }
            }
        }
        list
    }
}

/// Errors unless there are as many `what` (`n` of them) as `items`.
fn check_one_per_item(what: &str, n: usize, items: &[Item]) -> Result<()> {
    if n == items.len() {
        Ok(())
    } else {
        Err(CoreError::InvalidInput(format!(
            "{n} {what} for {} items",
            items.len()
        )))
    }
}

/// Loss and metrics of one model on one split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Mean loss over examples (each batch's mean weighted by its rows).
    pub loss: f64,
    /// Every metric of the task, by its configuration name.
    pub metrics: BTreeMap<String, f64>,
    pub num_examples: usize,
}

impl Evaluation {
    /// The task's selection metric (its first), if computed.
    pub fn primary(&self, task: &DataTask) -> Option<f64> {
        task.metrics
            .first()
            .and_then(|m| self.metrics.get(m.name()).copied())
    }
}

/// Runs `model` over every batch of `set` and scores the predictions.
/// Pass an inference model (`model.valid()` of an autodiff one) so no graph is recorded.
pub fn evaluate<B: Backend, M: TaskModel<B>>(
    model: &M,
    set: &EvalSet,
    device: &B::Device,
) -> Result<Evaluation> {
    let n = set.num_examples;
    let mut examples = n;
    let mut loss_sum = 0.0;
    let mut class_truth = vec![usize::MAX; n];
    let mut class_pred = vec![usize::MAX; n];
    let mut score_truth = vec![f64::NAN; n];
    let mut score_pred = vec![f64::NAN; n];
    // First logit of each item: the regression output, or a generative row score.
    let mut row_score = vec![f64::NAN; n];
    for batch in &set.batches {
        let out = model.forward_batch(batch, device)?;
        loss_sum += scalar(out.loss)? * batch.rows as f64;
        let [rows, width] = out.logits.dims();
        let logits = out
            .logits
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| CoreError::TensorData(format!("{e:?}")))?;
        for r in 0..rows {
            let example = batch.example_indices[r];
            let row = &logits[r * width..(r + 1) * width];
            row_score[example] = row.first().map_or(f64::NAN, |&x| x as f64);
            match (&set.scoring, &batch.targets) {
                (Scoring::Targets, BatchTargets::Classes(c)) => {
                    class_truth[example] = c[r] as usize;
                    class_pred[example] = argmax(row);
                }
                (Scoring::Targets, BatchTargets::Scores(s)) => {
                    score_truth[example] = s[r] as f64;
                    score_pred[example] = row[0] as f64;
                }
                (Scoring::Targets, _) => {
                    return Err(CoreError::InvalidInput(
                        "evaluation needs class or score targets (generation and multiple-choice \
                         sets come from EvalSet::generative / EvalSet::multiple_choice)"
                            .into(),
                    ));
                }
                _ => {}
            }
        }
    }
    let mut metrics = BTreeMap::new();
    match &set.scoring {
        Scoring::Targets => {
            for &metric in &set.task.metrics {
                let value = match &set.task.kind {
                    TaskKind::Classification { labels } => metric.compute(MetricInput::Labels {
                        truth: &class_truth,
                        predicted: &class_pred,
                        num_classes: labels.len(),
                    })?,
                    TaskKind::Regression => metric.compute(MetricInput::Scores {
                        truth: &score_truth,
                        predicted: &score_pred,
                    })?,
                    other => {
                        return Err(CoreError::InvalidInput(format!(
                            "a {other:?} task needs EvalSet::generative or EvalSet::multiple_choice"
                        )));
                    }
                };
                metrics.insert(Metric::name(metric).to_string(), value);
            }
        }
        Scoring::Generation { references, .. } => {
            let predicted = generate_texts(model, set, device)?;
            for metric in set.metric_list() {
                let value = metric.compute(MetricInput::Texts {
                    references,
                    predicted: &predicted,
                })?;
                metrics.insert(metric.name().to_string(), value);
            }
        }
        Scoring::Choices {
            item_examples,
            answers,
            ..
        } => {
            loss_sum = correct_option_nll(&row_score, item_examples, answers);
            examples = answers.len();
            let predicted = choose_options(&row_score, item_examples, answers.len())?;
            let num_classes = predicted
                .iter()
                .zip(answers)
                .map(|(p, a)| p.max(a) + 1)
                .max()
                .unwrap_or(1);
            for &metric in &set.task.metrics {
                let value = metric.compute(MetricInput::Labels {
                    truth: answers,
                    predicted: &predicted,
                    num_classes,
                })?;
                metrics.insert(metric.name().to_string(), value);
            }
        }
    }
    Ok(Evaluation {
        loss: loss_sum / examples as f64,
        metrics,
        num_examples: examples,
    })
}

/// Σ over examples of the correct option's mean token negative log-likelihood (`-row score`):
/// the multiple-choice loss, the quantity training minimises, without the wrong options.
fn correct_option_nll(row_score: &[f64], item_examples: &[usize], answers: &[usize]) -> f64 {
    let mut seen = vec![0usize; answers.len()];
    let mut sum = 0.0;
    for (&e, &score) in item_examples.iter().zip(row_score) {
        if seen[e] == answers[e] {
            sum -= score;
        }
        seen[e] += 1;
    }
    sum
}

/// Greedy generations of every item of a generation set, decoded, in item order.
pub fn generate_texts<B: Backend, M: TaskModel<B>>(
    model: &M,
    set: &EvalSet,
    device: &B::Device,
) -> Result<Vec<String>> {
    let Scoring::Generation {
        encoder, config, ..
    } = &set.scoring
    else {
        return Err(CoreError::InvalidInput(
            "generation needs a set built by EvalSet::generative".into(),
        ));
    };
    let mut texts = vec![String::new(); set.num_examples];
    for batch in &set.batches {
        let generated = model.generate_batch(batch, config, device)?;
        if generated.len() != batch.rows {
            return Err(CoreError::InvalidInput(format!(
                "the model generated {} rows for a batch of {}",
                generated.len(),
                batch.rows
            )));
        }
        for (tokens, &example) in generated.iter().zip(&batch.example_indices) {
            texts[example] = decode_generation(encoder, tokens, config)?;
        }
    }
    Ok(texts)
}

/// For each example, the option (counted among its items in order) with the highest score; the
/// first on ties, NaN never wins.
fn choose_options(scores: &[f64], item_examples: &[usize], examples: usize) -> Result<Vec<usize>> {
    let mut best: Vec<Option<(usize, f64)>> = vec![None; examples];
    let mut seen = vec![0usize; examples];
    for (&e, &score) in item_examples.iter().zip(scores) {
        let option = seen[e];
        seen[e] += 1;
        if best[e].is_none_or(|(_, b)| score > b || b.is_nan()) {
            best[e] = Some((option, score));
        }
    }
    best.iter()
        .enumerate()
        .map(|(e, b)| {
            b.map(|(o, _)| o).ok_or_else(|| {
                CoreError::InvalidInput(format!("example {e} has no option to choose from"))
            })
        })
        .collect()
}

/// Index of the largest value (the first on ties, like `torch.argmax`); NaN never wins.
fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in row.iter().enumerate() {
        if x > row[best] || row[best].is_nan() {
            best = i;
        }
    }
    best
}
