//! `MPNetForSequenceClassification`: the encoder without its pooler and a classification head
//! on `<s>`.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::{MpnetConfig, MpnetModel};
use crate::bert::{EncoderInput, ProblemType, SequenceClassifier, hf_linear};
use crate::error::Result;
use crate::{kernels, params};

/// HF's `classifier`: `dense → tanh → out_proj` on the first token, with dropout
/// (`hidden_dropout_prob`) before each Linear.
#[derive(Module, Debug)]
pub struct MpnetClassificationHead<B: Backend> {
    pub dense: Linear<B>,
    pub out_proj: Linear<B>,
}

/// MPNet with a sequence-classification (or regression) head. Field names are HF's; `base` is
/// `mpnet` in HF names.
#[derive(Module, Debug)]
pub struct MpnetForSequenceClassification<B: Backend> {
    pub base: MpnetModel<B>,
    pub classifier: MpnetClassificationHead<B>,
    dropout: Dropout,
    #[module(skip)]
    problem_type: ProblemType,
    num_labels: usize,
}

impl<B: Backend> MpnetForSequenceClassification<B> {
    /// The prefix of the encoder's tensors in HF checkpoints of this model.
    pub const HF_BASE_PREFIX: &'static str = "mpnet";

    /// A randomly initialised model (HF's initialisation scheme), parameters materialised so
    /// that clones share their values.
    pub fn new(config: &MpnetConfig, device: &B::Device) -> Result<Self> {
        Ok(params::materialize(Self::new_lazy(config, device)?))
    }

    /// Like [`Self::new`] with lazy parameters, for the loader.
    pub(crate) fn new_lazy(config: &MpnetConfig, device: &B::Device) -> Result<Self> {
        let (h, std) = (config.hidden_size, config.initializer_range);
        Ok(Self {
            base: MpnetModel::new_lazy(config, false, device)?,
            classifier: MpnetClassificationHead {
                dense: hf_linear(h, h, std, device),
                out_proj: hf_linear(h, config.num_labels(), std, device),
            },
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
            problem_type: config.effective_problem_type(),
            num_labels: config.num_labels(),
        })
    }

    /// How the loss is computed (`problem_type`, or HF's inference from `num_labels`).
    pub fn problem_type(&self) -> ProblemType {
        self.problem_type
    }

    /// Outputs of the head.
    pub fn num_labels(&self) -> usize {
        self.num_labels
    }

    /// Classification/regression logits `[batch, num_labels]`.
    pub fn sequence_logits(&self, input: &EncoderInput<B>) -> Result<Tensor<B, 2>> {
        let hidden = self.base.forward_first_token(input)?.hidden;
        let head = &self.classifier;
        let x = kernels::dropout(&self.dropout, hidden);
        let x = kernels::dropout(&self.dropout, head.dense.forward(x).tanh());
        Ok(head.out_proj.forward(x))
    }
}

impl<B: Backend> SequenceClassifier<B> for MpnetForSequenceClassification<B> {
    fn sequence_logits(&self, input: &EncoderInput<B>) -> Result<Tensor<B, 2>> {
        MpnetForSequenceClassification::sequence_logits(self, input)
    }

    fn problem_type(&self) -> ProblemType {
        MpnetForSequenceClassification::problem_type(self)
    }
}
