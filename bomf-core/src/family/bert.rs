//! BERT and RoBERTa (with XLM-RoBERTa and CamemBERT, RoBERTa's layout) sequence classifiers.

use std::path::Path;

use bomf_data::tokenize::{EncoderConfig, ModelFamily};
use bomf_models::bert::{BertConfig, EncoderFlavor};
use bomf_models::export::export_bert;
use bomf_models::weights::{Checkpoint, LoadReport, load_bert_checkpoint};
use bomf_models::{BertWithHead, Task};
use burn::tensor::backend::Backend;

use super::classifier::{ClassifierArch, classifier_encoder_config, config_methods};

/// The BERT/RoBERTa encoders of `bomf_models::bert` with a sequence-classification head.
pub struct Bert;

/// How many positions the model can take (RoBERTa reserves `pad_token_id + 1` of them).
pub fn model_max_positions(config: &BertConfig) -> usize {
    match config.flavor {
        EncoderFlavor::Bert => config.max_position_embeddings,
        EncoderFlavor::Roberta => config
            .max_position_embeddings
            .saturating_sub(config.pad_token_id + 1),
    }
}

impl ClassifierArch for Bert {
    const MODEL_TYPES: &'static [&'static str] = &["bert", "roberta", "xlm-roberta", "camembert"];
    const NAME: &'static str = "BERT/RoBERTa-family classifier";
    const SUPPORTED: &'static str =
        "BERT/RoBERTa sequence classifiers (model_type bert, roberta, xlm-roberta, camembert)";

    type Config = BertConfig;
    type Model<B: Backend> = BertWithHead<B>;

    config_methods!();

    fn encoder_config(config: &BertConfig, max_len: Option<usize>) -> EncoderConfig {
        let family = match config.flavor {
            EncoderFlavor::Bert => ModelFamily::Bert,
            EncoderFlavor::Roberta => ModelFamily::Roberta,
        };
        let limit = model_max_positions(config);
        classifier_encoder_config(family, limit, config.vocab_size, max_len)
    }

    fn load<B: Backend>(
        config: &BertConfig,
        weights: Checkpoint,
        device: &B::Device,
    ) -> bomf_models::Result<(BertWithHead<B>, LoadReport)> {
        let model = BertWithHead::<B>::new(config, Task::SequenceClassification, device);
        load_bert_checkpoint(model, weights, device)
    }

    fn export<B: Backend>(
        model: &BertWithHead<B>,
        config: &BertConfig,
        out: &Path,
        tokenizer_dir: &Path,
    ) -> bomf_models::Result<()> {
        export_bert(model, config, out, Some(tokenizer_dir))
    }
}
