//! One error type for the crate. Variants name what failed (a config field, a tensor, a
//! checkpoint index) so a caller can fix its input without reading our code.

use thiserror::Error;

/// Result alias used across `bomf-core`.
pub type Result<T> = std::result::Result<T, CoreError>;

#[derive(Debug, Error)]
pub enum CoreError {
    #[error(transparent)]
    Model(#[from] bomf_models::ModelError),

    #[error(transparent)]
    Data(#[from] bomf_data::DataError),

    #[error("metric: {0}")]
    Metric(#[from] bomf_data::metrics::MetricError),

    /// A configuration value is out of range or inconsistent; `field` names it.
    #[error("config field `{field}`: {message}")]
    InvalidConfig { field: String, message: String },

    /// A batch or dataset the model cannot consume (wrong target kind, empty split, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// Checkpoint `index` does not have the architecture of checkpoint 0.
    #[error("checkpoint {index}: {message}")]
    CheckpointMismatch { index: usize, message: String },

    /// A tensor could not be read back from the device.
    #[error("tensor data: {0}")]
    TensorData(String),

    #[error(transparent)]
    Bo(#[from] bomf_bo::BoError),

    /// Training produced a NaN/∞ loss or gradient before anything usable was kept.
    #[error(
        "training diverged: the loss or gradient norm was {value} at optimiser step {step}, \
         before any checkpoint worth keeping; try a lower learning rate (or clip gradients with \
         max_grad_norm)"
    )]
    Diverged { step: usize, value: f64 },

    /// The run was asked to stop (Ctrl-C); its state is saved and `--resume` continues it.
    #[error("interrupted; the run's state is saved, resume it to continue")]
    Interrupted,

    #[error(transparent)]
    RunDir(#[from] crate::rundir::RunDirError),

    /// Reading, checking or fusing checkpoints of any architecture (`bomf search`, streamed
    /// fusion).
    /// (Boxed: its variants name two checkpoints and a tensor, which would double the size of
    /// every `Result` of the crate.)
    #[error(transparent)]
    Merge(Box<crate::merge::MergeError>),

    /// A file of a run (trajectory manifest, checkpoint) could not be read or written.
    #[error("{path}: {message}")]
    File {
        path: std::path::PathBuf,
        message: String,
    },

    /// Writing `report.md` or drawing one of its plots.
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),

    /// What was asked of a model its family cannot do (LoRA on T5, a task a classifier cannot
    /// score, a `model_type` no family opens).
    #[error("{0}")]
    Unsupported(String),

    /// `source` with what was being done when it happened (which checkpoint, which file).
    #[error("{context}: {source}")]
    Context {
        context: String,
        source: Box<CoreError>,
    },
}

impl From<crate::merge::MergeError> for CoreError {
    fn from(err: crate::merge::MergeError) -> Self {
        Self::Merge(Box::new(err))
    }
}

/// [`CoreError::Context`] on results: `result.context(|| format!("checkpoint {i}"))`.
pub trait ResultExt<T> {
    fn context<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: Into<CoreError>> ResultExt<T> for std::result::Result<T, E> {
    fn context<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| CoreError::Context {
            context: context().into(),
            source: Box::new(e.into()),
        })
    }
}

impl CoreError {
    pub(crate) fn file(path: &std::path::Path, message: impl std::fmt::Display) -> Self {
        Self::File {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }

    pub(crate) fn config(field: &str, message: impl Into<String>) -> Self {
        Self::InvalidConfig {
            field: field.to_string(),
            message: message.into(),
        }
    }
}
