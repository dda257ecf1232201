//! `bomf run CONFIG.toml`: the whole BOMF pipeline in a run directory that survives crashes,
//! and `bomf hpo CONFIG.toml`: stage 1 alone.
//!
//! The run directory holds the config, every evaluation (`evaluations.jsonl`, one line each,
//! flushed before the next starts), the searches' states (`state/`), the checkpoints
//! (`checkpoints/`), the chosen fused model (`fused/`, an HF folder), `results.json` and the
//! report (`report/report.md` + SVG plots). `--resume` continues where a crash, `kill -9` or
//! Ctrl-C left it and repeats no completed evaluation; a lock file keeps two runs apart.
//!
//! The model family decides what is trained and exported ([`crate::generative::family_of`]):
//! BERT/RoBERTa sequence classifiers on classification/regression data; T5 and LLaMA-family
//! models (an HF folder or a `.gguf` file) on generation, SQuAD or multiple-choice data, the LLaMA
//! family optionally through LoRA adapters (`[model.lora]`). For LoRA, `fused/` holds the fused
//! adapters merged into the base model (a plain HF LLaMA folder) and `fused-adapter/` the fused
//! adapters alone in peft's format.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use bomf_core::eval::EvalSet;
use bomf_core::fusion_bo::FusionBoConfig;
use bomf_core::hpbo::HpboConfig;
use bomf_core::model::TaskModel;
use bomf_core::pipeline::{
    BaselinesConfig, BomfConfig, BomfReport, DirStore, ModelRequest, PipelineData, RunHooks,
    run_bomf_with, run_stage1,
};
use bomf_core::report::{
    ChosenWeights, EvalOrigin, FusionPoint, HypervolumeTrace, LabelledPoint, LearningCurve,
    ParetoPlot, Report, ResultRow, ResultsTable, ValidationPoint, write_report,
};
use bomf_core::rundir::{Inputs, RunDir, StagedDir};
use bomf_core::schedule::{ScheduleKind, Warmup};
use bomf_core::train::{Budget, TrainConfig};
use bomf_core::trajectory::TrajectoryConfig;
use bomf_data::batch::items_for_dataset;
use bomf_data::spec::DataSpec;
use bomf_models::HfNamed;
use bomf_models::export::export_bert;
use bomf_models::lora::LoraConfig;
use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::device::{DeviceSpec, with_backend};
use crate::generative::{
    Arch, Family, GenerationSection, GenerativeModel, GenerativeOptions, LoraSection, family_of,
    generative_spec, open_generative,
};
use crate::model::{classifier_from, read_config, read_weights, text_encoder};
use crate::train::labelled_config;

/// A run configuration (`configs/*.toml`). Unknown keys are errors naming the key and line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Seeds the new head, dropout, batch order and both optimisers.
    #[serde(default)]
    pub seed: u64,
    /// Where the run trains and evaluates: `cpu` (default) or `cuda:N` (a `cuda` build);
    /// `--device` overrides it.
    #[serde(default)]
    pub device: DeviceSpec,
    pub model: ModelSection,
    pub data: DataSpec,
    #[serde(default)]
    pub train: TrainSection,
    /// Present: run stage 1 (HPBO on the proxy) first.
    pub hpbo: Option<HpboConfig>,
    #[serde(default)]
    pub trajectory: TrajectoryConfig,
    #[serde(default)]
    pub fusion: FusionBoConfig,
    #[serde(default)]
    pub baselines: BaselinesConfig,
    /// Generative models: how generations are produced for scoring.
    #[serde(default)]
    pub generation: GenerationSection,
}

/// The pretrained model.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// An HF folder (config.json, weights, tokenizer.json) or, for the LLaMA family, a `.gguf`
    /// file (its embedded tokenizer is used); relative to the config file.
    pub path: PathBuf,
    /// Maximum input length in tokens (classifiers: 128 by default; generative models: 256,
    /// prompt and target together for the LLaMA family).
    pub max_len: Option<usize>,
    /// T5 only: maximum target length in tokens (64 by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_target_len: Option<usize>,
    /// LLaMA family only: train LoRA adapters on the frozen model instead of every weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraSection>,
}

/// Fine-tuning settings (stage 2, and the base of stage 1's trials).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSection {
    pub learning_rate: f64,
    pub batch_size: usize,
    /// The most stage 2 may train (the window rule usually stops earlier).
    pub epochs: usize,
    pub warmup_ratio: f64,
    /// Learning-rate shape after warm-up: `constant` (the paper's GLUE setting), `linear` decay
    /// to 0 (its T5/LLM setting) or `cosine`; transformers' schedules.
    pub schedule: ScheduleKind,
    /// Micro-batches per optimiser step: the effective batch is `batch_size ×
    /// grad_accum_steps`, for memory that does not fit the whole batch.
    pub grad_accum_steps: usize,
    pub weight_decay: f64,
    pub max_grad_norm: Option<f64>,
    pub eval_batch_size: usize,
}

