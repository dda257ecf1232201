//! A dataset and its train/validation/test splits, named in one place: [`DataSpec`].
//!
//! A TOML config (`[data]` of a run config, or a file of its own) and the CLI flags of
//! `bomf eval` / `bomf train` both build a `DataSpec`, so every command reads data the same way.
//! It says *which reader* to use (`format`), *where* the data is (`path`), *how the columns map*
//! onto a task (tabular formats), *which rows* to keep (`keep`), and *how to split* it
//! ([`SplitSpec`]). [`DataSpec::load`] returns the three [`Splits`];
//! [`DataSpec::load_split`] one of them.
//!
//! ```toml
//! format = "jsonl"
//! path = "reviews.jsonl"          # relative paths are relative to this file
//! text_fields = ["text"]
//! label_field = "label"           # labels inferred (sorted) unless `labels = [...]` is given
//!
//! [split]
//! kind = "by_rank"                # exact counts, by stable hash rank (see `split`)
//! train = 3000
//! validation = 400
//! test = 1000
//! seed = 0
//! ```
//!
//! Splits are deterministic: `by_rank` and `fractions` rank examples by a seeded hash of their
//! inputs ([`crate::split`]), so the same file and seed always give the same splits whatever the
//! file order; `files` takes the splits as given; `hold_out` cuts validation from a train file
//! and tests on a second file; `glue_protocol` is the paper's GLUE protocol.
//!
//! Labels stay consistent across split files: when the label set is inferred, it is the sorted
//! union over every file, so class `i` means the same label in train, validation and test.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::metrics::Metric;
use crate::readers::bigbench::read_bigbench;
use crate::readers::e2e::read_e2e_csv;
use crate::readers::glue::{GlueSplit, read_glue_dir, read_glue_export, read_glue_tsv};
use crate::readers::mcqa::{McqaConfig, read_mcqa_jsonl};
use crate::readers::samsum::read_samsum;
use crate::readers::spam::read_spam_assassin;
use crate::readers::squad::read_squad;
use crate::readers::tabular::{ColumnMapping, RowFilter, TabularFormat, read_tabular};
use crate::split::{SplitConfig, Splits, glue_protocol, split_by_rank, split_exact};
use crate::task::{Dataset, GlueTask, Target, Task, TaskKind};

/// Which reader turns the files into examples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataFormat {
    /// A BIG-bench task folder or `task.json` (`path`): files users bring.
    Bigbench,
    /// GLUE: the official folder (`path` holding `MRPC/`, `SST-2/`, ...) or TSV/JSONL/CSV files
    /// of one task (`task`).
    Glue,
    /// One JSON object per line, columns named by `text_fields` / `label_field`.
    Jsonl,
    /// Comma-separated with a header row.
    Csv,
    /// Tab-separated with a header row.
    Tsv,
    /// SQuAD v1.1 / v2.0 JSON.
    Squad,
    /// SAMSum JSON.
    Samsum,
    /// E2E NLG CSV.
    E2e,
    /// Multiple-choice QA JSONL (fields from the `[mcqa]` table).
    Mcqa,
    /// The SpamAssassin corpus folder.
    Spam,
}

impl DataFormat {
    pub fn name(self) -> &'static str {
        match self {
            DataFormat::Bigbench => "bigbench",
            DataFormat::Glue => "glue",
            DataFormat::Jsonl => "jsonl",
            DataFormat::Csv => "csv",
            DataFormat::Tsv => "tsv",
            DataFormat::Squad => "squad",
            DataFormat::Samsum => "samsum",
            DataFormat::E2e => "e2e",
            DataFormat::Mcqa => "mcqa",
            DataFormat::Spam => "spam",
        }
    }

    fn tabular(self) -> Option<TabularFormat> {
        match self {
            DataFormat::Jsonl => Some(TabularFormat::Jsonl),
            DataFormat::Csv => Some(TabularFormat::Csv),
            DataFormat::Tsv => Some(TabularFormat::Tsv),
            _ => None,
        }
    }
}

