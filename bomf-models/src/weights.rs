//! Reading Hugging Face checkpoints into our models, strictly.
//!
//! A folder holds `model.safetensors`, or shards listed in `model.safetensors.index.json`, or a
//! PyTorch `pytorch_model.bin` (read by burn-store's pure-Rust pickle reader, no libtorch). Every
//! tensor is converted to f32 (F16/BF16/F64 weights included) in HF's layout ([`HfTensor`]), then
//! assigned by name through [`crate::params::set_tensors`].
//!
//! Strictness is the point: a tensor the model needs but the checkpoint lacks, one the checkpoint
//! has but the model has no place for, one with the wrong shape, a weight stored with an integer
//! dtype, or one holding NaN or infinity is an error naming it. The only
//! tolerated differences are the ones `transformers` itself expects and are listed in the
//! returned [`LoadReport`]:
//! - buffers (`embeddings.position_ids`, `embeddings.token_type_ids`), which are not parameters;
//! - heads the model does not have (`cls.*`, `lm_head.*`, another task's `classifier` /
//!   `qa_outputs`, a pooler the task does not use) — ignored;
//! - the task head (or the pooler) missing *as a whole*, as when fine-tuning starts from a base
//!   checkpoint — freshly initialised. A partially present head is an error.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

use crate::bert::{BertConfig, BertWithHead, Task};
use crate::error::{ModelError, Result};
use crate::hf_json;
use crate::params::{self, Coverage, HfNamed, HfTensor};

/// File names `transformers` uses for weights.
pub const SAFETENSORS_FILE: &str = "model.safetensors";
pub const SAFETENSORS_INDEX_FILE: &str = "model.safetensors.index.json";
pub const PYTORCH_FILE: &str = "pytorch_model.bin";

/// All tensors of a checkpoint, f32, HF names and layout.
#[derive(Debug, Clone, Default)]
pub struct Checkpoint {
    pub tensors: BTreeMap<String, HfTensor>,
}

/// Reads the weights of an HF model folder (safetensors preferred, then a sharded index, then
/// `pytorch_model.bin`).
pub fn read_checkpoint(dir: impl AsRef<Path>) -> Result<Checkpoint> {
    let dir = dir.as_ref();
    let single = dir.join(SAFETENSORS_FILE);
    let index = dir.join(SAFETENSORS_INDEX_FILE);
    let pytorch = dir.join(PYTORCH_FILE);
    if single.is_file() {
        read_safetensors(&single)
    } else if index.is_file() {
        read_sharded_safetensors(&index)
    } else if pytorch.is_file() {
        read_pytorch(&pytorch)
    } else {
        Err(ModelError::NoWeights {
            dir: dir.to_path_buf(),
        })
    }
}

/// `data` of tensor `name` as read: an error at its first NaN or infinity.
fn check_finite(name: &str, data: &[f32]) -> Result<()> {
    match data.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(index) => Err(ModelError::NonFinite {
            name: name.to_string(),
            index,
            value: data[index],
        }),
    }
}

/// Refuses an integer `dtype` for a tensor that is not a buffer.
fn check_integer_is_buffer(name: &str, dtype: impl std::fmt::Debug) -> Result<()> {
    if is_buffer(name) {
        Ok(())
    } else {
        Err(ModelError::IntegerWeight {
            name: name.to_string(),
            dtype: format!("{dtype:?}"),
        })
    }
}

