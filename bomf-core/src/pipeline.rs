//! The three stages end to end, and the baselines on the same trajectory.
//!
//! [`run_bomf`] is what `bomf run` does without the run directory: (1) optional HPBO on the
//! proxy, (2) one full fine-tune keeping K checkpoints, (3) qNEHVI over fusion weights, then
//! every baseline, and one test evaluation per method. Each stage is also usable alone
//! ([`crate::hpbo`], [`crate::trajectory`], [`crate::fusion_bo`], [`crate::baselines`]).

use std::time::Instant;

use bomf_data::batch::{BatchConfig, Batcher, Item};
use bomf_models::{HfNamed, StackedParams};
use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use serde::{Deserialize, Serialize};

use crate::baselines::{self, LearnedSoupConfig};
use crate::error::{CoreError, Result};
use crate::eval::{EvalSet, Evaluation, evaluate};
use crate::fusion::CheckpointSet;
use crate::fusion_bo::{
    FuseOn, FusionBoConfig, FusionObjective, FusionRecord, FusionSearch, SelectionRule,
};
use crate::hpbo::{HpSearch, HpTrial, HpboConfig, HyperParams, proxy_run, retrain_to_step};
pub use crate::model::ModelRequest;
use crate::model::TaskModel;
use crate::rundir::{EventLog, RunDir};
use crate::train::TrainConfig;
use crate::trajectory::{KeptCheckpoint, Trajectory, TrajectoryConfig, collect_trajectory};

/// Evaluates fusions θ(w) of a checkpoint set with one reusable buffer and model, and keeps the
/// time split between fusing and evaluating (stage 3 should spend it evaluating).
pub struct FusedEvaluator<'a, B: Backend, M> {
    checkpoints: &'a CheckpointSet,
    template: M,
    /// θ(w) on the host, reused across evaluations (empty when fusing on the device).
    buffer: Vec<f32>,
    /// The checkpoints resident on the device, when fusing there.
    stacked: Option<StackedParams<B>>,
    device: B::Device,
    /// Seconds spent computing θ(w) and loading it into the model.
    pub fuse_seconds: f64,
    /// Seconds spent in forward passes and metrics.
    pub eval_seconds: f64,
    /// Testing aid for crash/resume tests: `BOMF_TEST_EVAL_DELAY_MS` slows every evaluation so a
    /// test can kill a run mid-search.
    delay: Option<std::time::Duration>,
}