/// How the examples are divided into train, validation and test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SplitSpec {
    /// One file per split, read with the same reader. A split without a file is empty. For
    /// `glue` with no file given, the task's own `train.tsv` / `dev.tsv` / `test.tsv` (test is
    /// unlabelled) under `path`.
    Files {
        #[serde(default)]
        train: Option<PathBuf>,
        #[serde(default)]
        validation: Option<PathBuf>,
        #[serde(default)]
        test: Option<PathBuf>,
    },
    /// Exact counts from one source (`path`), by seeded hash rank
    /// ([`crate::split::split_by_rank`]); examples beyond the counts are left out.
    ByRank {
        train: usize,
        validation: usize,
        test: usize,
        #[serde(default)]
        seed: u64,
    },
    /// Fractions of one source, rounded to counts and cut by hash rank
    /// ([`crate::split::split_exact`]); they must sum to at most 1.
    Fractions {
        train: f64,
        validation: f64,
        test: f64,
        #[serde(default)]
        seed: u64,
    },
    /// A train file and a test file, with `validation` examples of the train file held out by
    /// hash rank: for data released as train + dev only (SQuAD: train on `train-v2.0.json`,
    /// choose on a held-out part of it, test on `dev-v2.0.json`), as the GLUE protocol does for
    /// its large tasks.
    HoldOut {
        train: PathBuf,
        test: PathBuf,
        validation: usize,
        #[serde(default)]
        seed: u64,
    },
    /// The paper's GLUE protocol ([`crate::split::glue_protocol`]) on the official folder.
    GlueProtocol {
        #[serde(default)]
        seed: u64,
        #[serde(default = "default_large_holdout")]
        large_holdout: usize,
    },
}

fn default_large_holdout() -> usize {
    1000
}

/// One of the three splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitName {
    Train,
    Validation,
    Test,
}

impl SplitName {
    pub const ALL: [SplitName; 3] = [SplitName::Train, SplitName::Validation, SplitName::Test];

    pub fn name(self) -> &'static str {
        match self {
            SplitName::Train => "train",
            SplitName::Validation => "validation",
            SplitName::Test => "test",
        }
    }

    /// That split of `splits`.
    pub fn of(self, splits: Splits) -> Dataset {
        match self {
            SplitName::Train => splits.train,
            SplitName::Validation => splits.validation,
            SplitName::Test => splits.test,
        }
    }
}

impl fmt::Display for SplitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SplitName {
    type Err = DataError;

    /// `train`, `validation` (or `val`, `dev`), `test`.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "train" => Ok(SplitName::Train),
            "validation" | "val" | "valid" | "dev" => Ok(SplitName::Validation),
            "test" => Ok(SplitName::Test),
            other => Err(DataError::InvalidConfig(format!(
                "unknown split `{other}` (expected train, validation or test)"
            ))),
        }
    }
}

