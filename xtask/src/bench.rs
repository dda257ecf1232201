//! Side-by-side anchors for `cargo xtask bench`: the same measurement timed by our Rust code and
//! by the Python reference (BoTorch for `bomf-bo`, PyTorch for `bomf-models`).
//!
//! Protocol, shared by every crate that has anchors: `<crate>/examples/bench_anchor.rs` (run in
//! release) and `<crate>/benches/anchor.py` each print JSON lines
//! `{"name": "...", "seconds": <median>}` on stdout; other lines are ignored. The two sides are
//! paired by name into a table with the ratio python / bomf (above 1: we are faster).
//!
//! The Python side is optional: it runs with `BOMF_PYTHON_<SUITE>` (e.g. `BOMF_PYTHON_BO`), else
//! `BOMF_PYTHON`, else `python3`. When that interpreter is missing or lacks a module the script
//! imports, the table shows "-" and a note says how to point at a suitable one.
//! Both sides read `BOMF_BENCH_REPS` (repetitions per measurement) from the environment.
//! `BOMF_BENCH_ROUNDS=N` (default 1) runs the pair N times, alternating sides, and reports the
//! median of each side's per-round medians: on a shared machine the load drifts within minutes,
//! and alternating gives both sides the same share of it.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// One crate's anchor pair, relative to the workspace root.
#[derive(Debug, Clone)]
pub struct Anchors {
    /// Cargo package name, e.g. `bomf-bo`.
    pub package: &'static str,
    /// Upper-case suite name for the per-suite interpreter variable, e.g. `BO`.
    pub suite_env: &'static str,
}

impl Anchors {
    fn example_path(&self) -> String {
        format!("{}/examples/bench_anchor.rs", self.package)
    }

    /// Cargo's name for the example: `<suite>_anchor` (example names share one output
    /// directory across the workspace, so each crate's must be unique).
    fn example_name(&self) -> String {
        format!("{}_anchor", self.suite_env.to_lowercase())
    }

    fn script_path(&self) -> String {
        format!("{}/benches/anchor.py", self.package)
    }

    /// Whether the crate ships anchors (the example is the mandatory half).
    pub fn exist_in(&self, root: &Path) -> bool {
        root.join(self.example_path()).is_file()
    }

    /// The Python interpreter to use, and the variable it came from (for the notes).
    fn python(&self) -> (String, String) {
        let specific = format!("BOMF_PYTHON_{}", self.suite_env);
        for var in [specific.as_str(), "BOMF_PYTHON"] {
            if let Some(value) = std::env::var_os(var).filter(|v| !v.is_empty()) {
                return (value.to_string_lossy().into_owned(), var.to_owned());
            }
        }
        ("python3".to_owned(), "default".to_owned())
    }
}

/// The measured medians of one side, by name, in the order they were printed.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Timings {
    pub order: Vec<String>,
    pub seconds: BTreeMap<String, f64>,
}

/// Parse the anchor protocol's JSON lines; lines that are not JSON objects with a string
/// `name` and a numeric `seconds` are skipped (scripts may log freely).
pub fn parse_timings(stdout: &str) -> Timings {
    let mut timings = Timings::default();
    for line in stdout.lines().map(str::trim).filter(|l| l.starts_with('{')) {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(name), Some(seconds)) = (
            value.get("name").and_then(|v| v.as_str()),
            value.get("seconds").and_then(|v| v.as_f64()),
        ) else {
            continue;
        };
        if timings.seconds.insert(name.to_owned(), seconds).is_none() {
            timings.order.push(name.to_owned());
        }
    }
    timings
}

/// Seconds in a readable unit (µs, ms or s, three significant digits).
pub fn format_seconds(seconds: f64) -> String {
    if seconds < 1e-3 {
        format!("{:.1} µs", seconds * 1e6)
    } else if seconds < 1.0 {
        format!("{:.1} ms", seconds * 1e3)
    } else {
        format!("{seconds:.2} s")
    }
}