fn to_f32(name: &str, dtype: Dtype, bytes: &[u8]) -> Result<Vec<f32>> {
    fn chunks<const N: usize>(bytes: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
        bytes.chunks_exact(N).map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            a
        })
    }
    if matches!(dtype, Dtype::I64 | Dtype::I32) {
        check_integer_is_buffer(name, dtype)?;
    }
    let data: Vec<f32> = match dtype {
        Dtype::F32 => chunks::<4>(bytes).map(f32::from_le_bytes).collect(),
        Dtype::F16 => chunks::<2>(bytes)
            .map(|b| half::f16::from_le_bytes(b).to_f32())
            .collect(),
        Dtype::BF16 => chunks::<2>(bytes)
            .map(|b| half::bf16::from_le_bytes(b).to_f32())
            .collect(),
        Dtype::F64 => chunks::<8>(bytes)
            .map(|b| f64::from_le_bytes(b) as f32)
            .collect(),
        // Integer buffers (e.g. `position_ids`) are read so that they can be recognised and skipped.
        Dtype::I64 => chunks::<8>(bytes)
            .map(|b| i64::from_le_bytes(b) as f32)
            .collect(),
        Dtype::I32 => chunks::<4>(bytes)
            .map(|b| i32::from_le_bytes(b) as f32)
            .collect(),
        other => {
            return Err(ModelError::UnsupportedDtype {
                name: name.to_string(),
                dtype: format!("{other:?}"),
            });
        }
    };
    check_finite(name, &data)?;
    Ok(data)
}

/// Reads one `.safetensors` file.
pub fn read_safetensors(path: &Path) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| ModelError::WeightsFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut tensors = BTreeMap::new();
    for (name, view) in file.tensors() {
        let data = to_f32(&name, view.dtype(), view.data())?;
        tensors.insert(name, HfTensor::new(view.shape().to_vec(), data)?);
    }
    Ok(Checkpoint { tensors })
}

/// Reads the shards listed in a `model.safetensors.index.json`. The index and the shards must
/// agree: a listed tensor absent from its shard, or one stored in two shards, is an error.
pub fn read_sharded_safetensors(index_path: &Path) -> Result<Checkpoint> {
    let index: Value = hf_json::read(index_path)?;
    let bad = |message: String| ModelError::WeightsFile {
        path: index_path.to_path_buf(),
        message,
    };
    let weight_map = index
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("no `weight_map` object".into()))?;
    let mut by_shard: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (tensor, shard) in weight_map {
        let shard = shard
            .as_str()
            .ok_or_else(|| bad(format!("shard of `{tensor}` is not a file name")))?;
        if shard.contains('/') || shard.contains('\\') || shard.starts_with('.') {
            return Err(bad(format!(
                "shard name `{shard}` must be a plain file name"
            )));
        }
        by_shard
            .entry(shard.to_string())
            .or_default()
            .insert(tensor.clone());
    }
    let dir = index_path.parent().unwrap_or(Path::new("."));
    let mut tensors = BTreeMap::new();
    for (shard, listed) in by_shard {
        let shard_path = dir.join(&shard);
        let part = read_safetensors(&shard_path)?;
        if let Some(missing) = listed.iter().find(|n| !part.tensors.contains_key(*n)) {
            return Err(bad(format!(
                "`{missing}` is listed in `{shard}` but not stored there"
            )));
        }
        for (name, t) in part.tensors {
            if tensors.insert(name.clone(), t).is_some() {
                return Err(bad(format!("`{name}` is stored in more than one shard")));
            }
        }
    }
    Ok(Checkpoint { tensors })
}

/// Reads a PyTorch `.bin`/`.pt` state dict (zip or legacy format) with burn-store's reader.
pub fn read_pytorch(path: &Path) -> Result<Checkpoint> {
    let err = |message: String| ModelError::WeightsFile {
        path: path.to_path_buf(),
        message,
    };
    let reader = burn_store::pytorch::PytorchReader::new(path).map_err(|e| err(e.to_string()))?;
    let mut tensors = BTreeMap::new();
    for (name, snapshot) in reader.into_tensors() {
        if snapshot.dtype.is_int() {
            check_integer_is_buffer(&name, snapshot.dtype)?;
        }
        let shape = snapshot.shape.to_vec();
        let data = snapshot
            .to_data()
            .map_err(|e| err(format!("tensor `{name}`: {e:?}")))?
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| err(format!("tensor `{name}`: {e:?}")))?;
        check_finite(&name, &data)?;
        tensors.insert(name, HfTensor::new(shape, data)?);
    }
    Ok(Checkpoint { tensors })
}

/// What loading tolerated: tensors initialised fresh (absent from the checkpoint) and checkpoint
/// tensors ignored (buffers, heads this model does not have).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    pub freshly_initialised: Vec<String>,
    pub ignored: Vec<String>,
}

