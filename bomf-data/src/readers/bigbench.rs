//! BIG-bench JSON task reader (`task.json`).
//!
//! A task file holds a `canary` string (ignored, like every other metadata field) and an
//! `examples` list. Each example has an `input` and either `target_scores` (multiple choice:
//! option → score, the best score being correct) or `target` (generative: one string or a list
//! of acceptable strings). Options keep the order of the file (the JSON object is read in
//! document order, independent of any `serde_json` feature).
//!
//! Tasks with subtasks (e.g. `multiemo`) have a top-level `task.json` without examples and one
//! directory per subtask; pointing the reader at the task directory reads every subtask (sorted
//! by name, ids prefixed with the subtask), pointing it at a subtask directory reads just that.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};

use crate::error::{DataError, Location, Result};
use crate::readers::parse_json_document;
use crate::task::{Dataset, Example, Target, Task};

#[derive(Deserialize)]
struct TaskFile {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    examples: Option<Vec<RawExample>>,
}

#[derive(Deserialize)]
struct RawExample {
    input: String,
    #[serde(default)]
    target_scores: Option<OrderedScores>,
    #[serde(default)]
    target: Option<OneOrMany>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// `target_scores` as (option, score) pairs in document order.
struct OrderedScores(Vec<(String, f64)>);

impl<'de> Deserialize<'de> for OrderedScores {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct ScoresVisitor;
        impl<'de> Visitor<'de> for ScoresVisitor {
            type Value = OrderedScores;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object mapping each option to its score")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<OrderedScores, A::Error> {
                let mut pairs = Vec::new();
                while let Some((option, score)) = map.next_entry::<String, f64>()? {
                    pairs.push((option, score));
                }
                Ok(OrderedScores(pairs))
            }
        }
        deserializer.deserialize_map(ScoresVisitor)
    }
}

/// Names of the subtask directories of a BIG-bench task directory (those holding a
/// `task.json`), sorted. Empty for a task without subtasks.
pub fn bigbench_subtasks(task_dir: &Path) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(task_dir).map_err(|e| DataError::io(task_dir, e))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| DataError::io(task_dir, e))?;
        if entry.path().join("task.json").is_file() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Reads a BIG-bench task from a `task.json` file or a task/subtask directory.
pub fn read_bigbench(path: &Path) -> Result<Dataset> {
    let (dir, file) = if path.is_dir() {
        (path.to_path_buf(), path.join("task.json"))
    } else {
        (
            path.parent().map(Path::to_path_buf).unwrap_or_default(),
            path.to_path_buf(),
        )
    };
    let parsed: TaskFile = parse_json_document(&file)?;
    // Name: `<task>` or, for a subtask directory, `<task>/<subtask>` (the files' own `name`
    // fields are inconsistent across tasks, so the directory layout decides).
    let dir_name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = dir.parent().filter(|p| p.join("task.json").is_file());
    let name = match (parent.and_then(|p| p.file_name()), dir_name.is_empty()) {
        (Some(parent), false) => format!("{}/{dir_name}", parent.to_string_lossy()),
        (None, false) => dir_name,
        (_, true) => parsed.name.clone().unwrap_or_else(|| "task".into()),
    };
    match parsed.examples {
        Some(examples) => convert(&file, &name, examples, None),
        None => {
            let subtasks = bigbench_subtasks(&dir)?;
            if subtasks.is_empty() {
                return Err(DataError::MissingColumn {
                    at: Location::file(&file),
                    column: "examples".into(),
                });
            }
            let mut merged: Option<Dataset> = None;
            for sub in &subtasks {
                let sub_file: PathBuf = dir.join(sub).join("task.json");
                let parsed: TaskFile = parse_json_document(&sub_file)?;
                let examples = parsed.examples.ok_or_else(|| DataError::MissingColumn {
                    at: Location::file(&sub_file),
                    column: "examples".into(),
                })?;
                let part = convert(&sub_file, &name, examples, Some(sub))?;
                match &mut merged {
                    None => merged = Some(part),
                    Some(all) => {
                        if all.task.kind != part.task.kind {
                            return Err(DataError::InconsistentTargets(format!(
                                "subtask {sub} of {name} is {:?} but earlier subtasks are {:?}",
                                part.task.kind, all.task.kind
                            )));
                        }
                        all.examples.extend(part.examples);
                    }
                }
            }
            merged.ok_or_else(|| DataError::Empty {
                what: format!("{}", dir.display()),
            })
        }
    }
}

fn convert(
    file: &Path,
    name: &str,
    raw: Vec<RawExample>,
    subtask: Option<&str>,
) -> Result<Dataset> {
    if raw.is_empty() {
        return Err(DataError::Empty {
            what: format!("examples of {}", file.display()),
        });
    }
    let multiple_choice = raw[0].target_scores.is_some();
    let mut examples = Vec::with_capacity(raw.len());
    for (i, ex) in raw.into_iter().enumerate() {
        let at = Location::record(file, format!("examples[{i}]"));
        let id = match subtask {
            Some(sub) => format!("{sub}/{i}"),
            None => format!("{i}"),
        };
        let (options, target) = if multiple_choice {
            let scores = ex.target_scores.ok_or_else(|| {
                DataError::InconsistentTargets(format!(
                    "{at}: has no target_scores while the first example is multiple choice"
                ))
            })?;
            if scores.0.len() < 2 {
                return Err(DataError::malformed(
                    at,
                    "target_scores needs at least 2 options",
                ));
            }
            if scores.0.iter().any(|(_, s)| !s.is_finite()) {
                return Err(DataError::malformed(
                    at,
                    "target_scores must be finite numbers",
                ));
            }
            let (options, scores): (Vec<String>, Vec<f64>) = scores.0.into_iter().unzip();
            (options, Target::Choice(scores))
        } else {
            let target = ex.target.ok_or_else(|| {
                DataError::InconsistentTargets(format!(
                    "{at}: has neither target_scores nor target"
                ))
            })?;
            let refs = match target {
                OneOrMany::One(s) => vec![s],
                OneOrMany::Many(list) => list,
            };
            if refs.is_empty() {
                return Err(DataError::malformed(at, "target is an empty list"));
            }
            (Vec::new(), Target::Text(refs))
        };
        examples.push(Example {
            id,
            inputs: vec![ex.input],
            options,
            target: Some(target),
        });
    }
    // Subtasks read through their parent are named after the parent task.
    let task = Task::bigbench(name, multiple_choice);
    Ok(Dataset { task, examples })
}
