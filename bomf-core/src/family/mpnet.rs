//! MPNet sequence classifiers (e.g. all-mpnet-base-v2 with a fresh head): RoBERTa's geometry
//! and special-token layout, plus a relative-attention position bias.

use std::path::Path;

use bomf_data::batch::Batch;
use bomf_data::tokenize::{EncoderConfig, ModelFamily};
use bomf_models::EncoderInput;
use bomf_models::bert::ProblemType;
use bomf_models::mpnet::{
    MpnetConfig, MpnetForSequenceClassification, export_mpnet, load_mpnet_checkpoint,
};
use bomf_models::weights::{Checkpoint, LoadReport};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use super::classifier::{ClassifierArch, DEFAULT_MAX_LEN};
use crate::error::Result;
use crate::model::{BatchOutput, SequenceClassifier, TaskModel, classifier_forward};

/// The MPNet encoder of `bomf_models::mpnet` with a sequence-classification head.
pub struct Mpnet;

impl ClassifierArch for Mpnet {
    const MODEL_TYPES: &'static [&'static str] = &["mpnet"];
    const NAME: &'static str = "MPNet classifier";
    const SUPPORTED: &'static str = "MPNet sequence classifiers (model_type mpnet)";

    type Config = MpnetConfig;
    type Model<B: Backend> = MpnetForSequenceClassification<B>;

    fn read_config(path: &Path) -> bomf_models::Result<MpnetConfig> {
        MpnetConfig::from_file(path)
    }

    fn labels(config: &MpnetConfig) -> Vec<String> {
        config.id2label.values().cloned().collect()
    }

    fn with_labels(config: &MpnetConfig, labels: &[String]) -> MpnetConfig {
        config.clone().with_labels(labels)
    }

    fn regression(config: &MpnetConfig) -> MpnetConfig {
        config.clone().with_num_labels(1)
    }

    fn without_dropout(config: &MpnetConfig) -> MpnetConfig {
        config.clone().without_dropout()
    }

    /// MPNet's tokenizer puts RoBERTa's `<s> A </s></s> B </s>` around a lower-cased WordPiece.
    fn encoder_config(config: &MpnetConfig, max_len: Option<usize>) -> EncoderConfig {
        let limit = config.max_sequence_length();
        let len = max_len.unwrap_or(DEFAULT_MAX_LEN.min(limit));
        let mut enc = EncoderConfig::new(ModelFamily::Roberta, len);
        enc.model_max_length = Some(limit);
        enc.model_vocab_size = Some(config.vocab_size);
        enc
    }

    fn load<B: Backend>(
        config: &MpnetConfig,
        weights: Checkpoint,
        device: &B::Device,
    ) -> bomf_models::Result<(MpnetForSequenceClassification<B>, LoadReport)> {
        let model = MpnetForSequenceClassification::<B>::new(config, device)?;
        load_mpnet_checkpoint(model, weights, device)
    }

    fn export<B: Backend>(
        model: &MpnetForSequenceClassification<B>,
        config: &MpnetConfig,
        out: &Path,
        tokenizer_dir: &Path,
    ) -> bomf_models::Result<()> {
        export_mpnet(model, config, out, Some(tokenizer_dir))
    }
}

impl<B: Backend> SequenceClassifier<B> for MpnetForSequenceClassification<B> {
    fn sequence_logits(&self, input: &EncoderInput<B>) -> bomf_models::Result<Tensor<B, 2>> {
        MpnetForSequenceClassification::sequence_logits(self, input)
    }
    fn problem_type(&self) -> ProblemType {
        MpnetForSequenceClassification::problem_type(self)
    }
    fn classification_loss(&self, logits: Tensor<B, 2>, labels: Tensor<B, 1, Int>) -> Tensor<B, 1> {
        MpnetForSequenceClassification::classification_loss(self, logits, labels)
    }
    fn regression_loss(&self, logits: Tensor<B, 2>, targets: Tensor<B, 1>) -> Tensor<B, 1> {
        MpnetForSequenceClassification::regression_loss(self, logits, targets)
    }
}

impl<B: Backend> TaskModel<B> for MpnetForSequenceClassification<B> {
    fn forward_batch(&self, batch: &Batch, device: &B::Device) -> Result<BatchOutput<B>> {
        classifier_forward(self, batch, device)
    }
}
