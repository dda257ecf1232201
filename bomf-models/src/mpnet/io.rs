//! Loading MPNet from, and writing it as, a Hugging Face folder.
//!
//! Loading follows the encoder rules of [`crate::weights`]: buffers
//! (`embeddings.position_ids`), pre-training heads (`lm_head.*` of `MPNetForMaskedLM`) and
//! heads or a pooler the model has no place for are ignored; the head (or pooler) missing as a
//! whole is freshly initialised; anything else missing, unexpected or misshapen is an error
//! naming the tensor.

use std::path::Path;

use burn::tensor::backend::Backend;

use super::{MpnetConfig, MpnetForSequenceClassification, MpnetModel};
use crate::error::{ModelError, Result};
use crate::export;
use crate::params::HfNamed;
use crate::weights::{self, Checkpoint, LoadReport};

/// The base-model prefix `transformers` gives MPNet inside a model with a head.
const BASE_PREFIXES: [&str; 1] = ["mpnet"];
/// `architectures` entries written on export.
const BASE_ARCHITECTURE: &str = "MPNetModel";
const SEQUENCE_CLASSIFICATION_ARCHITECTURE: &str = "MPNetForSequenceClassification";

/// Loads the bare encoder with its pooler (`MPNetModel`) from an HF folder, reading its
/// `config.json`. A checkpoint without a pooler gets a fresh one (listed in the report).
pub fn load_mpnet<B: Backend>(
    dir: impl AsRef<Path>,
    device: &B::Device,
) -> Result<(MpnetModel<B>, MpnetConfig, LoadReport)> {
    weights::load_encoder_folder(dir.as_ref(), MpnetConfig::from_file, |dir, config| {
        load_mpnet_with_config(dir, config, device)
    })
}

/// Loads the weights of an HF folder into an encoder (with pooler) built from `config`.
pub fn load_mpnet_with_config<B: Backend>(
    dir: impl AsRef<Path>,
    config: &MpnetConfig,
    device: &B::Device,
) -> Result<(MpnetModel<B>, LoadReport)> {
    let model = MpnetModel::new_lazy(config, true, device)?;
    load_mpnet_checkpoint(model, weights::read_checkpoint(dir)?, device)
}

/// Assigns `checkpoint` to `model` (an [`MpnetModel`] or an [`MpnetForSequenceClassification`]
/// built from a config) under the rules in the module docs.
pub fn load_mpnet_checkpoint<B: Backend, M: HfNamed<B>>(
    model: M,
    checkpoint: Checkpoint,
    device: &B::Device,
) -> Result<(M, LoadReport)> {
    weights::load_encoder_checkpoint(model, checkpoint, &BASE_PREFIXES, device)
}

/// Loads `MPNetForSequenceClassification` from an HF folder, reading its `config.json`. From a
/// base or masked-LM checkpoint the head is fresh (listed in the report).
pub fn load_mpnet_for_sequence_classification<B: Backend>(
    dir: impl AsRef<Path>,
    device: &B::Device,
) -> Result<(MpnetForSequenceClassification<B>, MpnetConfig, LoadReport)> {
    weights::load_encoder_folder(dir.as_ref(), MpnetConfig::from_file, |dir, config| {
        load_mpnet_for_sequence_classification_with_config(dir, config, device)
    })
}

/// Loads the weights of an HF folder into a classifier built from `config` (which may differ
/// from the folder's, e.g. another `num_labels` for a fresh head, or no dropout).
pub fn load_mpnet_for_sequence_classification_with_config<B: Backend>(
    dir: impl AsRef<Path>,
    config: &MpnetConfig,
    device: &B::Device,
) -> Result<(MpnetForSequenceClassification<B>, LoadReport)> {
    let model = MpnetForSequenceClassification::new_lazy(config, device)?;
    load_mpnet_checkpoint(model, weights::read_checkpoint(dir)?, device)
}

/// Writes a classifier (typically a fused one) as an HF folder that `transformers` loads as
/// `MPNetForSequenceClassification`; `tokenizer_dir`, when given, has its tokenizer files copied
/// along. `config` must describe the model's head (same number of labels).
pub fn export_mpnet<B: Backend>(
    model: &MpnetForSequenceClassification<B>,
    config: &MpnetConfig,
    out_dir: impl AsRef<Path>,
    tokenizer_dir: Option<&Path>,
) -> Result<()> {
    if config.num_labels() != model.num_labels() {
        return Err(ModelError::InvalidInput(format!(
            "the config has {} labels, the model's head {}",
            config.num_labels(),
            model.num_labels()
        )));
    }
    let json = config.to_hf_json(SEQUENCE_CLASSIFICATION_ARCHITECTURE)?;
    export::write_hf_folder(model, &json, out_dir.as_ref(), tokenizer_dir)
}

/// Writes the bare encoder as an HF folder that `transformers` loads as `MPNetModel`.
pub fn export_mpnet_model<B: Backend>(
    model: &MpnetModel<B>,
    config: &MpnetConfig,
    out_dir: impl AsRef<Path>,
    tokenizer_dir: Option<&Path>,
) -> Result<()> {
    let json = config.to_hf_json(BASE_ARCHITECTURE)?;
    export::write_hf_folder(model, &json, out_dir.as_ref(), tokenizer_dir)
}
