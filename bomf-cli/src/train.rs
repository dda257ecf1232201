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
use bomf_core::schedule::{ScheduleKind, Warmup};
use bomf_core::train::{Budget, TrainConfig, TrainOutcome};
use bomf_core::trajectory::{KeepRule, Trajectory, TrajectoryConfig, collect_trajectory};
use bomf_data::batch::{BatchConfig, Batcher, items_for_dataset};
use bomf_data::spec::SplitName;
use bomf_data::split::Splits;
use bomf_data::task::TaskKind;
use bomf_models::bert::BertConfig;
use bomf_models::export::copy_tokenizer_files;
use bomf_models::lora::LoraConfig;
use bomf_models::{CpuBackend, Task};
use burn::tensor::backend::Backend;
use clap::{Args, ValueEnum};

use crate::device::{DeviceSpec, with_backend};
use crate::eval::{DataOptions, DataSource};
use crate::generative::{Arch, GenerativeOptions, open_generative};
use crate::model::{classifier_from, model_labels, read_config, read_weights, text_encoder};

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
    #[arg(long, default_value_t = crate::generative::DEFAULT_MAX_NEW_TOKENS)]
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
}

/// The model config for the data: the folder's, with the data's labels. Whether the folder's
/// own head can be kept (same labels in the same order, or placeholder names of the same count).
pub(crate) fn labelled_config(base: &BertConfig, kind: &TaskKind) -> Result<(BertConfig, bool)> {
    let current = model_labels(base);
    match kind {
        TaskKind::Classification { labels } if labels.len() < 2 => bail!(
            "the training data has a single class {labels:?}: a classifier needs at least two \
             (check label_field, a `keep` filter or the split; for real-valued targets set \
             `regression = true`)"
        ),
        TaskKind::Classification { labels } => {
            let placeholders = current
                .iter()
                .enumerate()
                .all(|(i, l)| *l == format!("LABEL_{i}"));
            let keep = *labels == current || (placeholders && labels.len() == current.len());
            Ok((base.clone().with_labels(labels), keep))
        }
        TaskKind::Regression => Ok((base.clone().with_num_labels(1), current.len() == 1)),
        other => bail!("`bomf train` fine-tunes sequence classifiers; the data is {other:?}"),
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

    let generative = crate::generative::family_of(&args.model).is_generative();
    let spec = args.source.to_spec(&args.options)?;
    let spec = if generative {
        crate::generative::generative_spec(spec)
    } else {
        spec
    };
    let splits = spec.load().context("loading the data")?;
    for (name, split) in [
        (SplitName::Train, &splits.train),
        (SplitName::Validation, &splits.validation),
    ] {
        if split.is_empty() {
            bail!("the {name} split is empty: `bomf train` needs train and validation examples");
        }
    }

    if generative {
        return train_generative(
            &args,
            &splits,
            &train_config,
            &trajectory_config,
            &checkpoints_dir,
        );
    }
    if args.lora_r.is_some() {
        bail!(
            "--lora-r: LoRA adapters apply to LLaMA-family models, and {} is a classifier",
            args.model.display()
        );
    }
    let base_config = read_config(&args.model)?;
    let (config, keep_head) = labelled_config(&base_config, &splits.train.task.kind)?;
    let encoder = text_encoder(&args.model, &config, args.max_len)?;
    let mut checkpoint = read_weights(&args.model)?;
    if !keep_head {
        let head: Vec<String> = checkpoint
            .tensors
            .keys()
            .filter(|n| n.starts_with("classifier."))
            .cloned()
            .collect();
        if !head.is_empty() {
            eprintln!(
                "warning: the model's head has labels {:?}, the data {:?}: training a fresh head",
                model_labels(&base_config),
                model_labels(&config)
            );
            for name in head {
                checkpoint.tensors.remove(&name);
            }
        }
    }

    let train_items = items_for_dataset(&encoder, &splits.train)?;
    let validation = EvalSet::new(
        splits.validation.task.clone(),
        items_for_dataset(&encoder, &splits.validation)?,
        encoder.pad_id(),
        args.eval_batch_size,
    )?;
    let batcher = Batcher::new(
        train_items,
        encoder.pad_id(),
        BatchConfig::train(args.batch_size, args.seed),
    )?;
    announce(&splits, &batcher, args.every);
    let started = std::time::Instant::now();
    let trajectory = with_backend!(args.device, |B, device| {
        // A fresh head is drawn from the backend RNG: seed it so runs repeat.
        B::seed(&device, args.seed);
        let model = classifier_from::<B>(&config, checkpoint, false, &device)
            .with_context(|| format!("loading {}", args.model.display()))?;
        Ok(collect_trajectory(
            model,
            &batcher,
            &validation,
            &train_config,
            &trajectory_config,
            &device,
            |_, _| {},
        )?)
    })?;
    let seconds = started.elapsed().as_secs_f64();

    // The config and tokenizer first: the manifest, written last by `Trajectory::save`, marks a
    // finished folder.
    std::fs::create_dir_all(&checkpoints_dir)
        .with_context(|| format!("creating {}", checkpoints_dir.display()))?;
    let config_path = checkpoints_dir.join("config.json");
    let config_json =
        serde_json::to_string_pretty(&config.to_hf_json(Task::SequenceClassification))?;
    std::fs::write(&config_path, config_json + "\n")
        .with_context(|| format!("writing {}", config_path.display()))?;
    copy_tokenizer_files(&args.model, &checkpoints_dir)?;
    trajectory
        .save(&checkpoints_dir)
        .with_context(|| format!("saving to {}", checkpoints_dir.display()))?;
    report(&trajectory, &validation, &checkpoints_dir, seconds);
    Ok(())
}

/// `bomf train` for T5 and LLaMA-family models, optionally through LoRA adapters.
fn train_generative(
    args: &TrainArgs,
    splits: &Splits,
    train_config: &TrainConfig,
    trajectory_config: &TrajectoryConfig,
    checkpoints_dir: &Path,
) -> Result<()> {
    let model = open_generative(
        &args.model,
        GenerativeOptions {
            max_len: args.max_len,
            max_target_len: args.max_target_len,
            max_new_tokens: Some(args.max_new_tokens),
        },
    )?;
    let lora = match (&model.arch, args.lora_r) {
        (_, None) => None,
        (Arch::T5(_), Some(_)) => {
            bail!("--lora-r: LoRA adapters apply to LLaMA-family models only (this one is T5)")
        }
        (Arch::Llama(_), Some(r)) => {
            let targets: Vec<&str> = if args.lora_targets.is_empty() {
                vec!["q_proj", "v_proj"]
            } else {
                args.lora_targets.iter().map(String::as_str).collect()
            };
            let mut lora = LoraConfig::new(r, args.lora_alpha, &targets);
            lora.lora_dropout = args.lora_dropout;
            lora.base_model_name_or_path = Some(absolute(&args.model).display().to_string());
            lora.validate().context("in the --lora-* flags")?;
            Some(lora)
        }
    };
    let train_items = model.train_items(&splits.train)?;
    let validation = model.eval_set(&splits.validation, args.eval_batch_size)?;
    let batcher = Batcher::new(
        train_items,
        model.encoder.pad_id(),
        BatchConfig::train(args.batch_size, args.seed),
    )?;
    announce(splits, &batcher, args.every);
    let started = std::time::Instant::now();
    let trajectory = with_backend!(args.device, |B, device| {
        // LoRA's `A` matrices are drawn from the backend RNG: seed it so runs repeat.
        B::seed(&device, args.seed);
        Ok(match (&model.arch, &lora) {
            (Arch::T5(_), _) => collect_trajectory(
                model.t5::<B>(true, &device)?,
                &batcher,
                &validation,
                train_config,
                trajectory_config,
                &device,
                |_, _| {},
            )?,
            (Arch::Llama(_), None) => collect_trajectory(
                model.llama::<B>(&device)?,
                &batcher,
                &validation,
                train_config,
                trajectory_config,
                &device,
                |_, _| {},
            )?,
            (Arch::Llama(_), Some(lora)) => collect_trajectory(
                model.lora::<B>(lora, true, &device)?,
                &batcher,
                &validation,
                train_config,
                trajectory_config,
                &device,
                |_, _| {},
            )?,
        })
    })?;
    let seconds = started.elapsed().as_secs_f64();

    // The files that describe the checkpoints first: the manifest, written last by
    // `Trajectory::save`, marks a finished folder.
    std::fs::create_dir_all(checkpoints_dir)
        .with_context(|| format!("creating {}", checkpoints_dir.display()))?;
    let cpu = Default::default();
    match (&model.arch, &lora) {
        (Arch::T5(_), _) => {
            let template = model.t5::<CpuBackend>(false, &cpu)?;
            write_description(checkpoints_dir, |dir| model.export_t5(&template, dir))?;
        }
        (Arch::Llama(_), None) => {
            let template = model.llama::<CpuBackend>(&cpu)?;
            write_description(checkpoints_dir, |dir| model.export_llama(&template, dir))?;
        }
        (Arch::Llama(_), Some(lora)) => {
            // Each kept checkpoint as a peft adapter folder (the adapters are small).
            let template = model.lora::<CpuBackend>(lora, false, &cpu)?;
            for (k, kept) in trajectory.kept.iter().enumerate() {
                let mut one_hot = vec![0.0; trajectory.kept.len()];
                one_hot[k] = 1.0;
                let adapters = trajectory
                    .checkpoints
                    .fused_model(template.clone(), &one_hot, &cpu)?
                    .adapters;
                let dir = checkpoints_dir.join(format!("adapter-{:06}", kept.step));
                adapters
                    .save(&dir)
                    .with_context(|| format!("writing {}", dir.display()))?;
            }
            model.write_tokenizer(checkpoints_dir)?;
        }
    }
    trajectory
        .save(checkpoints_dir)
        .with_context(|| format!("saving to {}", checkpoints_dir.display()))?;
    report(&trajectory, &validation, checkpoints_dir, seconds);
    Ok(())
}

/// Writes the `config.json` and tokenizer files that describe a dense generative trajectory's
/// checkpoints into `checkpoints_dir`, through the same export as a fused model (into a scratch
/// folder whose weights files are dropped), so `bomf fuse` reads them like any model folder.
fn write_description(
    checkpoints_dir: &Path,
    export: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let scratch = checkpoints_dir.join(".export");
    export(&scratch)?;
    for entry in std::fs::read_dir(&scratch)? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if let Some(name) = name
            && !name.ends_with(".safetensors")
            && !name.ends_with(".bin")
        {
            std::fs::rename(&path, checkpoints_dir.join(&name))
                .with_context(|| format!("moving {} into {}", name, checkpoints_dir.display()))?;
        }
    }
    std::fs::remove_dir_all(&scratch).with_context(|| format!("removing {}", scratch.display()))?;
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