impl<'a, B: Backend, M: TaskModel<B> + Clone> FusedEvaluator<'a, B, M> {
    /// `template` gives the architecture (an inference model); its values are replaced. θ(w)
    /// is fused on the host, or on the device per `fuse_on` (see [`FuseOn`]).
    pub fn new(
        checkpoints: &'a CheckpointSet,
        template: M,
        device: B::Device,
        fuse_on: FuseOn,
    ) -> Result<Self> {
        let n = checkpoints
            .layout()
            .ok_or_else(|| CoreError::InvalidInput("no checkpoints to fuse".into()))?
            .num_params();
        let on_device = match fuse_on {
            FuseOn::Host => false,
            FuseOn::Device => true,
            FuseOn::Auto => !is_cpu_backend::<B>(),
        };
        let stacked = if on_device {
            Some(checkpoints.stacked(&template, &device)?)
        } else {
            None
        };
        Ok(Self {
            checkpoints,
            template,
            buffer: if on_device { Vec::new() } else { vec![0.0; n] },
            stacked,
            device,
            fuse_seconds: 0.0,
            eval_seconds: 0.0,
            delay: std::env::var("BOMF_TEST_EVAL_DELAY_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .map(std::time::Duration::from_millis),
        })
    }

    /// Whether θ(w) is computed on the device (the checkpoints resident there).
    pub fn fuses_on_device(&self) -> bool {
        self.stacked.is_some()
    }

    /// θ(w) as a model.
    pub fn model(&mut self, weights: &[f64]) -> Result<M> {
        let t = Instant::now();
        let model = match &self.stacked {
            Some(stacked) => {
                crate::fusion::check_weights(weights, stacked.len())?;
                stacked.fused(self.template.clone(), weights)?
            }
            None => {
                self.checkpoints.fuse_into(weights, &mut self.buffer)?;
                self.checkpoints
                    .load_into(self.template.clone(), &self.buffer, &self.device)?
            }
        };
        self.fuse_seconds += t.elapsed().as_secs_f64();
        Ok(model)
    }

    /// Loss and metrics of θ(w) on `set`.
    pub fn evaluate(&mut self, weights: &[f64], set: &EvalSet) -> Result<Evaluation> {
        let model = self.model(weights)?;
        if let Some(d) = self.delay {
            std::thread::sleep(d);
        }
        let t = Instant::now();
        let e = evaluate(&model, set, &self.device);
        self.eval_seconds += t.elapsed().as_secs_f64();
        e
    }
}

/// Whether `B` is the CPU backend (`Flex`), where fusing on the host is the faster choice.
fn is_cpu_backend<B: Backend>() -> bool {
    std::any::TypeId::of::<B>() == std::any::TypeId::of::<burn::backend::Flex>()
}

/// Which baselines to run besides BOMF (the cheap ones always run: best, last, SWA).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BaselinesConfig {
    pub greedy_soup: bool,
    /// `None`: skip learned soup. In a config file: `false`, `true` (default settings) or a
    /// table of [`LearnedSoupConfig`] fields.
    #[serde(deserialize_with = "learned_soup_setting")]
    pub learned_soup: Option<LearnedSoupConfig>,
    /// Single-objective BO on the validation loss, with stage 3's budget.
    pub loss_only_bo: bool,
    /// Single-objective BO on the validation metric, with stage 3's budget.
    pub metric_only_bo: bool,
    /// Stage 1's search run on the full model (no frozen layers; the `hpbo` settings, or their
    /// defaults), its best trial retrained to its best step and tested. Costs `budget` + 1 full
    /// fine-tunes, so it is off by default.
    pub hpbo_full: bool,
}

/// `learned_soup = false | true | { epochs = …, learning_rate = … }` (TOML has no null, so a
/// plain `Option` could never be switched off from a config file).
fn learned_soup_setting<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<LearnedSoupConfig>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Setting {
        Enabled(bool),
        Settings(LearnedSoupConfig),
    }
    Ok(match Option::<Setting>::deserialize(deserializer)? {
        None | Some(Setting::Enabled(false)) => None,
        Some(Setting::Enabled(true)) => Some(LearnedSoupConfig::default()),
        Some(Setting::Settings(c)) => Some(c),
    })
}

impl Default for BaselinesConfig {
    fn default() -> Self {
        Self {
            greedy_soup: true,
            learned_soup: Some(LearnedSoupConfig::default()),
            loss_only_bo: false,
            metric_only_bo: false,
            hpbo_full: false,
        }
    }
}

/// Everything [`run_bomf`] needs besides the model and the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BomfConfig {
    /// Fine-tuning settings of stage 2 (and the base of stage 1's trials).
    pub train: TrainConfig,
    /// Micro-batch size of training (stage 1 may search it).
    pub batch_size: usize,
    /// `None`: skip stage 1 and train with `train` as given.
    pub hpbo: Option<HpboConfig>,
    pub trajectory: TrajectoryConfig,
    pub fusion: FusionBoConfig,
    pub baselines: BaselinesConfig,
}

impl Default for BomfConfig {
    fn default() -> Self {
        Self {
            train: TrainConfig::default(),
            batch_size: 32,
            hpbo: None,
            trajectory: TrajectoryConfig::default(),
            fusion: FusionBoConfig::default(),
            baselines: BaselinesConfig::default(),
        }
    }
}

/// The data of a run: tokenised training items and the two evaluation splits.
#[derive(Debug, Clone, Copy)]
pub struct PipelineData<'a> {
    pub train_items: &'a [Item],
    pub pad_id: u32,
    pub validation: &'a EvalSet,
    pub test: &'a EvalSet,
}

/// One method of the final table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodResult {
    pub method: String,
    /// Fusion weights over the kept checkpoints; empty for a model that is not a fusion of them
    /// (HPBO-full).
    pub weights: Vec<f64>,
    pub validation: Evaluation,
    pub test: Evaluation,
    /// Wall time of the method itself (searching its weights), without the test evaluation.
    pub seconds: f64,
}

