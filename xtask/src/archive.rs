//! The committed archive of finished reproduction runs: `results/reproduce/<run>.json`, one
//! `results.json` per run (`<task>-seed<N>`, and `<task>-seed<N>-<variant>` for the stage-3
//! variants), with a `provenance` object (the commit and date that made it) added.
//!
//! A run directory lives on the machine that ran it; the archive travels with the repository, so
//! RESULTS.md can be rebuilt, and a reproduction continued, on another machine: a run whose
//! result is archived counts as finished and is not started again.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::Value;

/// The archive folder, relative to the workspace root.
pub const ARCHIVE_DIR: &str = "results/reproduce";

/// Where the archived result of run `name` lives.
pub fn archived_path(root: &Path, name: &str) -> PathBuf {
    root.join(ARCHIVE_DIR).join(format!("{name}.json"))
}

/// The result of run `name`: the run directory's `results.json` when it has one (archived on the
/// way, so the archive follows the newest run), else the archived copy, else `None`.
pub fn load(root: &Path, run_dir: &Path, name: &str) -> Result<Option<Value>> {
    let fresh = run_dir.join("results.json");
    if fresh.is_file() {
        let text = std::fs::read_to_string(&fresh)
            .with_context(|| format!("reading {}", fresh.display()))?;
        let value: Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", fresh.display()))?;
        store(root, name, &value)?;
        return Ok(Some(value));
    }
    let archived = archived_path(root, name);
    if !archived.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&archived)
        .with_context(|| format!("reading {}", archived.display()))?;
    let value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", archived.display()))?;
    Ok(Some(value))
}

/// Whether run `name` has an archived result.
pub fn is_archived(root: &Path, name: &str) -> bool {
    archived_path(root, name).is_file()
}

/// Writes `value` with its provenance to the archive, unless the archive already holds this run's
/// result (same content apart from the provenance).
fn store(root: &Path, name: &str, value: &Value) -> Result<()> {
    let path = archived_path(root, name);
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Ok(mut old) = serde_json::from_str::<Value>(&text)
    {
        if let Some(map) = old.as_object_mut() {
            map.remove("provenance");
        }
        if &old == value {
            return Ok(());
        }
    }
    let mut value = value.clone();
    if let Some(map) = value.as_object_mut() {
        map.insert("provenance".into(), provenance(root));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // Written beside and renamed, so a killed xtask never leaves half a result in the archive.
    let partial = path.with_extension("json.partial");
    std::fs::write(&partial, serde_json::to_string_pretty(&value)? + "\n")
        .with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The commit (`+dirty` with uncommitted changes) and UTC date the archived run was tabulated at.
fn provenance(root: &Path) -> Value {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    serde_json::json!({
        "commit": if dirty { format!("{commit}+dirty") } else { commit },
        "date": date,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A temporary workspace root with an empty run directory at `relative` inside it.
    fn root_with_run_dir(relative: &str) -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let run_dir = root.path().join(relative);
        std::fs::create_dir_all(&run_dir).unwrap();
        (root, run_dir)
    }

    #[test]
    fn a_finished_run_is_archived_and_read_back_without_its_run_directory() {
        let (root, run_dir) = root_with_run_dir("runs/banking77-seed0");
        assert!(
            load(root.path(), &run_dir, "banking77-seed0")
                .unwrap()
                .is_none()
        );
        let result = serde_json::json!({"methods": {"bomf": {"test": {"accuracy": 0.5}}}});
        std::fs::write(run_dir.join("results.json"), result.to_string()).unwrap();
        assert_eq!(
            load(root.path(), &run_dir, "banking77-seed0").unwrap(),
            Some(result.clone())
        );
        assert!(is_archived(root.path(), "banking77-seed0"));
        std::fs::remove_dir_all(&run_dir).unwrap();
        let back = load(root.path(), &run_dir, "banking77-seed0")
            .unwrap()
            .unwrap();
        assert_eq!(back["methods"], result["methods"]);
        assert!(back["provenance"]["commit"].is_string());
    }

    #[test]
    fn a_rerun_with_another_result_replaces_the_archived_one() {
        let (root, run_dir) = root_with_run_dir("run");
        for acc in [0.5, 0.75] {
            let result = serde_json::json!({"accuracy": acc});
            std::fs::write(run_dir.join("results.json"), result.to_string()).unwrap();
            load(root.path(), &run_dir, "t-seed1").unwrap();
        }
        std::fs::remove_dir_all(&run_dir).unwrap();
        let back = load(root.path(), &run_dir, "t-seed1").unwrap().unwrap();
        assert_eq!(back["accuracy"], 0.75);
    }
}
