//! Generic JSONL / CSV / TSV reader driven by a [`ColumnMapping`] from config.
//!
//! Each row becomes one [`Example`]: the `text_columns` become its inputs, `label_column` its
//! target. The label set is either given in config or inferred as the sorted distinct label
//! values (numerically sorted when every label is an integer), so the same file always gives the
//! same class indices. JSONL and CSV share one code path: every row is first turned into a JSON
//! object (CSV cells become strings), then the mapping is applied.
//!
//! Three conventions, all explicit:
//! - A `.json`/`.jsonl` file whose first character (after a UTF-8 BOM and white space) is `[` is
//!   one JSON array of objects (what `json.dump(list_of_dicts)` and the `datasets` JSON loader
//!   read), not JSON lines.
//! - With the single text field `text`, a row that also has `text_pair` is a sentence pair (the
//!   `transformers` pipeline's input convention), so one file may mix single sentences and pairs.
//! - A [`RowFilter`] (`keep = { field = "...", values = [...] }` in a data spec) keeps only the
//!   rows whose field is one of the listed values; the others are left out on purpose (e.g. the
//!   `plot` rows of a review corpus, or the subjects of MMLU that a task does not use).

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{DataError, Location, Result};
use crate::readers::{LabelResolver, json_scalar_text, json_type_name, parse_score, read_text};
use crate::task::{Dataset, Example, Target, Task, TaskKind};

/// File format of a tabular file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TabularFormat {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated with a header row (RFC 4180 quoting).
    Csv,
    /// Tab-separated with a header row (RFC 4180 quoting).
    Tsv,
}

impl TabularFormat {
    /// Guesses the format from the file extension (`.jsonl`/`.json`, `.csv`, `.tsv`).
    pub fn from_path(path: &Path) -> Result<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        match ext.as_str() {
            "jsonl" | "json" | "ndjson" => Ok(Self::Jsonl),
            "csv" => Ok(Self::Csv),
            "tsv" => Ok(Self::Tsv),
            _ => Err(DataError::InvalidConfig(format!(
                "cannot tell the format of {} from its extension; set `format` to jsonl, csv or tsv",
                path.display()
            ))),
        }
    }
}

/// How the columns of a tabular file map onto a task (deserialised from the user's config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnMapping {
    /// Task name given to the dataset.
    #[serde(default = "default_name")]
    pub name: String,
    /// One column (single text) or two (text pair), in input order.
    pub text_columns: Vec<String>,
    /// Column holding the label; `None` for unlabelled files.
    #[serde(default)]
    pub label_column: Option<String>,
    /// Column holding a stable example id; `None` uses the line number.
    #[serde(default)]
    pub id_column: Option<String>,
    /// Real-valued targets instead of classes.
    #[serde(default)]
    pub regression: bool,
    /// The label set in class-index order; `None` infers it from the file (sorted).
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    /// File format; `None` guesses from the extension.
    #[serde(default)]
    pub format: Option<TabularFormat>,
    /// Only the rows this filter keeps; every row when `None`.
    #[serde(default)]
    pub keep: Option<RowFilter>,
}

fn default_name() -> String {
    "custom".into()
}

impl ColumnMapping {
    /// A classification mapping with the given text and label columns and an inferred label set.
    pub fn classification(text_columns: &[&str], label_column: &str) -> Self {
        Self {
            name: default_name(),
            text_columns: text_columns.iter().map(|s| s.to_string()).collect(),
            label_column: Some(label_column.to_string()),
            id_column: None,
            regression: false,
            labels: None,
            format: None,
            keep: None,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.text_columns.is_empty() || self.text_columns.len() > 2 {
            return Err(DataError::InvalidConfig(format!(
                "text_columns must name one or two columns, got {:?}",
                self.text_columns
            )));
        }
        if self.regression && self.labels.is_some() {
            return Err(DataError::InvalidConfig(
                "a regression mapping cannot have a label list".into(),
            ));
        }
        if let Some(labels) = &self.labels {
            let mut sorted = labels.clone();
            sorted.sort();
            sorted.dedup();
            if labels.is_empty() || sorted.len() != labels.len() {
                return Err(DataError::InvalidConfig(format!(
                    "labels must be distinct and non-empty, got {labels:?}"
                )));
            }
        }
        Ok(())
    }
}

/// Keeps the rows whose `field` has one of `values`, compared as text: a string (trimmed), an
/// integer or a boolean as written; `null` matches nothing. A row without the field is an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowFilter {
    /// The column (tabular) or field (JSON) compared.
    pub field: String,
    /// The values whose rows are kept.
    pub values: Vec<String>,
}

impl RowFilter {
    /// Refuses a filter that could keep nothing.
    pub fn validate(&self) -> Result<()> {
        if self.field.trim().is_empty() || self.values.is_empty() {
            return Err(DataError::InvalidConfig(format!(
                "`keep` needs a field and at least one value, got field {:?} and values {:?}",
                self.field, self.values
            )));
        }
        Ok(())
    }