impl Default for TrainSection {
    fn default() -> Self {
        Self {
            learning_rate: 5e-5,
            batch_size: 32,
            epochs: 2,
            warmup_ratio: 0.05,
            schedule: ScheduleKind::Constant,
            grad_accum_steps: 1,
            weight_decay: 0.1,
            max_grad_norm: Some(1.0),
            eval_batch_size: 64,
        }
    }
}

impl RunConfig {
    /// Parses a config file; relative paths become relative to its folder.
    pub fn from_file(path: &Path) -> Result<(Self, String)> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the run config {}", path.display()))?;
        Ok((Self::from_text(&text, path)?, text))
    }

    /// Parses and validates config `text` as if read from `path` (relative paths are taken
    /// against its folder).
    fn from_text(text: &str, path: &Path) -> Result<Self> {
        let mut config: RunConfig =
            toml::from_str(text).with_context(|| format!("in {}", path.display()))?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        if config.model.path.is_relative() {
            config.model.path = base.join(&config.model.path);
        }
        config.data.resolve_paths(base);
        config.data.validate()?;
        config
            .validate()
            .with_context(|| format!("in {}", path.display()))?;
        Ok(config)
    }

    /// Every setting that can be checked before a run directory is created or a model loaded:
    /// a bad value is an error naming its key, and nothing is left behind to block a rerun.
    fn validate(&self) -> Result<()> {
        let t = &self.train;
        let positive = |key: &str, v: usize| -> Result<()> {
            if v == 0 {
                bail!("[train] {key} must be at least 1");
            }
            Ok(())
        };
        positive("batch_size", t.batch_size)?;
        positive("epochs", t.epochs)?;
        positive("grad_accum_steps", t.grad_accum_steps)?;
        positive("eval_batch_size", t.eval_batch_size)?;
        if !(0.0..=1.0).contains(&t.warmup_ratio) {
            bail!("[train] warmup_ratio = {} is not in [0, 1]", t.warmup_ratio);
        }
        self.bomf_config()
            .train
            .validate()
            .map_err(|e| anyhow::anyhow!("[train] {e}"))?;
        self.trajectory
            .validate()
            .map_err(|e| anyhow::anyhow!("[trajectory] {e}"))?;
        if self.trajectory.k < 2 {
            bail!(
                "[trajectory] k = {} must be at least 2: fusion needs two checkpoints",
                self.trajectory.k
            );
        }
        if let (Some(n), Some(budget)) = (self.fusion.n_initial, self.fusion.budget)
            && (n == 0 || budget < n)
        {
            bail!("[fusion] n_initial = {n} must be at least 1 and at most budget = {budget}");
        }
        if self.fusion.budget == Some(0) {
            bail!("[fusion] budget must be at least 1");
        }
        if let Some(h) = &self.hpbo
            && (h.n_initial == 0 || h.budget < h.n_initial)
        {
            bail!(
                "[hpbo] n_initial = {} must be at least 1 and at most budget = {}",
                h.n_initial,
                h.budget
            );
        }
        Ok(())
    }

    /// The library's settings. The budget is in epochs, so a stage-1 trial at another batch size
    /// sees the same data (and takes a different number of steps), as the authors' trials do.
    fn bomf_config(&self) -> BomfConfig {
        let t = &self.train;
        let mut train = TrainConfig {
            learning_rate: t.learning_rate,
            schedule: t.schedule,
            warmup: Warmup::Ratio(t.warmup_ratio),
            budget: Budget::Epochs(t.epochs),
            grad_accumulation: t.grad_accum_steps,
            max_grad_norm: t.max_grad_norm,
            seed: self.seed,
            ..TrainConfig::default()
        };
        train.adamw.weight_decay = t.weight_decay;
        let mut fusion = self.fusion.clone();
        fusion.seed = self.seed;
        let hpbo = self.hpbo.clone().map(|mut h| {
            h.seed = self.seed;
            h
        });
        BomfConfig {
            train,
            batch_size: t.batch_size,
            hpbo,
            trajectory: self.trajectory,
            fusion,
            baselines: self.baselines.clone(),
        }
    }
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    bomf run configs/banking77-minilm.toml --out runs/banking77\n  \
    bomf run configs/banking77-minilm.toml --out runs/banking77 --resume   # after a crash or Ctrl-C\n  \
    bomf run configs/e2e-smollm2-lora.toml --out runs/e2e               # LLaMA-family + LoRA\n\n\
    The run directory gets config.toml, evaluations.jsonl (one line per evaluation), state/,\n\
    checkpoints/, fused/ (the chosen model as an HF folder; with LoRA, the fused adapters merged\n\
    into the base model, and fused-adapter/ in peft's format), results.json and\n\
    report/report.md with SVG plots. The model decides the task family: BERT/RoBERTa classify,\n\
    T5 and LLaMA (HF folder or .gguf) generate, answer SQuAD questions by generation, or answer\n\
    multiple choice. See configs/ for commented examples.")]
pub struct RunArgs {
    /// The run configuration (TOML).
    pub config: PathBuf,
    /// The run directory (default: runs/<config name>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Continue the run in --out (the config must be unchanged).
    #[arg(long)]
    pub resume: bool,
    /// `cpu` or `cuda:N` (a build with `--features cuda`); overrides the config's `device`.
    #[arg(long, value_name = "cpu|cuda:N")]
    pub device: Option<DeviceSpec>,
}

/// Everything a run needs, loaded from a config.
struct Prepared {
    config: RunConfig,
    text: String,
    out: PathBuf,
    model: PreparedModel,
    train_items: Vec<bomf_data::batch::Item>,
    validation: EvalSet,
    test: EvalSet,
    pad_id: u32,
    metric: String,
}

/// The pretrained model of a run, by family.
enum PreparedModel {
    /// A sequence classifier: the config labelled for the data, and the weights (without the
    /// head when the data's labels differ from it).
    Classifier {
        config: bomf_models::BertConfig,
        checkpoint: bomf_models::weights::Checkpoint,
    },
    /// T5 or LLaMA, with its peft config when `[model.lora]` is set.
    Generative {
        model: Box<GenerativeModel>,
        lora: Option<LoraConfig>,
    },
}

/// An error of the CLI's model building, as the engine's error type.
fn core_err(e: anyhow::Error) -> bomf_core::CoreError {
    bomf_core::CoreError::InvalidInput(format!("{e:#}"))
}

impl Prepared {
    /// A new run directory, or the existing one with `resume`: its config and its input files
    /// (data, model, tokenizer; fingerprinted in `inputs.json`) must be unchanged.
    fn open_run_dir(&self, resume: bool) -> Result<RunDir> {
        let dir = if resume {
            RunDir::resume(&self.out, &self.text)?
        } else {
            RunDir::create(&self.out, &self.text)?
        };
        let mut paths = vec![self.config.model.path.clone()];
        paths.extend(self.config.data.input_paths());
        dir.check_inputs(&Inputs::of(&paths)?)?;
        Ok(dir)
    }

    /// A fresh pretrained classifier with the task's head, the head seeded by the run's seed.
    fn make_classifier<B: Backend>(
        &self,
        dropout: bool,
        device: &B::Device,
    ) -> bomf_core::Result<bomf_models::BertWithHead<B>> {
        let PreparedModel::Classifier { config, checkpoint } = &self.model else {
            return Err(core_err(anyhow::anyhow!("not a classifier run")));
        };
        let config = if dropout {
            config.clone()
        } else {
            config.clone().without_dropout()
        };
        B::seed(device, self.config.seed);
        classifier_from::<B>(&config, checkpoint.clone(), false, device).map_err(core_err)
    }

    /// The device of this run: `--device`, else the config's.
    fn device(&self, args: &RunArgs) -> DeviceSpec {
        args.device.unwrap_or(self.config.device)
    }

    fn bomf_config(&self) -> BomfConfig {
        self.config.bomf_config()
    }

    fn data(&self) -> PipelineData<'_> {
        PipelineData {
            train_items: &self.train_items,
            pad_id: self.pad_id,
            validation: &self.validation,
            test: &self.test,
        }
    }
}

