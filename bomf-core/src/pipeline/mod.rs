//! The three stages end to end, and the baselines on the same trajectory.
//!
//! [`run_bomf`] is what `bomf run` does without the run directory: (1) optional HPBO on the
//! proxy, (2) one full fine-tune keeping K checkpoints, (3) qNEHVI over fusion weights, then
//! every baseline, and one test evaluation per method. Each stage is also usable alone
//! ([`crate::hpbo`], [`crate::trajectory`], [`crate::fusion_bo`], [`crate::baselines`]).
//!
//! The code is split by what it holds: [`evaluator`] (θ(w) as a model), [`store`] (resumable
//! state, the event log, progress and stop hooks), `stages` (stages 1–3), `baselines` (the
//! baselines' rows) and [`results`] (the rows and the report).

use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::baselines::LearnedSoupConfig;
use crate::error::Result;
use crate::eval::EvalSet;
use crate::fusion_bo::FusionBoConfig;
use crate::hpbo::{HpTrial, HpboConfig, TrialData};
pub use crate::model::ModelRequest;
use crate::model::TrainableModel;
use crate::train::TrainConfig;
use crate::trajectory::TrajectoryConfig;
use bomf_data::batch::Item;

mod baselines;
pub mod evaluator;
pub mod results;
mod stages;
pub mod store;

pub use evaluator::FusedEvaluator;
pub use results::{BomfReport, MethodResult, StageTimes};
pub use store::{DirStore, MemoryStore, ProgressFn, RunEvent, RunHooks, RunStore};

use baselines::Fusion;
use results::{FusedRows, Methods};
use stages::Tuned;

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

/// What every stage of a run reads: the model builder, the data, the settings, the hooks and
/// the device.
pub(crate) struct RunContext<'a, B: AutodiffBackend, M> {
    make_model: &'a dyn Fn(ModelRequest) -> Result<M>,
    data: PipelineData<'a>,
    config: &'a BomfConfig,
    hooks: RunHooks<'a>,
    device: &'a B::Device,
}

impl<'a, B: AutodiffBackend, M> RunContext<'a, B, M> {
    fn new(
        make_model: &'a dyn Fn(ModelRequest) -> Result<M>,
        data: PipelineData<'a>,
        config: &'a BomfConfig,
        hooks: RunHooks<'a>,
        device: &'a B::Device,
    ) -> Self {
        Self {
            make_model,
            data,
            config,
            hooks,
            device,
        }
    }

    /// The metric stage 3 optimises with the validation loss: the task's first.
    fn metric(&self) -> Result<String> {
        self.data.validation.primary_metric()
    }

    /// What a hyperparameter trial trains and evaluates on.
    fn trial_data(&self) -> TrialData<'_> {
        TrialData {
            train_items: self.data.train_items,
            pad_id: self.data.pad_id,
            default_batch_size: self.config.batch_size,
            validation: self.data.validation,
        }
    }
}

/// The whole pipeline on one model family, in memory. `make_model(request)` builds a fresh
/// pretrained model (with a new head) on an autodiff backend, as [`ModelRequest`] describes.
pub fn run_bomf<B: AutodiffBackend, M: TrainableModel<B>>(
    make_model: &dyn Fn(ModelRequest) -> Result<M>,
    data: PipelineData<'_>,
    config: &BomfConfig,
    device: &B::Device,
) -> Result<BomfReport> {
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
pub fn run_bomf_with<B: AutodiffBackend, M: TrainableModel<B>>(
    make_model: &dyn Fn(ModelRequest) -> Result<M>,
    data: PipelineData<'_>,
    config: &BomfConfig,
    store: &mut dyn RunStore,
    hooks: RunHooks<'_>,
    device: &B::Device,
) -> Result<BomfReport> {
    let cx = RunContext::new(make_model, data, config, hooks, device);
    let mut times = StageTimes::load(store)?;
    let metric = cx.metric()?;
    let tuned = stages::stage1(&cx, &mut times, store)?;
    let trajectory = stages::stage2(&cx, &tuned, &mut times, store)?;
    tracing::info!(
        kept = ?trajectory.kept.iter().map(|c| c.step).collect::<Vec<_>>(),
        best_step = ?trajectory.best_step,
        "stage 2 done"
    );

    // The checkpoints as fused under `[fusion] lora`, and a model of their architecture.
    let (set, request) = config.fusion.fusion_set(&trajectory.checkpoints)?;
    let template = make_model(request)?.valid();
    let mut evaluator = FusedEvaluator::<B::InnerBackend, _>::new(
        &set,
        template,
        device.clone(),
        config.fusion.fuse_on,
    )?;
    let search = stages::stage3(&cx, &trajectory, &metric, &mut evaluator, &mut times, store)?;

    let mut rows = FusedRows {
        evaluator,
        methods: Methods::load(store, hooks)?,
        validation: data.validation,
        test: data.test,
    };
    rows.selection_rows(&search, config.fusion.selection, times.fusion_bo, store)?;
    let fusion = Fusion {
        set: &set,
        request,
        kept: &trajectory.kept,
        metric: &metric,
    };
    let hpbo_full_trials = baselines::run_baselines(&cx, &fusion, &mut rows, &mut times, store)?;

    Ok(BomfReport {
        metric,
        hpbo_trials: tuned.trials,
        hpbo_full_trials,
        train: tuned.train,
        batch_size: tuned.batch_size,
        pareto: search.pareto_indices(),
        hypervolume: search.hypervolume_trace()?,
        fusion_records: search.records,
        kept: trajectory.kept,
        curve: trajectory.curve,
        best_step: trajectory.best_step,
        methods: rows.methods.into_rows(),
        times,
    })
}

/// Stage 1 alone (what `bomf hpo` runs): the search, resumed from the store's state, and the
/// fine-tuning settings, batch size and trials of its best trial.
pub fn run_stage1<B: AutodiffBackend, M: TrainableModel<B>>(
    make_model: &dyn Fn(ModelRequest) -> Result<M>,
    data: PipelineData<'_>,
    config: &BomfConfig,
    hpbo: &HpboConfig,
    store: &mut dyn RunStore,
    hooks: RunHooks<'_>,
    device: &B::Device,
) -> Result<(TrainConfig, usize, Vec<HpTrial>)> {
    let cx = RunContext::new(make_model, data, config, hooks, device);
    let Tuned {
        train,
        batch_size,
        trials,
    } = stages::tune(&cx, hpbo, store)?;
    Ok((train, batch_size, trials))
}
