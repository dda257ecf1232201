//! Loading T5 from, and writing it as, a Hugging Face folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use serde_json::Value;

use super::{T5Config, T5ForConditionalGeneration};
use crate::error::{ModelError, Result};
use crate::export;
use crate::params::{self, Coverage, HfTensor};
use crate::weights::{self, Checkpoint};

/// The cross-attention of the first decoder block has no bias table, but old checkpoints store
/// one; transformers ignores it, so do we.
const IGNORED_CROSS_BIAS: &str =
    "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight";
/// Copies of `shared.weight` that old checkpoints store under the stacks' names.
const EMBEDDING_ALIASES: [&str; 2] = ["encoder.embed_tokens.weight", "decoder.embed_tokens.weight"];

/// Loads a T5 model from an HF folder (`config.json` + safetensors / `.bin`).
pub fn load_t5<B: Backend>(
    dir: impl AsRef<Path>,
    device: &B::Device,
) -> Result<(T5ForConditionalGeneration<B>, T5Config)> {
    weights::load_with_folder_config(dir.as_ref(), T5Config::from_file, |dir, config| {
        load_t5_checkpoint(config, weights::read_checkpoint(dir)?, device)
    })
}

/// Builds a model from `config` and assigns every tensor of `checkpoint`, strictly: a missing,
/// unexpected or wrongly-shaped tensor is an error naming it. Tolerated, as in `transformers`:
/// the stacks' `embed_tokens` copies of `shared.weight` (they must equal it), the unused
/// cross-attention bias table of old checkpoints, and `lm_head.weight` next to tied embeddings
/// when it equals `shared.weight`. A *different* `lm_head.weight` with tied embeddings is used as
/// an untied head, as transformers 5 does.
pub fn load_t5_checkpoint<B: Backend>(
    config: &T5Config,
    checkpoint: Checkpoint,
    device: &B::Device,
) -> Result<T5ForConditionalGeneration<B>> {
    let mut tensors = checkpoint.tensors;
    tensors.remove(IGNORED_CROSS_BIAS);
    let shared = tensors.get("shared.weight").cloned();
    for alias in EMBEDDING_ALIASES {
        if let Some(copy) = tensors.remove(alias) {
            if shared.as_ref().is_some_and(|s| *s != copy) {
                return Err(ModelError::WeightsFile {
                    path: PathBuf::from(alias),
                    message: format!(
                        "tensor `{alias}` differs from `shared.weight` (they are tied)"
                    ),
                });
            }
            if shared.is_none() {
                tensors.insert("shared.weight".into(), copy);
            }
        }
    }
    let mut untied = !config.tie_word_embeddings;
    if config.tie_word_embeddings
        && let Some(head) = tensors.get("lm_head.weight")
    {
        if tensors.get("shared.weight") == Some(head) {
            tensors.remove("lm_head.weight");
        } else {
            tracing::info!("tied config but a distinct lm_head.weight: loading it untied");
            untied = true;
        }
    }
    let model = T5ForConditionalGeneration::new_lazy(config, untied, device)?;
    let tensors: BTreeMap<String, HfTensor> = tensors;
    Ok(params::materialize(params::set_tensors(
        model,
        &tensors,
        Coverage::All,
        device,
    )?))
}

/// Writes `model` as an HF folder `transformers` loads as `T5ForConditionalGeneration`:
/// `config.json` (the original config, with `tie_word_embeddings` / `scale_decoder_outputs`
/// describing this model's head), `model.safetensors` (HF names) and, when `tokenizer_dir` is
/// given, its tokenizer files.
pub fn export_t5<B: Backend>(
    model: &T5ForConditionalGeneration<B>,
    config: &T5Config,
    out_dir: impl AsRef<Path>,
    tokenizer_dir: Option<&Path>,
) -> Result<()> {
    let mut config = config.clone();
    config.tie_word_embeddings = model.lm_head.is_none();
    config.scale_decoder_outputs = Some(model.settings.scale_decoder_outputs);
    config.extra.insert(
        "architectures".into(),
        Value::from(vec!["T5ForConditionalGeneration"]),
    );
    config.extra.insert("model_type".into(), Value::from("t5"));
    export::write_hf_folder(model, &config.to_json()?, out_dir.as_ref(), tokenizer_dir)
}