/// A dataset and its splits. Fields that do not apply to the chosen `format` are rejected by
/// [`DataSpec::validate`] rather than ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    pub format: DataFormat,
    /// The data file or folder (for `files` splits, the split files are given in `[split]`;
    /// `glue` then takes the GLUE folder here when the split files are left out).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// `glue` only: the task (`mrpc`, `SST-2`, ...).
    #[serde(default)]
    pub task: Option<String>,
    /// Tabular formats: one input column (single text) or two (a pair), in input order.
    #[serde(default)]
    pub text_fields: Option<Vec<String>>,
    /// Tabular formats: the label column; absent for unlabelled files.
    #[serde(default)]
    pub label_field: Option<String>,
    /// Tabular formats: the label set in class-index order; inferred (sorted) when absent.
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    /// Tabular formats: a column holding a stable example id (the line number otherwise).
    #[serde(default)]
    pub id_field: Option<String>,
    /// Tabular formats: real-valued targets instead of classes.
    #[serde(default)]
    pub regression: bool,
    /// Task name reported with the results (defaults to the reader's).
    #[serde(default)]
    pub name: Option<String>,
    /// `bigbench` only: turn a multiple-choice task whose examples share one option set into
    /// classification over those options (default: true, what a sequence classifier needs).
    #[serde(default)]
    pub as_classification: Option<bool>,
    /// `spam` only: drop the mail headers (default: true).
    #[serde(default)]
    pub body_only: Option<bool>,
    /// `mcqa` only: field names and answer convention.
    #[serde(default)]
    pub mcqa: Option<McqaConfig>,
    /// Tabular and `mcqa` formats: keep only the rows whose field has one of the listed values
    /// (`keep = { field = "topic", values = ["anatomy", "virology"] }`); the rest are left out.
    #[serde(default)]
    pub keep: Option<RowFilter>,
    /// Classification as text-to-text generation, as T5 does: the model writes the label's text
    /// (a T5 or LLaMA-family model; see [`Dataset::classification_as_generation`]). Scored by
    /// exact match unless `metrics` says otherwise.
    #[serde(default)]
    pub as_generation: bool,
    /// Metrics to report, the first driving model selection; defaults to the reader's, or
    /// accuracy + macro-F1 (classification) / Pearson + Spearman (regression).
    #[serde(default)]
    pub metrics: Option<Vec<Metric>>,
    pub split: SplitSpec,
}

/// A TOML file whose `[data]` table is the spec (a whole run config); other keys are left to
/// their owners.
#[derive(Deserialize)]
struct DataTable {
    data: DataSpec,
}

impl DataSpec {
    /// A spec with only `format` and `split` set; fill in the rest by field.
    pub fn new(format: DataFormat, split: SplitSpec) -> Self {
        Self {
            format,
            path: None,
            task: None,
            text_fields: None,
            label_field: None,
            labels: None,
            id_field: None,
            regression: false,
            name: None,
            as_classification: None,
            body_only: None,
            mcqa: None,
            keep: None,
            as_generation: false,
            metrics: None,
            split,
        }
    }

