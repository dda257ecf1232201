//! A run from its config, on any model family: [`PreparedRun::new`] opens the model, loads the
//! data and fits one to the other; [`PreparedRun::run`] runs the pipeline in a run directory,
//! exports the chosen fusion and writes `results.json` and the report; [`PreparedRun::hpo`] runs
//! stage 1 alone. A front end adds the flags, the progress display and Ctrl-C.
//!
//! The run directory holds the config, every evaluation (`evaluations.jsonl`), the searches'
//! states (`state/`), the checkpoints (`checkpoints/`), the chosen fused model (`fused/`, an HF
//! folder; for LoRA the fused adapters merged into the base model, and [`FUSED_ADAPTER_DIR`] the
//! adapters alone in peft's format), `results.json` and the report (`report/`). A resumed run
//! repeats no completed evaluation.

use std::path::{Path, PathBuf};
use std::time::Instant;

use bomf_data::batch::Item;
use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use serde::Serialize;

use crate::error::{CoreError, Result, ResultExt};
use crate::eval::EvalSet;
use crate::family::{self, ExportDirs, ModelKit, ModelVisitor, OpenOptions, OpenedModel};
use crate::hpbo::HpTrial;
use crate::model::InnerModel;
use crate::pipeline::{BomfReport, DirStore, PipelineData, RunHooks, run_bomf_with, run_stage1};
use crate::report::write_report;
use crate::run_config::RunConfig;
use crate::run_report::report_of;
use crate::rundir::{Inputs, RunDir, StagedDir};
use crate::schedule::Warmup;
use crate::trajectory::Trajectory;

/// Where a LoRA run writes the fused adapters alone (peft's format), next to `fused/`.
pub const FUSED_ADAPTER_DIR: &str = "fused-adapter";

/// A run ready to start: the model opened and fitted to the task, the data encoded for it.
pub struct PreparedRun {
    pub config: RunConfig,
    pub model: OpenedModel,
    pub train_items: Vec<Item>,
    pub validation: EvalSet,
    pub test: EvalSet,
    pub pad_id: u32,
    /// For the user: a trained classification head replaced by a fresh one.
    pub warnings: Vec<String>,
}

/// What [`PreparedRun::run`] produced.
pub struct RunOutcome {
    pub report: BomfReport,
    /// Seconds this session spent (a resumed run counts only its own).
    pub seconds: f64,
    pub fused_dir: PathBuf,
    pub report_markdown: PathBuf,
}

/// What [`PreparedRun::hpo`] found: the best trial's settings, as `hpo.json` holds them.
#[derive(Debug, Clone, Serialize)]
pub struct HpoOutcome {
    pub learning_rate: f64,
    pub batch_size: usize,
    pub warmup: Warmup,
    pub weight_decay: f64,
    pub trials: Vec<HpTrial>,
}

impl PreparedRun {
    /// Opens the config's model, loads its data (read as the model's family reads data) and
    /// fits the model to the data's task; every split must have examples.
    pub fn new(config: RunConfig) -> Result<Self> {
        let lora = config
            .model
            .lora
            .as_ref()
            .map(|l| l.to_lora_config(&config.model.path))
            .transpose()?;
        let options = OpenOptions {
            max_len: config.model.max_len,
            max_target_len: config.model.max_target_len,
            generation: config.generation.clone(),
            lora,
            adapter: None,
            config_only: false,
        };
        let mut model = family::open(&config.model.path, &options).context(|| "[model]")?;
        let splits = model
            .data_spec(config.data.clone())
            .load()
            .context(|| "loading the data")?;
        for (name, split) in [
            ("train", &splits.train),
            ("validation", &splits.validation),
            ("test", &splits.test),
        ] {
            if split.is_empty() {
                return Err(CoreError::InvalidInput(format!(
                    "the {name} split is empty: a BOMF run needs train, validation and test \
                     examples"
                )));
            }
        }
        let warnings = model.fit_task(&splits.train)?.into_iter().collect();
        let eval_batch = config.train.eval_batch_size;
        Ok(Self {
            train_items: model.train_items(&splits.train)?,
            validation: model.eval_set(&splits.validation, eval_batch)?,
            test: model.eval_set(&splits.test, eval_batch)?,
            pad_id: model.pad_id()?,
            warnings,
            model,
            config,
        })
    }

