//! A run directory that survives crashes: one folder per run holding the config, every
//! evaluation, the BO state, the checkpoint manifest, the fused model and the report.
//!
//! Four mechanisms make `kill -9` + `--resume` safe:
//! - **A lock** (`run.lock`, an OS file lock held for the [`RunDir`]'s lifetime): two processes
//!   never write the same run by accident. The OS drops the lock when the process dies, so a
//!   crash never leaves a stale lock behind.
//! - **Atomic writes** ([`RunDir::write_atomic`]): whole-file state (BO state, manifests) is
//!   written to a temporary file in the same folder, fsynced and renamed over the target, so a
//!   reader sees the old file or the new one, never half of one.
//! - **Staged output folders** ([`StagedDir`]): a fused model is written next to its final
//!   folder and renamed into place, so it appears whole or not at all.
//! - **An append-only log** ([`EventLog`]): one JSON record per line, fsynced before `append`
//!   returns. The newline is the commit mark: a torn last line (the process died mid-write) is
//!   dropped with a warning and cut off before the next append; a corrupt line anywhere else is
//!   an error naming the file and line, because that is damage, not a crash.
//!
//! The module only knows paths, bytes and `serde` records; the pipeline decides what to store.

use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::marker::PhantomData;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

mod inputs;
mod staged;
pub use inputs::{FileFingerprint, INPUTS_FILE, Inputs};
pub use staged::StagedDir;

/// The run's configuration, as the user wrote it (compared byte for byte on resume).
pub const CONFIG_FILE: &str = "config.toml";
/// Every evaluation of a fusion, one JSON line each ([`EventLog`]).
pub const EVALUATIONS_FILE: &str = "evaluations.jsonl";
/// The Bayesian optimiser's state, rewritten atomically after each step.
pub const BO_STATE_FILE: &str = "bo_state.json";
/// Folder of the kept fine-tuning checkpoints.
pub const CHECKPOINTS_DIR: &str = "checkpoints";
/// Which checkpoints exist and where they came from, rewritten atomically.
pub const CHECKPOINT_MANIFEST_FILE: &str = "checkpoints/manifest.json";
/// Folder of the exported fused model.
pub const FUSED_DIR: &str = "fused";
/// Folder of `report.md` and its plots.
pub const REPORT_DIR: &str = "report";
/// The lock file; its presence means nothing, only the OS lock on it does.
pub const LOCK_FILE: &str = "run.lock";

/// What can go wrong with a run directory or one of its files. Every variant names the path.
#[derive(Debug, Error)]
pub enum RunDirError {
    /// Another live process (or another `RunDir` in this one) holds the run's lock.
    #[error("run directory {dir} is in use by another process (its lock {lock} is held)")]
    Locked { dir: PathBuf, lock: PathBuf },

    /// `create` was asked for a folder that already holds files.
    #[error(
        "run directory {dir} is not empty: resume it (--resume) or choose a new output directory"
    )]
    NotEmpty { dir: PathBuf },

    /// `open_for_resume` was pointed at a folder without `config.toml`.
    #[error("{dir} is not a run directory (no {CONFIG_FILE}); start a new run there instead")]
    NotARun { dir: PathBuf },

    /// The config given on resume is not the one the run started with.
    #[error(
        "{CONFIG_FILE} differs from the run's in {dir}: line {line}: run has `{stored}`, given `{given}`"
    )]
    ConfigMismatch {
        dir: PathBuf,
        line: usize,
        stored: String,
        given: String,
    },

    /// An input file of the run (data, model, tokenizer) changed since the run started.
    #[error(
        "the inputs of the run in {dir} changed since it started: {what}. Resuming would mix \
         evaluations of different data or models in one search: start a new run, or put the \
         file back as it was"
    )]
    InputsChanged { dir: PathBuf, what: String },

    /// A path given to the run directory is absolute or leaves it (`..`).
    #[error("path `{rel}` must be relative and stay inside the run directory")]
    InvalidPath { rel: PathBuf },

    /// A line of a JSON-lines log that is not the last one does not parse.
    #[error("{path}:{line}: corrupt record (only the last line may be torn by a crash): {message}")]
    CorruptRecord {
        path: PathBuf,
        line: usize,
        message: String,
    },

    /// A JSON file written by [`RunDir::write_json_atomic`] does not parse as the asked type.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// A record could not be serialised (a map with non-string keys, a failing `Serialize`).
    #[error("{path}: cannot serialise record: {source}")]
    Serialize {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, RunDirError>;

/// Attaches the path to an I/O error, so every failure says which file it was.
trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|source| RunDirError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// An open, locked run directory. Dropping it releases the lock.
pub struct RunDir {
    root: PathBuf,
    /// Held only for its OS lock, released when the file is closed.
    _lock: File,
}

impl fmt::Debug for RunDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunDir").field("root", &self.root).finish()
    }
}

