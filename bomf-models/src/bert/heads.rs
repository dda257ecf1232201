//! The task heads `transformers` puts on the encoder, and [`BertWithHead`].

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use super::encoder::hf_linear;
use super::{BertConfig, BertModel, EncoderFlavor, EncoderInput, ProblemType, Task};
use crate::error::{ModelError, Result};
use crate::kernels::{self, linear3};
use crate::{loss, params};

/// An encoder with a sequence-classification (or regression) head — [`BertWithHead`] and
/// [`MpnetForSequenceClassification`](crate::MpnetForSequenceClassification) — and the losses
/// `transformers` computes on its logits.
pub trait SequenceClassifier<B: Backend> {
    /// Logits `[batch, num_labels]` (regression: `[batch, 1]`).
    fn sequence_logits(&self, input: &EncoderInput<B>) -> Result<Tensor<B, 2>>;

    /// How the loss is computed (`problem_type`, or HF's inference from `num_labels`).
    fn problem_type(&self) -> ProblemType;

    /// HF's loss for integer labels (`single_label_classification`): mean cross-entropy.
    fn classification_loss(&self, logits: Tensor<B, 2>, labels: Tensor<B, 1, Int>) -> Tensor<B, 1> {
        loss::cross_entropy(logits, labels, None)
    }

    /// HF's regression loss (`num_labels == 1`): MSE between the single logit and the target.
    fn regression_loss(&self, logits: Tensor<B, 2>, targets: Tensor<B, 1>) -> Tensor<B, 1> {
        let [batch, _] = logits.dims();
        loss::mse(logits.reshape([batch]), targets)
    }
}

/// RoBERTa's classification head: `dense → tanh → out_proj` on `<s>` (HF `classifier.*`).
#[derive(Module, Debug)]
pub struct RobertaClassificationHead<B: Backend> {
    pub dense: Linear<B>,
    pub out_proj: Linear<B>,
}

/// HF's `classifier`: a single Linear (BERT classification, both multiple-choice heads) or
/// RoBERTa's two-layer head. Enum variants do not appear in HF names (see [`crate::params`]).
// One head per model: the size difference between variants costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Classifier<B: Backend> {
    Linear(Linear<B>),
    Roberta(RobertaClassificationHead<B>),
}

/// An encoder with the head of one [`Task`]. Field names are HF's (`base` is `bert`/`roberta`).
#[derive(Module, Debug)]
pub struct BertWithHead<B: Backend> {
    pub base: BertModel<B>,
    pub classifier: Option<Classifier<B>>,
    pub qa_outputs: Option<Linear<B>>,
    dropout: Dropout,
    #[module(skip)]
    task: Task,
    #[module(skip)]
    flavor: EncoderFlavor,
    #[module(skip)]
    problem_type: ProblemType,
}

/// Span-QA logits, each `[batch, seq_len]`.
#[derive(Debug, Clone)]
pub struct SpanLogits<B: Backend> {
    pub start: Tensor<B, 2>,
    pub end: Tensor<B, 2>,
}

impl<B: Backend> BertWithHead<B> {
    /// A randomly initialised model for `task` (HF's initialisation scheme).
    ///
    /// Parameters are materialised here: burn initialises lazily and each *clone* of a lazy
    /// parameter would draw its own random values, so two clones of a fresh model would differ.
    pub fn new(config: &BertConfig, task: Task, device: &B::Device) -> Self {
        params::materialize(Self::new_lazy(config, task, device))
    }

    /// Like [`Self::new`] but leaves parameters lazy, for the loader, which overwrites most of them
    /// (and materialises the rest).
    pub(crate) fn new_lazy(config: &BertConfig, task: Task, device: &B::Device) -> Self {
        let (h, std) = (config.hidden_size, config.initializer_range);
        let classifier = match (task, config.flavor) {
            (Task::SequenceClassification, EncoderFlavor::Bert) => Some(Classifier::Linear(
                hf_linear(h, config.num_labels(), std, device),
            )),
            (Task::SequenceClassification, EncoderFlavor::Roberta) => {
                Some(Classifier::Roberta(RobertaClassificationHead {
                    dense: hf_linear(h, h, std, device),
                    out_proj: hf_linear(h, config.num_labels(), std, device),
                }))
            }
            (Task::MultipleChoice, _) => Some(Classifier::Linear(hf_linear(h, 1, std, device))),
            _ => None,
        };
        let qa_outputs = (task == Task::QuestionAnswering).then(|| hf_linear(h, 2, std, device));
        // BertFor* use `classifier_dropout` when set; RobertaForMultipleChoice always uses the hidden one.
        let classifier_dropout = match (task, config.flavor) {
            (Task::MultipleChoice, EncoderFlavor::Roberta) => config.hidden_dropout_prob,
            _ => config
                .classifier_dropout
                .unwrap_or(config.hidden_dropout_prob),
        };
        Self {
            base: BertModel::new(config, task.uses_pooler(config.flavor), device),
            classifier,
            qa_outputs,
            dropout: DropoutConfig::new(classifier_dropout).init(),
            task,
            flavor: config.flavor,
            problem_type: config.effective_problem_type(),
        }
    }

