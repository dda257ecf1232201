//! `cargo xtask wheel`: the two Python wheels, built with maturin, and their check in a fresh
//! virtual environment.
//!
//! - `bomf` (`bomf-cli/pyproject.toml`, maturin's `bin` bindings): the `bomf` executable on
//!   PATH, CPU build; it depends on the same version of
//! - `bomf-bo` (`bomf-py/pyproject.toml`, pyo3, abi3): the `bomf_bo` module and its Optuna
//!   samplers.
//!
//! maturin (pinned, [`MATURIN`]) is installed with pip into `.bomf/venv-maturin` on first use.
//! `--test` then creates a new venv, installs the built `bomf` wheel (which pulls `bomf-bo`
//! from the same folder, numpy and Optuna from the registry) and runs what a user would: `bomf
//! --help`, the README's `bomf bo suggest` example, the README's Optuna example, and the
//! Python tests (`bomf-py/tests`, pytest).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{run, workspace_root};

/// The wheel builder, pinned like every other tool the project installs.
const MATURIN: &str = "maturin==1.16.0";
/// What the check venv installs beside the wheels.
const CHECK_REQUIREMENTS: [&str; 2] = ["optuna==5.1.0", "pytest==9.2.0"];

/// Options of `cargo xtask wheel`.
#[derive(Debug, Clone)]
pub struct WheelArgs {
    /// Build with the `dev` profile instead of `release` (a shorter build; the test build's
    /// artifacts are not reused, since cargo unifies dependency features per package selection).
    pub dev: bool,
    /// Check the wheels in a fresh venv.
    pub test: bool,
    /// Where the wheels go.
    pub out: Option<PathBuf>,
}