/// Wall time of each stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StageTimes {
    pub hpbo: f64,
    pub trajectory: f64,
    pub fusion_bo: f64,
    /// Of `fusion_bo`: seconds in model evaluation and in fusing θ(w).
    pub fusion_eval: f64,
    pub fusion_fuse: f64,
    pub baselines: f64,
}

/// What [`run_bomf`] found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BomfReport {
    /// The metric stage 3 optimises together with the validation loss: the task's first. Every
    /// comparison of methods (tables, `cargo xtask reproduce`) is on it.
    #[serde(default)]
    pub metric: String,
    pub hpbo_trials: Vec<HpTrial>,
    /// The HPBO-full baseline's trials (empty when it is off).
    #[serde(default)]
    pub hpbo_full_trials: Vec<HpTrial>,
    /// The fine-tuning settings stage 2 used.
    pub train: TrainConfig,
    pub batch_size: usize,
    pub kept: Vec<KeptCheckpoint>,
    pub curve: Vec<(usize, Evaluation)>,
    pub best_step: Option<usize>,
    pub fusion_records: Vec<FusionRecord>,
    pub pareto: Vec<usize>,
    pub hypervolume: Vec<f64>,
    /// The BOMF rows come first (one per selection rule, the configured one first), then the
    /// baselines.
    pub methods: Vec<MethodResult>,
    pub times: StageTimes,
}

fn rule_name(rule: SelectionRule) -> &'static str {
    match rule {
        SelectionRule::HighestMetric => "BOMF (highest metric)",
        SelectionRule::Knee => "BOMF (knee)",
        SelectionRule::PosteriorMean => "BOMF (posterior mean)",
    }
}

/// Where a run keeps its state between steps, so that it can resume after a crash, and where it
/// reports each evaluation as it happens. [`MemoryStore`] keeps nothing (one-shot runs, tests);
/// `crate::run::DirStore` is the run directory.
pub trait RunStore {
    /// A state saved by [`RunStore::save_state`] under `name`, if any.
    fn load_state(&mut self, name: &str) -> Result<Option<serde_json::Value>>;
    /// Saves a state atomically (a crash leaves the old or the new one).
    fn save_state(&mut self, name: &str, state: &serde_json::Value) -> Result<()>;
    fn load_trajectory(&mut self) -> Result<Option<Trajectory>>;
    fn save_trajectory(&mut self, trajectory: &Trajectory) -> Result<()>;
    /// Appends one event to the run's log (flushed before the next evaluation starts).
    fn record(&mut self, event: &RunEvent) -> Result<()>;
}

/// A [`RunStore`] that keeps nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryStore;

impl RunStore for MemoryStore {
    fn load_state(&mut self, _: &str) -> Result<Option<serde_json::Value>> {
        Ok(None)
    }
    fn save_state(&mut self, _: &str, _: &serde_json::Value) -> Result<()> {
        Ok(())
    }
    fn load_trajectory(&mut self) -> Result<Option<Trajectory>> {
        Ok(None)
    }
    fn save_trajectory(&mut self, _: &Trajectory) -> Result<()> {
        Ok(())
    }
    fn record(&mut self, _: &RunEvent) -> Result<()> {
        Ok(())
    }
}

/// A [`RunStore`] in a run directory: states as `state/<name>.json` (atomic), the trajectory
/// under `checkpoints/`, events appended to `evaluations.jsonl`.
pub struct DirStore<'a> {
    dir: &'a RunDir,
    log: EventLog<RunEvent>,
}

impl<'a> DirStore<'a> {
    pub fn new(dir: &'a RunDir) -> Result<Self> {
        Ok(Self {
            log: dir.evaluations()?,
            dir,
        })
    }

    /// Every event logged so far (a torn last line from a crash is dropped).
    pub fn events(&self) -> Result<Vec<RunEvent>> {
        Ok(self.log.read_all()?)
    }
}

