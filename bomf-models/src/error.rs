//! One error type for the crate. Every variant names what failed (file, config field, tensor) so a
//! user pointing bomf at their own Hugging Face folder can fix the input without reading our code.

use std::path::PathBuf;

use thiserror::Error;

/// Result alias used across `bomf-models`.
pub type Result<T> = std::result::Result<T, ModelError>;

#[derive(Debug, Error)]
pub enum ModelError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A JSON file (config.json, a shard index) is malformed or lacks a required field.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// A config.json field has a value we do not implement (rather than silently computing
    /// something else than `transformers` would).
    #[error("config field `{field}`: {message}")]
    UnsupportedConfig { field: String, message: String },

    /// The folder holds no weights file we can read.
    #[error("{dir}: no model.safetensors, model.safetensors.index.json or pytorch_model.bin found")]
    NoWeights { dir: PathBuf },

    /// A weights file is corrupt or uses a feature we cannot read.
    #[error("{path}: {message}")]
    WeightsFile { path: PathBuf, message: String },

    /// A stored tensor has a dtype we cannot convert to f32.
    #[error("tensor `{name}`: unsupported dtype {dtype}")]
    UnsupportedDtype { name: String, dtype: String },

    /// A weight stored with an integer dtype (only buffers such as `position_ids` are integers).
    #[error(
        "tensor `{name}` is stored as {dtype}: only buffers such as `embeddings.position_ids` \
         may be integers, a weight must be F32, F16, BF16 or F64 (a mislabelled or corrupt file?)"
    )]
    IntegerWeight { name: String, dtype: String },

    /// A weight holds NaN or infinity: a diverged or corrupt checkpoint.
    #[error(
        "tensor `{name}` holds a non-finite value ({value} at flat index {index}): the checkpoint diverged or is corrupt"
    )]
    NonFinite {
        name: String,
        index: usize,
        value: f32,
    },

    /// The model needs a tensor the checkpoint does not have.
    #[error("missing tensor(s) in checkpoint: {}", names.join(", "))]
    MissingTensors { names: Vec<String> },

    /// The checkpoint has tensors the model has no place for.
    #[error("unexpected tensor(s) in checkpoint: {}", names.join(", "))]
    UnexpectedTensors { names: Vec<String> },

    /// A tensor exists on both sides but its shape differs.
    #[error("tensor `{name}`: checkpoint shape {found:?}, model expects {expected:?}")]
    ShapeMismatch {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },

    /// Model inputs that disagree with each other or with the model.
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// A tensor could not be read back from the device.
    #[error("tensor data: {0}")]
    TensorData(String),
}

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn unsupported(field: &str, message: impl Into<String>) -> Self {
        Self::UnsupportedConfig {
            field: field.to_string(),
            message: message.into(),
        }
    }
}