fn prepare(args: &RunArgs) -> Result<Prepared> {
    let (mut config, text) = RunConfig::from_file(&args.config)?;
    let out = args.out.clone().unwrap_or_else(|| {
        let stem = args
            .config
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "run".into());
        PathBuf::from("runs").join(stem)
    });
    let family = family_of(&config.model.path);
    if family.is_generative() {
        config.data = generative_spec(config.data.clone());
    } else if config.model.lora.is_some() || config.model.max_target_len.is_some() {
        bail!(
            "{}: [model] lora and max_target_len apply to T5/LLaMA-family models only, and {} \
             is not one (config.json model_type, or a .gguf file)",
            args.config.display(),
            config.model.path.display()
        );
    }
    if family == Family::T5 && config.model.lora.is_some() {
        bail!(
            "{}: [model.lora] is supported for the LLaMA family only",
            args.config.display()
        );
    }
    if let Some(rank) = config.hpbo.as_ref().and_then(|h| h.lora_rank)
        && config.model.lora.is_none()
    {
        bail!(
            "{}: [hpbo] lora_rank = {rank} makes stage 1's proxy a LoRA model of that rank, and \
             needs [model.lora] (for other models use freeze_lower_layers)",
            args.config.display()
        );
    }
    let splits = config.data.load().context("loading the data")?;
    for (name, split) in [
        ("train", &splits.train),
        ("validation", &splits.validation),
        ("test", &splits.test),
    ] {
        if split.is_empty() {
            bail!(
                "the {name} split is empty: a BOMF run needs train, validation and test examples"
            );
        }
    }
    let eval_batch = config.train.eval_batch_size.max(1);
    let (model, train_items, validation, test, pad_id) = if family.is_generative() {
        let mut model = open_generative(
            &config.model.path,
            GenerativeOptions {
                max_len: config.model.max_len,
                max_target_len: config.model.max_target_len,
                max_new_tokens: Some(config.generation.max_new_tokens),
            },
        )?;
        if config.generation.num_beams == 0 {
            bail!("generation.num_beams must be at least 1 (1 is greedy decoding)");
        }
        model.generation.num_beams = config.generation.num_beams;
        model.generation.length_penalty = config.generation.length_penalty;
        let lora = config
            .model
            .lora
            .as_ref()
            .map(|l| l.to_lora_config(&config.model.path))
            .transpose()?;
        let train_items = model.train_items(&splits.train)?;
        let validation = model.eval_set(&splits.validation, eval_batch)?;
        let test = model.eval_set(&splits.test, eval_batch)?;
        let pad_id = model.encoder.pad_id();
        (
            PreparedModel::Generative {
                model: Box::new(model),
                lora,
            },
            train_items,
            validation,
            test,
            pad_id,
        )
    } else {
        let base = read_config(&config.model.path)?;
        let (model_config, keep_head) = labelled_config(&base, &splits.train.task.kind)?;
        let encoder = text_encoder(&config.model.path, &model_config, config.model.max_len)?;
        let mut checkpoint = read_weights(&config.model.path)?;
        if !keep_head {
            checkpoint
                .tensors
                .retain(|name, _| !name.starts_with("classifier."));
        }
        let validation = EvalSet::new(
            splits.validation.task.clone(),
            items_for_dataset(&encoder, &splits.validation)?,
            encoder.pad_id(),
            eval_batch,
        )?;
        let test = EvalSet::new(
            splits.test.task.clone(),
            items_for_dataset(&encoder, &splits.test)?,
            encoder.pad_id(),
            eval_batch,
        )?;
        (
            PreparedModel::Classifier {
                config: model_config,
                checkpoint,
            },
            items_for_dataset(&encoder, &splits.train)?,
            validation,
            test,
            encoder.pad_id(),
        )
    };
    let metric = validation
        .task
        .metrics
        .first()
        .map(|m| m.name().to_string())
        .unwrap_or_default();
    Ok(Prepared {
        train_items,
        pad_id,
        config,
        text,
        out,
        model,
        validation,
        test,
        metric,
    })
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

