//! `bomf`: model fusion through Bayesian optimisation, from the command line.
//!
//! `bomf run` is the whole pipeline from a config; `hpo`, `train`, `fuse`, `eval` and `predict`
//! are its stages alone on the same run-directory layout; `search` is stage 3 on checkpoints of
//! any architecture with any evaluation command; `bomf bo` exposes the
//! Bayesian-optimisation engine so that any language can drive it through JSON files.
//!
//! Each command parses its flags, opens the model once with `bomf_core::family::open` (every
//! family: BERT/RoBERTa classifiers, T5, the LLaMA family), runs the library on the backend
//! `--device` names ([`device::with_backend!`]) and prints the result; errors are printed once,
//! by `main`.

mod bo;
mod device;
mod eval;
mod fuse;
mod predict;
mod run;
mod search;
mod train;

use clap::{Parser, Subcommand};

/// mimalloc keeps freed pages for reuse; with the system allocator every large activation buffer
/// went back to the OS and came back as freshly faulted, zeroed pages (MiniLM forward ~12% faster).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (the Rust bindings do not name it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// mimalloc v3's default purge delay in milliseconds (`options.c`; the header's comment still
/// says 10, v2's value).
#[cfg(test)]
const MI_DEFAULT_PURGE_DELAY_MS: std::os::raw::c_long = 1000;
/// mimalloc's "never purge" value of the purge delay.
const MI_NEVER_PURGE: std::os::raw::c_long = -1;

/// Keeps freed pages instead of returning them to the OS (mimalloc v3 returns them after a
/// second). A training step frees its activations and allocates them again at the next step;
/// pages that went back came back as freshly faulted, zeroed pages. SmolLM2's LoRA steps take
/// several seconds: `bomf train` of 6 steps (E2E, batch 8, 2 cores) spent a third of its CPU
/// time in the kernel zeroing pages; never purging took it from 50.6/46.3 s to 32.0/33.4 s wall
/// (system time 20.9/15.9 -> 3.9/4.5 s; a 30 s delay: 39.8 s) for 1.6% more peak memory. The
/// process stays at its high-water mark, which each step reaches again anyway. A
/// `MIMALLOC_PURGE_DELAY` the user set wins.
#[allow(unsafe_code)]
fn keep_freed_pages() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: a plain C call on mimalloc's option table, which is initialised before main.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, MI_NEVER_PURGE) };
}

#[derive(Debug, Parser)]
#[command(
    name = "bomf",
    version,
    about = "Model fusion through Bayesian optimisation (BOMF) for language-model fine-tuning",
    long_about = "Model fusion through Bayesian optimisation (BOMF) for language-model fine-tuning.\n\n\
                  `bomf bo` drives the Bayesian-optimisation engine from any language: describe the \
                  search space in SPACE.json, keep the evaluations in HISTORY.jsonl, and ask for the \
                  next candidates."
)]
struct Cli {
    /// Log more (repeat for even more); `RUST_LOG` overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The whole pipeline from a config: HPBO (optional), fine-tuning, fusion BO, baselines,
    /// test evaluation, the fused model and a report, in a resumable run directory.
    Run(run::RunArgs),
    /// Stage 3 alone on checkpoints you already have (any architecture, HF or Trainer folders),
    /// scored by your own evaluation command, evaluations in parallel.
    Search(search::SearchArgs),
    /// Stage 1 alone: hyperparameter BO on the proxy model; prints the best settings.
    Hpo(run::RunArgs),
    /// The Bayesian-optimisation engine on its own (ask/tell through files).
    #[command(subcommand)]
    Bo(bo::BoCommand),
    /// Stage 2 alone: fine-tune a model folder and keep K checkpoints of its trajectory.
    Train(train::TrainArgs),
    /// Weighted sum of fine-tuned checkpoints, written as a Hugging Face folder.
    Fuse(fuse::FuseArgs),
    /// Loss and metrics of a fine-tuned model (classifier, T5 or LLaMA) on one split, as JSON.
    Eval(eval::EvalArgs),
    /// Per-example outputs for a JSONL file: labels, probabilities and logits of a classifier,
    /// generated text of a T5 or LLaMA model.
    Predict(predict::PredictArgs),
}

fn main() -> std::process::ExitCode {
    keep_freed_pages();
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Search(args) => search::run(args),
        Command::Hpo(args) => run::hpo(args),
        Command::Bo(cmd) => bo::run(cmd),
        Command::Train(args) => train::run(args),
        Command::Fuse(args) => fuse::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Predict(args) => predict::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", error_text(&err));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes, joined by `: `, each said once. The libraries' errors already put
/// their source in their message (`{path}: {source}`) and also return it as their `source()`,
/// so anyhow's `{:#}` would print every such cause twice; a cause whose text the message
/// already holds is skipped.
fn error_text(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour codes only for a terminal: in a log file they are noise around every line.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_in_the_message_is_said_once() {
        let io = std::io::Error::other("header too large");
        let file = anyhow::Error::new(io).context("model.gguf: header too large");
        let err = file.context("checkpoint 1");
        assert_eq!(
            error_text(&err),
            "checkpoint 1: model.gguf: header too large"
        );
        let plain = anyhow::anyhow!("disk full").context("writing fused/");
        assert_eq!(error_text(&plain), "writing fused/: disk full");
    }

    /// The option index is mimalloc v3's purge delay: its default is 1000 ms until we set it.
    #[test]
    #[allow(unsafe_code)]
    fn the_purge_delay_option_is_the_one_we_set() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // SAFETY: reads mimalloc's option table.
        let delay = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert!(
            delay == MI_DEFAULT_PURGE_DELAY_MS || delay == MI_NEVER_PURGE,
            "option {MI_OPTION_PURGE_DELAY} is {delay}, not the purge delay"
        );
        keep_freed_pages();
        // SAFETY: as above.
        let delay = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(delay, MI_NEVER_PURGE);
    }
}
