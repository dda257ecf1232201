//! What the training loop and the evaluator need from a model: given a padded batch from
//! `bomf_data::batch`, the task loss and the logits (and, for generative models, a greedy
//! continuation of each row's prompt). Keeping this a trait lets the loop stay the same for every
//! family: BERT heads here, T5, LLaMA and LLaMA + LoRA in [`crate::generative`].
//!
//! [`TrainableModel`] names the bound every stage puts on a model it trains and then evaluates
//! or fuses without autodiff; [`SequenceClassifier`] is what the classifier families share, so
//! one [`classifier_forward`] serves every encoder with a classification head.

use bomf_data::batch::{Batch, BatchTargets};
use bomf_models::bert::ProblemType;
use bomf_models::{BertWithHead, EncoderInput, HfNamed, Task};
use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

/// A forward pass over one batch.
#[derive(Debug, Clone)]
pub struct BatchOutput<B: Backend> {
    /// Mean loss over the batch's rows (a 1-element tensor, differentiable on autodiff backends).
    pub loss: Tensor<B, 1>,
    /// `[rows, num_labels]` (regression: `[rows, 1]`). Generative models return `[rows, 1]`:
    /// each row's mean log-probability of its labelled tokens (the score multiple-choice
    /// evaluation ranks options by).
    pub logits: Tensor<B, 2>,
}

/// Generation during evaluation: how many tokens at most, which ids end a row, and greedy
/// decoding or beam search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationConfig {
    pub max_new_tokens: usize,
    /// A row stops at the first of these ids (the model's `eos_token_id`, one or several).
    pub eos_token_ids: Vec<i64>,
    /// Fills finished rows and left-pads decoder-only prompts (masked out).
    pub pad_token_id: i64,
    /// 1: greedy; more: beam search with this many beams (HF's `num_beams`; the paper's
    /// SAMSum setting decodes with beams).
    #[serde(default = "one_beam")]
    pub num_beams: usize,
    /// Beam search ranks finished hypotheses by `sum of log-probs / length^length_penalty`.
    #[serde(default = "unit_length_penalty")]
    pub length_penalty: f64,
}

fn one_beam() -> usize {
    1
}

fn unit_length_penalty() -> f64 {
    1.0
}

impl Default for GenerationConfig {
    /// 64 new tokens (an E2E NLG reference is ~25 tokens, a SAMSum summary ~30), no eos known,
    /// greedy.
    fn default() -> Self {
        Self {
            max_new_tokens: 64,
            eos_token_ids: Vec::new(),
            pad_token_id: 0,
            num_beams: 1,
            length_penalty: 1.0,
        }
    }
}

impl GenerationConfig {
    /// The beam-search settings, when `num_beams > 1` (HF's defaults otherwise).
    pub fn beam(&self) -> Option<bomf_models::BeamSearchConfig> {
        (self.num_beams > 1).then(|| bomf_models::BeamSearchConfig {
            length_penalty: self.length_penalty,
            ..bomf_models::BeamSearchConfig::new(self.num_beams, self.max_new_tokens)
        })
    }
}

/// A model that can be trained and evaluated on padded batches.
pub trait TaskModel<B: Backend>: HfNamed<B> {
    fn forward_batch(&self, batch: &Batch, device: &B::Device) -> Result<BatchOutput<B>>;

    /// Continuation of every row's prompt (greedy, or beam search per `config`), new tokens only (eos included, then
    /// `pad_token_id` up to the longest row). The prompt of a row is its encoder input
    /// (seq2seq) or its tokens before the first labelled position (decoder-only).
    /// Classification models cannot generate: the default is an error.
    fn generate_batch(
        &self,
        batch: &Batch,
        config: &GenerationConfig,
        device: &B::Device,
    ) -> Result<Vec<Vec<i64>>> {
        let _ = (batch, config, device);
        Err(CoreError::InvalidInput(
            "this model does not generate text (a generation task needs T5 or LLaMA)".into(),
        ))
    }
}

