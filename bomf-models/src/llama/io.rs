//! Loading LLaMA from, and writing it as, a Hugging Face folder.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::backend::Backend;
use serde_json::Value;

use super::{LlamaConfig, LlamaForCausalLM};
use crate::error::Result;
use crate::export;
use crate::params::{self, Coverage};
use crate::weights::{self, Checkpoint};

/// Writes `model` as an HF LLaMA folder (`config.json`, `model.safetensors` with HF names; the
/// tokenizer files of `tokenizer_dir` copied along when given) that `transformers` loads
/// unchanged. Attached LoRA adapters are merged into the dense weights first (see
/// [`LlamaForCausalLM::merged`]).
pub fn export_llama<B: Backend>(
    model: &LlamaForCausalLM<B>,
    config: &LlamaConfig,
    out_dir: impl AsRef<Path>,
    tokenizer_dir: Option<&Path>,
) -> Result<()> {
    let mut json = config.to_json()?;
    if let Some(fields) = json.as_object_mut() {
        fields.insert("model_type".into(), Value::from("llama"));
        fields.insert(
            "architectures".into(),
            serde_json::json!(["LlamaForCausalLM"]),
        );
    }
    export::write_hf_folder(
        &model.clone().merged(),
        &json,
        out_dir.as_ref(),
        tokenizer_dir,
    )
}

/// Loads a LLaMA model from an HF folder (`config.json` + safetensors / `.bin`).
pub fn load_llama<B: Backend>(
    dir: impl AsRef<Path>,
    device: &B::Device,
) -> Result<(LlamaForCausalLM<B>, LlamaConfig)> {
    weights::load_with_folder_config(dir.as_ref(), LlamaConfig::from_file, |dir, config| {
        load_llama_checkpoint(config, weights::read_checkpoint(dir)?, device)
    })
}

/// Builds a model from `config` and assigns every tensor of `checkpoint`, strictly: a missing,
/// unexpected or wrongly-shaped tensor is an error naming it. Tolerated, as in `transformers`:
/// `lm_head.weight` when embeddings are tied (a copy of the embeddings) and the old
/// `rotary_emb.inv_freq` buffers.
pub fn load_llama_checkpoint<B: Backend>(
    config: &LlamaConfig,
    checkpoint: Checkpoint,
    device: &B::Device,
) -> Result<LlamaForCausalLM<B>> {
    let model = LlamaForCausalLM::new_lazy(config, device)?;
    let tensors: BTreeMap<_, _> = checkpoint
        .tensors
        .into_iter()
        .filter(|(name, _)| {
            let tied_copy = config.tie_word_embeddings && name == "lm_head.weight";
            !(tied_copy || name.ends_with("rotary_emb.inv_freq"))
        })
        .collect();
    Ok(params::materialize(params::set_tensors(
        model,
        &tensors,
        Coverage::All,
        device,
    )?))
}
