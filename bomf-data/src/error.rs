//! Typed errors of the data layer.
//!
//! Every error that comes from user input names *where* the problem is (file and line, or a
//! JSON path inside the file) and *what* is wrong (the missing column, the unknown label, the
//! expected type), so a user can fix the file without reading our code. Nothing in this crate
//! panics or silently skips a record on bad input.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where in an input file a problem was found.
///
/// `line` is 1-based. For whole-document formats (SQuAD/SAMSum/BIG-bench JSON) the line is
/// unknown and `record` names the JSON path of the offending record instead
/// (e.g. `data[0].paragraphs[3].qas[1]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub record: Option<Box<str>>,
}

impl Location {
    /// A 1-based line of a line-oriented file (TSV, CSV, JSONL).
    pub fn line(path: &Path, line: usize) -> Self {
        Self {
            path: path.to_path_buf(),
            line: Some(line),
            record: None,
        }
    }

    /// A record inside a JSON document, named by its JSON path.
    pub fn record(path: &Path, record: impl Into<String>) -> Self {
        Self {
            path: path.to_path_buf(),
            line: None,
            record: Some(record.into().into_boxed_str()),
        }
    }

    /// The file as a whole.
    pub fn file(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            line: None,
            record: None,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(record) = &self.record {
            write!(f, " ({record})")?;
        }
        Ok(())
    }
}

/// Everything that can go wrong while reading, splitting, tokenising or batching data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A JSON document or JSON line that does not parse, or has the wrong shape for its format.
    #[error("{at}: invalid JSON: {source}")]
    Json {
        at: Location,
        #[source]
        source: serde_json::Error,
    },

    /// A CSV/TSV record the CSV parser rejects.
    #[error("{at}: invalid CSV: {source}")]
    Csv {
        at: Location,
        #[source]
        source: csv::Error,
    },

    /// A line or record that has the wrong structure (too few fields, bad option list, ...).
    #[error("{at}: malformed input: {message}")]
    Malformed { at: Location, message: String },

    /// A column (TSV/CSV header) or field (JSON key) the reader needs is absent.
    #[error("{at}: missing column `{column}`")]
    MissingColumn { at: Location, column: String },

    /// A field holds a value of the wrong type (e.g. a number where text is expected).
    #[error("{at}: field `{field}` should be {expected}, found {found}")]
    WrongType {
        at: Location,
        field: String,
        expected: &'static str,
        found: String,
    },

    /// A label that is not in the task's label set.
    #[error("{at}: unknown label `{label}` (the task's labels are {known:?})")]
    UnknownLabel {
        at: Location,
        label: String,
        known: Vec<String>,
    },

    /// A file, split or dataset with no examples where at least one is needed.
    #[error("{what} is empty")]
    Empty { what: String },

    /// A configuration value out of range (split fractions, batch size, max length, ...).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// `tokenizer.json` could not be loaded or used.
    #[error("tokenizer {context}: {message}")]
    Tokenizer { context: String, message: String },

    /// The tokenizer can produce ids the model has no embedding for.
    #[error(
        "tokenizer has {tokenizer_vocab} tokens (with added tokens) but the model's vocabulary has \
         {model_vocab}: ids would index past the embedding table; use the tokenizer.json that \
         belongs to this model"
    )]
    VocabMismatch {
        tokenizer_vocab: usize,
        model_vocab: usize,
    },

    /// A special token the model family needs is not in the tokenizer's vocabulary.
    #[error("tokenizer has no special token `{token}` needed for {family}")]
    MissingSpecialToken { token: String, family: String },

    /// An input longer than the maximum while truncation is disabled.
    #[error(
        "example {example} has {length} tokens, more than the maximum of {max_length}, and \
         truncation is disabled"
    )]
    TooLong {
        example: String,
        length: usize,
        max_length: usize,
    },

    /// The pipeline asked for something the task or model family does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),

    /// Examples in one batch or dataset whose targets have different kinds.
    #[error("inconsistent targets: {0}")]
    InconsistentTargets(String),

    /// A metric could not be computed.
    #[error(transparent)]
    Metric(#[from] crate::metrics::MetricError),

    /// A required asset (model, tokenizer, dataset) is not installed.
    #[error(transparent)]
    Asset(#[from] crate::assets::AssetError),
}

/// Result alias of the data layer.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

impl DataError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A malformed record at `at`.
    pub fn malformed(at: Location, message: impl Into<String>) -> Self {
        Self::Malformed {
            at,
            message: message.into(),
        }
    }
}