/// Top-level HF modules of a BERT/RoBERTa model with a head (after the base prefix is removed).
const HEAD_GROUPS: [&str; 2] = ["classifier", "qa_outputs"];
/// Pre-training heads `transformers` stores next to the encoder in base checkpoints.
const PRETRAINING_GROUPS: [&str; 2] = ["cls", "lm_head"];

fn is_buffer(name: &str) -> bool {
    name.ends_with("embeddings.position_ids") || name.ends_with("embeddings.token_type_ids")
}

/// Old TF-converted checkpoints name LayerNorm parameters `gamma`/`beta`; `transformers` renames
/// them on load, so do we.
fn modern_layer_norm_name(name: &str) -> String {
    if let Some(stem) = name.strip_suffix(".gamma") {
        format!("{stem}.weight")
    } else if let Some(stem) = name.strip_suffix(".beta") {
        format!("{stem}.bias")
    } else {
        name.to_string()
    }
}

/// The first component of an HF name once the base prefix is removed (`classifier`,
/// `embeddings`, `pooler`, ...).
fn group_of<'a>(name: &'a str, base_prefix: &str) -> &'a str {
    let rest = if base_prefix.is_empty() {
        name
    } else {
        name.strip_prefix(base_prefix)
            .and_then(|r| r.strip_prefix('.'))
            .unwrap_or(name)
    };
    rest.split('.').next().unwrap_or(rest)
}

/// Reads an HF folder's `config.json` with `read_config`, then loads the folder into the model
/// `load` builds from that config; returns the model with the config.
pub(crate) fn load_with_folder_config<C, M>(
    dir: &Path,
    read_config: impl FnOnce(PathBuf) -> Result<C>,
    load: impl FnOnce(&Path, &C) -> Result<M>,
) -> Result<(M, C)> {
    let config = read_config(dir.join("config.json"))?;
    let model = load(dir, &config)?;
    Ok((model, config))
}

/// [`load_with_folder_config`] for an encoder loader that also returns its [`LoadReport`]:
/// the model, the config and the report.
pub(crate) fn load_encoder_folder<C, M>(
    dir: &Path,
    read_config: impl FnOnce(PathBuf) -> Result<C>,
    load: impl FnOnce(&Path, &C) -> Result<(M, LoadReport)>,
) -> Result<(M, C, LoadReport)> {
    let ((model, report), config) = load_with_folder_config(dir, read_config, load)?;
    Ok((model, config, report))
}

/// Loads a BERT/RoBERTa model for `task` from an HF folder, reading its `config.json`.
pub fn load_bert<B: Backend>(
    dir: impl AsRef<Path>,
    task: Task,
    device: &B::Device,
) -> Result<(BertWithHead<B>, BertConfig, LoadReport)> {
    load_encoder_folder(dir.as_ref(), BertConfig::from_file, |dir, config| {
        load_bert_with_config(dir, config, task, device)
    })
}

/// Loads the weights of an HF folder into a model built from `config` (which may differ from the
/// folder's, e.g. another `num_labels` for a fresh head).
pub fn load_bert_with_config<B: Backend>(
    dir: impl AsRef<Path>,
    config: &BertConfig,
    task: Task,
    device: &B::Device,
) -> Result<(BertWithHead<B>, LoadReport)> {
    let checkpoint = read_checkpoint(dir)?;
    let model = BertWithHead::new_lazy(config, task, device);
    load_bert_checkpoint(model, checkpoint, device)
}

/// Assigns a checkpoint to a freshly built model under the rules in the module docs.
pub fn load_bert_checkpoint<B: Backend>(
    model: BertWithHead<B>,
    checkpoint: Checkpoint,
    device: &B::Device,
) -> Result<(BertWithHead<B>, LoadReport)> {
    load_encoder_checkpoint(model, checkpoint, &["bert", "roberta"], device)
}

