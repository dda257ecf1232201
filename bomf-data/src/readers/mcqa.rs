//! Multiple-choice QA JSONL reader (KorMedMCQA-style).
//!
//! Each line is an object with a question, its options and the correct answer. Options come
//! as a list field (`"options": ["…", "…"]`), as named fields in order (`option_fields`, e.g.
//! MMLU's `answer_a` … `answer_d`), or as letter fields `"A"`, `"B"`, … (as in KorMedMCQA), read
//! from `A` until the first missing letter. The answer may be a letter
//! (`"C"`), or an integer counted from [`McqaConfig::answer_base`] (KorMedMCQA counts from 1).

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{DataError, Location, Result};
use crate::readers::tabular::{RowFilter, TabularFormat, default_id, read_rows_kept};
use crate::readers::{json_scalar_text, json_str, json_type_name};
use crate::task::{Dataset, Example, Target, Task};

/// Field names and answer convention of an MCQA file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McqaConfig {
    pub name: String,
    pub question_field: String,
    /// List-valued options field; when absent from a record, letter fields `A`, `B`, … are used.
    pub options_field: String,
    /// The options in these fields, in order (the answer letter `A` is the first): for files
    /// that spell each option as its own field, such as MMLU's `answer_a` … `answer_d`.
    pub option_fields: Option<Vec<String>>,
    pub answer_field: String,
    /// What integer answers count from: 0 (`answer: 0` is the first option) or 1 (KorMedMCQA).
    pub answer_base: u8,
    /// Optional id field; the line number is used otherwise.
    pub id_field: Option<String>,
}

impl Default for McqaConfig {
    fn default() -> Self {
        Self {
            name: "mcqa".into(),
            question_field: "question".into(),
            options_field: "options".into(),
            option_fields: None,
            answer_field: "answer".into(),
            answer_base: 0,
            id_field: None,
        }
    }
}

impl McqaConfig {
    /// KorMedMCQA's layout: options in fields `A`–`E`, `answer` counted from 1.
    pub fn kormedmcqa(name: &str) -> Self {
        Self {
            name: name.into(),
            answer_base: 1,
            ..Self::default()
        }
    }
}

const LETTERS: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// Reads an MCQA JSONL file: the questions that `keep` keeps (all of them without a filter).
pub fn read_mcqa_jsonl(
    path: &Path,
    config: &McqaConfig,
    keep: Option<&RowFilter>,
) -> Result<Dataset> {
    if config.answer_base > 1 {
        return Err(DataError::InvalidConfig(format!(
            "answer_base must be 0 or 1, got {}",
            config.answer_base
        )));
    }
    let rows = read_rows_kept(path, TabularFormat::Jsonl, keep)?;
    let mut examples = Vec::with_capacity(rows.len());
    for row in &rows {
        let at = &row.at;
        let question = json_str(&row.fields, &config.question_field, at)?.to_string();
        let options = read_options(&row.fields, config, at)?;
        let answer =
            row.fields
                .get(&config.answer_field)
                .ok_or_else(|| DataError::MissingColumn {
                    at: at.clone(),
                    column: config.answer_field.clone(),
                })?;
        let correct = resolve_answer(answer, options.len(), config, at)?;
        let scores = (0..options.len())
            .map(|i| if i == correct { 1.0 } else { 0.0 })
            .collect();
        let id = match &config.id_field {
            Some(f) => {
                let v = row.fields.get(f).ok_or_else(|| DataError::MissingColumn {
                    at: at.clone(),
                    column: f.clone(),
                })?;
                json_scalar_text(v, f, at)?
            }
            None => default_id(at),
        };
        examples.push(Example {
            id,
            inputs: vec![question],
            options,
            target: Some(Target::Choice(scores)),
        });
    }
    Ok(Dataset {
        task: Task::mcqa(config.name.clone()),
        examples,
    })
}

fn read_options(
    fields: &serde_json::Map<String, Value>,
    config: &McqaConfig,
    at: &Location,
) -> Result<Vec<String>> {
    if let Some(names) = &config.option_fields {
        let options = names
            .iter()
            .map(|name| match fields.get(name) {
                Some(v) => json_scalar_text(v, name, at),
                None => Err(DataError::MissingColumn {
                    at: at.clone(),
                    column: name.clone(),
                }),
            })
            .collect::<Result<Vec<_>>>()?;
        return at_least_two(options, at);
    }
    let options: Vec<String> = match fields.get(&config.options_field) {
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| json_scalar_text(v, &format!("{}[{i}]", config.options_field), at))
            .collect::<Result<_>>()?,
        Some(other) => {
            return Err(DataError::WrongType {
                at: at.clone(),
                field: config.options_field.clone(),
                expected: "a list of options",
                found: json_type_name(other),
            });
        }
        None => {
            let mut letters = Vec::new();
            for letter in LETTERS.chars() {
                match fields.get(&letter.to_string()) {
                    Some(v) => letters.push(json_scalar_text(v, &letter.to_string(), at)?),
                    None => break,
                }
            }
            if letters.is_empty() {
                return Err(DataError::MissingColumn {
                    at: at.clone(),
                    column: format!("{} (or letter fields A, B, ...)", config.options_field),
                });
            }
            letters
        }
    };
    at_least_two(options, at)
}

fn at_least_two(options: Vec<String>, at: &Location) -> Result<Vec<String>> {
    if options.len() < 2 {
        return Err(DataError::malformed(
            at.clone(),
            format!(
                "a question needs at least 2 options, found {}",
                options.len()
            ),
        ));
    }
    Ok(options)
}

fn resolve_answer(
    answer: &Value,
    n_options: usize,
    config: &McqaConfig,
    at: &Location,
) -> Result<usize> {
    let known = || {
        LETTERS
            .chars()
            .take(n_options)
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
    };
    let unknown = |label: String| DataError::UnknownLabel {
        at: at.clone(),
        label,
        known: known(),
    };
    let from_int = |i: i64| -> Result<usize> {
        usize::try_from(i - i64::from(config.answer_base))
            .ok()
            .filter(|&k| k < n_options)
            .ok_or_else(|| unknown(format!("{i} (counted from {})", config.answer_base)))
    };
    match answer {
        Value::Number(n) => match n.as_i64() {
            Some(i) => from_int(i),
            None => Err(unknown(n.to_string())),
        },
        Value::String(s) => {
            let s = s.trim();
            if s.len() == 1
                && let Some(pos) = LETTERS.find(s)
            {
                return if pos < n_options {
                    Ok(pos)
                } else {
                    Err(unknown(s.to_string()))
                };
            }
            match s.parse::<i64>() {
                Ok(i) => from_int(i),
                Err(_) => Err(unknown(s.to_string())),
            }
        }
        other => Err(DataError::WrongType {
            at: at.clone(),
            field: config.answer_field.clone(),
            expected: "a letter or an integer",
            found: json_type_name(other),
        }),
    }
}
