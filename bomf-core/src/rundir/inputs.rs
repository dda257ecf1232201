//! What a run read: a fingerprint (size and SHA-256) of every input file, recorded when the run
//! starts (`inputs.json`) and checked on `--resume`.
//!
//! A resumed run continues its searches with the evaluations already made; if the data, the
//! model or the tokenizer changed in between, the old and new evaluations would be mixed in one
//! GP and one Pareto front without a word. Comparing the config text is not enough (a file can
//! change under an unchanged path), so every input file is fingerprinted; a folder (an HF model)
//! stands for the files in it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{IoContext, Result, RunDirError};

/// The run's record of its inputs.
pub const INPUTS_FILE: &str = "inputs.json";

/// Size and content hash of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFingerprint {
    pub bytes: u64,
    pub sha256: String,
}

/// Every input file of a run, by path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    pub files: BTreeMap<PathBuf, FileFingerprint>,
}

impl Inputs {
    /// Fingerprints `paths`: files, and folders as the regular files in them (recursively,
    /// hidden entries left out). A path that does not exist is an error naming it.
    pub fn of(paths: &[PathBuf]) -> Result<Self> {
        let mut inputs = Self::default();
        for path in paths {
            inputs.add(path)?;
        }
        Ok(inputs)
    }

    fn add(&mut self, path: &Path) -> Result<()> {
        let meta = std::fs::metadata(path).at(path)?;
        if meta.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .at(path)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
                })
                .collect();
            entries.sort();
            for entry in entries {
                self.add(&entry)?;
            }
        } else if meta.is_file() {
            self.files
                .insert(path.to_path_buf(), fingerprint(path, meta.len())?);
        }
        Ok(())
    }

    /// The first difference between the inputs a run started with (`self`) and `now`, as a
    /// sentence naming the file; `None` when they agree.
    pub fn first_change(&self, now: &Inputs) -> Option<String> {
        for (path, then) in &self.files {
            match now.files.get(path) {
                None => return Some(format!("{} is gone", path.display())),
                Some(f) if f.bytes != then.bytes => {
                    return Some(format!(
                        "{} changed size ({} bytes then, {} now)",
                        path.display(),
                        then.bytes,
                        f.bytes
                    ));
                }
                Some(f) if f.sha256 != then.sha256 => {
                    return Some(format!(
                        "{} changed content (same size, another SHA-256)",
                        path.display()
                    ));
                }
                Some(_) => {}
            }
        }
        now.files
            .keys()
            .find(|p| !self.files.contains_key(*p))
            .map(|p| format!("{} is new", p.display()))
    }
}

fn fingerprint(path: &Path, bytes: u64) -> Result<FileFingerprint> {
    let mut file = File::open(path).at(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).at(path)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let sha256 = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(FileFingerprint { bytes, sha256 })
}

/// The inputs changed since the run started.
pub(super) fn changed(dir: &Path, what: String) -> RunDirError {
    RunDirError::InputsChanged {
        dir: dir.to_path_buf(),
        what,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_is_named_with_what_changed() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("train.tsv");
        let model = tmp.path().join("model");
        std::fs::create_dir_all(&model).unwrap();
        std::fs::write(&data, "text\tlabel\na\t1\nb\t0\n").unwrap();
        std::fs::write(model.join("config.json"), "{}").unwrap();
        std::fs::write(model.join(".hidden"), "x").unwrap();
        let paths = [data.clone(), model.clone()];
        let then = Inputs::of(&paths).unwrap();
        assert_eq!(then.files.len(), 2, "{then:?}");
        assert_eq!(then.first_change(&Inputs::of(&paths).unwrap()), None);

        std::fs::write(&data, "text\tlabel\na\t1\n").unwrap();
        let msg = then.first_change(&Inputs::of(&paths).unwrap()).unwrap();
        assert!(msg.contains("train.tsv changed size"), "{msg}");

        std::fs::write(&data, "text\tlabel\na\t1\nb\t1\n").unwrap();
        let msg = then.first_change(&Inputs::of(&paths).unwrap()).unwrap();
        assert!(msg.contains("train.tsv changed content"), "{msg}");

        std::fs::write(&data, "text\tlabel\na\t1\nb\t0\n").unwrap();
        std::fs::write(model.join("tokenizer.json"), "{}").unwrap();
        let msg = then.first_change(&Inputs::of(&paths).unwrap()).unwrap();
        assert!(msg.contains("tokenizer.json is new"), "{msg}");

        std::fs::remove_file(model.join("config.json")).unwrap();
        let msg = then.first_change(&Inputs::of(&paths).unwrap()).unwrap();
        assert!(msg.contains("config.json is gone"), "{msg}");
        assert!(Inputs::of(&[tmp.path().join("missing")]).is_err());
    }
}