    /// Whether `row` is kept.
    fn keeps(&self, row: &Row) -> Result<bool> {
        let text = match row.field(&self.field)? {
            Value::String(s) => s.trim().to_string(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => return Ok(false),
            other => {
                return Err(DataError::WrongType {
                    at: row.at.clone(),
                    field: self.field.clone(),
                    expected: "a string, number or boolean to filter on",
                    found: json_type_name(other),
                });
            }
        };
        Ok(self.values.iter().any(|v| v.trim() == text))
    }

    /// The rows kept; an error when none is.
    fn apply(&self, rows: Vec<Row>, path: &Path) -> Result<Vec<Row>> {
        self.validate()?;
        let mut kept = Vec::with_capacity(rows.len());
        for row in rows {
            if self.keeps(&row)? {
                kept.push(row);
            }
        }
        if kept.is_empty() {
            return Err(DataError::Empty {
                what: format!(
                    "{} after keeping the rows whose `{}` is one of {:?}",
                    path.display(),
                    self.field,
                    self.values
                ),
            });
        }
        Ok(kept)
    }
}

/// One parsed row and where it came from.
pub(crate) struct Row {
    pub at: Location,
    pub fields: Map<String, Value>,
}

impl Row {
    /// The value of `column`, or the error naming the column and this row's location.
    fn field(&self, column: &str) -> Result<&Value> {
        self.fields
            .get(column)
            .ok_or_else(|| DataError::MissingColumn {
                at: self.at.clone(),
                column: column.to_string(),
            })
    }
}

/// The id of a row without an id column: its line, or its index in a JSON array.
pub(crate) fn default_id(at: &Location) -> String {
    match (&at.line, &at.record) {
        (Some(line), _) => format!("line{line}"),
        (None, Some(record)) => format!("item{record}"),
        (None, None) => "item".to_string(),
    }
}

/// Reads the rows of a JSONL/CSV/TSV file that `keep` keeps (every row without a filter).
pub(crate) fn read_rows_kept(
    path: &Path,
    format: TabularFormat,
    keep: Option<&RowFilter>,
) -> Result<Vec<Row>> {
    let rows = read_rows(path, format)?;
    match keep {
        Some(filter) => filter.apply(rows, path),
        None => Ok(rows),
    }
}

/// Reads every row of a JSONL/CSV/TSV file as a JSON object (CSV cells become strings).
pub(crate) fn read_rows(path: &Path, format: TabularFormat) -> Result<Vec<Row>> {
    let rows = match format {
        TabularFormat::Jsonl => read_jsonl_rows(path)?,
        TabularFormat::Csv => read_csv_rows(path, b',')?,
        TabularFormat::Tsv => read_csv_rows(path, b'\t')?,
    };
    if rows.is_empty() {
        return Err(DataError::Empty {
            what: format!("{}", path.display()),
        });
    }
    Ok(rows)
}

fn read_jsonl_rows(path: &Path) -> Result<Vec<Row>> {
    let text = read_text(path)?;
    if text.trim_start().starts_with('[') {
        return read_json_array_rows(path, &text);
    }
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let at = Location::line(path, i + 1);
        // Blank lines carry no record (a trailing newline, an editor's last empty line).
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line).map_err(|source| DataError::Json {
            at: at.clone(),
            source,
        })?;
        match value {
            Value::Object(fields) => rows.push(Row { at, fields }),
            other => {
                return Err(DataError::malformed(
                    at,
                    format!(
                        "each JSONL line must be a JSON object, found {}",
                        json_type_name(&other)
                    ),
                ));
            }
        }
    }
    Ok(rows)
}

/// A JSON array of objects; each element's location is its index (`[3]`).
fn read_json_array_rows(path: &Path, text: &str) -> Result<Vec<Row>> {
    let items: Vec<Value> = serde_json::from_str(text).map_err(|source| DataError::Json {
        at: Location::line(path, 1),
        source,
    })?;
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let at = Location::record(path, format!("[{i}]"));
            match item {
                Value::Object(fields) => Ok(Row { at, fields }),
                other => Err(DataError::malformed(
                    at,
                    format!(
                        "each element of a JSON array file must be an object, found {}",
                        json_type_name(&other)
                    ),
                )),
            }
        })
        .collect()
}

fn read_csv_rows(path: &Path, delimiter: u8) -> Result<Vec<Row>> {
    let text = read_text(path)?;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|source| DataError::Csv {
            at: Location::line(path, 1),
            source,
        })?
        .iter()
        .map(|h| h.trim().to_string())
        .collect::<Vec<_>>();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|source| {
            let line = source.position().map(|p| p.line() as usize).unwrap_or(0);
            DataError::Csv {
                at: Location::line(path, line),
                source,
            }
        })?;
        let line = record.position().map(|p| p.line() as usize).unwrap_or(0);
        let fields = headers
            .iter()
            .cloned()
            .zip(record.iter().map(|c| Value::String(c.to_string())))
            .collect();
        rows.push(Row {
            at: Location::line(path, line),
            fields,
        });
    }
    Ok(rows)
}

