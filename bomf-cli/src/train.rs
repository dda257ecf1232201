//! `bomf train`: stage 2 of BOMF on its own — one fine-tune of a model folder that keeps K
//! checkpoints of its trajectory, saved to `RUNDIR/checkpoints/` for `bomf fuse` (or stage 3).
//!
//! The folder written is the engine's trajectory layout (`checkpoint-<step>.safetensors` +
//! `manifest.json`, written last), plus the (labelled) `config.json` and the tokenizer files, so
//! that every `.safetensors` file there can be handed to `bomf fuse` as it is. Every family
//! trains: BERT/RoBERTa classifiers, T5 and LLaMA (every weight), and LLaMA with LoRA adapters
//! (`--lora-r`), whose kept checkpoints are also written as peft adapter folders
//! (`adapter-<step>/`) for `bomf fuse` and `--adapter`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bomf_core::eval::EvalSet;
use bomf_core::family::ops::TrainJob;
use bomf_core::family::{OpenOptions, open};
use bomf_core::run_config::{DEFAULT_MAX_NEW_TOKENS, GenerationSection};
use bomf_core::schedule::{ScheduleKind, Warmup};
use bomf_core::train::{Budget, TrainConfig, TrainOutcome};
use bomf_core::trajectory::{KeepRule, Trajectory, TrajectoryConfig};
use bomf_data::batch::{BatchConfig, Batcher};
use bomf_data::spec::SplitName;
use bomf_data::split::Splits;
use bomf_models::lora::LoraConfig;
use clap::{Args, ValueEnum};

use crate::device::{DeviceSpec, with_backend};
use crate::eval::{DataOptions, DataSource};

/// Which checkpoints of the run are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RuleArg {
    /// The paper's rule: around the best validation step s*, in [low·s*, high·s*]; training
    /// stops at high·s*.
    Window,
    /// The last K evaluated checkpoints.
    #[value(alias = "last_k")]
    LastK,
    /// Every checkpoint after --start-fraction of the budget (K evenly spaced among them).
    #[value(alias = "after_fraction")]
    AfterFraction,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    bomf train --model models/minilm --data configs/banking77-minilm.toml --out runs/banking77 --epochs 2\n  \
    bomf train --model bert-tiny --bigbench my-tasks/multiemo/all_sentence_en --counts 3000,400,1000 \\\n             \
    --out runs/x --lr 5e-5 --k 8 --every 10 --rule window\n\n\
    The data needs a train and a validation split (validation picks the window and labels each\n\
    checkpoint). A model folder without a classification head (a base model) gets a fresh head\n\
    for the data's labels; one whose head has other labels gets a fresh head too, with a warning.\n\
    Writes RUNDIR/checkpoints/{checkpoint-<step>.safetensors, manifest.json, config.json,\n\
    tokenizer.json}; then e.g.\n  \
    bomf fuse --checkpoints runs/x/checkpoints/checkpoint-*.safetensors --weights ... --out fused\n\n\
    T5 and LLaMA-family models (a folder or a .gguf file) train on generation, SQuAD or\n\
    multiple-choice data; with --lora-r only LoRA adapters train, and each kept checkpoint is also\n\
    a peft adapter folder:\n  \
    bomf train --model smollm2.gguf --data e2e.toml --out runs/e2e --lr 1e-3 --batch-size 8 --lora-r 8\n  \
    bomf fuse --checkpoints runs/e2e/checkpoints/adapter-* --weights ... --out fused-adapter")]
