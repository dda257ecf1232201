//! Output folders that appear whole or not at all.
//!
//! A fused model is a folder of several files (config, weights, tokenizer). Written in place, a
//! crash or a full disk leaves a folder that looks finished but holds a truncated weight file, or
//! new config beside old weights. [`StagedDir`] writes into a hidden sibling, `.{name}.staging`,
//! and [`StagedDir::publish`] swaps it in with renames on the same filesystem:
//!
//! 1. every file of the staging folder is fsynced;
//! 2. an existing `{name}` is renamed to `.{name}.old`;
//! 3. `.{name}.staging` is renamed to `{name}`, and the parent folder fsynced;
//! 4. `.{name}.old` is deleted.
//!
//! A crash before 2 leaves the old folder as it was; between 2 and 3 the old one waits in
//! `.{name}.old` and the next [`StagedDir::new`] for that destination renames it back; after 3
//! the new folder is complete. A staging folder left by a crash is removed by the next `new`.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use super::{IoContext, Result, created_parent};

/// A folder being written next to its destination; see the module docs.
#[derive(Debug)]
pub struct StagedDir {
    staging: PathBuf,
    old: PathBuf,
    dest: PathBuf,
    published: bool,
}

impl StagedDir {
    /// Prepares to replace `dest`: restores a `dest` that a crash left renamed aside, removes a
    /// stale staging folder, and creates a fresh, empty one.
    pub fn new(dest: &Path) -> Result<Self> {
        let (parent, name) = created_parent(dest)?;
        let name = name.to_string_lossy();
        let staged = Self {
            staging: parent.join(format!(".{name}.staging")),
            old: parent.join(format!(".{name}.old")),
            dest: dest.to_path_buf(),
            published: false,
        };
        if staged.old.exists() {
            if staged.dest.exists() {
                fs::remove_dir_all(&staged.old).at(&staged.old)?;
            } else {
                tracing::warn!(dest = %staged.dest.display(), "restoring the folder an interrupted replacement had moved aside");
                fs::rename(&staged.old, &staged.dest).at(&staged.dest)?;
            }
        }
        if staged.staging.exists() {
            tracing::warn!(path = %staged.staging.display(), "removing an output folder left half-written by a crash");
            fs::remove_dir_all(&staged.staging).at(&staged.staging)?;
        }
        fs::create_dir_all(&staged.staging).at(&staged.staging)?;
        Ok(staged)
    }

    /// Where to write the folder's content.
    pub fn path(&self) -> &Path {
        &self.staging
    }

    /// Whether anything was written into the staging folder.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(fs::read_dir(&self.staging)
            .at(&self.staging)?
            .next()
            .is_none())
    }

    /// Makes the staged content the destination folder (steps 1–4 of the module docs).
    pub fn publish(mut self) -> Result<()> {
        sync_tree(&self.staging)?;
        if self.dest.exists() {
            fs::rename(&self.dest, &self.old).at(&self.dest)?;
        }
        fs::rename(&self.staging, &self.dest).at(&self.dest)?;
        self.published = true;
        if let Some(parent) = self.dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            File::open(parent).and_then(|d| d.sync_all()).at(parent)?;
        }
        if self.old.exists() {
            fs::remove_dir_all(&self.old).at(&self.old)?;
        }
        Ok(())
    }
}

impl Drop for StagedDir {
    /// An abandoned staging folder (the write failed) is removed; the destination is untouched.
    fn drop(&mut self) {
        if !self.published && self.staging.exists() {
            let _ = fs::remove_dir_all(&self.staging);
        }
    }
}

/// fsyncs every file under `dir`, then `dir` itself.
fn sync_tree(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).at(dir)? {
        let path = entry.at(dir)?.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            File::open(&path).and_then(|f| f.sync_all()).at(&path)?;
        }
    }
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join(name), text).unwrap();
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn publishing_replaces_the_whole_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("fused");
        write(&dest, "model.safetensors", "old");
        write(&dest, "stray.txt", "old");
        let staged = StagedDir::new(&dest).unwrap();
        write(staged.path(), "model.safetensors", "new");
        write(staged.path(), "config.json", "new");
        assert_eq!(
            listing(&dest),
            ["model.safetensors", "stray.txt"],
            "untouched until publish"
        );
        staged.publish().unwrap();
        assert_eq!(listing(&dest), ["config.json", "model.safetensors"]);
        assert_eq!(
            fs::read_to_string(dest.join("model.safetensors")).unwrap(),
            "new"
        );
        assert_eq!(
            listing(tmp.path()),
            ["fused"],
            "no staging or old folder left"
        );
    }

    #[test]
    fn a_failed_write_leaves_the_old_folder_and_no_staging() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("fused");
        write(&dest, "model.safetensors", "old");
        {
            let staged = StagedDir::new(&dest).unwrap();
            write(staged.path(), "model.safetensors", "half");
            // The export fails here: the StagedDir is dropped unpublished.
        }
        assert_eq!(
            fs::read_to_string(dest.join("model.safetensors")).unwrap(),
            "old"
        );
        assert_eq!(listing(tmp.path()), ["fused"]);
    }

    #[test]
    fn a_crash_mid_replacement_is_repaired_by_the_next_writer() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("fused");
        // Killed after moving the old folder aside, before renaming the staged one in.
        write(&tmp.path().join(".fused.old"), "model.safetensors", "old");
        write(
            &tmp.path().join(".fused.staging"),
            "model.safetensors",
            "torn",
        );
        let staged = StagedDir::new(&dest).unwrap();
        assert_eq!(
            fs::read_to_string(dest.join("model.safetensors")).unwrap(),
            "old"
        );
        assert!(
            staged.is_empty().unwrap(),
            "the torn staging folder is gone"
        );
        drop(staged);
        assert_eq!(listing(tmp.path()), ["fused"]);
        // A new folder that did not exist before appears whole.
        let fresh = tmp.path().join("adapter");
        let staged = StagedDir::new(&fresh).unwrap();
        assert!(!fresh.exists());
        write(staged.path(), "adapter_config.json", "{}");
        staged.publish().unwrap();
        assert_eq!(listing(&fresh), ["adapter_config.json"]);
    }
}
