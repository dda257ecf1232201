//! `bomf bo suggest` and `bomf bo hypervolume`: the BO engine behind JSON files.
//!
//! `suggest` is stateless on purpose: the history file is the state. Every call replays the
//! history into a fresh [`Optimizer`] with the same seed, so the same files always give the
//! same candidates, and a caller in any language can stop and resume by keeping one file.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bomf_bo::{
    AcquisitionKind, MAX_EXACT_GP, Optimizer, OptimizerSettings, RefPointRule, SpaceConfig,
    hypervolume,
};
use clap::{Args, Subcommand, ValueEnum};
use serde::Deserialize;

#[derive(Debug, Subcommand)]
pub enum BoCommand {
    /// Propose the next candidates given a search space and the evaluations so far.
    ///
    /// Prints `{"candidates": [[...], ...]}` on stdout. With an empty (or missing) history the
    /// candidates come from a scrambled Sobol design; once enough evaluations have succeeded,
    /// from the acquisition function.
    Suggest(SuggestArgs),
    /// Hypervolume dominated by a set of points with respect to a reference point.
    Hypervolume(HypervolumeArgs),
}

#[derive(Debug, Args)]
pub struct SuggestArgs {
    /// Search space and objectives: `{"params": [...], "objectives": [...], "ref_point": [...]?,
    /// "domain": "box"|"simplex"}`.
    #[arg(long, value_name = "SPACE.json")]
    space: PathBuf,
    /// One evaluation per line: `{"x": [...], "y": [...]}` in user units; a `null`, `NaN` or
    /// `Infinity` `y` entry (what Python's `json.dumps` writes for a non-finite float) marks a
    /// failed evaluation. `{"x": [...], "pending": true}` marks a point being evaluated now
    /// (another worker's): no candidate repeats it. A missing file is an empty history.
    #[arg(long, value_name = "HISTORY.jsonl")]
    history: Option<PathBuf>,
    /// Acquisition function (default: qlogei for one objective, qnehvi for several).
    #[arg(long, value_enum)]
    acq: Option<AcqArg>,
    /// Number of candidates to propose (sequential greedy when > 1).
    #[arg(long, default_value_t = 1)]
    q: usize,
    /// Seed of every random choice; the same files and seed give the same candidates.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Successful evaluations before the acquisition takes over (default: max(d + 1, 5)).
    #[arg(long)]
    n_initial: Option<usize>,
    /// Most successful evaluations the GP is fitted on. A longer history is fitted on this
    /// many, chosen around the Pareto front (every Pareto-optimal evaluation, the best ones
    /// for one objective, plus a seeded sample of the rest), which stderr reports. A GP's
    /// time grows as the cube of this number; sizes that would need more than 4 GiB are
    /// refused.
    #[arg(long, default_value_t = MAX_EXACT_GP)]
    max_gp_points: usize,
    /// Several objectives and no `ref_point` in SPACE.json: where the hypervolume reference
    /// point goes at each step. `front`: BoTorch's `infer_reference_point` on the observed
    /// front; `observed`: just below the worst successful value of each objective (Optuna's
    /// BoTorchSampler rule).
    #[arg(long, value_enum, default_value_t = RefRuleArg::Front)]
    ref_rule: RefRuleArg,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RefRuleArg {
    Front,
    Observed,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AcqArg {
    Qlogei,
    Qehvi,
    Qnehvi,
    Qlognehvi,
}

impl From<AcqArg> for AcquisitionKind {
    fn from(a: AcqArg) -> Self {
        match a {
            AcqArg::Qlogei => AcquisitionKind::QLogEi,
            AcqArg::Qehvi => AcquisitionKind::QEhvi,
            AcqArg::Qnehvi => AcquisitionKind::QNehvi,
            AcqArg::Qlognehvi => AcquisitionKind::QLogNehvi,
        }
    }
}

#[derive(Debug, Args)]
pub struct HypervolumeArgs {
    /// Reference point, comma separated (e.g. `--ref 0,0`).
    #[arg(
        long = "ref",
        value_name = "R1,R2,...",
        value_delimiter = ',',
        allow_hyphen_values = true
    )]
    ref_point: Vec<f64>,
    /// Points: a JSON array of arrays, or JSON lines each holding an array or `{"y": [...]}`.
    #[arg(long, value_name = "FILE")]
    points: PathBuf,
    /// Direction of each objective, comma separated (`max` or `min`; default: all `max`).
    #[arg(long, value_delimiter = ',')]
    goals: Vec<GoalArg>,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum GoalArg {
    Max,
    Min,
}

pub fn run(cmd: BoCommand) -> Result<()> {
    match cmd {
        BoCommand::Suggest(args) => {
            let out = suggest(&args)?;
            println!("{out}");
            Ok(())
        }
        BoCommand::Hypervolume(args) => {
            let hv = hypervolume_of_file(&args)?;
            println!("{}", serde_json::json!({ "hypervolume": hv }));
            Ok(())
        }
    }
}

/// One line of HISTORY.jsonl: an evaluation (`y` entries may be `null`: it failed), or with
/// `"pending": true` and no `y`, a point being evaluated.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryLine {
    x: Vec<f64>,
    #[serde(default)]
    y: Option<Vec<Option<f64>>>,
    #[serde(default)]
    pending: bool,
}

