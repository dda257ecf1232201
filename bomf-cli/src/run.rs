//! `bomf run CONFIG.toml`: the whole BOMF pipeline in a run directory that survives crashes,
//! and `bomf hpo CONFIG.toml`: stage 1 alone.
//!
//! The library does the run ([`bomf_core::run::PreparedRun`], on whichever model family the
//! config's `[model] path` is); this module adds the flags, the progress display on stderr and
//! Ctrl-C, which stops the run after the current evaluation with its state saved. `--resume`
//! continues where a crash, `kill -9` or Ctrl-C left it and repeats no completed evaluation; a
//! lock file keeps two runs apart.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use bomf_core::overrides::{self, Override};
use bomf_core::pipeline::RunHooks;
use bomf_core::run::PreparedRun;
use bomf_core::run_config::RunConfig;
use bomf_core::run_report::results_table;
use bomf_core::rundir::RunDir;
use clap::Args;

use crate::device::{DeviceSpec, with_backend};

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    bomf run configs/banking77-minilm.toml --out runs/banking77\n  \
    bomf run configs/banking77-minilm.toml --out runs/banking77 --resume   # after a crash or Ctrl-C\n  \
    bomf run configs/e2e-smollm2-lora.toml --out runs/e2e               # LLaMA-family + LoRA\n  \
    bomf run configs/banking77-minilm.toml --seed 3 --set fusion.budget=40 --set train.schedule=linear\n\n\
    The run directory gets config.toml, evaluations.jsonl (one line per evaluation), state/,\n\
    checkpoints/, fused/ (the chosen model as an HF folder; with LoRA, the fused adapters merged\n\
    into the base model, and fused-adapter/ in peft's format), results.json and\n\
    report/report.md with SVG plots. The model decides the task family: BERT/RoBERTa classify,\n\
    T5 and LLaMA (HF folder or .gguf) generate, answer SQuAD questions by generation, or answer\n\
    multiple choice. See configs/ for commented examples.")]
pub struct RunArgs {
    #[command(flatten)]
    pub file: ConfigArgs,
    /// The run's seed: shorthand for `--set seed=N`.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// `cpu` or `cuda:N` (a build with `--features cuda`); overrides the config's `device`.
    #[arg(long, value_name = "cpu|cuda:N")]
    pub device: Option<DeviceSpec>,
}

/// A config file, the run folder it runs in, and `--set` overrides of it: the arguments that
/// `bomf run`, `bomf hpo` and `bomf search` share.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The configuration (TOML).
    pub config: PathBuf,
    /// The run directory (default: runs/<config name>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Continue the run in --out (the config, and any overrides, must be unchanged).
    #[arg(long)]
    pub resume: bool,
    /// Sets a key of the config as if the file said so (repeatable, a later one wins). The value
    /// is TOML: `40`, `2e-4`, `true`, `"text"`, `[1, 2]`; a bare word is a string. A key the
    /// config does not know is an error. The run directory records the overridden config.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<Override>,
}

impl ConfigArgs {
    /// The run directory: `--out`, else `runs/<config name>`.
    pub fn out_dir(&self) -> PathBuf {
        self.out.clone().unwrap_or_else(|| {
            let stem = self
                .config
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "run".into());
            PathBuf::from("runs").join(stem)
        })
    }
}

/// The config of `args` with its `--seed`/`--set` overrides, read and checked, with its text
/// (what the run directory keeps: the overridden config, see [`overrides::parse`]).
fn load_config(args: &RunArgs) -> Result<(RunConfig, String)> {
    let overrides = overrides::with_seed(args.seed, &args.file.set)?;
    if overrides.is_empty() {
        return Ok(RunConfig::from_file(&args.file.config)?);
    }
    let path = &args.file.config;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the run config {}", path.display()))?;
    let parsed = overrides::parse::<RunConfig>(&text, &overrides)
        .with_context(|| format!("in {}", path.display()))?;
    Ok((RunConfig::from_table(parsed.table, path)?, parsed.text))
}

/// The config read and the run prepared from it (model opened, data loaded); warnings printed.
/// Returns the config's text too, for the run directory.
fn prepare(args: &RunArgs) -> Result<(PreparedRun, String)> {
    let (config, text) = load_config(args)?;
    let run = PreparedRun::new(config)?;
    for warning in &run.warnings {
        eprintln!("warning: {warning}");
    }
    Ok((run, text))
}

/// The run directory of `args` for `run`: a new one, or with `--resume` the existing one.
fn open_run_dir(args: &RunArgs, run: &PreparedRun, text: &str) -> Result<RunDir> {
    Ok(run.open_run_dir(&args.file.out_dir(), text, args.file.resume)?)
}

/// Ctrl-C and the progress display of a run started from the command line.
struct Console {
    stop: Arc<AtomicBool>,
    progress: Box<bomf_core::pipeline::ProgressFn>,
}

impl Console {
    fn install() -> Self {
        Console {
            stop: install_ctrl_c(),
            progress: progress_reporter(),
        }
    }

    fn hooks(&self) -> RunHooks<'_> {
        RunHooks {
            stop: Some(&self.stop),
            progress: Some(&self.progress),
        }
    }
}