impl RunDir {
    /// Starts a new run in `path` (created if missing), writing `config_text` as `config.toml`
    /// and the standard sub-folders. Refuses a folder that already holds anything but a lock
    /// file, so a finished or crashed run is never overwritten by accident.
    pub fn create(path: impl AsRef<Path>, config_text: &str) -> Result<Self> {
        let root = path.as_ref().to_path_buf();
        fs::create_dir_all(&root).at(&root)?;
        let lock = acquire_lock(&root)?;
        // Checked under the lock, so two racing `create`s cannot both see an empty folder.
        if has_entries_besides_lock(&root)? {
            return Err(RunDirError::NotEmpty { dir: root });
        }
        let run = Self { root, _lock: lock };
        for dir in [CHECKPOINTS_DIR, FUSED_DIR, REPORT_DIR] {
            let full = run.root.join(dir);
            fs::create_dir_all(&full).at(&full)?;
        }
        // Written last: a folder with `config.toml` is a run that can be resumed.
        run.write_atomic(CONFIG_FILE, config_text.as_bytes())?;
        Ok(run)
    }

    /// Reopens an existing run (after a crash or a stop) without checking its config; read it
    /// back with [`RunDir::config_text`]. Use [`RunDir::resume`] when the user gave a config.
    pub fn open_for_resume(path: impl AsRef<Path>) -> Result<Self> {
        let root = path.as_ref().to_path_buf();
        if !root.join(CONFIG_FILE).is_file() {
            return Err(RunDirError::NotARun { dir: root });
        }
        let lock = acquire_lock(&root)?;
        let run = Self { root, _lock: lock };
        // A user may have deleted a folder: recreate the layout quietly.
        for dir in [CHECKPOINTS_DIR, FUSED_DIR, REPORT_DIR] {
            let full = run.root.join(dir);
            fs::create_dir_all(&full).at(&full)?;
        }
        // We hold the lock, so no live writer owns these: they are leftovers of a crash.
        for dir in [
            run.root.clone(),
            run.checkpoints_dir(),
            run.fused_dir(),
            run.report_dir(),
        ] {
            remove_stale_temp_files(&dir)?;
        }
        Ok(run)
    }

    /// Reopens an existing run and checks that `config_text` is the config it started with:
    /// resuming with other settings would mix two experiments in one directory.
    pub fn resume(path: impl AsRef<Path>, config_text: &str) -> Result<Self> {
        let run = Self::open_for_resume(path)?;
        run.verify_config(config_text)?;
        Ok(run)
    }

    /// `resume` when `path` already holds a run, `create` otherwise: what `--resume` means.
    pub fn create_or_resume(path: impl AsRef<Path>, config_text: &str) -> Result<Self> {
        let path = path.as_ref();
        if path.join(CONFIG_FILE).is_file() {
            Self::resume(path, config_text)
        } else {
            Self::create(path, config_text)
        }
    }