impl RunStore for DirStore<'_> {
    fn load_state(&mut self, name: &str) -> Result<Option<serde_json::Value>> {
        Ok(self.dir.read_json(format!("state/{name}.json"))?)
    }
    fn save_state(&mut self, name: &str, state: &serde_json::Value) -> Result<()> {
        let path = self.dir.path("state")?;
        std::fs::create_dir_all(&path).map_err(|e| CoreError::file(&path, e))?;
        Ok(self
            .dir
            .write_json_atomic(format!("state/{name}.json"), state)?)
    }
    fn load_trajectory(&mut self) -> Result<Option<Trajectory>> {
        if self.dir.checkpoint_manifest_path().is_file() {
            Ok(Some(Trajectory::load(&self.dir.checkpoints_dir())?))
        } else {
            Ok(None)
        }
    }
    fn save_trajectory(&mut self, trajectory: &Trajectory) -> Result<()> {
        trajectory.save(&self.dir.checkpoints_dir())
    }
    fn record(&mut self, event: &RunEvent) -> Result<()> {
        Ok(self.log.append(event)?)
    }
}

/// One line of a run's evaluation log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum RunEvent {
    /// A hyperparameter trial (`search`: absent for stage 1, else the baseline's name).
    HpTrial {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        search: Option<String>,
        index: usize,
        trial: HpTrial,
    },
    Checkpoints {
        kept: Vec<KeptCheckpoint>,
        best_step: Option<usize>,
    },
    /// An evaluation of a fusion search (`search`: "bomf" or a single-objective baseline).
    Fusion {
        search: String,
        index: usize,
        record: FusionRecord,
    },
    Method(MethodResult),
}

/// Progress callback: `(stage, done, total)`.
pub type ProgressFn = dyn Fn(&str, usize, usize);

/// What a caller can see and steer while a run goes on.
#[derive(Default, Clone, Copy)]
pub struct RunHooks<'a> {
    /// Set (e.g. by Ctrl-C) to stop after the current evaluation, state saved.
    pub stop: Option<&'a std::sync::atomic::AtomicBool>,
    /// Called after each unit of work: `(stage, done, total)`.
    pub progress: Option<&'a ProgressFn>,
}

impl RunHooks<'_> {
    fn check_stop(&self) -> Result<()> {
        match self.stop {
            Some(flag) if flag.load(std::sync::atomic::Ordering::SeqCst) => {
                Err(CoreError::Interrupted)
            }
            _ => Ok(()),
        }
    }

    fn progress(&self, stage: &str, done: usize, total: usize) {
        if let Some(p) = self.progress {
            p(stage, done, total);
        }
    }
}

fn to_value<T: Serialize>(state: &T, what: &str) -> Result<serde_json::Value> {
    serde_json::to_value(state)
        .map_err(|e| CoreError::InvalidInput(format!("cannot serialise {what}: {e}")))
}

fn from_value<T: serde::de::DeserializeOwned>(v: serde_json::Value, what: &str) -> Result<T> {
    serde_json::from_value(v).map_err(|e| {
        CoreError::InvalidInput(format!(
            "the saved {what} state does not match this version of bomf: {e}"
        ))
    })
}

/// Runs stage 1 (when configured) and returns the fine-tuning settings and batch size to use.
/// Resumes from the store's `hpbo` state.
#[allow(clippy::too_many_arguments)]
pub fn run_stage1<B, M>(
    make_model: &dyn Fn(ModelRequest) -> Result<M>,
    data: PipelineData<'_>,
    config: &BomfConfig,
    hpbo: &HpboConfig,
    store: &mut dyn RunStore,
    hooks: RunHooks<'_>,
    device: &B::Device,
) -> Result<(TrainConfig, usize, Vec<HpTrial>)>
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + TaskModel<B> + HfNamed<B>,
    M::InnerModule: TaskModel<B::InnerBackend>,
{
    let search = run_hp_search::<B, M>(
        STAGE1,
        STAGE1_STATE,
        make_model,
        data,
        config,
        hpbo,
        store,
        hooks,
        device,
    )?;
    let best = search.best()?.hyperparams.clone();
    let batch_size = best.batch_size.unwrap_or(config.batch_size);
    let train =
        crate::hpbo::at_batch_size(&best.apply(&config.train), config.batch_size, batch_size);
    Ok((train, batch_size, search.trials))
}