    /// Parses a spec from TOML text: either the spec at the top level or a `[data]` table.
    /// Errors (unknown keys, wrong types) name the key and its line, from `origin`.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self> {
        let top_level: toml::Table =
            toml::from_str(text).map_err(|e| DataError::InvalidConfig(format!("{origin}: {e}")))?;
        let spec = if top_level.contains_key("format") || !top_level.contains_key("data") {
            toml::from_str::<DataSpec>(text)
        } else {
            toml::from_str::<DataTable>(text).map(|t| t.data)
        }
        .map_err(|e| DataError::InvalidConfig(format!("{origin}: {e}")))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Reads a spec file; relative paths in it are taken relative to the file's folder.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        let mut spec = Self::from_toml_str(&text, &path.display().to_string())?;
        let base = path.parent().unwrap_or(Path::new(""));
        spec.resolve_paths(base);
        Ok(spec)
    }

    /// Every file or folder this spec reads: `path` and the split files.
    pub fn input_paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = self.path.iter().cloned().collect();
        match &self.split {
            SplitSpec::Files {
                train,
                validation,
                test,
            } => paths.extend([train, validation, test].into_iter().flatten().cloned()),
            SplitSpec::HoldOut { train, test, .. } => paths.extend([train.clone(), test.clone()]),
            _ => {}
        }
        paths
    }

    /// Makes every relative path absolute against `base` (the folder of the spec file).
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(p) = &mut self.path {
            fix(p);
        }
        match &mut self.split {
            SplitSpec::Files {
                train,
                validation,
                test,
            } => {
                for p in [train, validation, test].into_iter().flatten() {
                    fix(p);
                }
            }
            SplitSpec::HoldOut { train, test, .. } => {
                fix(train);
                fix(test);
            }
            _ => {}
        }
    }

    /// The three splits.
    pub fn load(&self) -> Result<Splits> {
        self.validate()?;
        let splits = match &self.split {
            SplitSpec::Files {
                train,
                validation,
                test,
            } => {
                if self.format == DataFormat::Glue
                    && train.is_none()
                    && validation.is_none()
                    && test.is_none()
                {
                    let (task, dir) = (self.glue_task()?, self.source_path()?);
                    Splits {
                        train: read_glue_dir(&dir, task, GlueSplit::Train)?,
                        validation: read_glue_dir(&dir, task, GlueSplit::Dev)?,
                        test: read_glue_dir(&dir, task, GlueSplit::Test)?,
                    }
                } else {
                    let files = [train, validation, test];
                    let mut read: Vec<Option<Dataset>> = Vec::with_capacity(3);
                    for file in files {
                        read.push(file.as_deref().map(|f| self.read_file(f)).transpose()?);
                    }
                    self.assemble_files(read)?
                }
            }
            SplitSpec::ByRank {
                train,
                validation,
                test,
                seed,
            } => split_by_rank(&self.read_source()?, [*train, *validation, *test], *seed)?,
            SplitSpec::Fractions {
                train,
                validation,
                test,
                seed,
            } => {
                let config = SplitConfig::new(*train, *validation, *test, *seed)?;
                split_exact(&self.read_source()?, &config)?
            }
            SplitSpec::HoldOut {
                train,
                test,
                validation,
                seed,
            } => {
                let files = self.assemble_files(vec![
                    Some(self.read_file(train)?),
                    None,
                    Some(self.read_file(test)?),
                ])?;
                let n = files.train.len();
                if *validation >= n {
                    return Err(DataError::InvalidConfig(format!(
                        "cannot hold out {validation} of the {n} examples of {} as validation",
                        train.display()
                    )));
                }
                let cut = split_by_rank(&files.train, [n - validation, *validation, 0], *seed)?;
                Splits {
                    train: cut.train,
                    validation: cut.validation,
                    test: files.test,
                }
            }
            SplitSpec::GlueProtocol {
                seed,
                large_holdout,
            } => {
                let (task, dir) = (self.glue_task()?, self.source_path()?);
                let train = read_glue_dir(&dir, task, GlueSplit::Train)?;
                let dev = read_glue_dir(&dir, task, GlueSplit::Dev)?;
                glue_protocol(task, &train, &dev, *seed, *large_holdout)?
            }
        };
        Ok(Splits {
            train: self.finish(splits.train)?,
            validation: self.finish(splits.validation)?,
            test: self.finish(splits.test)?,
        })
    }

    /// One split; an error if it is empty (or not given), naming it. With `files` and a known
    /// label set only that split's file is read; otherwise the whole dataset is read and cut.
    pub fn load_split(&self, which: SplitName) -> Result<Dataset> {
        self.validate()?;
        let dataset = match &self.split {
            SplitSpec::Files {
                train,
                validation,
                test,
            } if self.reads_one_file_alone() => {
                let file = match which {
                    SplitName::Train => train,
                    SplitName::Validation => validation,
                    SplitName::Test => test,
                };
                match file {
                    Some(f) => self.finish(self.read_file(f)?)?,
                    None => {
                        return Err(DataError::InvalidConfig(format!(
                            "the data spec gives no file for the {which} split ([split] {which} = \"...\")"
                        )));
                    }
                }
            }
            _ => which.of(self.load()?),
        };
        if dataset.is_empty() {
            return Err(DataError::Empty {
                what: format!("the {which} split of {}", dataset.task.name),
            });
        }
        Ok(dataset)
    }

    /// Whether one split file can be read without the others: the label set must not depend on
    /// the other files, and GLUE's own folder layout goes through [`DataSpec::load`].
    fn reads_one_file_alone(&self) -> bool {
        let SplitSpec::Files {
            train,
            validation,
            test,
        } = &self.split
        else {
            return false;
        };
        let glue_folder = self.format == DataFormat::Glue
            && train.is_none()
            && validation.is_none()
            && test.is_none();
        let inferred_labels = self.format.tabular().is_some()
            && !self.regression
            && self.labels.is_none()
            && self.label_field.is_some();
        let bigbench_classes =
            self.format == DataFormat::Bigbench && self.as_classification.unwrap_or(true);
        !(glue_folder || inferred_labels || bigbench_classes)
    }

    fn glue_task(&self) -> Result<GlueTask> {
        match &self.task {
            Some(t) => GlueTask::parse(t),
            None => Err(DataError::InvalidConfig(
                "data field `task` is required for format = \"glue\"".into(),
            )),
        }
    }

    /// `path`.
    fn source_path(&self) -> Result<PathBuf> {
        match &self.path {
            Some(p) => Ok(p.clone()),
            None => Err(DataError::InvalidConfig(format!(
                "data field `path` is required (format = \"{}\")",
                self.format.name()
            ))),
        }
    }

    fn read_source(&self) -> Result<Dataset> {
        let path = self.source_path()?;
        self.read_file(&path)
    }

    /// Reads one file (or folder) with the format's reader.
    fn read_file(&self, path: &Path) -> Result<Dataset> {
        if !path.exists() {
            return Err(DataError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
            ));
        }
        match self.format {
            DataFormat::Bigbench => {
                let dataset = read_bigbench(path)?;
                if self.as_classification.unwrap_or(true)
                    && dataset.task.kind == TaskKind::MultipleChoice
                {
                    dataset.to_classification()
                } else {
                    Ok(dataset)
                }
            }
            DataFormat::Glue => {
                let task = self.glue_task()?;
                let is_tsv = path
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("tsv"));
                if is_tsv {
                    // The official test files carry no labels.
                    let stem = path
                        .file_stem()
                        .map(|s| s.to_string_lossy().to_ascii_lowercase())
                        .unwrap_or_default();
                    read_glue_tsv(path, task, !stem.starts_with("test"))
                } else {
                    read_glue_export(path, task, None)
                }
            }
            DataFormat::Jsonl | DataFormat::Csv | DataFormat::Tsv => {
                read_tabular(path, &self.column_mapping())
            }
            DataFormat::Squad => read_squad(path),
            DataFormat::Samsum => read_samsum(path, true),
            DataFormat::E2e => read_e2e_csv(path),
            DataFormat::Mcqa => read_mcqa_jsonl(
                path,
                &self.mcqa.clone().unwrap_or_default(),
                self.keep.as_ref(),
            ),
            DataFormat::Spam => read_spam_assassin(path, self.body_only.unwrap_or(true)),
        }
    }

    fn column_mapping(&self) -> ColumnMapping {
        ColumnMapping {
            name: self.name.clone().unwrap_or_else(|| "custom".into()),
            text_columns: self.text_fields.clone().unwrap_or_default(),
            label_column: self.label_field.clone(),
            id_column: self.id_field.clone(),
            regression: self.regression,
            labels: self.labels.clone(),
            format: self.format.tabular(),
            keep: self.keep.clone(),
        }
    }

    /// Turns per-file datasets into splits with one task: class indices are remapped onto the
    /// sorted union of the files' label sets when those differ. Missing files give empty splits.
    fn assemble_files(&self, read: Vec<Option<Dataset>>) -> Result<Splits> {
        let first = read
            .iter()
            .flatten()
            .next()
            .ok_or_else(|| DataError::InvalidConfig("no split file given".into()))?;
        let mut task = first.task.clone();
        if let TaskKind::Classification { .. } = task.kind {
            let mut union: Vec<String> = Vec::new();
            for d in read.iter().flatten() {
                union.extend(d.task.labels().iter().cloned());
            }
            union.sort();
            union.dedup();
            if union.iter().all(|l| l.parse::<i64>().is_ok()) {
                union.sort_by_key(|l| l.parse::<i64>().unwrap_or_default());
            }
            // Keep a given (or reader-fixed) order when every file agrees on it.
            let all_same = read
                .iter()
                .flatten()
                .all(|d| d.task.labels() == first.task.labels());
            let labels = if all_same {
                first.task.labels().to_vec()
            } else {
                union
            };
            task.kind = TaskKind::Classification { labels };
        }
        let mut out = Vec::with_capacity(3);
        for d in read {
            out.push(match d {
                Some(d) => remap_labels(d, &task)?,
                None => Dataset {
                    task: task.clone(),
                    examples: Vec::new(),
                },
            });
        }
        let mut it = out.into_iter();
        let mut next = || {
            it.next().unwrap_or_else(|| Dataset {
                task: task.clone(),
                examples: Vec::new(),
            })
        };
        Ok(Splits {
            train: next(),
            validation: next(),
            test: next(),
        })
    }

    /// Applies `as_generation`, `name` and `metrics` (or the default metrics of the task kind).
    fn finish(&self, dataset: Dataset) -> Result<Dataset> {
        let mut dataset = if self.as_generation {
            dataset.classification_as_generation()?
        } else {
            dataset
        };
        if let Some(name) = &self.name {
            dataset.task.name = name.clone();
        }
        if let Some(metrics) = &self.metrics {
            dataset.task.metrics = metrics.clone();
        } else if dataset.task.metrics.is_empty() {
            dataset.task.metrics = default_metrics(&dataset.task.kind);
        }
        Ok(dataset)
    }
}

