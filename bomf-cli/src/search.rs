//! `bomf search`: BOMF's fusion search on checkpoints you already have (any architecture, any
//! evaluation command, evaluations in parallel); see `bomf_core::search`.

use anyhow::{Context, Result};
use bomf_core::overrides::{self, Override};
use bomf_core::rundir::RunDir;
use bomf_core::search::{EvaluationRecord, Outcome, SearchConfig, run_search};
use clap::Args;

use crate::run::ConfigArgs;

#[derive(Debug, Args)]
#[command(after_help = "Example search.toml:\n\n  \
    checkpoints = [\"trainer-output\"]   # its checkpoint-* subfolders, in step order\n  \
    [evaluator]\n  \
    command = [\"python\", \"eval.py\", \"{model}\"]   # prints {\"accuracy\": .., \"loss\": ..} last\n  \
    [[objectives]]\n  \
    name = \"accuracy\"\n  \
    direction = \"maximize\"\n  \
    [[objectives]]\n  \
    name = \"loss\"\n  \
    direction = \"minimize\"\n\n\
    bomf search search.toml --out runs/search --workers 2\n\n\
    The run folder gets evaluations.jsonl (every evaluation), logs/ (stderr of failed ones),\n\
    report/report.md (Pareto front, hypervolume, every candidate), results.json and fused/, the\n\
    chosen fusion in the checkpoints' layout with their config and tokenizer files.\n\
    `bomf eval`'s JSON works as an evaluator: command = [\"bomf\", \"eval\", \"--model\", \"{model}\",\n\
    \"--data\", \"data.toml\"] with objectives accuracy (maximize) and loss (minimize).")]
pub struct SearchArgs {
    #[command(flatten)]
    pub file: ConfigArgs,
    /// Evaluations at once: shorthand for `--set workers=N`.
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// One device per worker, e.g. `cuda:0,cuda:1`: shorthand for `--set devices=[...]`.
    #[arg(long, value_name = "DEV,...", value_delimiter = ',')]
    pub devices: Vec<String>,
}

pub fn run(args: SearchArgs) -> Result<()> {
    let (config, text) = load(&args)?;
    let out = args.file.out_dir();
    let run = if args.file.resume {
        RunDir::create_or_resume(&out, &text)
    } else {
        RunDir::create(&out, &text)
    }
    .with_context(|| format!("run folder {}", out.display()))?;
    let names = config.objective_names();
    let mut progress = |r: &EvaluationRecord| eprintln!("{}", progress_line(r, &names));
    let results = run_search(&config, &run, &mut progress)?;
    println!(
        "chosen fusion {} of {} ({} failed); weights {:?}; fused model: {}; report: {}",
        results.chosen + 1,
        results.evaluations,
        results.failed,
        results
            .chosen_weights
            .iter()
            .map(|w| (w * 1e4).round() / 1e4)
            .collect::<Vec<_>>(),
        run.fused_dir().display(),
        run.report_dir().join("report.md").display()
    );
    Ok(())
}

/// The config with `--workers`, `--devices` and `--set` applied, and the text the run keeps.
fn load(args: &SearchArgs) -> Result<(SearchConfig, String)> {
    let path = &args.file.config;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the search config {}", path.display()))?;
    let mut all = Vec::new();
    if let Some(n) = args.workers {
        all.push(Override::new("workers", toml::Value::Integer(n as i64))?);
    }
    if !args.devices.is_empty() {
        let list = args
            .devices
            .iter()
            .cloned()
            .map(toml::Value::String)
            .collect();
        all.push(Override::new("devices", toml::Value::Array(list))?);
    }
    all.extend(args.file.set.iter().cloned());
    let parsed = overrides::parse::<SearchConfig>(&text, &all)
        .with_context(|| format!("in {}", path.display()))?;
    let base = path.parent().unwrap_or(std::path::Path::new("."));
    let config = parsed
        .config
        .resolved(base)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("in {}", path.display()))?;
    Ok((config, parsed.text))
}

fn progress_line(r: &EvaluationRecord, names: &[String]) -> String {
    let what = match r.checkpoint {
        Some(k) => format!("#{} checkpoint {}", r.id, k + 1),
        None => format!("#{} fusion", r.id),
    };
    let result = match &r.outcome {
        Outcome::Ok { values } => names
            .iter()
            .map(|n| format!("{n}={:.4}", values.get(n).copied().unwrap_or(f64::NAN)))
            .collect::<Vec<_>>()
            .join(" "),
        Outcome::Failed { reason, .. } => format!("failed: {reason}"),
    };
    format!("{what} (worker {}, {:.1} s): {result}", r.worker, r.seconds)
}
