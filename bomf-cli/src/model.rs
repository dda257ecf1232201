//! Opening a Hugging Face model folder as a sequence classifier on the CPU, with its tokenizer.
//!
//! A folder is `config.json` + weights (`model.safetensors`, shards, or `pytorch_model.bin`) +
//! `tokenizer.json`, as `save_pretrained` writes it. This module covers the BERT/RoBERTa family;
//! T5 and LLaMA models are opened by [`crate::generative`], and any other `model_type` is an
//! error that says so. The label set comes from the config's
//! `id2label`; [`align_labels`] puts a dataset's classes in that order so that class `i` of the
//! data is output `i` of the model.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bomf_data::spec::with_label_order;
use bomf_data::task::{Dataset, TaskKind};
use bomf_data::tokenize::{EncoderConfig, ModelFamily, TextEncoder};
use bomf_models::bert::{BertConfig, EncoderFlavor};
use bomf_models::weights::{Checkpoint, load_bert_checkpoint, read_checkpoint, read_safetensors};
use bomf_models::{BertWithHead, Task};
use burn::tensor::backend::Backend;

/// Default maximum input length in tokens (capped by the model's position limit).
pub const DEFAULT_MAX_LEN: usize = 128;

/// The `config.json` of a folder, with an error that names the folder and what is supported.
pub fn read_config(dir: &Path) -> Result<BertConfig> {
    let path = dir.join("config.json");
    if !path.is_file() {
        bail!(
            "{} has no config.json: expected a Hugging Face model folder (config.json, \
             model.safetensors, tokenizer.json)",
            dir.display()
        );
    }
    BertConfig::from_file(&path).with_context(|| {
        format!(
            "{}: supported models are BERT/RoBERTa-family sequence classifiers, T5 \
             (model_type \"t5\") and the LLaMA family (model_type \"llama\", or a .gguf file)",
            path.display()
        )
    })
}

/// How many positions the model can take (RoBERTa reserves `pad_token_id + 1` of them).
pub fn model_max_positions(config: &BertConfig) -> usize {
    match config.flavor {
        EncoderFlavor::Bert => config.max_position_embeddings,
        EncoderFlavor::Roberta => config
            .max_position_embeddings
            .saturating_sub(config.pad_token_id + 1),
    }
}

/// The tokenizer of a folder, configured for the model's family and position limit.
/// `max_len = None` uses [`DEFAULT_MAX_LEN`] (or the model's limit when smaller).
pub fn text_encoder(
    tokenizer_dir: &Path,
    config: &BertConfig,
    max_len: Option<usize>,
) -> Result<TextEncoder> {
    let path = tokenizer_dir.join("tokenizer.json");
    if !path.is_file() {
        bail!(
            "{} has no tokenizer.json (needed to turn text into token ids): copy the \
             tokenizer.json of the model it was fine-tuned from into it",
            tokenizer_dir.display()
        );
    }
    let family = match config.flavor {
        EncoderFlavor::Bert => ModelFamily::Bert,
        EncoderFlavor::Roberta => ModelFamily::Roberta,
    };
    let limit = model_max_positions(config);
    let max_len = max_len.unwrap_or(DEFAULT_MAX_LEN.min(limit));
    let mut enc = EncoderConfig::new(family, max_len);
    enc.model_max_length = Some(limit);
    enc.model_vocab_size = Some(config.vocab_size);
    TextEncoder::from_file(&path, enc).with_context(|| format!("loading {}", path.display()))
}

/// Reads the weights of a checkpoint given as a model folder or a single `.safetensors` file.
pub fn read_weights(path: &Path) -> Result<Checkpoint> {
    if path.is_dir() {
        Ok(read_checkpoint(path)?)
    } else if path.is_file() {
        Ok(read_safetensors(path)?)
    } else {
        bail!("{}: no such model folder or weights file", path.display())
    }
}