/// What `bomf run` and `bomf hpo` do once the model family is known; [`with_model`] hands it
/// the family's model builder and the export of a fused model to `fused/`.
trait ModelStage<B: AutodiffBackend> {
    fn apply<M>(
        self,
        make_model: &dyn Fn(ModelRequest) -> bomf_core::Result<M>,
        export: &dyn Fn(&M::InnerModule, &ExportDirs) -> Result<()>,
    ) -> Result<()>
    where
        M: AutodiffModule<B> + TaskModel<B> + HfNamed<B> + Clone,
        M::InnerModule: TaskModel<B::InnerBackend> + HfNamed<B::InnerBackend> + Clone;
}

/// Calls `stage` with the run's model family: fresh pretrained models (the backend seeded by
/// the run's seed, which draws a classifier's new head and LoRA's `A` matrices) and the export
/// of the chosen fusion. LoRA exports the fused adapters merged into the base model (`fused/`)
/// and alone, in peft's format ([`FUSED_ADAPTER_DIR`]).
fn with_model<B: AutodiffBackend>(
    p: &Prepared,
    device: &B::Device,
    stage: impl ModelStage<B>,
) -> Result<()> {
    let seed = || B::seed(device, p.config.seed);
    match &p.model {
        PreparedModel::Classifier { config, .. } => stage.apply(
            &|request| {
                request.reject_lora_rank()?;
                p.make_classifier::<B>(request.dropout, device)
            },
            &|fused, dirs| {
                export_bert(fused, config, &dirs.fused, Some(&p.config.model.path))?;
                Ok(())
            },
        ),
        PreparedModel::Generative { model, lora: None } => match model.arch {
            Arch::T5(_) => stage.apply(
                &|request| {
                    request.reject_lora_rank()?;
                    seed();
                    model.t5(request.dropout, device).map_err(core_err)
                },
                &|fused, dirs| model.export_t5(fused, &dirs.fused),
            ),
            Arch::Llama(_) => stage.apply(
                &|request| {
                    request.reject_lora_rank()?;
                    seed();
                    model.llama(device).map_err(core_err)
                },
                &|fused, dirs| model.export_llama(fused, &dirs.fused),
            ),
        },
        PreparedModel::Generative {
            model,
            lora: Some(lora),
        } => stage.apply(
            &|request| {
                seed();
                let lora = match request.lora_rank {
                    Some(rank) => lora.clone().with_rank(rank),
                    None => lora.clone(),
                };
                model.lora(&lora, request.dropout, device).map_err(core_err)
            },
            &|fused, dirs| {
                model.export_llama(&fused.merged()?, &dirs.fused)?;
                fused
                    .adapters
                    .save(&dirs.adapter)
                    .with_context(|| format!("writing {}", dirs.adapter.display()))?;
                Ok(())
            },
        ),
    }
}

