//! Evaluation of a model on a split in one pass: the mean loss over examples and every metric of
//! the task, computed by `bomf_data::metrics` over the whole split (never averaged per batch).
//!
//! An [`EvalSet`] tokenises and batches a split once (length-sorted, dynamic padding), so the many
//! evaluations of stage 3 and of the baselines only pay for forward passes.

use std::collections::BTreeMap;

use bomf_data::batch::{Batch, BatchConfig, BatchTargets, Batcher, Item};
use bomf_data::metrics::{Metric, MetricInput};
use bomf_data::task::{Task as DataTask, TaskKind};
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::model::{TaskModel, scalar};

/// A split ready for repeated evaluation.
#[derive(Debug, Clone)]
pub struct EvalSet {
    pub task: DataTask,
    pub batches: Vec<Batch>,
    pub num_examples: usize,
}

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
        })
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
    let mut loss_sum = 0.0;
    let mut class_truth = vec![usize::MAX; n];
    let mut class_pred = vec![usize::MAX; n];
    let mut score_truth = vec![f64::NAN; n];
    let mut score_pred = vec![f64::NAN; n];
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
            match &batch.targets {
                BatchTargets::Classes(c) => {
                    class_truth[example] = c[r] as usize;
                    class_pred[example] = argmax(row);
                }
                BatchTargets::Scores(s) => {
                    score_truth[example] = s[r] as f64;
                    score_pred[example] = row[0] as f64;
                }
                _ => {
                    return Err(CoreError::InvalidInput(
                        "evaluation needs class or score targets".into(),
                    ));
                }
            }
        }
    }
    let mut metrics = BTreeMap::new();
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
                    "evaluating {other:?} tasks is not implemented yet"
                )));
            }
        };
        metrics.insert(Metric::name(metric).to_string(), value);
    }
    Ok(Evaluation {
        loss: loss_sum / n as f64,
        metrics,
        num_examples: n,
    })
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
