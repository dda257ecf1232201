//! Running the `bomf` binary and reading what it writes: its output, the command lines the
//! tests give it, the configs they write ([`config`]), and the event log of a run, also while
//! the run is interrupted ([`interrupt`]).

pub mod config;
pub mod interrupt;

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// Runs `exe` with `args` in `dir` and returns its output.
pub fn run<S: AsRef<OsStr>>(exe: &str, args: &[S], dir: &Path) -> Output {
    Command::new(exe)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the bomf binary runs")
}

/// Asserts success and returns stdout.
pub fn succeed(out: &Output) -> String {
    assert!(
        out.status.success(),
        "bomf failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts success and returns stderr (where progress and summaries go).
pub fn succeed_stderr(out: &Output) -> String {
    succeed(out);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts success and returns stdout read as JSON.
pub fn succeed_json(out: &Output) -> Value {
    serde_json::from_str(&succeed(out)).expect("stdout is JSON")
}

/// Asserts failure and returns stderr (the error message).
pub fn fail(out: &Output) -> String {
    assert!(!out.status.success(), "bomf should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts that `text` (an error message, a report) contains each of `parts`, showing the whole
/// text when one is missing.
pub fn assert_mentions(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "{part:?} missing from:\n{text}");
    }
}

/// `a` equals the reference `b` to `tol` relative to `1 + |b|`.
pub fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

/// A JSON file's value.
pub fn json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `CMD --model MODEL` followed by `flags`.
pub fn model_args(cmd: &str, model: &Path, flags: &[&str]) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![cmd.into(), "--model".into(), model.into()];
    args.extend(flags.iter().map(Into::into));
    args
}

/// `train --model MODEL --data SPEC --out OUT` followed by `flags`.
pub fn train_args(model: &Path, spec: &Path, out: &str, flags: &[&str]) -> Vec<OsString> {
    let mut args = model_args("train", model, &["--data"]);
    args.extend([spec.into(), "--out".into(), out.into()]);
    args.extend(flags.iter().map(Into::into));
    args
}

/// `fuse --checkpoints C... --weights WEIGHTS --out OUT` followed by `flags`.
pub fn fuse_args<P: AsRef<OsStr>>(
    checkpoints: &[P],
    weights: &str,
    out: &Path,
    flags: &[&str],
) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["fuse".into(), "--checkpoints".into()];
    args.extend(checkpoints.iter().map(Into::into));
    args.extend([
        "--weights".into(),
        weights.into(),
        "--out".into(),
        out.into(),
    ]);
    args.extend(flags.iter().map(Into::into));
    args
}

/// `run CONFIG --out OUT` followed by `flags`.
pub fn run_args<'a>(config: &'a Path, out: &'a str, flags: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["run", config.to_str().unwrap(), "--out", out];
    args.extend(flags);
    args
}

/// Writes to `to` the text of `from` with `pattern` replaced by `with`, and returns that text
/// (`from` and `to` may be the same file).
pub fn write_replaced(from: &Path, to: &Path, pattern: &str, with: &str) -> String {
    let text = std::fs::read_to_string(from)
        .unwrap_or_else(|e| panic!("reading {}: {e}", from.display()))
        .replace(pattern, with);
    std::fs::write(to, &text).unwrap();
    text
}

/// `bo suggest --space space.json` followed by `flags`.
pub fn bo_suggest<'a>(flags: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["bo", "suggest", "--space", "space.json"];
    args.extend(flags);
    args
}

/// The checkpoint files that `CHECKPOINTS/manifest.json` (written by `bomf train`) lists, in its
/// order.
pub fn manifest_files(checkpoints: &Path) -> Vec<PathBuf> {
    json(&checkpoints.join("manifest.json"))["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| checkpoints.join(e["file"].as_str().unwrap()))
        .collect()
}

/// With the `bomf` binary `exe`, in `dir`: fuses `checkpoints` at 0.2, 0.3 and 0.5 into
/// `fused`, then evaluates that folder on the labelled file `file`; returns what `eval` printed.
pub fn fuse_then_eval(exe: &str, dir: &Path, checkpoints: &[PathBuf], file: &Path) -> Value {
    let fused = Path::new("fused");
    succeed(&run(
        exe,
        &fuse_args(checkpoints, "0.2,0.3,0.5", fused, &[]),
        dir,
    ));
    let flags = ["--file", file.to_str().unwrap()];
    succeed_json(&run(exe, &model_args("eval", fused, &flags), dir))
}

/// What a run logged in `RUN/evaluations.jsonl` (nothing while the file does not exist).
pub fn events(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("evaluations.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// How many events of kind `event` (`"checkpoints"`, `"hp_trial"`, ...) the run in `run` logged.
pub fn count_events(run: &Path, event: &str) -> usize {
    events(run).iter().filter(|e| e["event"] == event).count()
}

/// The indices of the fusion evaluations of `search` (`"bomf"`, ...) in the order logged.
pub fn fusion_indices(run: &Path, search: &str) -> Vec<u64> {
    events(run)
        .iter()
        .filter(|e| e["event"] == "fusion" && e["search"] == search)
        .map(|e| e["index"].as_u64().unwrap())
        .collect()
}

/// Asserts that the run folder `run` holds what every run writes (its config, the checkpoint
/// manifest, the fused model folder, the report) and each of `files`, and that its
/// `results.json` has a row for each of `methods`; returns `results.json`.
pub fn assert_run_outputs(run: &Path, methods: &[&str], files: &[&str]) -> Value {
    let results = json(&run.join("results.json"));
    let names: Vec<&str> = results["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["method"].as_str().unwrap())
        .collect();
    for m in methods {
        assert!(names.contains(m), "{m} missing from {names:?}");
    }
    let always = [
        "config.toml",
        "checkpoints/manifest.json",
        "fused/config.json",
        "fused/model.safetensors",
        "fused/tokenizer.json",
        "report/report.md",
    ];
    for f in always.iter().chain(files) {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    results
}