pub struct TrainArgs {
    /// The Hugging Face folder to fine-tune (config.json, weights, tokenizer.json).
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    #[command(flatten)]
    pub source: DataSource,
    #[command(flatten)]
    pub options: DataOptions,
    /// The run folder; checkpoints go to RUNDIR/checkpoints/.
    #[arg(long, value_name = "RUNDIR")]
    pub out: PathBuf,
    /// Peak learning rate (AdamW).
    #[arg(long, default_value_t = 5e-5)]
    pub lr: f64,
    /// Examples per optimiser step.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Training budget in epochs (the most it may train; the window rule may stop earlier).
    #[arg(long, default_value_t = 1, conflicts_with = "steps")]
    pub epochs: usize,
    /// Training budget in optimiser steps instead of epochs.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Evaluate on validation (and snapshot) every this many steps.
    #[arg(long, default_value_t = 10)]
    pub every: usize,
    /// Checkpoints to keep.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Which checkpoints to keep.
    #[arg(long, value_enum, default_value_t = RuleArg::Window)]
    pub rule: RuleArg,
    /// `--rule window`: the window is [low·s*, high·s*].
    #[arg(long, default_value_t = 0.5)]
    pub window_low: f64,
    /// `--rule window`: see --window-low.
    #[arg(long, default_value_t = 2.0)]
    pub window_high: f64,
    /// `--rule window`: evaluations without improvement before stopping past high·s*.
    #[arg(long, default_value_t = 5)]
    pub patience: usize,
    /// `--rule after-fraction`: where the kept part of the run starts.
    #[arg(long, default_value_t = 0.5)]
    pub start_fraction: f64,
    /// Warmup as a fraction of the optimiser steps (constant learning rate after it).
    #[arg(long, default_value_t = 0.1)]
    pub warmup_ratio: f64,
    /// Seeds the new head, dropout and the batch order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Maximum input length in tokens; longer inputs are truncated.
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Examples per forward pass when evaluating.
    #[arg(long, default_value_t = 64)]
    pub eval_batch_size: usize,
    /// T5: maximum target length in tokens (default 64).
    #[arg(long)]
    pub max_target_len: Option<usize>,
    /// Generative models: the most tokens a validation generation may add.
    #[arg(long, default_value_t = DEFAULT_MAX_NEW_TOKENS)]
    pub max_new_tokens: usize,
    /// LLaMA family: train LoRA adapters of this rank on the frozen model instead of every
    /// weight.
    #[arg(long, value_name = "R")]
    pub lora_r: Option<usize>,
    /// LoRA: updates are scaled by lora_alpha / r.
    #[arg(long, default_value_t = 16.0, requires = "lora_r")]
    pub lora_alpha: f64,
    /// LoRA: dropout on the adapters' input during training.
    #[arg(long, default_value_t = 0.0, requires = "lora_r")]
    pub lora_dropout: f64,
    /// LoRA: a projection to adapt (repeat it; default q_proj and v_proj).
    #[arg(long = "lora-target", value_name = "MODULE", requires = "lora_r")]
    pub lora_targets: Vec<String>,
    /// Replace the checkpoints of a finished run in RUNDIR.
    #[arg(long)]
    pub force: bool,
    /// `cpu` or `cuda:N` (a build with `--features cuda`).
    #[arg(long, value_name = "cpu|cuda:N", default_value = "cpu")]
    pub device: DeviceSpec,
}

impl TrainArgs {
    fn trajectory(&self) -> TrajectoryConfig {
        let rule = match self.rule {
            RuleArg::Window => KeepRule::BestStepWindow {
                low: self.window_low,
                high: self.window_high,
            },
            RuleArg::LastK => KeepRule::LastK,
            RuleArg::AfterFraction => KeepRule::AfterFraction {
                start_fraction: self.start_fraction,
            },
        };
        TrajectoryConfig {
            rule,
            k: self.k,
            every: self.every,
            patience: self.patience,
        }
    }

    fn train_config(&self) -> Result<TrainConfig> {
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            bail!(
                "--warmup-ratio must be in [0, 1), got {}",
                self.warmup_ratio
            );
        }
        let config = TrainConfig {
            learning_rate: self.lr,
            schedule: ScheduleKind::Constant,
            warmup: Warmup::Ratio(self.warmup_ratio),
            budget: match self.steps {
                Some(s) => Budget::Steps(s),
                None => Budget::Epochs(self.epochs),
            },
            seed: self.seed,
            ..TrainConfig::default()
        };
        config.validate()?;
        Ok(config)
    }

    /// The LoRA config of the `--lora-*` flags, when `--lora-r` is given.
    fn lora_config(&self) -> Result<Option<LoraConfig>> {
        let Some(r) = self.lora_r else {
            return Ok(None);
        };
        let targets: Vec<&str> = if self.lora_targets.is_empty() {
            vec!["q_proj", "v_proj"]
        } else {
            self.lora_targets.iter().map(String::as_str).collect()
        };
        let mut lora = LoraConfig::new(r, self.lora_alpha, &targets);
        lora.lora_dropout = self.lora_dropout;
        lora.base_model_name_or_path = Some(absolute(&self.model).display().to_string());
        lora.validate().context("in the --lora-* flags")?;
        Ok(Some(lora))
    }

    /// How the model is opened.
    fn open_options(&self) -> Result<OpenOptions> {
        Ok(OpenOptions {
            max_len: self.max_len,
            max_target_len: self.max_target_len,
            generation: GenerationSection {
                max_new_tokens: self.max_new_tokens,
                ..GenerationSection::default()
            },
            lora: self.lora_config()?,
            ..OpenOptions::default()
        })
    }
}

