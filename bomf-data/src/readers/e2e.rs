//! E2E NLG challenge CSV reader (`mr`, `ref` columns; the test file may have `MR` only).
//!
//! The files repeat a meaning representation (MR) once per human reference; the reader groups
//! all references of the same MR into one example (in order of first appearance), because
//! BLEU/ROUGE for E2E are computed against every reference of an MR.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use crate::error::{DataError, Result};
use crate::readers::json_scalar_text;
use crate::readers::tabular::{TabularFormat, read_rows};
use crate::task::{Dataset, Example, Target, Task};

/// Reads an E2E CSV file. Column names are matched case-insensitively. Without a `ref` column the
/// examples are unlabelled.
pub fn read_e2e_csv(path: &Path) -> Result<Dataset> {
    let rows = read_rows(path, TabularFormat::Csv)?;
    let find = |fields: &serde_json::Map<String, Value>, name: &str| -> Option<String> {
        fields
            .keys()
            .find(|k| k.eq_ignore_ascii_case(name))
            .cloned()
    };
    let first = &rows[0];
    let mr_key = find(&first.fields, "mr").ok_or_else(|| DataError::MissingColumn {
        at: first.at.clone(),
        column: "mr".into(),
    })?;
    let ref_key = find(&first.fields, "ref");

    let mut index_of_mr: HashMap<String, usize> = HashMap::new();
    let mut examples: Vec<Example> = Vec::new();
    for row in &rows {
        let mr_value = row
            .fields
            .get(&mr_key)
            .ok_or_else(|| DataError::MissingColumn {
                at: row.at.clone(),
                column: mr_key.clone(),
            })?;
        let mr = json_scalar_text(mr_value, &mr_key, &row.at)?;
        let reference = match &ref_key {
            Some(key) => {
                let v = row
                    .fields
                    .get(key)
                    .ok_or_else(|| DataError::MissingColumn {
                        at: row.at.clone(),
                        column: key.clone(),
                    })?;
                Some(json_scalar_text(v, key, &row.at)?)
            }
            None => None,
        };
        let slot = *index_of_mr.entry(mr.clone()).or_insert_with(|| {
            examples.push(Example {
                id: format!("mr{}", examples.len()),
                inputs: vec![mr],
                options: Vec::new(),
                target: ref_key.as_ref().map(|_| Target::Text(Vec::new())),
            });
            examples.len() - 1
        });
        if let (Some(reference), Some(Target::Text(refs))) =
            (reference, examples[slot].target.as_mut())
        {
            refs.push(reference);
        }
    }
    Ok(Dataset {
        task: Task::e2e_nlg(),
        examples,
    })
}