/// Stage 1's hyperparameter search: its name in progress reports and its saved state.
const STAGE1: &str = "hpbo";
const STAGE1_STATE: &str = "hpbo";
/// The HPBO-full baseline: its row in the table and its saved search.
const HPBO_FULL: &str = "HPBO (full)";
const HPBO_FULL_STATE: &str = "hpbo-full";

/// The fine-tuning base of a hyperparameter search: the run's settings with `hpbo`'s frozen
/// layers, evaluated at least every trajectory interval (the objective is the best evaluation).
fn hp_search_base(config: &BomfConfig, hpbo: &HpboConfig) -> TrainConfig {
    let mut base = config.train.clone();
    base.freeze = crate::train::Freeze {
        lower_layers: hpbo.freeze_lower_layers,
        embeddings: hpbo.freeze_embeddings,
    };
    if let Some(epochs) = hpbo.epochs {
        base.budget = crate::train::Budget::Epochs(epochs);
    }
    if base.eval_every.is_none() {
        base.eval_every = Some(config.trajectory.every);
    }
    base
}

/// Runs (or resumes from its saved state `state_name`) the hyperparameter search named `name`
/// until its budget is spent: stage 1 on the proxy, or the HPBO-full baseline on the full model.
#[allow(clippy::too_many_arguments)]
fn run_hp_search<B, M>(
    name: &str,
    state_name: &str,
    make_model: &dyn Fn(ModelRequest) -> Result<M>,
    data: PipelineData<'_>,
    config: &BomfConfig,
    hpbo: &HpboConfig,
    store: &mut dyn RunStore,
    hooks: RunHooks<'_>,
    device: &B::Device,
) -> Result<HpSearch>
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + TaskModel<B> + HfNamed<B>,
    M::InnerModule: TaskModel<B::InnerBackend>,
{
    let mut search = match store.load_state(state_name)? {
        Some(v) => from_value::<HpSearch>(v, name)?,
        None => HpSearch::new(hpbo.clone())?,
    };
    let base = hp_search_base(config, hpbo);
    let request = ModelRequest {
        dropout: true,
        lora_rank: hpbo.lora_rank,
    };
    let model = || make_model(request);
    while !search.is_done() {
        hooks.check_stop()?;
        let trial = search
            .step(&mut |hp: &HyperParams| {
                proxy_run::<B, M>(
                    &model,
                    data.train_items,
                    data.pad_id,
                    config.batch_size,
                    data.validation,
                    &base,
                    hp,
                    device,
                )
            })?
            .clone();
        tracing::info!(search = name, hp = ?trial.hyperparams, best = ?trial.result.best_metric, "hyperparameter trial");
        store.save_state(state_name, &to_value(&search, name)?)?;
        store.record(&RunEvent::HpTrial {
            search: (name != STAGE1).then(|| name.to_string()),
            index: search.trials.len() - 1,
            trial,
        })?;
        hooks.progress(name, search.trials.len(), hpbo.budget);
    }
    Ok(search)
}

/// The test evaluation of `weights`: reused from a finished method with the same weights (the
/// selection rules and the soups often agree), else computed.
fn test_of<B: Backend, M: TaskModel<B> + Clone>(
    weights: &[f64],
    evaluator: &mut FusedEvaluator<'_, B, M>,
    done: &[MethodResult],
    test: &EvalSet,
) -> Result<Evaluation> {
    match done.iter().find(|m| m.weights == weights) {
        Some(m) => Ok(m.test.clone()),
        None => evaluator.evaluate(weights, test),
    }
}

/// Runs (or resumes) the fusion search stored under `name` until its budget is spent.
fn run_search<B: Backend, M: TaskModel<B> + Clone>(
    name: &str,
    fresh: impl FnOnce() -> Result<FusionSearch>,
    evaluator: &mut FusedEvaluator<'_, B, M>,
    validation: &EvalSet,
    store: &mut dyn RunStore,
    hooks: RunHooks<'_>,
) -> Result<FusionSearch> {
    let state_name = format!("search-{}", name.replace(' ', "-"));
    let mut search = match store.load_state(&state_name)? {
        Some(v) => from_value::<FusionSearch>(v, name)?,
        None => fresh()?,
    };
    while !search.is_done() {
        hooks.check_stop()?;
        let record = search
            .step(&mut |w: &[f64]| evaluator.evaluate(w, validation))?
            .clone();
        store.save_state(&state_name, &to_value(&search, name)?)?;
        store.record(&RunEvent::Fusion {
            search: name.to_string(),
            index: search.records.len() - 1,
            record,
        })?;
        hooks.progress(name, search.records.len(), search.budget());
    }
    Ok(search)
}