pub fn run(args: RunArgs) -> Result<()> {
    let (run, text) = prepare(&args)?;
    let console = Console::install();
    let hooks = console.hooks();
    let device = args.device.unwrap_or(run.config.device);
    // The run directory is made once the device is known to be there: an unavailable one
    // leaves nothing behind to block the rerun.
    let (dir, outcome) = with_backend!(device, |B, device| {
        let dir = open_run_dir(&args, &run, &text)?;
        eprintln!("run directory: {}", dir.root().display());
        let outcome = run.run::<B>(&dir, hooks, &device);
        Ok((dir, outcome))
    })?;
    let outcome = match outcome {
        Err(bomf_core::CoreError::Interrupted) => {
            let overrides = overrides::with_seed(args.seed, &args.file.set)?;
            eprintln!(
                "stopped; continue with: bomf run {}{} --out {} --resume",
                args.file.config.display(),
                overrides::as_args(&overrides),
                dir.root().display()
            );
            std::process::exit(130);
        }
        other => other?,
    };
    let chosen = outcome
        .report
        .methods
        .first()
        .context("the run produced no result")?;
    print!("\n{}", results_table(&outcome.report, &run.metric()));
    println!(
        "\n{} in {:.0} s this session; fused model: {}; report: {}",
        chosen.method,
        outcome.seconds,
        outcome.fused_dir.display(),
        outcome.report_markdown.display()
    );
    Ok(())
}

/// `bomf hpo`: stage 1 alone; prints the best hyperparameters as JSON (also in `hpo.json`).
pub fn hpo(args: RunArgs) -> Result<()> {
    let (run, text) = prepare(&args)?;
    if run.config.hpbo.is_none() {
        bail!("{} has no [hpbo] section", args.file.config.display());
    }
    let console = Console::install();
    let hooks = console.hooks();
    let device = args.device.unwrap_or(run.config.device);
    let outcome = with_backend!(device, |B, device| {
        let dir = open_run_dir(&args, &run, &text)?;
        Ok(run.hpo::<B>(&dir, hooks, &device)?)
    })?;
    println!("{}", serde_json::to_string_pretty(&outcome)?);
    Ok(())
}

/// Ctrl-C sets the flag; the run stops after the current evaluation with its state saved.
fn install_ctrl_c() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    if let Err(e) = ctrlc::set_handler(move || {
        if f.swap(true, Ordering::SeqCst) {
            // A second Ctrl-C: stop now (the state on disk is always consistent).
            std::process::exit(130);
        }
        eprintln!("\nstopping after the current evaluation (Ctrl-C again to stop at once)...");
    }) {
        tracing::warn!("cannot install the Ctrl-C handler: {e}");
    }
    flag
}

/// Progress on stderr: a bar per stage on a terminal; otherwise (a log file, `nohup`, CI) a
/// plain line at each tenth of a stage and at least once a minute, so that a long run's log
/// says where it is.
fn progress_reporter() -> Box<bomf_core::pipeline::ProgressFn> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return Box::new(progress_lines());
    }
    let current: Mutex<Option<(String, indicatif::ProgressBar)>> = Mutex::new(None);
    Box::new(move |stage: &str, done: usize, total: usize| {
        let Ok(mut guard) = current.lock() else {
            return;
        };
        let same = guard.as_ref().is_some_and(|(s, _)| s == stage);
        if !same {
            if let Some((_, bar)) = guard.take() {
                bar.finish();
            }
            let bar = indicatif::ProgressBar::new(total as u64);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{msg:>16} [{bar:30}] {pos}/{len} (eta {eta})",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(stage.to_string());
            *guard = Some((stage.to_string(), bar));
        }
        if let Some((_, bar)) = guard.as_ref() {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }
    })
}

/// The plain-line progress of [`progress_reporter`]: `stage: done/total (elapsed, eta)`.
fn progress_lines() -> impl Fn(&str, usize, usize) {
    struct Current {
        stage: String,
        started: std::time::Instant,
        last_line: std::time::Instant,
        last_tenth: usize,
    }
    let current: Mutex<Option<Current>> = Mutex::new(None);
    move |stage: &str, done: usize, total: usize| {
        let Ok(mut guard) = current.lock() else {
            return;
        };
        let now = std::time::Instant::now();
        if guard.as_ref().is_none_or(|c| c.stage != stage) {
            *guard = Some(Current {
                stage: stage.to_string(),
                started: now,
                last_line: now,
                last_tenth: 0,
            });
        }
        let Some(c) = guard.as_mut() else {
            return;
        };
        let tenth = tenths(done, total);
        if done == 0 || !line_due(tenth, c.last_tenth, now - c.last_line, done == total) {
            return;
        }
        c.last_tenth = tenth;
        c.last_line = now;
        let elapsed = now - c.started;
        let eta = elapsed.mul_f64((total.saturating_sub(done)) as f64 / done as f64);
        eprintln!(
            "{stage}: {done}/{total} ({} elapsed, eta {})",
            short_duration(elapsed),
            short_duration(eta)
        );
    }
}

/// How many whole tenths of `total` are `done`.
fn tenths(done: usize, total: usize) -> usize {
    (done * 10).checked_div(total).unwrap_or(10)
}

/// Whether a progress line is due: the stage has finished, reached a new tenth, or gone a
/// minute without one.
fn line_due(
    tenth: usize,
    last_tenth: usize,
    since_last: std::time::Duration,
    finished: bool,
) -> bool {
    finished || tenth > last_tenth || since_last >= std::time::Duration::from_secs(60)
}

/// `42s`, `3m05s`, `2h07m`.
fn short_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_come_at_each_tenth_each_minute_and_at_the_end() {
        use std::time::Duration;
        let quick = Duration::from_secs(5);
        assert_eq!(tenths(3, 29), 1);
        assert_eq!(tenths(29, 29), 10);
        assert_eq!(tenths(0, 0), 10);
        assert!(line_due(tenths(3, 29), 0, quick, false));
        assert!(!line_due(tenths(4, 29), 1, quick, false));
        assert!(line_due(tenths(4, 29), 1, Duration::from_secs(61), false));
        assert!(line_due(tenths(29, 29), 10, quick, true));
        assert_eq!(short_duration(Duration::from_secs(42)), "42s");
        assert_eq!(short_duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(short_duration(Duration::from_secs(7620)), "2h07m");
    }
}
