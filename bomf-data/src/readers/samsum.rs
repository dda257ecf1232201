//! SAMSum JSON reader: a JSON array of `{"id", "dialogue", "summary"}` objects.
//!
//! Inputs are `[dialogue]`, the target is the reference summary. A file without `summary`
//! fields (an unlabelled test export) must be read with `labelled = false`.

use std::path::Path;

use serde_json::Value;

use crate::error::{DataError, Location, Result};
use crate::readers::{json_scalar_text, json_str, json_type_name, parse_json_document};
use crate::task::{Dataset, Example, Target, Task};

/// Reads a SAMSum file; with `labelled`, every record must have a `summary`.
pub fn read_samsum(path: &Path, labelled: bool) -> Result<Dataset> {
    let document: Value = parse_json_document(path)?;
    let records = match document {
        Value::Array(records) => records,
        other => {
            return Err(DataError::malformed(
                Location::file(path),
                format!(
                    "SAMSum files are a JSON array of records, found {}",
                    json_type_name(&other)
                ),
            ));
        }
    };
    let mut examples = Vec::with_capacity(records.len());
    for (i, record) in records.iter().enumerate() {
        let at = Location::record(path, format!("[{i}]"));
        let Value::Object(obj) = record else {
            return Err(DataError::malformed(
                at,
                format!("expected an object, found {}", json_type_name(record)),
            ));
        };
        let id = match obj.get("id") {
            Some(v) => json_scalar_text(v, "id", &at)?,
            None => format!("{i}"),
        };
        let dialogue = json_str(obj, "dialogue", &at)?.to_string();
        let target = if labelled {
            Some(Target::Text(vec![
                json_str(obj, "summary", &at)?.to_string(),
            ]))
        } else {
            None
        };
        examples.push(Example {
            id,
            inputs: vec![dialogue],
            options: Vec::new(),
            target,
        });
    }
    let dataset = Dataset {
        task: Task::samsum(),
        examples,
    };
    dataset.ensure_not_empty(&format!("{}", path.display()))?;
    Ok(dataset)
}