/// The folder whose `config.json` (and tokenizer) describe a checkpoint: the folder itself, or
/// the folder holding a `.safetensors` file (as in a run's `checkpoints/`).
pub fn config_dir_of(checkpoint: &Path) -> PathBuf {
    if checkpoint.is_dir() {
        checkpoint.to_path_buf()
    } else {
        checkpoint
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }
}

/// Builds a sequence classifier from `config` and assigns `checkpoint` to it. With
/// `require_head`, a checkpoint without the classification head is an error (a fine-tuned model
/// is expected); otherwise the head is freshly initialised from the backend's RNG.
pub fn classifier_from<B: Backend>(
    config: &BertConfig,
    checkpoint: Checkpoint,
    require_head: bool,
    device: &B::Device,
) -> Result<BertWithHead<B>> {
    let model = BertWithHead::<B>::new(config, Task::SequenceClassification, device);
    let (model, report) = load_bert_checkpoint(model, checkpoint, device)?;
    if require_head && !report.freshly_initialised.is_empty() {
        bail!(
            "the checkpoint lacks tensor(s) {}: it is not a fine-tuned sequence classifier (fine-tune one with `bomf train`)",
            report.freshly_initialised.join(", ")
        );
    }
    Ok(model)
}

/// A fine-tuned classifier folder, ready for inference.
pub struct LoadedModel<B: Backend> {
    pub config: BertConfig,
    pub model: BertWithHead<B>,
    pub encoder: TextEncoder,
}

/// Opens a fine-tuned classifier folder (dropout is irrelevant: inference backends do not
/// apply it).
pub fn open_classifier<B: Backend>(
    dir: &Path,
    max_len: Option<usize>,
    device: &B::Device,
) -> Result<LoadedModel<B>> {
    let config = read_config(dir)?;
    let encoder = text_encoder(dir, &config, max_len)?;
    let checkpoint = read_weights(dir)?;
    let model = classifier_from::<B>(&config, checkpoint, true, device)
        .with_context(|| format!("loading {}", dir.display()))?;
    Ok(LoadedModel {
        config,
        model,
        encoder,
    })
}

/// The model's label names in output order.
pub fn model_labels(config: &BertConfig) -> Vec<String> {
    config.id2label.values().cloned().collect()
}

/// Whether the label names are `transformers`' placeholders (`LABEL_0`, `LABEL_1`, ...).
fn placeholder_labels(labels: &[String]) -> bool {
    labels
        .iter()
        .enumerate()
        .all(|(i, l)| *l == format!("LABEL_{i}"))
}

/// Puts the dataset's classes in the model's output order. Placeholder model labels
/// (`LABEL_i`) accept the dataset's order when the counts agree; named labels must be the same
/// set. Regression data needs a one-output model.
pub fn align_labels(dataset: Dataset, config: &BertConfig) -> Result<Dataset> {
    let model = model_labels(config);
    match &dataset.task.kind {
        TaskKind::Classification { labels } => {
            if *labels == model || (placeholder_labels(&model) && labels.len() == model.len()) {
                return Ok(dataset);
            }
            let mut a = labels.clone();
            let mut b = model.clone();
            a.sort();
            b.sort();
            if a != b {
                bail!(
                    "the model's labels {model:?} (config.json id2label) are not the data's \
                     labels {labels:?}"
                );
            }
            Ok(with_label_order(dataset, &model)?)
        }
        TaskKind::Regression => {
            if model.len() != 1 {
                bail!(
                    "the data is a regression task but the model has {} outputs {model:?}",
                    model.len()
                );
            }
            Ok(dataset)
        }
        TaskKind::SpanQa { .. } => bail!(
            "a sequence classifier cannot answer {} (extractive QA): bomf answers SQuAD by \
             generation, with a T5 or LLaMA-family model (see configs/squad-t5.toml)",
            dataset.task.name
        ),
        other => bail!(
            "a sequence classifier cannot score {} ({other:?}); use a classification or \
             regression dataset",
            dataset.task.name
        ),
    }
}