    /// Checks the run's inputs against those it started with (`inputs.json`), or records
    /// them for a run that has none yet (a new run, or one from before inputs were recorded).
    /// A difference is [`RunDirError::InputsChanged`], naming the first file that differs.
    pub fn check_inputs(&self, now: &Inputs) -> Result<()> {
        match self.read_json::<Inputs>(INPUTS_FILE)? {
            Some(then) => match then.first_change(now) {
                Some(what) => Err(inputs::changed(&self.root, what)),
                None => Ok(()),
            },
            None => self.write_json_atomic(INPUTS_FILE, now),
        }
    }

    /// The run's folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `rel` inside the run, after checking it cannot escape the folder.
    pub fn path(&self, rel: impl AsRef<Path>) -> Result<PathBuf> {
        let rel = rel.as_ref();
        let stays_inside = rel.components().next().is_some()
            && rel.components().all(|c| matches!(c, Component::Normal(_)));
        if !stays_inside {
            return Err(RunDirError::InvalidPath {
                rel: rel.to_path_buf(),
            });
        }
        Ok(self.root.join(rel))
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.join(CONFIG_FILE)
    }
    pub fn evaluations_path(&self) -> PathBuf {
        self.root.join(EVALUATIONS_FILE)
    }
    pub fn bo_state_path(&self) -> PathBuf {
        self.root.join(BO_STATE_FILE)
    }
    pub fn checkpoints_dir(&self) -> PathBuf {
        self.root.join(CHECKPOINTS_DIR)
    }
    pub fn checkpoint_manifest_path(&self) -> PathBuf {
        self.root.join(CHECKPOINT_MANIFEST_FILE)
    }
    pub fn fused_dir(&self) -> PathBuf {
        self.root.join(FUSED_DIR)
    }
    pub fn report_dir(&self) -> PathBuf {
        self.root.join(REPORT_DIR)
    }

    /// The config the run started with.
    pub fn config_text(&self) -> Result<String> {
        let path = self.config_path();
        fs::read_to_string(&path).at(&path)
    }

    /// Errors with the first differing line when `config_text` is not the run's config.
    pub fn verify_config(&self, config_text: &str) -> Result<()> {
        let stored = self.config_text()?;
        match first_difference(&stored, config_text) {
            None => Ok(()),
            Some((line, stored_line, given_line)) => Err(RunDirError::ConfigMismatch {
                dir: self.root.clone(),
                line,
                stored: stored_line,
                given: given_line,
            }),
        }
    }

    /// Replaces `rel` with `bytes` atomically (see [`write_atomic`]).
    pub fn write_atomic(&self, rel: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
        write_atomic(&self.path(rel)?, bytes)
    }

    /// Replaces `rel` with `value` as pretty JSON, atomically.
    pub fn write_json_atomic<T: Serialize + ?Sized>(
        &self,
        rel: impl AsRef<Path>,
        value: &T,
    ) -> Result<()> {
        let path = self.path(rel)?;
        let mut bytes =
            serde_json::to_vec_pretty(value).map_err(|source| RunDirError::Serialize {
                path: path.clone(),
                source,
            })?;
        bytes.push(b'\n');
        write_atomic(&path, &bytes)
    }

    /// Reads `rel` as JSON; `Ok(None)` when the file does not exist yet (a fresh run).
    pub fn read_json<T: DeserializeOwned>(&self, rel: impl AsRef<Path>) -> Result<Option<T>> {
        let path = self.path(rel)?;
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(RunDirError::Io { path, source: e }),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| RunDirError::Json { path, source })
    }

    /// Opens (creating if needed) the JSON-lines log `rel`, repairing a torn last line.
    pub fn event_log<T: Serialize + DeserializeOwned>(
        &self,
        rel: impl AsRef<Path>,
    ) -> Result<EventLog<T>> {
        EventLog::open(self.path(rel)?)
    }

    /// The run's `evaluations.jsonl`.
    pub fn evaluations<T: Serialize + DeserializeOwned>(&self) -> Result<EventLog<T>> {
        self.event_log(EVALUATIONS_FILE)
    }
}