/// The whole pipeline on one model family, in memory. `make_model(request)` builds a fresh
/// pretrained model (with a new head) on an autodiff backend, as [`ModelRequest`] describes.
pub fn run_bomf<B, M>(
    make_model: &dyn Fn(ModelRequest) -> Result<M>,
    data: PipelineData<'_>,
    config: &BomfConfig,
    device: &B::Device,
) -> Result<BomfReport>
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + TaskModel<B> + HfNamed<B> + Clone,
    M::InnerModule: TaskModel<B::InnerBackend> + HfNamed<B::InnerBackend> + Clone,
{
    run_bomf_with(
        make_model,
        data,
        config,
        &mut MemoryStore,
        RunHooks::default(),
        device,
    )
}

/// [`run_bomf`] with a [`RunStore`] (resume from it, persist to it) and [`RunHooks`]. A resumed
/// run repeats no completed evaluation: stage 1 and stage 3 continue from their saved searches,
/// stage 2 is reloaded from its saved checkpoints, and finished methods are not rerun.
pub fn run_bomf_with<B, M>(
    make_model: &dyn Fn(ModelRequest) -> Result<M>,
    data: PipelineData<'_>,
    config: &BomfConfig,
    store: &mut dyn RunStore,
    hooks: RunHooks<'_>,
    device: &B::Device,
) -> Result<BomfReport>
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + TaskModel<B> + HfNamed<B> + Clone,
    M::InnerModule: TaskModel<B::InnerBackend> + HfNamed<B::InnerBackend> + Clone,
{
    let mut times: StageTimes = match store.load_state("times")? {
        Some(v) => from_value(v, "timing")?,
        None => StageTimes::default(),
    };
    let metric = data
        .validation
        .task
        .metrics
        .first()
        .map(|m| m.name().to_string())
        .ok_or_else(|| CoreError::config("task.metrics", "the task has no metric"))?;

    // Stage 1.
    let t = Instant::now();
    let (train_config, batch_size, hpbo_trials) = match &config.hpbo {
        Some(hpbo) => run_stage1::<B, M>(make_model, data, config, hpbo, store, hooks, device)?,
        None => (config.train.clone(), config.batch_size, Vec::new()),
    };
    times.hpbo += t.elapsed().as_secs_f64();
    store.save_state("times", &to_value(&times, "timing")?)?;

    // Stage 2.
    hooks.check_stop()?;
    let trajectory = match store.load_trajectory()? {
        Some(t) => {
            tracing::info!(kept = t.kept.len(), "stage 2: checkpoints reloaded");
            hooks.progress("trajectory", 1, 1);
            t
        }
        None => {
            let t = Instant::now();
            let batcher = Batcher::new(
                data.train_items.to_vec(),
                data.pad_id,
                BatchConfig::train(batch_size, train_config.seed),
            )?;
            // Stage 1 may pick another batch size: evaluate after the same examples.
            let mut trajectory_config = config.trajectory;
            trajectory_config.every = crate::hpbo::steps_at_batch_size(
                trajectory_config.every,
                config.batch_size,
                batch_size,
            );
            let trajectory = collect_trajectory(
                make_model(ModelRequest::TRAIN)?,
                &batcher,
                data.validation,
                &train_config,
                &trajectory_config,
                device,
                |step, total| hooks.progress("trajectory", step, total),
            )?;
            store.save_trajectory(&trajectory)?;
            store.record(&RunEvent::Checkpoints {
                kept: trajectory.kept.clone(),
                best_step: trajectory.best_step,
            })?;
            times.trajectory += t.elapsed().as_secs_f64();
            store.save_state("times", &to_value(&times, "timing")?)?;
            trajectory
        }
    };
    tracing::info!(
        kept = ?trajectory.kept.iter().map(|c| c.step).collect::<Vec<_>>(),
        best_step = ?trajectory.best_step,
        "stage 2 done"
    );

    // The checkpoints as fused under `[fusion] lora`, and a model of their architecture.
    let (fusion_set, fusion_request) = config.fusion.fusion_set(&trajectory.checkpoints)?;
    let template = make_model(fusion_request)?.valid();
    let mut evaluator = FusedEvaluator::<B::InnerBackend, _>::new(
        &fusion_set,
        template,
        device.clone(),
        config.fusion.fuse_on,
    )?;
    let k = trajectory.kept.len();

    // Stage 3.
    let t = Instant::now();
    let search = run_search(
        "bomf",
        || FusionSearch::new(config.fusion.clone(), &trajectory.kept, &metric),
        &mut evaluator,
        data.validation,
        store,
        hooks,
    )?;
    times.fusion_bo += t.elapsed().as_secs_f64();
    times.fusion_eval += evaluator.eval_seconds;
    times.fusion_fuse += evaluator.fuse_seconds;
    store.save_state("times", &to_value(&times, "timing")?)?;

    // The finished methods of a resumed run.
    let mut methods: Vec<MethodResult> = match store.load_state("methods")? {
        Some(v) => from_value(v, "methods")?,
        None => Vec::new(),
    };
    let finish = |result: MethodResult,
                  methods: &mut Vec<MethodResult>,
                  store: &mut dyn RunStore|
     -> Result<()> {
        store.record(&RunEvent::Method(result.clone()))?;
        methods.push(result);
        store.save_state("methods", &to_value(&*methods, "methods")?)?;
        hooks.check_stop()
    };
    let done = |methods: &[MethodResult], name: &str| methods.iter().any(|m| m.method == name);

    let mut rules = vec![config.fusion.selection];
    for r in [
        SelectionRule::PosteriorMean,
        SelectionRule::HighestMetric,
        SelectionRule::Knee,
    ] {
        if !rules.contains(&r) {
            rules.push(r);
        }
    }
    for rule in rules {
        if done(&methods, rule_name(rule)) {
            continue;
        }
        let chosen = search.select(rule)?;
        let record = &search.records[chosen];
        let validation = record
            .validation
            .clone()
            .ok_or_else(|| CoreError::InvalidInput("selected a failed evaluation".into()))?;
        let test = test_of(&record.weights, &mut evaluator, &methods, data.test)?;
        finish(
            MethodResult {
                method: rule_name(rule).into(),
                weights: record.weights.clone(),
                validation,
                test,
                seconds: times.fusion_bo,
            },
            &mut methods,
            store,
        )?;
    }

    // Baselines. Each is (name, how to get its weights and validation evaluation).
    let t = Instant::now();
    // Runs a baseline unless a resumed run already has it: `search` finds the weights (and the
    // validation evaluation when already known), then the test split scores them.
    #[allow(clippy::type_complexity)]
    let baseline = |name: &str,
                    methods: &mut Vec<MethodResult>,
                    store: &mut dyn RunStore,
                    evaluator: &mut FusedEvaluator<'_, B::InnerBackend, M::InnerModule>,
                    search: &mut dyn FnMut(
        &mut FusedEvaluator<'_, B::InnerBackend, M::InnerModule>,
        &mut dyn RunStore,
    ) -> Result<(Vec<f64>, Option<Evaluation>)>|
     -> Result<()> {
        if done(methods, name) {
            return Ok(());
        }
        let started = Instant::now();
        let (weights, validation) = search(evaluator, store)?;
        let validation = match validation {
            Some(v) => v,
            None => evaluator.evaluate(&weights, data.validation)?,
        };
        let seconds = started.elapsed().as_secs_f64();
        let test = test_of(&weights, evaluator, methods, data.test)?;
        finish(
            MethodResult {
                method: name.into(),
                weights,
                validation,
                test,
                seconds,
            },
            methods,
            store,
        )
    };
    let kept = &trajectory.kept;
    baseline(
        "best checkpoint",
        &mut methods,
        store,
        &mut evaluator,
        &mut |_, _| {
            let w = baselines::best_single(kept, &metric)?;
            let k = w.iter().position(|&x| x == 1.0).unwrap_or(0);
            Ok((w, Some(kept[k].validation.clone())))
        },
    )?;
    baseline(
        "last checkpoint",
        &mut methods,
        store,
        &mut evaluator,
        &mut |_, _| Ok((baselines::last(kept)?, Some(kept[k - 1].validation.clone()))),
    )?;
    baseline("SWA", &mut methods, store, &mut evaluator, &mut |_, _| {
        Ok((baselines::swa(k), None))
    })?;
    if config.baselines.greedy_soup {
        baseline(
            "greedy soup",
            &mut methods,
            store,
            &mut evaluator,
            &mut |ev, _| {
                let soup = baselines::greedy_soup(kept, &metric, &mut |w| {
                    ev.evaluate(w, data.validation)
                })?;
                Ok((soup.weights, Some(soup.validation)))
            },
        )?;
    }
    if let Some(ls) = &config.baselines.learned_soup {
        baseline(
            "learned soup",
            &mut methods,
            store,
            &mut evaluator,
            &mut |_, _| {
                let w = baselines::learned_soup(
                    &fusion_set,
                    make_model(fusion_request)?,
                    data.validation,
                    ls,
                    device,
                )?;
                Ok((w, None))
            },
        )?;
    }
    for (enabled, objective, name) in [
        (
            config.baselines.loss_only_bo,
            FusionObjective::Loss,
            "loss-only BO",
        ),
        (
            config.baselines.metric_only_bo,
            FusionObjective::Metric(metric.clone()),
            "metric-only BO",
        ),
    ] {
        if !enabled {
            continue;
        }
        baseline(name, &mut methods, store, &mut evaluator, &mut |ev, st| {
            let single = FusionBoConfig {
                objectives: Some(vec![objective.clone()]),
                acquisition: None,
                selection: SelectionRule::HighestMetric,
                ..config.fusion.clone()
            };
            let s = run_search(
                name,
                || FusionSearch::new(single, kept, &metric),
                ev,
                data.validation,
                st,
                hooks,
            )?;
            let record = s.records[s.select(SelectionRule::HighestMetric)?].clone();
            Ok((record.weights, record.validation))
        })?;
    }
    let mut hpbo_full_trials = Vec::new();
    if config.baselines.hpbo_full {
        let started = Instant::now();
        let hpbo = HpboConfig {
            freeze_lower_layers: crate::train::LayerCount::Count(0),
            freeze_embeddings: false,
            lora_rank: None,
            ..config.hpbo.clone().unwrap_or_default()
        };
        // A finished search comes back from its saved state without running anything.
        let search = run_hp_search::<B, M>(
            HPBO_FULL,
            HPBO_FULL_STATE,
            make_model,
            data,
            config,
            &hpbo,
            store,
            hooks,
            device,
        )?;
        if !done(&methods, HPBO_FULL) {
            let best = search.best()?;
            let step = best.result.best_step.ok_or_else(|| {
                CoreError::InvalidInput("the best HPBO-full trial has no best step".into())
            })?;
            let (model, validation) = retrain_to_step::<B, M>(
                &|| make_model(ModelRequest::TRAIN),
                data.train_items,
                data.pad_id,
                config.batch_size,
                data.validation,
                &hp_search_base(config, &hpbo),
                &best.hyperparams,
                step,
                device,
            )?;
            let seconds = started.elapsed().as_secs_f64();
            let test = evaluate(&model, data.test, device)?;
            finish(
                MethodResult {
                    method: HPBO_FULL.into(),
                    // Not a fusion of the trajectory: a model of its own.
                    weights: Vec::new(),
                    validation,
                    test,
                    seconds,
                },
                &mut methods,
                store,
            )?;
        }
        hpbo_full_trials = search.trials;
    }
    times.baselines += t.elapsed().as_secs_f64();
    store.save_state("times", &to_value(&times, "timing")?)?;

    Ok(BomfReport {
        metric,
        hpbo_trials,
        hpbo_full_trials,
        train: train_config,
        batch_size,
        kept: trajectory.kept.clone(),
        curve: trajectory.curve.clone(),
        best_step: trajectory.best_step,
        pareto: search.pareto_indices(),
        hypervolume: search.hypervolume_trace()?,
        fusion_records: search.records,
        methods,
        times,
    })
}
