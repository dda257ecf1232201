//! `bomf`: model fusion through Bayesian optimisation, from the command line.
//!
//! `bomf run` is the whole pipeline from a config; `hpo`, `train`, `fuse`, `eval` and `predict`
//! are its stages alone on the same run-directory layout; `bomf bo` exposes the
//! Bayesian-optimisation engine so that any language can drive it through JSON files. Models:
//! BERT/RoBERTa classifiers ([`model`]) and T5 / LLaMA generators ([`generative`]).

mod bo;
mod eval;
mod fuse;
mod generative;
mod model;
mod predict;
mod run;
mod train;

use clap::{Parser, Subcommand};

/// mimalloc keeps freed pages for reuse; with the system allocator every large activation buffer
/// went back to the OS and came back as freshly faulted, zeroed pages (MiniLM forward ~12% faster).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Run(args) => run::run(args),
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
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
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
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
