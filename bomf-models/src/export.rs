//! Writing a model as a Hugging Face folder that `transformers` loads unchanged:
//! `config.json` (the original config with our changes: labels, architectures),
//! `model.safetensors` (HF names and layout, f32, `format: pt` metadata as `save_pretrained`
//! writes it) and, when given, the tokenizer files copied alongside.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use safetensors::Dtype;
use safetensors::tensor::TensorView;

use crate::bert::{BertConfig, BertWithHead};
use crate::error::{ModelError, Result};
use crate::hf_json;
use crate::params::{self, HfNamed, HfTensor};
use crate::weights::SAFETENSORS_FILE;

/// Tokenizer files `transformers` may look for next to a model.
pub const TOKENIZER_FILES: [&str; 8] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "sentencepiece.bpe.model",
];

/// Writes `tensors` (HF names, HF layout) as an f32 safetensors file.
pub fn write_safetensors(path: &Path, tensors: &[(String, HfTensor)]) -> Result<()> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, t)| {
            let raw = t.data.iter().flat_map(|x| x.to_le_bytes()).collect();
            (name.clone(), t.shape.clone(), raw)
        })
        .collect();
    let mut views = Vec::with_capacity(bytes.len());
    for (name, shape, raw) in &bytes {
        let view = TensorView::new(Dtype::F32, shape.clone(), raw).map_err(|e| {
            ModelError::WeightsFile {
                path: path.to_path_buf(),
                message: format!("tensor `{name}`: {e}"),
            }
        })?;
        views.push((name.clone(), view));
    }
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views, Some(metadata), path).map_err(|e| {
        ModelError::WeightsFile {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    })
}

/// Copies the tokenizer files found in `source_dir` (any of [`TOKENIZER_FILES`]) into `out_dir`;
/// returns the copied paths.
pub fn copy_tokenizer_files(source_dir: &Path, out_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut copied = Vec::new();
    for name in TOKENIZER_FILES {
        let src = source_dir.join(name);
        if src.is_file() {
            let dst = out_dir.join(name);
            std::fs::copy(&src, &dst).map_err(|e| ModelError::io(&src, e))?;
            copied.push(dst);
        }
    }
    Ok(copied)
}

/// Exports a BERT/RoBERTa model (typically a fused one) as an HF folder. `tokenizer_dir`, when
/// given, is a folder whose tokenizer files are copied along.
pub fn export_bert<B: Backend>(
    model: &BertWithHead<B>,
    config: &BertConfig,
    out_dir: impl AsRef<Path>,
    tokenizer_dir: Option<&Path>,
) -> Result<()> {
    write_hf_folder(
        model,
        &config.to_hf_json(model.task()),
        out_dir.as_ref(),
        tokenizer_dir,
    )
}

/// Writes `out_dir/config.json` (`config_json`, pretty-printed), `model.safetensors` (the
/// model's tensors by HF name and layout) and, when `tokenizer_dir` is given, its tokenizer
/// files: the folder every family's export writes.
pub fn write_hf_folder<B: Backend, M: HfNamed<B>>(
    model: &M,
    config_json: &serde_json::Value,
    out_dir: &Path,
    tokenizer_dir: Option<&Path>,
) -> Result<()> {
    std::fs::create_dir_all(out_dir).map_err(|e| ModelError::io(out_dir, e))?;
    hf_json::write(&out_dir.join("config.json"), config_json)?;
    let tensors = params::named_tensors(model)?;
    write_safetensors(&out_dir.join(SAFETENSORS_FILE), &tensors)?;
    if let Some(dir) = tokenizer_dir {
        copy_tokenizer_files(dir, out_dir)?;
    }
    Ok(())
}