/// The side-by-side table (Markdown): every name of either side, ours first in our order.
pub fn table(ours: &Timings, python: &Timings) -> String {
    let mut names = ours.order.clone();
    names.extend(
        python
            .order
            .iter()
            .filter(|n| !ours.seconds.contains_key(*n))
            .cloned(),
    );
    let width = names.iter().map(String::len).max().unwrap_or(4).max(4);
    let mut out = format!(
        "| {:<width$} | {:>10} | {:>10} | {:>17} |\n|{}|{}|{}|{}|\n",
        "name",
        "bomf",
        "python",
        "ratio (py/bomf)",
        "-".repeat(width + 2),
        "-".repeat(12),
        "-".repeat(12),
        "-".repeat(19),
    );
    for name in &names {
        let ours = ours.seconds.get(name).copied();
        let theirs = python.seconds.get(name).copied();
        let cell = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), format_seconds);
        let ratio = match (ours, theirs) {
            (Some(a), Some(b)) if a > 0.0 => format!("{:.2}x", b / a),
            _ => "-".to_owned(),
        };
        out.push_str(&format!(
            "| {name:<width$} | {:>10} | {:>10} | {ratio:>17} |\n",
            cell(ours),
            cell(theirs),
        ));
    }
    out
}

/// What became of the Python side.
#[derive(Debug)]
enum PythonOutcome {
    Ran(Timings),
    /// Not run, with the reason to print.
    Skipped(String),
}

/// The missing module named in a Python traceback, if that is why it failed.
pub fn missing_module(stderr: &str) -> Option<String> {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.contains("No module named"))?;
    let name = line.split("No module named").nth(1)?.trim();
    Some(name.trim_matches(|c| c == '\'' || c == '"').to_owned())
}

/// Run both sides of `anchors` from `root` (with `envs` added) and print the table.
pub fn run_anchors(
    anchors: &Anchors,
    root: &Path,
    cargo: impl Fn() -> Command,
    envs: &[(String, String)],
) -> Result<()> {
    let rounds = match std::env::var("BOMF_BENCH_ROUNDS") {
        Err(_) => 1,
        Ok(v) => v
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .with_context(|| format!("BOMF_BENCH_ROUNDS={v} is not a positive integer"))?,
    };
    let (mut ours_rounds, mut python_rounds) = (Vec::new(), Vec::new());
    let mut python = PythonOutcome::Ran(Timings::default());
    for round in 1..=rounds {
        if rounds > 1 {
            eprintln!("round {round} of {rounds}");
        }
        ours_rounds.push(run_rust(anchors, cargo(), envs)?);
        python = run_python(anchors, root, envs)?;
        match &python {
            PythonOutcome::Ran(timings) => python_rounds.push(timings.clone()),
            PythonOutcome::Skipped(_) => {}
        }
    }
    let ours = median_of_rounds(&ours_rounds);
    if let PythonOutcome::Ran(_) = python {
        python = PythonOutcome::Ran(median_of_rounds(&python_rounds));
    }
    println!(
        "\n{} anchors (median seconds per call{}):",
        anchors.package,
        if rounds > 1 {
            format!(", median of {rounds} alternating rounds")
        } else {
            String::new()
        }
    );
    match &python {
        PythonOutcome::Ran(timings) => print!("{}", table(&ours, timings)),
        PythonOutcome::Skipped(why) => {
            print!("{}", table(&ours, &Timings::default()));
            println!("note: Python side skipped: {why}");
        }
    }
    Ok(())
}

/// Per name, the median of the rounds' values (names in the first round's order).
pub fn median_of_rounds(rounds: &[Timings]) -> Timings {
    let mut out = Timings::default();
    for round in rounds {
        for name in &round.order {
            if !out.order.contains(name) {
                out.order.push(name.clone());
            }
        }
    }
    for name in &out.order {
        let mut values: Vec<f64> = rounds
            .iter()
            .filter_map(|r| r.seconds.get(name).copied())
            .collect();
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        };
        out.seconds.insert(name.clone(), median);
    }
    out
}