pub fn run(args: TrainArgs) -> Result<()> {
    if args.source.file.is_some() {
        bail!("`bomf train` needs train and validation splits: give them with --data SPEC.toml");
    }
    if args.batch_size == 0 || args.eval_batch_size == 0 {
        bail!("--batch-size and --eval-batch-size must be at least 1");
    }
    let trajectory_config = args.trajectory();
    trajectory_config.validate()?;
    let train_config = args.train_config()?;
    let checkpoints_dir = args.out.join("checkpoints");
    if checkpoints_dir.join("manifest.json").is_file() && !args.force {
        bail!(
            "{} already holds a finished trajectory: choose another --out or pass --force",
            checkpoints_dir.display()
        );
    }

    let mut model = open(&args.model, &args.open_options()?).map_err(|e| {
        let err = anyhow::Error::from(e);
        if args.lora_r.is_some() {
            err.context("--lora-r")
        } else {
            err
        }
    })?;
    let spec = model.data_spec(args.source.to_spec(&args.options)?);
    let splits = spec.load().context("loading the data")?;
    for (name, split) in [
        (SplitName::Train, &splits.train),
        (SplitName::Validation, &splits.validation),
    ] {
        if split.is_empty() {
            bail!("the {name} split is empty: `bomf train` needs train and validation examples");
        }
    }
    if let Some(warning) = model.fit_task(&splits.train)? {
        eprintln!("warning: {warning}");
    }
    let validation = model.eval_set(&splits.validation, args.eval_batch_size)?;
    let batches = Batcher::new(
        model.train_items(&splits.train)?,
        model.pad_id()?,
        BatchConfig::train(args.batch_size, args.seed),
    )?;
    announce(&splits, &batches, args.every);
    let job = TrainJob {
        batches: &batches,
        validation: &validation,
        train: &train_config,
        trajectory: &trajectory_config,
        seed: args.seed,
        dir: &checkpoints_dir,
    };
    let started = std::time::Instant::now();
    let trajectory = with_backend!(args.device, |B, device| {
        Ok(model.train_trajectory::<B>(&job, &device)?)
    })?;
    let seconds = started.elapsed().as_secs_f64();
    report(&trajectory, &validation, &checkpoints_dir, seconds);
    Ok(())
}

fn announce(splits: &Splits, batcher: &Batcher, every: usize) {
    eprintln!(
        "training on {} examples ({} batches per epoch), validating on {} every {} steps",
        splits.train.len(),
        batcher.epoch(0).len(),
        splits.validation.len(),
        every
    );
}

fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Prints how the run ended and the kept checkpoints with their validation loss and metric.
fn report(trajectory: &Trajectory, validation: &EvalSet, checkpoints_dir: &Path, seconds: f64) {
    let metric = validation
        .task
        .metrics
        .first()
        .map(|m| m.name().to_string())
        .unwrap_or_default();
    let outcome = match trajectory.outcome {
        TrainOutcome::Completed => "completed the budget".to_string(),
        TrainOutcome::Stopped { step } => format!("stopped at step {step} (end of the window)"),
        TrainOutcome::Diverged { step, value } => {
            format!("diverged at step {step} (value {value}); kept what came before")
        }
    };
    println!(
        "trained {:.1}s, {outcome}; best validation step {}",
        seconds,
        trajectory
            .best_step
            .map_or_else(|| "-".to_string(), |s| s.to_string())
    );
    println!(
        "kept {} checkpoints in {}:",
        trajectory.kept.len(),
        checkpoints_dir.display()
    );
    println!("  {:>6}  {:>10}  {:>10}", "step", "val loss", metric);
    for kept in &trajectory.kept {
        let value = kept
            .validation
            .metrics
            .get(&metric)
            .copied()
            .unwrap_or(f64::NAN);
        println!(
            "  {:>6}  {:>10.4}  {:>10.4}",
            kept.step, kept.validation.loss, value
        );
    }
}
