//! GLUE readers: the official TSV files and JSONL/CSV exports of the HF `glue` dataset.
//!
//! The TSV files differ per task (the layout each task's download ships with):
//!
//! | task  | train/dev columns used                         | label            | test file            |
//! |-------|------------------------------------------------|------------------|----------------------|
//! | CoLA  | no header: source, label, orig, sentence       | `0`/`1`          | `index, sentence`    |
//! | SST-2 | `sentence`, `label`                            | `0`/`1`          | `index, sentence`    |
//! | MRPC  | `#1 String`, `#2 String`, `Quality`            | `0`/`1`          | no `Quality`         |
//! | STS-B | `sentence1`, `sentence2`, `score`              | float 0–5        | no `score`           |
//! | QQP   | `question1`, `question2`, `is_duplicate`       | `0`/`1`          | no `is_duplicate`    |
//! | MNLI  | `sentence1`, `sentence2`, `gold_label`         | names            | no label columns     |
//! | QNLI  | `question`, `sentence`, `label`                | names            | no `label`           |
//! | RTE   | `sentence1`, `sentence2`, `label`              | names            | no `label`           |
//!
//! MNLI has `dev_matched.tsv`/`dev_mismatched.tsv` and `test_matched.tsv`/`test_mismatched.tsv`.
//! Fields are split on tabs without any quote handling (the files contain unbalanced quotes);
//! a row with fewer fields than the header is a [`DataError::Malformed`] naming its line.

use std::path::{Path, PathBuf};

use crate::error::{DataError, Location, Result};
use crate::readers::tabular::{ColumnMapping, TabularFormat, read_rows, rows_to_examples};
use crate::readers::{LabelResolver, parse_score, read_text};
use crate::task::{Dataset, Example, GlueTask, Target};

/// Which GLUE file to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GlueSplit {
    Train,
    /// `dev.tsv`; for MNLI this means `dev_matched.tsv`.
    Dev,
    /// MNLI only: `dev_mismatched.tsv`.
    DevMismatched,
    /// `test.tsv` (unlabelled); for MNLI `test_matched.tsv`.
    Test,
    /// MNLI only: `test_mismatched.tsv`.
    TestMismatched,
}

impl GlueSplit {
    /// Whether files of this split carry labels.
    pub fn is_labelled(self) -> bool {
        matches!(
            self,
            GlueSplit::Train | GlueSplit::Dev | GlueSplit::DevMismatched
        )
    }
}

/// File name of a split inside the task's directory (`train.tsv`, `dev_matched.tsv`, ...).
pub fn glue_file_name(task: GlueTask, split: GlueSplit) -> Result<&'static str> {
    let mnli = task == GlueTask::Mnli;
    Ok(match (split, mnli) {
        (GlueSplit::Train, _) => "train.tsv",
        (GlueSplit::Dev, false) => "dev.tsv",
        (GlueSplit::Dev, true) => "dev_matched.tsv",
        (GlueSplit::DevMismatched, true) => "dev_mismatched.tsv",
        (GlueSplit::Test, false) => "test.tsv",
        (GlueSplit::Test, true) => "test_matched.tsv",
        (GlueSplit::TestMismatched, true) => "test_mismatched.tsv",
        (s, false) => {
            return Err(DataError::InvalidConfig(format!(
                "{s:?} exists only for MNLI, not {}",
                task.name()
            )));
        }
    })
}

/// Reads `<glue_dir>/<TaskDir>/<split file>`, e.g. `glue_data/MRPC/dev.tsv`.
pub fn read_glue_dir(glue_dir: &Path, task: GlueTask, split: GlueSplit) -> Result<Dataset> {
    let path: PathBuf = glue_dir
        .join(task.dir_name())
        .join(glue_file_name(task, split)?);
    read_glue_tsv(&path, task, split.is_labelled())
}

/// Column layout of one task's TSV files.
struct Layout {
    /// Input columns by header name.
    inputs: &'static [&'static str],
    /// Label column by header name.
    label: &'static str,
    /// Id column by header name (used where the file has it).
    id: &'static str,
}

fn layout(task: GlueTask) -> Layout {
    let (inputs, label, id): (&'static [&'static str], _, _) = match task {
        // CoLA train/dev have no header; handled separately. Test has `index, sentence`.
        GlueTask::Cola | GlueTask::Sst2 => (&["sentence"], "label", "index"),
        GlueTask::Mrpc => (&["#1 String", "#2 String"], "Quality", "index"),
        GlueTask::Stsb => (&["sentence1", "sentence2"], "score", "index"),
        GlueTask::Qqp => (&["question1", "question2"], "is_duplicate", "id"),
        GlueTask::Mnli => (&["sentence1", "sentence2"], "gold_label", "index"),
        GlueTask::Qnli => (&["question", "sentence"], "label", "index"),
        GlueTask::Rte => (&["sentence1", "sentence2"], "label", "index"),
    };
    Layout { inputs, label, id }
}