/// [`load_bert_checkpoint`] for any encoder whose heads `transformers` names as BERT's
/// (`classifier`, `qa_outputs`, a `pooler`, pre-training `cls` / `lm_head`): `known_prefixes`
/// are the base-model prefixes of its family's checkpoints (`mpnet` for MPNet).
pub fn load_encoder_checkpoint<B: Backend, M: HfNamed<B>>(
    model: M,
    checkpoint: Checkpoint,
    known_prefixes: &[&str],
    device: &B::Device,
) -> Result<(M, LoadReport)> {
    let prefix = model.hf_base_prefix().to_string();
    let expected: BTreeMap<String, Vec<usize>> = params::param_shapes(&model).into_iter().collect();
    let model_groups: BTreeSet<&str> = expected.keys().map(|n| group_of(n, &prefix)).collect();

    // 1. Normalise names: modern LayerNorm names, and the base prefix added or removed the way
    //    `transformers` does when a base checkpoint feeds a model with a head or vice versa.
    let mut matched = BTreeMap::new();
    let mut report = LoadReport::default();
    let mut unexpected = Vec::new();
    for (stored_name, tensor) in checkpoint.tensors {
        let name = modern_layer_norm_name(&stored_name);
        let candidates: Vec<String> = if prefix.is_empty() {
            let stripped = known_prefixes
                .iter()
                .filter_map(|p| name.strip_prefix(p).and_then(|r| r.strip_prefix('.')))
                .map(str::to_string);
            std::iter::once(name.clone()).chain(stripped).collect()
        } else {
            vec![name.clone(), format!("{prefix}.{name}")]
        };
        if let Some(target) = candidates.into_iter().find(|c| expected.contains_key(c)) {
            if matched.insert(target.clone(), tensor).is_some() {
                return Err(ModelError::WeightsFile {
                    path: PathBuf::from(&stored_name),
                    message: format!(
                        "tensor `{target}` is stored twice (with and without the `{prefix}` prefix)"
                    ),
                });
            }
            continue;
        }
        // 2. Not a model parameter: tolerated only if transformers would also skip it.
        let group = group_of(&name, &prefix);
        let group = known_prefixes
            .iter()
            .find_map(|p| name.strip_prefix(p).and_then(|r| r.strip_prefix('.')))
            .map_or(group, |rest| rest.split('.').next().unwrap_or(rest));
        let foreign_head =
            (HEAD_GROUPS.contains(&group) || group == "pooler") && !model_groups.contains(group);
        if is_buffer(&name) || PRETRAINING_GROUPS.contains(&group) || foreign_head {
            report.ignored.push(stored_name);
        } else {
            unexpected.push(stored_name);
        }
    }
    if !unexpected.is_empty() {
        return Err(ModelError::UnexpectedTensors { names: unexpected });
    }

    // 3. Missing parameters: whole head groups (and a whole pooler) may be fresh; nothing else.
    let mut missing_by_group: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for name in expected.keys().filter(|n| !matched.contains_key(*n)) {
        missing_by_group
            .entry(group_of(name, &prefix))
            .or_default()
            .push(name.clone());
    }
    let mut hard_missing = Vec::new();
    for (group, names) in missing_by_group {
        let whole_group_absent = expected
            .keys()
            .filter(|n| group_of(n, &prefix) == group)
            .all(|n| !matched.contains_key(n));
        let may_be_fresh = HEAD_GROUPS.contains(&group) || group == "pooler";
        if may_be_fresh && whole_group_absent {
            report.freshly_initialised.extend(names);
        } else {
            hard_missing.extend(names);
        }
    }
    if !hard_missing.is_empty() {
        return Err(ModelError::MissingTensors {
            names: hard_missing,
        });
    }

    // Fresh parameters are materialised so that clones of the model share their values.
    let model = params::materialize(params::set_tensors(
        model,
        &matched,
        Coverage::Partial,
        device,
    )?);
    if !report.freshly_initialised.is_empty() {
        tracing::info!(tensors = ?report.freshly_initialised, "not in the checkpoint: freshly initialised");
    }
    if !report.ignored.is_empty() {
        tracing::info!(tensors = ?report.ignored, "checkpoint tensors not used by this model");
    }
    Ok((model, report))
}