fn acquire_lock(root: &Path) -> Result<File> {
    let lock_path = root.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .at(&lock_path)?;
    // A lock can be held for a moment after its owner released it: a process forked elsewhere
    // in this program shares the descriptor until it execs. Retry briefly before calling the
    // directory busy.
    for attempt in 0..=LOCK_RETRIES {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(TryLockError::WouldBlock) if attempt < LOCK_RETRIES => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(TryLockError::WouldBlock) => break,
            Err(TryLockError::Error(source)) => {
                return Err(RunDirError::Io {
                    path: lock_path,
                    source,
                });
            }
        }
    }
    Err(RunDirError::Locked {
        dir: root.to_path_buf(),
        lock: lock_path,
    })
}

/// Lock attempts after the first (20 ms apart).
const LOCK_RETRIES: usize = 10;

/// Deletes the temporary files [`write_atomic`] leaves in `dir` when a crash interrupts it.
fn remove_stale_temp_files(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        if is_temp_name(&entry.file_name().to_string_lossy()) && entry.path().is_file() {
            tracing::warn!(path = %entry.path().display(), "removing a temporary file left by a crash");
            fs::remove_file(entry.path()).at(&entry.path())?;
        }
    }
    Ok(())
}

/// Whether `name` has the shape of [`write_atomic`]'s temporary names: `.{target}.tmp.{pid}.{n}`.
fn is_temp_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.') else {
        return false;
    };
    let mut tail = rest.rsplitn(3, '.');
    let (Some(counter), Some(pid), Some(head)) = (tail.next(), tail.next(), tail.next()) else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(counter) && digits(pid) && head.ends_with(".tmp")
}

fn has_entries_besides_lock(root: &Path) -> Result<bool> {
    for entry in fs::read_dir(root).at(root)? {
        let entry = entry.at(root)?;
        if entry.file_name() != LOCK_FILE {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The first line (1-based) where the two texts differ, with both lines (`<end of file>` when
/// one text is shorter). Trailing whitespace differences on a line count: the check is exact.
fn first_difference(stored: &str, given: &str) -> Option<(usize, String, String)> {
    if stored == given {
        return None;
    }
    let mut stored_lines = stored.split('\n');
    let mut given_lines = given.split('\n');
    let mut line = 1;
    loop {
        match (stored_lines.next(), given_lines.next()) {
            (Some(a), Some(b)) if a == b => line += 1,
            (a, b) => {
                let show = |s: Option<&str>| s.map_or("<end of file>".to_string(), str::to_string);
                return Some((line, show(a), show(b)));
            }
        }
    }
}

/// Makes temporary names unique within the process (two threads writing the same target).
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Replaces `path` with `bytes` so that readers and crashes see the old content or the new,
/// never a mix: write a temporary file beside it, fsync, rename over `path`, fsync the folder
/// (which makes the rename itself durable). Parent folders are created.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |file| file.write_all(bytes))
}

/// [`write_atomic`] for content produced by a writer (e.g. `serde_json::to_writer`). If
/// `fill` fails, the temporary file is removed and `path` keeps its old content.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<()> {
    let (dir, name) = created_parent(path)?;
    let temp = dir.join(format!(
        ".{}.tmp.{}.{}",
        name.to_string_lossy(),
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .at(&temp)?;
        fill(&mut file).at(&temp)?;
        file.sync_all().at(&temp)?;
        drop(file);
        fs::rename(&temp, path).at(path)
    })();
    if let Err(e) = written {
        // Best effort: the original error is the one worth reporting.
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    sync_dir(dir)
}

/// The folder `path` is in (`.` for a bare name), created if missing, and `path`'s file name:
/// where a file or folder is prepared before it is renamed to `path`.
fn created_parent(path: &Path) -> Result<(&Path, &OsStr)> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(RunDirError::InvalidPath {
            rel: path.to_path_buf(),
        });
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    fs::create_dir_all(dir).at(dir)?;
    Ok((dir, name))
}

/// Makes a rename or a new file in `dir` durable (POSIX needs the folder itself fsynced).
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// An append-only JSON-lines log of `T` records, durable record by record.
///
/// Opening it repairs a torn last line (cut back to the last complete record, with a warning),
/// so records appended after a crash follow directly on the complete ones.
pub struct EventLog<T> {
    path: PathBuf,
    file: File,
    _records: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for EventLog<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventLog")
            .field("path", &self.path)
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned> EventLog<T> {
    /// Opens `path` for appending (created if missing). A torn or corrupt last line is cut
    /// off; a corrupt line before it is an error and the file is left untouched.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).at(dir)?;
        }
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .at(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).at(&path)?;
        let scan = scan_records::<T>(&path, &bytes)?;
        if scan.complete_len < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                dropped_bytes = bytes.len() - scan.complete_len,
                "cutting a torn last line left by an interrupted write"
            );
            file.set_len(scan.complete_len as u64).at(&path)?;
            file.sync_all().at(&path)?;
        }
        if !existed && let Some(dir) = path.parent() {
            sync_dir(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            })?;
        }
        Ok(Self {
            path,
            file,
            _records: PhantomData,
        })
    }

    /// The log's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `record` as one line and fsyncs it: once this returns, the record survives a
    /// crash. The whole line goes out in one `write` so a crash tears at most this line.
    pub fn append(&mut self, record: &T) -> Result<()> {
        let mut line = serde_json::to_vec(record).map_err(|source| RunDirError::Serialize {
            path: self.path.clone(),
            source,
        })?;
        // Compact serde_json escapes newlines inside strings, so a record is always one line.
        line.push(b'\n');
        self.file.write_all(&line).at(&self.path)?;
        self.file.flush().at(&self.path)?;
        self.file.sync_data().at(&self.path)
    }

    /// Every complete record in the file, in order (see [`read_records`]).
    pub fn read_all(&self) -> Result<Vec<T>> {
        read_records(&self.path)
    }
}