/// Where a LoRA run writes the fused adapters alone (peft's format), next to `fused/`.
pub const FUSED_ADAPTER_DIR: &str = "fused-adapter";

/// The folders an export writes: the fused model, and for LoRA runs the adapter alone. Both are
/// staging folders ([`StagedDir`]) that replace `fused/` and `fused-adapter/` once complete.
struct ExportDirs {
    fused: PathBuf,
    adapter: PathBuf,
}

/// Exports `fused` with `export` into staging folders and moves them into the run directory
/// whole: a crash or a full disk leaves the previous `fused/` (or none), never a torn one.
fn export_staged<M>(
    fused: &M,
    dir: &RunDir,
    export: &dyn Fn(&M, &ExportDirs) -> Result<()>,
) -> Result<()> {
    let fused_dir = StagedDir::new(&dir.fused_dir())?;
    let adapter_dir = StagedDir::new(&dir.root().join(FUSED_ADAPTER_DIR))?;
    let dirs = ExportDirs {
        fused: fused_dir.path().to_path_buf(),
        adapter: adapter_dir.path().to_path_buf(),
    };
    export(fused, &dirs)?;
    if !adapter_dir.is_empty()? {
        adapter_dir.publish()?;
    }
    fused_dir.publish()?;
    Ok(())
}

/// `bomf run` as a [`ModelStage`].
struct RunStage<'a, B: AutodiffBackend> {
    args: &'a RunArgs,
    p: &'a Prepared,
    device: &'a B::Device,
}

impl<B: AutodiffBackend> ModelStage<B> for RunStage<'_, B> {
    fn apply<M>(
        self,
        make_model: &dyn Fn(ModelRequest) -> bomf_core::Result<M>,
        export: &dyn Fn(&M::InnerModule, &ExportDirs) -> Result<()>,
    ) -> Result<()>
    where
        M: AutodiffModule<B> + TaskModel<B> + HfNamed<B> + Clone,
        M::InnerModule: TaskModel<B::InnerBackend> + HfNamed<B::InnerBackend> + Clone,
    {
        execute(self.args, self.p, make_model, export, self.device)
    }
}

/// `bomf hpo` as a [`ModelStage`] (nothing is exported).
struct HpoStage<'a, B: AutodiffBackend> {
    args: &'a RunArgs,
    p: &'a Prepared,
    device: &'a B::Device,
}

impl<B: AutodiffBackend> ModelStage<B> for HpoStage<'_, B> {
    fn apply<M>(
        self,
        make_model: &dyn Fn(ModelRequest) -> bomf_core::Result<M>,
        _export: &dyn Fn(&M::InnerModule, &ExportDirs) -> Result<()>,
    ) -> Result<()>
    where
        M: AutodiffModule<B> + TaskModel<B> + HfNamed<B> + Clone,
        M::InnerModule: TaskModel<B::InnerBackend> + HfNamed<B::InnerBackend> + Clone,
    {
        hpo_with(self.args, self.p, make_model, self.device)
    }
}

pub fn run(args: RunArgs) -> Result<()> {
    let p = prepare(&args)?;
    with_backend!(p.device(&args), |B, device| {
        let stage = RunStage::<B> {
            args: &args,
            p: &p,
            device: &device,
        };
        with_model(&p, &device, stage)
    })
}