/// A model the pipeline evaluates and fuses (no autodiff): a [`TaskModel`] by HF name that can
/// be cloned as a template.
pub trait InferenceModel<B: Backend>: Module<B> + TaskModel<B> + HfNamed<B> + Clone {}

impl<B: Backend, M: Module<B> + TaskModel<B> + HfNamed<B> + Clone> InferenceModel<B> for M {}

/// A model the pipeline trains on an autodiff backend and whose `valid()` copy (the same model
/// without autodiff) it evaluates and fuses. Every family's model type is one; commands and
/// stages are written once, generic over it.
pub trait TrainableModel<B: AutodiffBackend>:
    AutodiffModule<B, InnerModule: InferenceModel<B::InnerBackend>> + TaskModel<B> + HfNamed<B> + Clone
{
}

impl<B, M> TrainableModel<B> for M
where
    B: AutodiffBackend,
    M: AutodiffModule<B, InnerModule: InferenceModel<B::InnerBackend>>
        + TaskModel<B>
        + HfNamed<B>
        + Clone,
{
}

/// The model without autodiff that a [`TrainableModel`] `M` becomes with `valid()`.
pub type InnerModel<B, M> = <M as AutodiffModule<B>>::InnerModule;

/// An encoder with a sequence-classification (or regression) head: what [`classifier_forward`]
/// and the classifier families need from each architecture.
pub use bomf_models::SequenceClassifier;

/// The loss and logits of a classifier on a batch of class or score targets: the
/// [`TaskModel::forward_batch`] of every [`SequenceClassifier`].
pub fn classifier_forward<B: Backend, M: SequenceClassifier<B>>(
    model: &M,
    batch: &Batch,
    device: &B::Device,
) -> Result<BatchOutput<B>> {
    let logits = model.sequence_logits(&encoder_input(batch, device)?)?;
    let rows = batch.rows;
    let loss = match (&batch.targets, model.problem_type()) {
        (BatchTargets::Classes(classes), ProblemType::SingleLabelClassification) => {
            let labels =
                Tensor::<B, 1, Int>::from_data(TensorData::new(classes.clone(), [rows]), device);
            model.classification_loss(logits.clone(), labels)
        }
        (BatchTargets::Scores(scores), ProblemType::Regression) => {
            let targets =
                Tensor::<B, 1>::from_data(TensorData::new(scores.clone(), [rows]), device);
            model.regression_loss(logits.clone(), targets)
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
        classifier_forward(self, batch, device)
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

/// What the pipeline asks its model builder for: models to train (dropout on), frozen ones (the
/// learned soup's parametrisation and the evaluation template; dropout off), and stage 1's
/// LoRA-rank proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelRequest {
    /// Dropout active (models that will be trained).
    pub dropout: bool,
    /// Build the LoRA adapters at this rank instead of the configured one, with the same update
    /// scale (`[hpbo] lora_rank`, the proxy of LoRA runs; K·r for `[fusion] lora = "delta"`).
    /// `None`: as configured.
    pub lora_rank: Option<usize>,
}

impl ModelRequest {
    /// A model to fine-tune.
    pub const TRAIN: Self = Self {
        dropout: true,
        lora_rank: None,
    };
    /// A model that is not trained, or trained without dropout (the learned soup).
    pub const FROZEN: Self = Self {
        dropout: false,
        lora_rank: None,
    };

    /// For builders of models without LoRA adapters: an error when a LoRA rank is requested (a
    /// LoRA-rank proxy configured for a model that has no adapters).
    pub fn reject_lora_rank(&self) -> Result<()> {
        match self.lora_rank {
            Some(r) => Err(CoreError::config(
                "hpbo.lora_rank",
                format!("a LoRA-rank proxy (rank {r}) needs a model with LoRA adapters"),
            )),
            None => Ok(()),
        }
    }
}