/// Reads every complete record of the JSON-lines file `path` without changing it (safe while
/// another process appends). A missing file has no records. A torn or corrupt last line is
/// dropped with a warning; a corrupt line before it is [`RunDirError::CorruptRecord`].
pub fn read_records<T: DeserializeOwned>(path: impl AsRef<Path>) -> Result<Vec<T>> {
    let path = path.as_ref();
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(RunDirError::Io {
                path: path.to_path_buf(),
                source: e,
            });
        }
    };
    let scan = scan_records(path, &bytes)?;
    if scan.complete_len < bytes.len() {
        tracing::warn!(
            path = %path.display(),
            dropped_bytes = bytes.len() - scan.complete_len,
            "ignoring a torn last line left by an interrupted write"
        );
    }
    Ok(scan.records)
}

/// The parsed records and the byte length of the prefix they occupy.
struct Scan<T> {
    records: Vec<T>,
    complete_len: usize,
}

/// Parses the log. A record counts only when its line ends with `\n` (the commit mark that
/// `append` writes last) and parses; the last line may fail either test (a crash tore it),
/// any earlier line must pass both. Blank lines are skipped.
fn scan_records<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<Scan<T>> {
    let mut records = Vec::new();
    let mut complete_len = 0;
    let mut start = 0;
    let mut line_no = 0;
    while start < bytes.len() {
        line_no += 1;
        let (line, next, terminated) = match bytes[start..].iter().position(|&b| b == b'\n') {
            Some(i) => (&bytes[start..start + i], start + i + 1, true),
            None => (&bytes[start..], bytes.len(), false),
        };
        let is_last = next >= bytes.len();
        if line.iter().all(u8::is_ascii_whitespace) {
            if terminated {
                complete_len = next;
            }
            start = next;
            continue;
        }
        let parsed = if terminated {
            serde_json::from_slice::<T>(line).map_err(|e| e.to_string())
        } else {
            Err("line has no terminating newline".to_string())
        };
        match parsed {
            Ok(record) => {
                records.push(record);
                complete_len = next;
            }
            Err(_) if is_last => break,
            Err(message) => {
                return Err(RunDirError::CorruptRecord {
                    path: path.to_path_buf(),
                    line: line_no,
                    message,
                });
            }
        }
        start = next;
    }
    Ok(Scan {
        records,
        complete_len,
    })
}