fn run_rust(anchors: &Anchors, mut cargo: Command, envs: &[(String, String)]) -> Result<Timings> {
    let example = anchors.example_name();
    cargo.args([
        "run",
        "--release",
        "-p",
        anchors.package,
        "--example",
        example.as_str(),
    ]);
    cargo.envs(envs.iter().map(|(k, v)| (k, v)));
    cargo.stderr(Stdio::inherit());
    eprintln!("running {cargo:?}");
    let output = cargo
        .output()
        .with_context(|| format!("starting {cargo:?}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("{cargo:?} failed ({}):\n{stdout}", output.status);
    }
    let timings = parse_timings(&stdout);
    if timings.order.is_empty() {
        bail!(
            "{} printed no anchor lines:\n{stdout}",
            anchors.example_path()
        );
    }
    Ok(timings)
}

fn run_python(anchors: &Anchors, root: &Path, envs: &[(String, String)]) -> Result<PythonOutcome> {
    let script = root.join(anchors.script_path());
    if !script.is_file() {
        return Ok(PythonOutcome::Skipped(format!(
            "{} does not exist",
            anchors.script_path()
        )));
    }
    let (python, source) = anchors.python();
    let mut command = Command::new(&python);
    command
        .arg(&script)
        .current_dir(root)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null());
    eprintln!("running {command:?}");
    let output = match command.output() {
        Ok(output) => output,
        Err(err) => {
            return Ok(PythonOutcome::Skipped(format!(
                "cannot start {python:?} ({source}): {err}; set BOMF_PYTHON_{} or BOMF_PYTHON",
                anchors.suite_env
            )));
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        if let Some(module) = missing_module(&stderr) {
            return Ok(PythonOutcome::Skipped(format!(
                "{python} ({source}) has no module {module:?}; point BOMF_PYTHON_{} or \
                 BOMF_PYTHON at an interpreter that imports what {} needs",
                anchors.suite_env,
                anchors.script_path()
            )));
        }
        bail!(
            "{command:?} failed ({}):\n{}",
            output.status,
            tail(&stderr, 40)
        );
    }
    Ok(PythonOutcome::Ran(parse_timings(&String::from_utf8_lossy(
        &output.stdout,
    ))))
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_lines_are_parsed_and_noise_is_skipped() {
        let out = "warming up\n{\"name\": \"a\", \"seconds\": 0.5}\n{\"oops\"\n\
                   {\"name\": \"b\", \"seconds\": 2}\n{\"name\": 3, \"seconds\": 1}\n";
        let t = parse_timings(out);
        assert_eq!(t.order, ["a", "b"]);
        assert_eq!(t.seconds["a"], 0.5);
        assert_eq!(t.seconds["b"], 2.0);
    }

    #[test]
    fn the_table_pairs_by_name_and_divides_python_by_ours() {
        let ours = parse_timings(
            "{\"name\":\"step\",\"seconds\":0.5}\n{\"name\":\"only_ours\",\"seconds\":0.001}",
        );
        let py = parse_timings(
            "{\"name\":\"only_py\",\"seconds\":3}\n{\"name\":\"step\",\"seconds\":2.0}",
        );
        let text = table(&ours, &py);
        let rows: Vec<&str> = text.lines().collect();
        assert_eq!(rows.len(), 5, "{text}");
        assert!(
            rows[2].starts_with("| step") && rows[2].contains("4.00x"),
            "{text}"
        );
        assert!(
            rows[3].contains("only_ours") && rows[3].contains("1.0 ms"),
            "{text}"
        );
        assert!(
            rows[4].contains("only_py") && rows[4].contains("3.00 s"),
            "{text}"
        );
        assert!(rows[3].trim_end().ends_with("- |"), "{text}");
    }

    #[test]
    fn a_missing_module_is_recognised() {
        let err = "Traceback (most recent call last):\n  File \"a.py\", line 3\n\
                   ModuleNotFoundError: No module named 'botorch'\n";
        assert_eq!(missing_module(err).as_deref(), Some("botorch"));
        assert_eq!(missing_module("ValueError: bad"), None);
    }

    #[test]
    fn seconds_use_a_readable_unit() {
        assert_eq!(format_seconds(2.5e-5), "25.0 µs");
        assert_eq!(format_seconds(0.0123), "12.3 ms");
        assert_eq!(format_seconds(4.0), "4.00 s");
    }

    #[test]
    fn rounds_combine_by_median_per_name() {
        let round = |pairs: &[(&str, f64)]| {
            parse_timings(
                &pairs
                    .iter()
                    .map(|(n, s)| format!("{{\"name\": \"{n}\", \"seconds\": {s}}}\n"))
                    .collect::<String>(),
            )
        };
        let combined = median_of_rounds(&[
            round(&[("a", 3.0), ("b", 1.0)]),
            round(&[("a", 1.0)]),
            round(&[("a", 2.0), ("b", 5.0)]),
        ]);
        assert_eq!(combined.order, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(combined.seconds["a"], 2.0);
        assert_eq!(combined.seconds["b"], 3.0);
    }
}