fn suggest(args: &SuggestArgs) -> Result<String> {
    let space_text = read(&args.space)?;
    let config = SpaceConfig::from_json(&space_text)
        .with_context(|| format!("invalid search space in {}", args.space.display()))?;
    if args.q == 0 {
        bail!("--q must be at least 1");
    }
    let settings = OptimizerSettings {
        acquisition: args.acq.map(Into::into),
        n_initial: args.n_initial,
        seed: args.seed,
        max_gp_points: args.max_gp_points,
        ref_point_rule: match args.ref_rule {
            RefRuleArg::Front => RefPointRule::Front,
            RefRuleArg::Observed => RefPointRule::Observed,
        },
        ..OptimizerSettings::default()
    };
    let mut optimizer = Optimizer::from_config(&config, settings)
        .with_context(|| format!("cannot build an optimiser for {}", args.space.display()))?;
    if let Some(path) = &args.history {
        replay_history(&mut optimizer, path, &config)?;
    }
    if let Some(subset) = optimizer.gp_subset() {
        eprintln!("bomf bo suggest: {subset} (--max-gp-points to change the limit)");
    }
    let candidates = optimizer
        .ask(args.q)
        .context("the optimiser could not propose candidates")?;
    Ok(serde_json::json!({ "candidates": candidates }).to_string())
}

fn replay_history(optimizer: &mut Optimizer, path: &Path, config: &SpaceConfig) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let entry: HistoryLine = serde_json::from_str(&non_finite_as_null(line))
            .with_context(|| format!("{}:{line_no}: not a history line", path.display()))?;
        let y = match (entry.pending, entry.y) {
            (true, None) => {
                optimizer
                    .add_pending(&entry.x)
                    .with_context(|| format!("{}:{line_no}: rejected", path.display()))?;
                continue;
            }
            (false, Some(y)) => y,
            (true, Some(_)) => bail!(
                "{}:{line_no}: a pending point has no y yet; drop \"pending\" once it is evaluated",
                path.display()
            ),
            (false, None) => bail!(
                "{}:{line_no}: no y: give the objective values, or \"pending\": true",
                path.display()
            ),
        };
        if y.len() != config.objectives.len() {
            bail!(
                "{}:{line_no}: y has {} value(s) but the space has {} objective(s)",
                path.display(),
                y.len(),
                config.objectives.len()
            );
        }
        let y: Vec<f64> = y.iter().map(|v| v.unwrap_or(f64::NAN)).collect();
        optimizer
            .tell(&entry.x, &y)
            .with_context(|| format!("{}:{line_no}: rejected", path.display()))?;
    }
    Ok(())
}

/// `line` with Python's non-finite float literals (`NaN`, `Infinity`, `-Infinity`, which
/// `json.dumps` writes and strict JSON lacks) outside strings replaced by `null`. Written here
/// because serde_json has no lenient mode; the scan only tracks strings and their escapes.
fn non_finite_as_null(line: &str) -> std::borrow::Cow<'_, str> {
    const LITERALS: [&str; 3] = ["-Infinity", "Infinity", "NaN"];
    if !LITERALS.iter().any(|l| line.contains(l)) {
        return line.into();
    }
    let mut out = String::with_capacity(line.len());
    let (mut in_string, mut escaped) = (false, false);
    let mut rest = line;
    while let Some(c) = rest.chars().next() {
        if !in_string && let Some(literal) = LITERALS.iter().find(|l| rest.starts_with(**l)) {
            out.push_str("null");
            rest = &rest[literal.len()..];
            continue;
        }
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out.into()
}

fn hypervolume_of_file(args: &HypervolumeArgs) -> Result<f64> {
    let m = args.ref_point.len();
    if m == 0 {
        bail!("--ref needs at least one coordinate");
    }
    if !args.goals.is_empty() && args.goals.len() != m {
        bail!(
            "--goals has {} entries but --ref has {m} coordinates",
            args.goals.len()
        );
    }
    let points = read_points(&args.points, m)?;
    if points.is_empty() {
        return Ok(0.0); // an empty front dominates nothing
    }
    // Hypervolume is computed for maximisation; "min" objectives are negated together with
    // their reference coordinate.
    let sign = |j: usize| match args.goals.get(j) {
        Some(GoalArg::Min) => -1.0,
        _ => 1.0,
    };
    let ref_point: Vec<f64> = (0..m).map(|j| sign(j) * args.ref_point[j]).collect();
    let flat: Vec<f64> = points
        .iter()
        .flat_map(|p| p.iter().enumerate().map(|(j, v)| sign(j) * v))
        .collect();
    hypervolume(&flat, m, &ref_point).context("hypervolume failed")
}