/// The model-independent part of `bomf run`: the pipeline in the run directory, then the chosen
/// fusion exported by `export` (into `dir.fused_dir()`), `results.json`, the report and the table.
fn execute<B, M>(
    args: &RunArgs,
    p: &Prepared,
    make_model: &dyn Fn(ModelRequest) -> bomf_core::Result<M>,
    export: &dyn Fn(&M::InnerModule, &ExportDirs) -> Result<()>,
    device: &B::Device,
) -> Result<()>
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + TaskModel<B> + HfNamed<B> + Clone,
    M::InnerModule: TaskModel<B::InnerBackend> + HfNamed<B::InnerBackend> + Clone,
{
    let dir = p.open_run_dir(args.resume)?;
    eprintln!("run directory: {}", dir.root().display());
    let mut store = DirStore::new(&dir)?;
    let stop = install_ctrl_c();
    let bars = progress_reporter();
    let hooks = RunHooks {
        stop: Some(&stop),
        progress: Some(&bars),
    };
    let bomf = p.bomf_config();
    let data = p.data();
    let started = std::time::Instant::now();
    let report = run_bomf_with::<B, M>(make_model, data, &bomf, &mut store, hooks, device);
    let report = match report {
        Err(bomf_core::CoreError::Interrupted) => {
            eprintln!(
                "stopped; continue with: bomf run {} --out {} --resume",
                args.config.display(),
                dir.root().display()
            );
            std::process::exit(130);
        }
        other => other?,
    };
    let seconds = started.elapsed().as_secs_f64();

    let chosen = report
        .methods
        .first()
        .context("the run produced no result")?;
    let fused = {
        let set = bomf_core::trajectory::Trajectory::load(&dir.checkpoints_dir())?.checkpoints;
        // Fused as stage 3 fused it (`[fusion] lora`), into a model of that architecture.
        let (set, request) = bomf.fusion.fusion_set(&set)?;
        set.fused_model(make_model(request)?.valid(), &chosen.weights, device)?
    };
    export_staged(&fused, &dir, export)?;
    let fused_dir = dir.fused_dir();
    let report_files = write_report(&dir.report_dir(), &report_of(&report, &p.metric, &p.config))?;
    // Last: a run directory with `results.json` has every output complete.
    dir.write_json_atomic("results.json", &report)?;

    print_table(&report, &p.metric);
    println!(
        "\n{} in {seconds:.0} s this session; fused model: {}; report: {}",
        chosen.method,
        fused_dir.display(),
        report_files.markdown.display()
    );
    Ok(())
}

/// `bomf hpo`: stage 1 alone; prints the best hyperparameters as JSON.
pub fn hpo(args: RunArgs) -> Result<()> {
    let p = prepare(&args)?;
    with_backend!(p.device(&args), |B, device| {
        let stage = HpoStage::<B> {
            args: &args,
            p: &p,
            device: &device,
        };
        with_model(&p, &device, stage)
    })
}