    pub fn task(&self) -> Task {
        self.task
    }

    pub fn flavor(&self) -> EncoderFlavor {
        self.flavor
    }

    pub fn problem_type(&self) -> ProblemType {
        self.problem_type
    }

    /// The prefix of the base model's tensors in HF checkpoints of this model (`bert`/`roberta`;
    /// empty for [`Task::Base`], whose checkpoints store the encoder at the root).
    pub fn hf_base_prefix(&self) -> &'static str {
        match self.task {
            Task::Base => "",
            _ => self.flavor.hf_prefix(),
        }
    }

    fn wrong_task(&self, wanted: Task) -> ModelError {
        ModelError::InvalidInput(format!(
            "this model was built for {:?}, not {wanted:?}",
            self.task
        ))
    }

    /// Sequence classification/regression logits `[batch, num_labels]`.
    pub fn sequence_logits(&self, input: &EncoderInput<B>) -> Result<Tensor<B, 2>> {
        let out = self.base.forward_first_token(input);
        match (&self.classifier, self.task) {
            (Some(Classifier::Linear(linear)), Task::SequenceClassification) => {
                let pooled = out
                    .pooled
                    .ok_or_else(|| self.wrong_task(Task::SequenceClassification))?;
                Ok(linear.forward(kernels::dropout(&self.dropout, pooled)))
            }
            (Some(Classifier::Roberta(head)), Task::SequenceClassification) => {
                let x = kernels::dropout(&self.dropout, out.hidden);
                let x = kernels::dropout(&self.dropout, head.dense.forward(x).tanh());
                Ok(head.out_proj.forward(x))
            }
            _ => Err(self.wrong_task(Task::SequenceClassification)),
        }
    }

    /// Multiple-choice logits `[batch, num_choices]`; the input rows are `batch * num_choices`
    /// sequences, choices of one example consecutive (HF flattens `[batch, choices, len]` so).
    pub fn multiple_choice_logits(
        &self,
        input: &EncoderInput<B>,
        num_choices: usize,
    ) -> Result<Tensor<B, 2>> {
        let [rows, _] = input.input_ids.dims();
        if num_choices == 0 || !rows.is_multiple_of(num_choices) {
            return Err(ModelError::InvalidInput(format!(
                "{rows} rows are not a whole number of examples with {num_choices} choices"
            )));
        }
        let (Some(Classifier::Linear(linear)), Task::MultipleChoice) =
            (&self.classifier, self.task)
        else {
            return Err(self.wrong_task(Task::MultipleChoice));
        };
        let pooled = self
            .base
            .forward_first_token(input)
            .pooled
            .ok_or_else(|| self.wrong_task(Task::MultipleChoice))?;
        let scores = linear.forward(kernels::dropout(&self.dropout, pooled));
        Ok(scores.reshape([rows / num_choices, num_choices]))
    }

    /// Span start/end logits.
    pub fn span_logits(&self, input: &EncoderInput<B>) -> Result<SpanLogits<B>> {
        let Some(qa) = &self.qa_outputs else {
            return Err(self.wrong_task(Task::QuestionAnswering));
        };
        let logits = linear3(qa, self.base.forward(input).last_hidden_state);
        let [batch, seq_len, _] = logits.dims();
        let start = logits
            .clone()
            .slice([0..batch, 0..seq_len, 0..1])
            .squeeze_dim::<2>(2);
        let end = logits
            .slice([0..batch, 0..seq_len, 1..2])
            .squeeze_dim::<2>(2);
        Ok(SpanLogits { start, end })
    }

    /// HF's span loss: mean of start and end cross-entropies; positions outside the sequence are
    /// clamped to `seq_len` and ignored.
    pub fn span_loss(
        &self,
        logits: &SpanLogits<B>,
        start_positions: Tensor<B, 1, Int>,
        end_positions: Tensor<B, 1, Int>,
    ) -> Tensor<B, 1> {
        let [_, seq_len] = logits.start.dims();
        let ignored = seq_len as i64;
        let start = start_positions.clamp(0, ignored);
        let end = end_positions.clamp(0, ignored);
        let start_loss = loss::cross_entropy(logits.start.clone(), start, Some(ignored));
        let end_loss = loss::cross_entropy(logits.end.clone(), end, Some(ignored));
        (start_loss + end_loss).div_scalar(2.0)
    }
}

impl<B: Backend> SequenceClassifier<B> for BertWithHead<B> {
    fn sequence_logits(&self, input: &EncoderInput<B>) -> Result<Tensor<B, 2>> {
        BertWithHead::sequence_logits(self, input)
    }

    fn problem_type(&self) -> ProblemType {
        BertWithHead::problem_type(self)
    }
}
