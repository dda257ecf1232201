//! MPNet sequence classifiers (e.g. all-mpnet-base-v2 with a fresh head): RoBERTa's geometry
//! and special-token layout, plus a relative-attention position bias.

use std::path::Path;

use bomf_data::batch::Batch;
use bomf_data::tokenize::{EncoderConfig, ModelFamily};
use bomf_models::mpnet::{
    MpnetConfig, MpnetForSequenceClassification, export_mpnet, load_mpnet_checkpoint,
};
use bomf_models::weights::{Checkpoint, LoadReport};
use burn::tensor::backend::Backend;

use super::classifier::{ClassifierArch, classifier_encoder_config, config_methods};
use crate::error::Result;
use crate::model::{BatchOutput, TaskModel, classifier_forward};

/// The MPNet encoder of `bomf_models::mpnet` with a sequence-classification head.
pub struct Mpnet;

impl ClassifierArch for Mpnet {
    const MODEL_TYPES: &'static [&'static str] = &["mpnet"];
    const NAME: &'static str = "MPNet classifier";
    const SUPPORTED: &'static str = "MPNet sequence classifiers (model_type mpnet)";

    type Config = MpnetConfig;
    type Model<B: Backend> = MpnetForSequenceClassification<B>;

    config_methods!();

    /// MPNet's tokenizer puts RoBERTa's `<s> A </s></s> B </s>` around a lower-cased WordPiece.
    fn encoder_config(config: &MpnetConfig, max_len: Option<usize>) -> EncoderConfig {
        let limit = config.max_sequence_length();
        classifier_encoder_config(ModelFamily::Roberta, limit, config.vocab_size, max_len)
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

impl<B: Backend> TaskModel<B> for MpnetForSequenceClassification<B> {
    fn forward_batch(&self, batch: &Batch, device: &B::Device) -> Result<BatchOutput<B>> {
        classifier_forward(self, batch, device)
    }
}
