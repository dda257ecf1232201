//! Fusion of checkpoints of any architecture, streamed tensor by tensor over safetensors.
//!
//! For every floating-point tensor `t`, the output holds
//!
//! ```text
//! θ_t(w) = Σ_k w_k θ_{k,t}        (accumulated in f32, in checkpoint order)
//! ```
//!
//! written in the inputs' dtype (or the one asked for). No model code is involved, so any
//! Hugging Face model folder fuses: LLaMA, Qwen2, Mistral, Gemma, BERT, T5, and architectures bomf
//! does not implement. Memory is one f32 accumulator, one read buffer and one output buffer of
//! the largest tensor, whatever K and the model size.
//!
//! Conventions (each documented because an input field is never silently dropped):
//! - **Inputs** ([`resolve`]): a model folder (`model.safetensors`, a sharded
//!   `model.safetensors.index.json`, a peft `adapter_model.safetensors`, or their `.bin`
//!   counterparts), or a training output
//!   folder whose `checkpoint-<step>` subfolders are taken in step order (weights saved at its top
//!   level are not added; name that folder's model separately to include it).
//! - **Checks before any work** ([`CheckpointSet::open`]): every checkpoint has the same tensor
//!   names, dtypes and shapes as the first; the error names the first tensor that differs.
//! - **Non-float tensors** (integer buffers such as position ids, booleans) are not averaged: they
//!   must be byte-identical across checkpoints and are copied.
//! - **Non-finite values** in an input, or a fused value that overflows the output dtype, are
//!   errors naming the tensor.
//! - **peft adapters** fuse A and B separately (`Σ w_k A_k`, `Σ w_k B_k`), which is the fusion of
//!   the adapter parameters, not of the updates `B_k A_k`.
//! - **Output**: the first checkpoint's layout (same shard files, same tensor order, the index
//!   rewritten with the new total size) and every other file of its folder (config, tokenizer,
//!   generation config, chat template, adapter config), except weights and training state
//!   ([`is_training_state`]). Subfolders are not copied. The folder appears whole or not at all
//!   ([`crate::rundir::StagedDir`]).
//! - **`.bin` (pickle) weights** (`pytorch_model.bin`, sharded behind
//!   `pytorch_model.bin.index.json`, or `adapter_model.bin`) are read with burn-store's Rust
//!   unpickler, which rebuilds tensors and runs no code, one tensor at a time; the output is
//!   safetensors under the names transformers gives them (`model.safetensors`, …).

mod layout;
mod stream;

use std::path::{Path, PathBuf};

use thiserror::Error;

pub use layout::{
    ADAPTER_FILE, INDEX_FILE, Layout, PICKLE_INDEX_FILE, SINGLE_FILE, TensorEntry, WeightFile,
};
pub use stream::{MergeOptions, MergeSummary, OutDtype, is_training_state, merge};

use crate::rundir::RunDirError;

/// What can go wrong while reading, checking or fusing checkpoints. Every variant names the file
/// or the tensor.
#[derive(Debug, Error)]
pub enum MergeError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{dir} holds no model weights (looked for model.safetensors, model.safetensors.index.json, \
         adapter_model.safetensors and their .bin counterparts) and no checkpoint-<step> \
         subfolders with them"
    )]
    NoWeights { dir: PathBuf },
    #[error("{path}: not a valid weight file: {reason}")]
    BadHeader { path: PathBuf, reason: String },
    #[error(
        "{path}: truncated or padded: its header needs {expected} bytes, the file has {actual}"
    )]
    Truncated {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("tensor {tensor} is missing from {path}")]
    MissingTensor { tensor: String, path: PathBuf },
    #[error(
        "checkpoints do not match at tensor {tensor}: {first} has {first_has}, {other} has {other_has}"
    )]
    Mismatch {
        tensor: String,
        first: PathBuf,
        first_has: String,
        other: PathBuf,
        other_has: String,
    },
    #[error(
        "tensor {tensor} ({dtype}) differs between {first} and {other}; tensors that are not floating point are copied, not fused, so they must be equal"
    )]
    NonFloatDiffers {
        tensor: String,
        dtype: String,
        first: PathBuf,
        other: PathBuf,
    },
    #[error(
        "tensor {tensor} has dtype {dtype}, which bomf does not fuse (F32, F16 and BF16 are fused; integer and boolean tensors are copied)"
    )]
    UnsupportedDtype { tensor: String, dtype: String },
    #[error("tensor {tensor} holds a NaN or infinite value in {path}")]
    NonFinite { tensor: String, path: PathBuf },
    #[error("tensor {tensor}: the fused value overflows {dtype}; write F32 instead")]
    Overflow { tensor: String, dtype: String },
    #[error("{0}")]
    Weights(String),
    #[error("nothing to fuse: no checkpoints were given")]
    Empty,
    #[error(transparent)]
    Output(#[from] RunDirError),
}