fn hpo_with<B, M>(
    args: &RunArgs,
    p: &Prepared,
    make_model: &dyn Fn(ModelRequest) -> bomf_core::Result<M>,
    device: &B::Device,
) -> Result<()>
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + TaskModel<B> + HfNamed<B>,
    M::InnerModule: TaskModel<B::InnerBackend>,
{
    let Some(hpbo) = p.config.hpbo.clone() else {
        bail!("{} has no [hpbo] section", args.config.display());
    };
    let dir = p.open_run_dir(args.resume)?;
    let mut store = DirStore::new(&dir)?;
    let stop = install_ctrl_c();
    let bars = progress_reporter();
    let bomf = p.bomf_config();
    let (train, batch_size, trials) = run_stage1::<B, M>(
        make_model,
        p.data(),
        &bomf,
        &hpbo,
        &mut store,
        RunHooks {
            stop: Some(&stop),
            progress: Some(&bars),
        },
        device,
    )?;
    let out = serde_json::json!({
        "learning_rate": train.learning_rate,
        "batch_size": batch_size,
        "warmup": train.warmup,
        "weight_decay": train.adamw.weight_decay,
        "trials": trials,
    });
    dir.write_json_atomic("hpo.json", &out)?;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn print_table(report: &BomfReport, metric: &str) {
    println!("\nvalidation and test {metric} and loss per method:");
    println!(
        "{:<24} {:>10} {:>10} {:>10} {:>10} {:>9}",
        "method", "val", "val loss", "test", "test loss", "seconds"
    );
    for m in &report.methods {
        println!(
            "{:<24} {:>10.4} {:>10.4} {:>10.4} {:>10.4} {:>9.0}",
            m.method,
            m.validation
                .metrics
                .get(metric)
                .copied()
                .unwrap_or(f64::NAN),
            m.validation.loss,
            m.test.metrics.get(metric).copied().unwrap_or(f64::NAN),
            m.test.loss,
            m.seconds
        );
    }
}

/// The report's plain inputs from a pipeline result.
fn report_of(report: &BomfReport, metric: &str, config: &RunConfig) -> Report {
    let get = |e: &bomf_core::eval::Evaluation| e.metrics.get(metric).copied().unwrap_or(f64::NAN);
    let fusions = report
        .fusion_records
        .iter()
        .filter_map(|r| {
            r.validation.as_ref().map(|e| FusionPoint {
                metric: get(e),
                loss: e.loss,
                origin: if r.initial {
                    EvalOrigin::InitialDesign
                } else {
                    EvalOrigin::Acquired
                },
            })
        })
        .collect();
    let checkpoints = report
        .kept
        .iter()
        .map(|c| LabelledPoint {
            label: format!("step {}", c.step),
            metric: get(&c.validation),
            loss: c.validation.loss,
        })
        .collect();
    let chosen_method = report.methods.first();
    let baselines = report
        .methods
        .iter()
        .skip(1)
        .map(|m| LabelledPoint {
            label: m.method.clone(),
            metric: get(&m.validation),
            loss: m.validation.loss,
        })
        .collect();
    let n_initial = report.fusion_records.iter().filter(|r| r.initial).count();
    Report {
        title: format!("BOMF run: {}", config.model.path.display()),
        summary: Some(format!(
            "{} checkpoints kept (best validation step {}); {} fusion evaluations; stage times: \
             HPBO {:.0} s, trajectory {:.0} s, fusion BO {:.0} s (evaluation {:.0} s), baselines {:.0} s.",
            report.kept.len(),
            report
                .best_step
                .map_or_else(|| "—".to_string(), |s| s.to_string()),
            report.fusion_records.len(),
            report.times.hpbo,
            report.times.trajectory,
            report.times.fusion_bo,
            report.times.fusion_eval,
            report.times.baselines
        )),
        pareto: Some(ParetoPlot {
            metric_name: metric.to_string(),
            higher_metric_is_better: true,
            fusions,
            checkpoints,
            baselines,
            chosen: chosen_method.map(|m| LabelledPoint {
                label: m.method.clone(),
                metric: get(&m.validation),
                loss: m.validation.loss,
            }),
        }),
        hypervolume: Some(HypervolumeTrace {
            per_step: report.hypervolume.clone(),
            initial_design_len: n_initial,
        }),
        learning_curve: Some(LearningCurve {
            metric_name: metric.to_string(),
            train_loss: Vec::new(),
            validation: report
                .curve
                .iter()
                .map(|(step, e)| ValidationPoint {
                    step: *step as u64,
                    loss: e.loss,
                    metric: get(e),
                })
                .collect(),
            kept_steps: report.kept.iter().map(|c| c.step as u64).collect(),
            best_step: report.best_step.map(|s| s as u64),
        }),
        table: ResultsTable {
            metric_name: metric.to_string(),
            rows: report
                .methods
                .iter()
                .map(|m| ResultRow {
                    method: m.method.clone(),
                    val_metric: get(&m.validation),
                    val_loss: m.validation.loss,
                    test_metric: get(&m.test),
                    test_loss: m.test.loss,
                    wall_seconds: m.seconds,
                    weights: (!m.weights.is_empty()).then(|| m.weights.clone()),
                })
                .collect(),
        },
        chosen: chosen_method.map(|m| ChosenWeights {
            method: m.method.clone(),
            checkpoint_labels: report
                .kept
                .iter()
                .map(|c| format!("step {}", c.step))
                .collect(),
            weights: m.weights.clone(),
        }),
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

    /// `[train]` reaches the trainer: the schedule, gradient accumulation, and a budget in
    /// epochs (so a stage-1 trial at another batch size trains on the same data).
    #[test]
    fn train_section_sets_schedule_accumulation_and_an_epoch_budget() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.toml");
        let write = |train: &str| {
            std::fs::write(
                &path,
                format!(
                    "[model]\npath = \"m\"\n[data]\nformat = \"jsonl\"\npath = \"d.jsonl\"\n\
                     text_fields = [\"t\"]\nlabel_field = \"l\"\n\
                     [data.split]\nkind = \"fractions\"\ntrain = 0.8\nvalidation = 0.1\n\
                     test = 0.1\n[train]\n{train}"
                ),
            )
            .unwrap();
        };
        write("schedule = \"cosine\"\ngrad_accum_steps = 4\nepochs = 3\nwarmup_ratio = 0.1\n");
        let (config, _) = RunConfig::from_file(&path).unwrap();
        let train = config.bomf_config().train;
        assert_eq!(train.schedule, ScheduleKind::Cosine);
        assert_eq!(train.grad_accumulation, 4);
        assert_eq!(train.budget, Budget::Epochs(3));
        assert_eq!(train.warmup, Warmup::Ratio(0.1));
        write("grad_accum_steps = 0\n");
        let err = format!("{:#}", RunConfig::from_file(&path).unwrap_err());
        assert!(err.contains("grad_accum_steps must be at least 1"), "{err}");
        write("schedule = \"step\"\n");
        let err = format!("{:#}", RunConfig::from_file(&path).unwrap_err());
        assert!(err.contains("unknown variant `step`"), "{err}");
        // Every bad value is refused when the config is read, before any run directory exists.
        for (text, says) in [
            ("learning_rate = nan\n", "learning_rate"),
            ("batch_size = 0\n", "batch_size must be at least 1"),
            ("epochs = 0\n", "epochs must be at least 1"),
            ("warmup_ratio = 1.5\n", "warmup_ratio = 1.5"),
            ("[trajectory]\nk = 1\n", "k = 1 must be at least 2"),
            ("[trajectory]\nk = 0\n", "trajectory.k"),
            ("[fusion]\nbudget = 0\n", "budget must be at least 1"),
            (
                "[fusion]\nbudget = 3\nn_initial = 5\n",
                "at most budget = 3",
            ),
            (
                "[hpbo]\nbudget = 2\nn_initial = 4\n",
                "[hpbo] n_initial = 4",
            ),
        ] {
            write(text);
            let err = format!("{:#}", RunConfig::from_file(&path).unwrap_err());
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    /// Fuzzing the run-config parser: random edits of every example config give a config or an
    /// error, never a panic (including the validation and the library settings built from it).
    #[test]
    fn edited_configs_never_panic() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        let seeds: Vec<String> = [dir.clone(), dir.join("reproduce")]
            .into_iter()
            .flat_map(|d| std::fs::read_dir(d).unwrap())
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        let mut runner = TestRunner::new(Config {
            cases: 512,
            failure_persistence: None,
            ..Config::default()
        });
        let edit = (0usize..4000, 0usize..16, "[a-z0-9=\\[\\]\"{}., \n_-]{0,16}");
        let strategy = (0..seeds.len(), prop::collection::vec(edit, 1..6));
        runner
            .run(&strategy, |(seed, edits)| {
                let mut text: Vec<char> = seeds[seed].chars().collect();
                for (at, len, insert) in &edits {
                    let at = at % (text.len() + 1);
                    let end = (at + len).min(text.len());
                    text.splice(at..end, insert.chars());
                }
                let text: String = text.into_iter().collect();
                if let Ok(config) = RunConfig::from_text(&text, Path::new("/fuzz/run.toml")) {
                    let _ = config.bomf_config();
                }
                Ok(())
            })
            .unwrap();
        assert!(seeds.len() >= 8);
    }

    /// Every example config in `configs/` parses and passes validation; one whose data are
    /// installed assets loads them (with `BOMF_REQUIRE_ASSETS=1`, missing assets fail the test).
    #[test]
    fn example_configs_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        let mut n = 0;
        let paths = [dir.clone(), dir.join("reproduce")]
            .into_iter()
            .flat_map(|d| std::fs::read_dir(d).unwrap())
            .map(|e| e.unwrap().path());
        for path in paths {
            if path.extension().is_some_and(|e| e == "toml") {
                let (config, _) = RunConfig::from_file(&path)
                    .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                config.bomf_config().train.validate().unwrap();
                config.trajectory.validate().unwrap();
                load_served_data(&config.data, &path);
                n += 1;
            }
        }
        assert!(n >= 8, "only {n} configs found");
    }

    /// Loads a config's data when its files are in the assets folder (the default one in the
    /// config, wherever `BOMF_ASSETS` puts it): every split non-empty.
    fn load_served_data(data: &DataSpec, config: &Path) {
        use bomf_data::spec::SplitSpec;
        const MARK: &str = ".bomf/assets/";
        let installed = |path: &mut PathBuf| -> Option<bool> {
            let text = path.to_string_lossy().into_owned();
            let rest = &text[text.find(MARK)? + MARK.len()..];
            *path = bomf_data::assets::assets_dir().join(rest);
            Some(bomf_data::assets::require(path.clone()).unwrap().is_some())
        };
        let mut data = data.clone();
        let mut files: Vec<&mut PathBuf> = data.path.iter_mut().collect();
        if let SplitSpec::Files {
            train,
            validation,
            test,
        } = &mut data.split
        {
            files.extend([train, validation, test].into_iter().flatten());
        }
        let found: Vec<bool> = files.into_iter().filter_map(installed).collect();
        if found.is_empty() || found.contains(&false) {
            return; // not on served data, or skipped: assets not installed
        }
        let splits = data
            .load()
            .unwrap_or_else(|e| panic!("{}: {e:#}", config.display()));
        for split in [&splits.train, &splits.validation, &splits.test] {
            assert!(!split.is_empty(), "{}", config.display());
        }
    }
}