pub fn wheel(args: &WheelArgs) -> Result<()> {
    let root = workspace_root();
    let out = match &args.out {
        Some(o) => o.clone(),
        None => target_dir(&root).join("wheels"),
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let version = check_versions(&root)?;
    let maturin = maturin(&root)?;
    for stale in wheels_of(&out, &version)? {
        std::fs::remove_file(&stale).with_context(|| format!("removing {}", stale.display()))?;
    }
    for manifest in ["bomf-py/Cargo.toml", "bomf-cli/Cargo.toml"] {
        let mut c = Command::new(&maturin);
        c.current_dir(&root)
            .args(["build", "--manifest-path", manifest, "--out"])
            .arg(&out);
        if args.dev {
            c.args(["--profile", "dev"]);
        } else {
            c.arg("--release");
        }
        run(c)?;
    }
    let built = wheels_of(&out, &version)?;
    let bomf = built
        .iter()
        .find(|p| file_name(p).starts_with("bomf-"))
        .context("maturin reported success but wrote no bomf wheel")?;
    println!("wheels in {}:", out.display());
    for w in &built {
        println!("  {}", file_name(w));
    }
    if args.test {
        check_in_fresh_venv(&root, &out, bomf)?;
    }
    Ok(())
}

fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => root.join(t),
        None => root.join("target"),
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// The wheels of this version in `out` (`bomf-…` and `bomf_bo-…`).
fn wheels_of(out: &Path, version: &str) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(out).with_context(|| format!("listing {}", out.display()))? {
        let path = entry?.path();
        let name = file_name(&path);
        let ours = [format!("bomf-{version}-"), format!("bomf_bo-{version}-")];
        if name.ends_with(".whl") && ours.iter().any(|p| name.starts_with(p)) {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// The workspace version, after checking that `bomf`'s wheel requires exactly that `bomf-bo`.
fn check_versions(root: &Path) -> Result<String> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml"))?;
    let version = manifest
        .lines()
        .skip_while(|l| l.trim() != "[workspace.package]")
        .find_map(|l| l.trim().strip_prefix("version = "))
        .map(|v| v.trim_matches('"').to_owned())
        .context("Cargo.toml: no version in [workspace.package]")?;
    let pyproject = std::fs::read_to_string(root.join("bomf-cli/pyproject.toml"))?;
    let wanted = format!("\"bomf-bo=={version}\"");
    if !pyproject.contains(&wanted) {
        bail!(
            "bomf-cli/pyproject.toml must depend on {wanted} (the workspace version), so that \
             `pip install bomf` brings the matching Python module"
        );
    }
    Ok(version)
}

/// maturin from `.bomf/venv-maturin`, installed there with pip when missing.
fn maturin(root: &Path) -> Result<PathBuf> {
    let venv = root.join(".bomf/venv-maturin");
    let exe = venv.join("bin/maturin");
    let pinned = venv.join(format!("{MATURIN}.installed"));
    if exe.is_file() && pinned.is_file() {
        return Ok(exe);
    }
    new_venv(&venv)?;
    let mut c = Command::new(venv.join("bin/python"));
    c.args(["-m", "pip", "install", "--quiet", MATURIN]);
    run(c)?;
    std::fs::write(&pinned, "")?;
    Ok(exe)
}

fn new_venv(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let mut c = Command::new("python3");
    c.args(["-m", "venv"]).arg(dir);
    run(c).context("creating a Python virtual environment (needs python3 with the venv module)")
}

/// A fresh venv, the `bomf` wheel installed from `out`, then the user-facing checks.
fn check_in_fresh_venv(root: &Path, out: &Path, bomf: &Path) -> Result<()> {
    let venv = out.join("venv-check");
    new_venv(&venv)?;
    let python = venv.join("bin/python");
    let mut install = Command::new(&python);
    install
        .args(["-m", "pip", "install", "--quiet", "--find-links"])
        .arg(out)
        .arg(format!("{}[optuna]", bomf.display()))
        .args(CHECK_REQUIREMENTS);
    run(install)?;
    let work = out.join("check-work");
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work)?;
    let readme = std::fs::read_to_string(root.join("README.md"))?;
    let bin = venv.join("bin");
    let path = match std::env::var_os("PATH") {
        Some(p) => {
            std::env::join_paths(std::iter::once(bin.clone()).chain(std::env::split_paths(&p)))?
        }
        None => bin.clone().into(),
    };
    let in_venv = |program: &str| {
        let mut c = Command::new(bin.join(program));
        c.current_dir(&work).env("PATH", &path);
        c
    };

    let mut help = in_venv("bomf");
    help.arg("--help");
    run(help)?;
    suggest_example(&readme, &work, in_venv("bomf"))?;
    let example = work.join("optuna_example.py");
    std::fs::write(&example, readme_block(&readme, "optuna-example")?)?;
    let mut c = in_venv("python");
    c.arg(&example);
    run(c)?;
    let mut pytest = in_venv("python");
    pytest
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(root.join("bomf-py/tests"));
    run(pytest)?;
    println!(
        "the wheels install and work in a fresh venv ({})",
        venv.display()
    );
    Ok(())
}

/// `bomf bo suggest` on the README's `SPACE.json` and a two-line history: two candidates.
fn suggest_example(readme: &str, work: &Path, mut bomf: Command) -> Result<()> {
    std::fs::write(work.join("SPACE.json"), readme_block(readme, "space-json")?)?;
    std::fs::write(
        work.join("HISTORY.jsonl"),
        "{\"x\": [1e-5, 8], \"y\": [0.81, 0.52]}\n{\"x\": [3e-5, 16], \"y\": [null, null]}\n",
    )?;
    bomf.args([
        "bo",
        "suggest",
        "--space",
        "SPACE.json",
        "--history",
        "HISTORY.jsonl",
        "--q",
        "2",
    ]);
    eprintln!("running {bomf:?}");
    let output = bomf.output().context("running bomf bo suggest")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "bomf bo suggest failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let printed: serde_json::Value = serde_json::from_str(&stdout)
        .with_context(|| format!("bomf bo suggest printed {stdout:?}, not JSON"))?;
    let candidates = printed["candidates"].as_array().map_or(0, Vec::len);
    if candidates != 2 {
        bail!("bomf bo suggest printed {stdout:?}, expected two candidates");
    }
    println!("bomf bo suggest: {}", stdout.trim());
    Ok(())
}

/// The fenced block that follows `<!-- example: NAME -->` in the README.
fn readme_block(readme: &str, name: &str) -> Result<String> {
    let marker = format!("<!-- example: {name} -->");
    let after = readme
        .split_once(&marker)
        .with_context(|| format!("README.md has no `{marker}`"))?
        .1;
    let fence_start = after
        .find("```")
        .context("no fenced block after the marker")?;
    let body = &after[fence_start..];
    let body = &body[body.find('\n').context("unterminated fence")? + 1..];
    let end = body.find("\n```").context("unterminated fence")?;
    Ok(format!("{}\n", &body[..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readme_blocks_are_found_by_marker() {
        let text = "a\n<!-- example: x -->\n```json\n{\"a\": 1}\n```\n```py\nno\n```\n";
        assert_eq!(readme_block(text, "x").unwrap(), "{\"a\": 1}\n");
        assert!(readme_block(text, "y").is_err());
    }

    #[test]
    fn the_readme_carries_both_checked_examples_and_versions_agree() {
        let root = workspace_root();
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        assert!(
            readme_block(&readme, "space-json")
                .unwrap()
                .contains("\"objectives\"")
        );
        assert!(
            readme_block(&readme, "optuna-example")
                .unwrap()
                .contains("QNEHVISampler")
        );
        check_versions(&root).unwrap();
    }
}