/// Splits a GLUE TSV file into (1-based line number, fields) rows; a trailing newline and a
/// UTF-8 byte-order mark (MRPC's files start with one) are ignored.
fn tsv_lines(path: &Path, text: &str) -> Result<Vec<(usize, Vec<String>)>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rows = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            // Only the final line after the last newline may be empty.
            if text
                .split('\n')
                .skip(i + 1)
                .all(|rest| rest.trim_end_matches('\r').is_empty())
            {
                break;
            }
            return Err(DataError::malformed(
                Location::line(path, i + 1),
                "empty line inside a TSV file",
            ));
        }
        rows.push((i + 1, line.split('\t').map(str::to_string).collect()));
    }
    if rows.is_empty() {
        return Err(DataError::Empty {
            what: format!("{}", path.display()),
        });
    }
    Ok(rows)
}

/// Reads one GLUE TSV file. `labelled` says whether the file must carry labels (train/dev)
/// or carries none (test).
pub fn read_glue_tsv(path: &Path, task: GlueTask, labelled: bool) -> Result<Dataset> {
    let text = read_text(path)?;
    let lines = tsv_lines(path, &text)?;
    let glue_task = task.task();
    let resolver = LabelResolver::new(glue_task.labels());

    // CoLA's train/dev files have no header: source, label, original label, sentence.
    if task == GlueTask::Cola && labelled {
        let mut examples = Vec::with_capacity(lines.len());
        for (line, fields) in &lines {
            let at = Location::line(path, *line);
            if fields.len() < 4 {
                return Err(DataError::malformed(
                    at,
                    format!(
                        "CoLA rows have 4 tab-separated fields, found {}",
                        fields.len()
                    ),
                ));
            }
            let class = resolver.resolve_str(&fields[1], &at)?;
            let class = class.ok_or_else(|| DataError::UnknownLabel {
                at: at.clone(),
                label: fields[1].clone(),
                known: glue_task.labels().to_vec(),
            })?;
            examples.push(Example {
                id: format!("line{line}"),
                inputs: vec![fields[3].clone()],
                options: Vec::new(),
                target: Some(Target::Class(class)),
            });
        }
        return finish(path, glue_task, examples);
    }

    let layout = layout(task);
    let (header_line, header) = &lines[0];
    let header_at = Location::line(path, *header_line);
    let column = |name: &str| -> Result<usize> {
        header
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| DataError::MissingColumn {
                at: header_at.clone(),
                column: name.to_string(),
            })
    };
    let input_cols = layout
        .inputs
        .iter()
        .map(|c| column(c))
        .collect::<Result<Vec<_>>>()?;
    let label_col = if labelled {
        Some(column(layout.label)?)
    } else {
        None
    };
    let id_col = column(layout.id).ok();

    let mut examples = Vec::with_capacity(lines.len().saturating_sub(1));
    for (line, fields) in &lines[1..] {
        let at = Location::line(path, *line);
        if fields.len() < header.len() {
            return Err(DataError::malformed(
                at,
                format!(
                    "expected {} tab-separated fields (as in the header), found {}",
                    header.len(),
                    fields.len()
                ),
            ));
        }
        let inputs = input_cols.iter().map(|&c| fields[c].clone()).collect();
        let id = match id_col {
            Some(c) => fields[c].clone(),
            None => format!("line{line}"),
        };
        let target = match label_col {
            None => None,
            Some(c) => {
                let raw = &fields[c];
                if task == GlueTask::Stsb {
                    Some(Target::Score(parse_score(raw, layout.label, &at)?))
                } else {
                    match resolver.resolve_str(raw, &at)? {
                        Some(class) => Some(Target::Class(class)),
                        None => {
                            return Err(DataError::UnknownLabel {
                                at,
                                label: raw.clone(),
                                known: glue_task.labels().to_vec(),
                            });
                        }
                    }
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
    finish(path, glue_task, examples)
}

fn finish(path: &Path, task: crate::task::Task, examples: Vec<Example>) -> Result<Dataset> {
    let dataset = Dataset { task, examples };
    dataset.ensure_not_empty(&format!("{}", path.display()))?;
    Ok(dataset)
}

/// Reads a JSONL/CSV/TSV export of the HF `glue` dataset (columns as in
/// [`GlueTask::input_fields`], `label` as class index or name, `idx` as id; `label = -1` marks
/// unlabelled test rows). `format = None` guesses from the file extension.
pub fn read_glue_export(
    path: &Path,
    task: GlueTask,
    format: Option<TabularFormat>,
) -> Result<Dataset> {
    let format = match format {
        Some(f) => f,
        None => TabularFormat::from_path(path)?,
    };
    let glue_task = task.task();
    let rows = read_rows(path, format)?;
    let has_idx = rows.first().is_some_and(|r| r.fields.contains_key("idx"));
    let mapping = ColumnMapping {
        name: glue_task.name.clone(),
        text_columns: glue_task.input_fields.clone(),
        label_column: Some("label".into()),
        id_column: has_idx.then(|| "idx".to_string()),
        regression: task == GlueTask::Stsb,
        labels: None,
        format: Some(format),
        keep: None,
    };
    let examples = rows_to_examples(&rows, &mapping, &glue_task)?;
    finish(path, glue_task, examples)
}
