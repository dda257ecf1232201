//! What the training loop and the evaluator need from a model: given a padded batch from
//! `bomf_data::batch`, the task loss and the logits. Keeping this a trait lets the loop stay
//! the same for every family (encoders now; T5 and LLaMA later).

use bomf_data::batch::{Batch, BatchTargets};
use bomf_models::bert::ProblemType;
use bomf_models::{BertWithHead, EncoderInput, HfNamed, Task};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::error::{CoreError, Result};

/// A forward pass over one batch.
#[derive(Debug, Clone)]
pub struct BatchOutput<B: Backend> {
    /// Mean loss over the batch's rows (a 1-element tensor, differentiable on autodiff backends).
    pub loss: Tensor<B, 1>,
    /// `[rows, num_labels]` (regression: `[rows, 1]`).
    pub logits: Tensor<B, 2>,
}

/// A model that can be trained and evaluated on padded batches.
pub trait TaskModel<B: Backend>: HfNamed<B> {
    fn forward_batch(&self, batch: &Batch, device: &B::Device) -> Result<BatchOutput<B>>;
}

/// The encoder inputs of a batch (segment ids only when the batch carries them).
pub fn encoder_input<B: Backend>(batch: &Batch, device: &B::Device) -> Result<EncoderInput<B>> {
    let types = (batch.token_type_ids.len() == batch.input_ids.len())
        .then_some(batch.token_type_ids.as_slice());
    Ok(EncoderInput::from_rows(
        &batch.input_ids,
        &batch.attention_mask,
        types,
        batch.rows,
        batch.seq_len,
        device,
    )?)
}

impl<B: Backend> TaskModel<B> for BertWithHead<B> {
    fn forward_batch(&self, batch: &Batch, device: &B::Device) -> Result<BatchOutput<B>> {
        if self.task() != Task::SequenceClassification {
            return Err(CoreError::InvalidInput(format!(
                "training a {:?} encoder is not implemented yet (sequence classification only)",
                self.task()
            )));
        }
        let logits = self.sequence_logits(&encoder_input(batch, device)?)?;
        let rows = batch.rows;
        let loss = match (&batch.targets, self.problem_type()) {
            (BatchTargets::Classes(classes), ProblemType::SingleLabelClassification) => {
                let labels = Tensor::<B, 1, Int>::from_data(
                    TensorData::new(classes.clone(), [rows]),
                    device,
                );
                self.classification_loss(logits.clone(), labels)
            }
            (BatchTargets::Scores(scores), ProblemType::Regression) => {
                let targets =
                    Tensor::<B, 1>::from_data(TensorData::new(scores.clone(), [rows]), device);
                self.regression_loss(logits.clone(), targets)
            }
            (targets, problem) => {
                let kind = match targets {
                    BatchTargets::None => "no",
                    BatchTargets::Classes(_) => "class",
                    BatchTargets::Scores(_) => "score",
                    BatchTargets::Tokens { .. } => "token",
                };
                return Err(CoreError::InvalidInput(format!(
                    "a batch with {kind} targets cannot train a {} head",
                    problem.hf_name()
                )));
            }
        };
        Ok(BatchOutput { loss, logits })
    }
}

/// The value of a 1-element tensor on the host.
pub(crate) fn scalar<B: Backend>(t: Tensor<B, 1>) -> Result<f64> {
    let v = t
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| CoreError::TensorData(format!("{e:?}")))?;
    v.first()
        .map(|&x| x as f64)
        .ok_or_else(|| CoreError::TensorData("empty scalar tensor".into()))
}