/// Reads points from a JSON array of arrays or from JSON lines, checking every point has `m`
/// finite coordinates and naming the line of the first one that does not.
fn read_points(path: &Path, m: usize) -> Result<Vec<Vec<f64>>> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Line {
        Point(Vec<f64>),
        Record { y: Vec<f64> },
    }
    let text = read(path)?;
    let trimmed = text.trim_start();
    let points: Vec<(usize, Vec<f64>)> = if trimmed.starts_with("[[") || trimmed == "[]" {
        let all: Vec<Vec<f64>> = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a JSON array of points", path.display()))?;
        all.into_iter()
            .enumerate()
            .map(|(i, p)| (i + 1, p))
            .collect()
    } else {
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let point = match serde_json::from_str::<Line>(line) {
                Ok(Line::Point(p)) | Ok(Line::Record { y: p }) => p,
                Err(e) => bail!(
                    "{}:{}: expected an array of numbers or {{\"y\": [...]}}: {e}",
                    path.display(),
                    i + 1
                ),
            };
            out.push((i + 1, point));
        }
        out
    };
    let mut result = Vec::with_capacity(points.len());
    for (line, p) in points {
        if p.len() != m {
            bail!(
                "{}: point {line} has {} coordinate(s) but the reference point has {m}",
                path.display(),
                p.len()
            );
        }
        if p.iter().any(|v| !v.is_finite()) {
            bail!(
                "{}: point {line} has a non-finite coordinate",
                path.display()
            );
        }
        result.push(p);
    }
    Ok(result)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_non_finite_literals_become_null_outside_strings() {
        assert_eq!(
            non_finite_as_null(r#"{"x": [1.0], "y": [NaN, -Infinity, Infinity, 2]}"#),
            r#"{"x": [1.0], "y": [null, null, null, 2]}"#
        );
        let quoted = r#"{"note": "NaN \" Infinity", "y": [NaN]}"#;
        assert_eq!(
            non_finite_as_null(quoted),
            r#"{"note": "NaN \" Infinity", "y": [null]}"#
        );
        assert_eq!(non_finite_as_null(r#"{"y": [0.5]}"#), r#"{"y": [0.5]}"#);
    }

    /// Fuzzing the history parser: random lines and random edits of valid lines are replayed or
    /// refused with an error, never a panic; the hypervolume file reader likewise.
    #[test]
    fn edited_histories_never_panic() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        let space = r#"{"params": [{"name": "lr", "low": 1e-5, "high": 1e-2, "log": true},
            {"name": "bs", "low": 4, "high": 32, "integer": true}],
            "objectives": [{"name": "acc", "goal": "max"}, {"name": "loss", "goal": "min"}]}"#;
        let config = SpaceConfig::from_json(space).unwrap();
        let valid = [
            r#"{"x": [0.001, 8], "y": [0.7, 0.5]}"#,
            r#"{"x": [0.0001, 16], "y": [NaN, Infinity]}"#,
            r#"{"x": [0.00002, 31], "y": [null, 0.2], "note": "a " quote"}"#,
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let mut runner = TestRunner::new(Config {
            cases: 512,
            failure_persistence: None,
            ..Config::default()
        });
        let edit = (0usize..200, 0usize..8, "[\\[\\]{}\":,.0-9a-zA-Z eE+-]{0,8}");
        let strategy = (
            prop::collection::vec(0usize..valid.len(), 1..4),
            prop::collection::vec(edit, 0..5),
            ".{0,40}",
        );
        runner
            .run(&strategy, |(lines, edits, noise)| {
                let mut text: Vec<char> = lines
                    .iter()
                    .map(|&i| valid[i])
                    .collect::<Vec<_>>()
                    .join("\n")
                    .chars()
                    .collect();
                for (at, len, insert) in &edits {
                    let at = at % (text.len() + 1);
                    let end = (at + len).min(text.len());
                    text.splice(at..end, insert.chars());
                }
                let text: String = text.into_iter().chain(noise.chars()).collect();
                std::fs::write(&path, &text).unwrap();
                let mut optimizer =
                    Optimizer::from_config(&config, OptimizerSettings::default()).unwrap();
                let _ = replay_history(&mut optimizer, &path, &config);
                let _ = read_points(&path, 2);
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn an_empty_front_has_hypervolume_zero() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.json");
        for text in ["[]", "", "\n"] {
            std::fs::write(&path, text).unwrap();
            let hv = hypervolume_of_file(&HypervolumeArgs {
                ref_point: vec![0.0, 0.0],
                points: path.clone(),
                goals: vec![],
            })
            .unwrap();
            assert_eq!(hv, 0.0, "{text:?}");
        }
    }

    #[test]
    fn goal_signs_negate_minimised_objectives() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        std::fs::write(&path, "[[1.0, 1.0], [2.0, 3.0]]").unwrap();
        let max_hv = hypervolume_of_file(&HypervolumeArgs {
            ref_point: vec![0.0, 5.0],
            points: path.clone(),
            goals: vec![GoalArg::Max, GoalArg::Min],
        })
        .unwrap();
        // Maximise the first, minimise the second, reference (0, 5):
        // staircase of (1,1) and (2,3): 1×4 + 1×2 = 6.
        assert!((max_hv - 6.0).abs() < 1e-12, "{max_hv}");
    }
}