/// Metrics of a task that names none: accuracy and macro-F1 for classification, Pearson and
/// Spearman for regression.
pub fn default_metrics(kind: &TaskKind) -> Vec<Metric> {
    match kind {
        TaskKind::Classification { .. } | TaskKind::MultipleChoice => {
            vec![Metric::Accuracy, Metric::F1Macro]
        }
        TaskKind::Regression => vec![Metric::Pearson, Metric::Spearman],
        TaskKind::SpanQa { .. } => vec![Metric::SquadExactMatch, Metric::SquadF1],
        TaskKind::Generation => vec![Metric::Bleu, Metric::RougeL],
    }
}

/// The same classification dataset with its classes in the order of `labels` (the same set,
/// e.g. a model's `id2label`); targets are re-indexed accordingly.
pub fn with_label_order(dataset: Dataset, labels: &[String]) -> Result<Dataset> {
    let mut task = dataset.task.clone();
    match &mut task.kind {
        TaskKind::Classification { labels: own } => *own = labels.to_vec(),
        other => {
            return Err(DataError::Unsupported(format!(
                "reordering the labels of a {other:?} task"
            )));
        }
    }
    remap_labels(dataset, &task)
}

/// Re-expresses the class targets of `dataset` in the label order of `task`.
fn remap_labels(dataset: Dataset, task: &Task) -> Result<Dataset> {
    let own = dataset.task.labels().to_vec();
    let target_labels = task.labels();
    if own == target_labels {
        return Ok(Dataset {
            task: task.clone(),
            examples: dataset.examples,
        });
    }
    let map: Vec<usize> = own
        .iter()
        .map(|l| {
            target_labels.iter().position(|t| t == l).ok_or_else(|| {
                DataError::InvalidConfig(format!(
                    "label `{l}` of one split file is not in the label set {target_labels:?}"
                ))
            })
        })
        .collect::<Result<_>>()?;
    let mut examples = dataset.examples;
    for ex in &mut examples {
        if let Some(Target::Class(c)) = &mut ex.target {
            *c = map.get(*c).copied().ok_or_else(|| {
                DataError::InconsistentTargets(format!(
                    "example {} has class {c} outside its file's {} labels",
                    ex.id,
                    own.len()
                ))
            })?;
        }
    }
    Ok(Dataset {
        task: task.clone(),
        examples,
    })
}

mod validate;

#[cfg(test)]
mod tests;