impl MergeError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, MergeError>;

/// One checkpoint: its folder, a short label for reports, and its weight layout.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub dir: PathBuf,
    pub label: String,
    pub layout: Layout,
}

/// Checkpoints checked to have the same tensors, dtypes and shapes.
#[derive(Debug, Clone)]
pub struct CheckpointSet {
    pub checkpoints: Vec<Checkpoint>,
}

/// The checkpoint folders that `paths` stand for, in order (see the module docs).
pub fn resolve(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for path in paths {
        if !path.is_dir() {
            return Err(MergeError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "not a folder"),
            ));
        }
        let steps = checkpoint_subfolders(path)?;
        if !steps.is_empty() {
            dirs.extend(steps);
        } else if layout::has_weights(path) {
            dirs.push(path.clone());
        } else {
            return Err(MergeError::NoWeights { dir: path.clone() });
        }
    }
    Ok(dirs)
}

/// `checkpoint-<step>` subfolders of `dir` that hold weights, in step order.
fn checkpoint_subfolders(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| MergeError::io(dir, e))? {
        let path = entry.map_err(|e| MergeError::io(dir, e))?.path();
        let step = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("checkpoint-"))
            .and_then(|s| s.parse::<u64>().ok());
        if let Some(step) = step
            && path.is_dir()
            && layout::has_weights(&path)
        {
            found.push((step, path));
        }
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

impl CheckpointSet {
    /// Reads every checkpoint's headers and checks them against the first.
    pub fn open(dirs: &[PathBuf]) -> Result<Self> {
        let mut checkpoints = Vec::with_capacity(dirs.len());
        for dir in dirs {
            checkpoints.push(Checkpoint {
                dir: dir.clone(),
                label: dir.file_name().map_or_else(
                    || dir.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                ),
                layout: Layout::read(dir)?,
            });
        }
        let first = checkpoints.first().ok_or(MergeError::Empty)?;
        for other in &checkpoints[1..] {
            check_same(first, other)?;
        }
        Ok(Self { checkpoints })
    }

    /// The number of checkpoints, K.
    pub fn len(&self) -> usize {
        self.checkpoints.len()
    }

    /// Whether the set is empty (never, once opened).
    pub fn is_empty(&self) -> bool {
        self.checkpoints.is_empty()
    }

    /// The number of scalar parameters in one checkpoint.
    pub fn parameter_count(&self) -> u64 {
        self.checkpoints[0]
            .layout
            .tensors
            .values()
            .map(|t| t.shape.iter().product::<usize>() as u64)
            .sum()
    }
}

/// The first tensor whose presence, dtype or shape differs between `first` and `other`.
fn check_same(first: &Checkpoint, other: &Checkpoint) -> Result<()> {
    let describe = |t: &TensorEntry| format!("{:?} {:?}", t.dtype, t.shape);
    for (name, a) in &first.layout.tensors {
        let Some(b) = other.layout.tensors.get(name) else {
            return Err(MergeError::MissingTensor {
                tensor: name.clone(),
                path: other.dir.clone(),
            });
        };
        if a.dtype != b.dtype || a.shape != b.shape {
            return Err(MergeError::Mismatch {
                tensor: name.clone(),
                first: first.dir.clone(),
                first_has: describe(a),
                other: other.dir.clone(),
                other_has: describe(b),
            });
        }
    }
    if let Some(extra) = other
        .layout
        .tensors
        .keys()
        .find(|name| !first.layout.tensors.contains_key(*name))
    {
        return Err(MergeError::MissingTensor {
            tensor: extra.clone(),
            path: first.dir.clone(),
        });
    }
    Ok(())
}