    /// The data as the pipeline takes it.
    pub fn data(&self) -> PipelineData<'_> {
        PipelineData {
            train_items: &self.train_items,
            pad_id: self.pad_id,
            validation: &self.validation,
            test: &self.test,
        }
    }

    /// The metric the run optimises with the validation loss: the task's first.
    pub fn metric(&self) -> String {
        self.validation.primary_metric().unwrap_or_default()
    }

    /// A new run directory at `out` for config `text`, or with `resume` the existing one: its
    /// config and its input files (data, model, tokenizer; fingerprinted in `inputs.json`) must
    /// be unchanged.
    pub fn open_run_dir(&self, out: &Path, text: &str, resume: bool) -> Result<RunDir> {
        let dir = if resume {
            RunDir::resume(out, text)?
        } else {
            RunDir::create(out, text)?
        };
        let mut paths = vec![self.config.model.path.clone()];
        paths.extend(self.config.data.input_paths());
        dir.check_inputs(&Inputs::of(&paths)?)?;
        Ok(dir)
    }

    /// The pipeline in `dir` (resumed from its state), then the chosen fusion exported to
    /// `fused/`, the report, and `results.json` last: a run directory with `results.json` has
    /// every output complete. A stop request ([`RunHooks::stop`]) ends it with
    /// [`CoreError::Interrupted`], its state saved.
    pub fn run<B: AutodiffBackend>(
        &self,
        dir: &RunDir,
        hooks: RunHooks<'_>,
        device: &B::Device,
    ) -> Result<RunOutcome> {
        let started = Instant::now();
        let in_dir = self.in_dir(dir, hooks, device);
        let report = self.model.visit::<B, _>(Pipeline(in_dir))?;
        let seconds = started.elapsed().as_secs_f64();
        let files = write_report(
            &dir.report_dir(),
            &report_of(&report, &self.metric(), &self.config),
        )?;
        dir.write_json_atomic("results.json", &report)?;
        Ok(RunOutcome {
            report,
            seconds,
            fused_dir: dir.fused_dir(),
            report_markdown: files.markdown,
        })
    }

    /// Stage 1 alone in `dir` (resumed from its state); the best settings are also written to
    /// `hpo.json`.
    pub fn hpo<B: AutodiffBackend>(
        &self,
        dir: &RunDir,
        hooks: RunHooks<'_>,
        device: &B::Device,
    ) -> Result<HpoOutcome> {
        let in_dir = self.in_dir(dir, hooks, device);
        let outcome = self.model.visit::<B, _>(Hpo(in_dir))?;
        dir.write_json_atomic("hpo.json", &outcome)?;
        Ok(outcome)
    }

    /// This run in `dir`, as the commands' bodies take it.
    fn in_dir<'a, B: Backend>(
        &'a self,
        dir: &'a RunDir,
        hooks: RunHooks<'a>,
        device: &'a B::Device,
    ) -> InRunDir<'a, B> {
        InRunDir {
            run: self,
            dir,
            hooks,
            device,
        }
    }

    /// Fresh pretrained models of `kit` as the pipeline asks for them, the backend seeded by the
    /// run's seed first (it draws a classifier's new head and LoRA's `A` matrices).
    fn model_builder<'a, B: AutodiffBackend, K: ModelKit<B>>(
        &'a self,
        kit: &'a K,
        device: &'a B::Device,
    ) -> impl Fn(crate::model::ModelRequest) -> Result<K::Model> + 'a {
        move |request| {
            B::seed(device, self.config.seed);
            kit.build(request, device)
        }
    }
}

/// A run in its directory, as the commands' bodies ([`Pipeline`], [`Hpo`]) take it.
struct InRunDir<'a, B: Backend> {
    run: &'a PreparedRun,
    dir: &'a RunDir,
    hooks: RunHooks<'a>,
    device: &'a B::Device,
}

/// `bomf run`'s body: the pipeline, then the chosen fusion exported.
struct Pipeline<'a, B: Backend>(InRunDir<'a, B>);

impl<B: AutodiffBackend> ModelVisitor<B> for Pipeline<'_, B> {
    type Output = Result<BomfReport>;

    fn visit<K: ModelKit<B>>(self, kit: &K) -> Self::Output {
        let cx = self.0;
        let make_model = cx.run.model_builder(kit, cx.device);
        let bomf = cx.run.config.bomf_config();
        let mut store = DirStore::new(cx.dir)?;
        let report = run_bomf_with::<B, K::Model>(
            &make_model,
            cx.run.data(),
            &bomf,
            &mut store,
            cx.hooks,
            cx.device,
        )?;
        let chosen = report
            .methods
            .first()
            .ok_or_else(|| CoreError::InvalidInput("the run produced no result".into()))?;
        // Fused as stage 3 fused it (`[fusion] lora`), into a model of that architecture.
        let set = Trajectory::load(&cx.dir.checkpoints_dir())?.checkpoints;
        let (set, request) = bomf.fusion.fusion_set(&set)?;
        let template = make_model(request)?.valid();
        let fused = set.fused_model(template, &chosen.weights, cx.device)?;
        export_staged::<B, K>(kit, &fused, cx.dir)?;
        Ok(report)
    }
}

/// Exports `fused` into staging folders and moves them into the run directory whole: a crash or
/// a full disk leaves the previous `fused/` (or none), never a torn one.
fn export_staged<B: AutodiffBackend, K: ModelKit<B>>(
    kit: &K,
    fused: &InnerModel<B, K::Model>,
    dir: &RunDir,
) -> Result<()> {
    let fused_dir = StagedDir::new(&dir.fused_dir())?;
    let adapter_dir = StagedDir::new(&dir.root().join(FUSED_ADAPTER_DIR))?;
    let dirs = ExportDirs {
        model: fused_dir.path().to_path_buf(),
        adapter: Some(adapter_dir.path().to_path_buf()),
    };
    kit.export(fused, &dirs)?;
    if !adapter_dir.is_empty()? {
        adapter_dir.publish()?;
    }
    fused_dir.publish()?;
    Ok(())
}

/// `bomf hpo`'s body: stage 1 alone.
struct Hpo<'a, B: Backend>(InRunDir<'a, B>);

impl<B: AutodiffBackend> ModelVisitor<B> for Hpo<'_, B> {
    type Output = Result<HpoOutcome>;

    fn visit<K: ModelKit<B>>(self, kit: &K) -> Self::Output {
        let cx = self.0;
        let Some(hpbo) = &cx.run.config.hpbo else {
            return Err(CoreError::config(
                "hpbo",
                "the config has no [hpbo] section",
            ));
        };
        let make_model = cx.run.model_builder(kit, cx.device);
        let mut store = DirStore::new(cx.dir)?;
        let (train, batch_size, trials) = run_stage1::<B, K::Model>(
            &make_model,
            cx.run.data(),
            &cx.run.config.bomf_config(),
            hpbo,
            &mut store,
            cx.hooks,
            cx.device,
        )?;
        Ok(HpoOutcome {
            learning_rate: train.learning_rate,
            batch_size,
            warmup: train.warmup,
            weight_decay: train.adamw.weight_decay,
            trials,
        })
    }
}