/// Reads a JSONL/CSV/TSV file with the given column mapping.
pub fn read_tabular(path: &Path, mapping: &ColumnMapping) -> Result<Dataset> {
    mapping.validate()?;
    let format = match mapping.format {
        Some(f) => f,
        None => TabularFormat::from_path(path)?,
    };
    let rows = read_rows_kept(path, format, mapping.keep.as_ref())?;

    let kind = if mapping.regression {
        TaskKind::Regression
    } else {
        let labels = match (&mapping.labels, &mapping.label_column) {
            (Some(labels), _) => labels.clone(),
            (None, Some(column)) => infer_labels(&rows, column)?,
            (None, None) => {
                return Err(DataError::InvalidConfig(format!(
                    "{}: an unlabelled classification file needs `labels` in the mapping",
                    path.display()
                )));
            }
        };
        TaskKind::Classification { labels }
    };
    let task = Task {
        name: mapping.name.clone(),
        kind,
        input_fields: mapping.text_columns.clone(),
        metrics: Vec::new(),
    };
    let examples = rows_to_examples(&rows, mapping, &task)?;
    Ok(Dataset { task, examples })
}

/// Applies the mapping to parsed rows for an already-built task (shared with the GLUE exports).
pub(crate) fn rows_to_examples(
    rows: &[Row],
    mapping: &ColumnMapping,
    task: &Task,
) -> Result<Vec<Example>> {
    let resolver = LabelResolver::new(task.labels());
    let mut examples = Vec::with_capacity(rows.len());
    for row in rows {
        let at = &row.at;
        let mut inputs = Vec::with_capacity(mapping.text_columns.len());
        for column in &mapping.text_columns {
            let value = row.field(column)?;
            inputs.push(json_scalar_text(value, column, at)?);
        }
        if let Some(pair) = implicit_text_pair(row, mapping) {
            inputs.push(json_scalar_text(pair, TEXT_PAIR, at)?);
        }
        let id = match &mapping.id_column {
            Some(column) => {
                let value = row.field(column)?;
                json_scalar_text(value, column, at)?
            }
            None => default_id(at),
        };
        let target = match &mapping.label_column {
            None => None,
            Some(column) => {
                let value = row.field(column)?;
                if let TaskKind::Regression = task.kind {
                    Some(Target::Score(json_score(value, column, at)?))
                } else {
                    resolver.resolve_json(value, at)?.map(Target::Class)
                }
            }
        };
        examples.push(Example {
            id,
            inputs,
            options: Vec::new(),
            target,
        });
    }
    Ok(examples)
}

/// The second text of a sentence pair in the `transformers` pipeline's convention.
const TEXT_PAIR: &str = "text_pair";

/// With the single text field `text`, a row that also has a non-null `text_pair` is a sentence
/// pair (the `transformers` text-classification pipeline's input convention), row by row: a
/// file may mix single sentences and pairs. Naming both fields in `text_fields` makes every row
/// a pair instead.
fn implicit_text_pair<'a>(row: &'a Row, mapping: &ColumnMapping) -> Option<&'a Value> {
    (mapping.text_columns == ["text"])
        .then(|| row.fields.get(TEXT_PAIR))
        .flatten()
        .filter(|v| !v.is_null())
}

fn json_score(value: &Value, field: &str, at: &Location) -> Result<f64> {
    match value {
        Value::Number(n) => {
            n.as_f64()
                .filter(|v| v.is_finite())
                .ok_or_else(|| DataError::WrongType {
                    at: at.clone(),
                    field: field.into(),
                    expected: "a finite number",
                    found: n.to_string(),
                })
        }
        Value::String(s) => parse_score(s, field, at),
        other => Err(DataError::WrongType {
            at: at.clone(),
            field: field.into(),
            expected: "a number",
            found: json_type_name(other),
        }),
    }
}

/// The distinct label spellings of a column, sorted numerically if all are integers, else
/// lexicographically.
fn infer_labels(rows: &[Row], column: &str) -> Result<Vec<String>> {
    let mut labels = Vec::new();
    for row in rows {
        let value = row.field(column)?;
        let text = match value {
            Value::String(s) => s.trim().to_string(),
            Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => {
                return Err(DataError::WrongType {
                    at: row.at.clone(),
                    field: column.to_string(),
                    expected: "a label (string, integer or boolean)",
                    found: json_type_name(other),
                });
            }
        };
        labels.push(text);
    }
    labels.sort();
    labels.dedup();
    if labels.iter().all(|l| l.parse::<i64>().is_ok()) {
        labels.sort_by_key(|l| l.parse::<i64>().unwrap_or_default());
    }
    Ok(labels)
}
