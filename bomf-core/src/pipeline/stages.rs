//! The three stages of a run, each resumable from the store: stage 1's hyperparameter search,
//! stage 2's trajectory and stage 3's fusion search with the rows of its selection rules.

use std::time::Instant;

use bomf_data::batch::{BatchConfig, Batcher};
use burn::tensor::backend::{AutodiffBackend, Backend};

use crate::error::Result;
use crate::eval::EvalSet;
use crate::fusion_bo::FusionSearch;
use crate::hpbo::{HpSearch, HpTrial, HpboConfig, HyperParams, proxy_run};
use crate::model::{InferenceModel, ModelRequest, TrainableModel};
use crate::train::TrainConfig;
use crate::trajectory::{Trajectory, collect_trajectory};

use super::evaluator::FusedEvaluator;
use super::results::StageTimes;
use super::store::{RunEvent, RunHooks, RunStore, from_value, to_value};
use super::{BomfConfig, RunContext};

/// A hyperparameter search of a run: its name in progress reports and events, and the name of
/// its saved state.
#[derive(Debug, Clone, Copy)]
pub(super) struct HpSearchName {
    pub(super) name: &'static str,
    pub(super) state: &'static str,
}

/// Stage 1's search.
pub(super) const STAGE1: HpSearchName = HpSearchName {
    name: "hpbo",
    state: "hpbo",
};
/// The HPBO-full baseline: its row in the table and its saved search.
pub(super) const HPBO_FULL: HpSearchName = HpSearchName {
    name: "HPBO (full)",
    state: "hpbo-full",
};

/// What stage 2 trains with: stage 1's pick, or `[train]` as given, and stage 1's trials.
#[derive(Debug, Clone)]
pub(super) struct Tuned {
    pub(super) train: TrainConfig,
    pub(super) batch_size: usize,
    pub(super) trials: Vec<HpTrial>,
}

/// Stage 1 when configured (else the run's settings as they are), its time added to `times`.
pub(super) fn stage1<B: AutodiffBackend, M: TrainableModel<B>>(
    cx: &RunContext<'_, B, M>,
    times: &mut StageTimes,
    store: &mut dyn RunStore,
) -> Result<Tuned> {
    let t = Instant::now();
    let tuned = match &cx.config.hpbo {
        Some(hpbo) => tune(cx, hpbo, store)?,
        None => Tuned {
            train: cx.config.train.clone(),
            batch_size: cx.config.batch_size,
            trials: Vec::new(),
        },
    };
    times.hpbo += t.elapsed().as_secs_f64();
    times.save(store)?;
    Ok(tuned)
}

/// Stage 1's search (resumed from the store), and the settings of its best trial.
pub(super) fn tune<B: AutodiffBackend, M: TrainableModel<B>>(
    cx: &RunContext<'_, B, M>,
    hpbo: &HpboConfig,
    store: &mut dyn RunStore,
) -> Result<Tuned> {
    let search = hp_search(cx, STAGE1, hpbo, store)?;
    let best = search.best()?.hyperparams.clone();
    let batch_size = best.batch_size.unwrap_or(cx.config.batch_size);
    let train = crate::hpbo::at_batch_size(
        &best.apply(&cx.config.train),
        cx.config.batch_size,
        batch_size,
    );
    Ok(Tuned {
        train,
        batch_size,
        trials: search.trials,
    })
}

/// The fine-tuning base of a hyperparameter search: the run's settings with `hpbo`'s frozen
/// layers, evaluated at least every trajectory interval (the objective is the best evaluation).
pub(super) fn hp_search_base(config: &BomfConfig, hpbo: &HpboConfig) -> TrainConfig {
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

/// Runs (or resumes from its saved state) the hyperparameter search `search` until its budget
/// is spent: stage 1 on the proxy, or the HPBO-full baseline on the full model.
pub(super) fn hp_search<B: AutodiffBackend, M: TrainableModel<B>>(
    cx: &RunContext<'_, B, M>,
    search_name: HpSearchName,
    hpbo: &HpboConfig,
    store: &mut dyn RunStore,
) -> Result<HpSearch> {
    let HpSearchName { name, state } = search_name;
    let mut search = match store.load_state(state)? {
        Some(v) => from_value::<HpSearch>(v, name)?,
        None => HpSearch::new(hpbo.clone())?,
    };
    let base = hp_search_base(cx.config, hpbo);
    let request = ModelRequest {
        dropout: true,
        lora_rank: hpbo.lora_rank,
    };
    let model = || (cx.make_model)(request);
    while !search.is_done() {
        cx.hooks.check_stop()?;
        let trial = search
            .step(&mut |hp: &HyperParams| {
                proxy_run::<B, M>(&model, cx.trial_data(), &base, hp, cx.device)
            })?
            .clone();
        tracing::info!(search = name, hp = ?trial.hyperparams, best = ?trial.result.best_metric, "hyperparameter trial");
        store.save_state(state, &to_value(&search, name)?)?;
        store.record(&RunEvent::HpTrial {
            search: (name != STAGE1.name).then(|| name.to_string()),
            index: search.trials.len() - 1,
            trial,
        })?;
        cx.hooks.progress(name, search.trials.len(), hpbo.budget);
    }
    Ok(search)
}

/// Stage 2: the saved trajectory of a resumed run, else one fine-tune with `tuned`'s settings
/// (saved and logged, its time added to `times`).
pub(super) fn stage2<B: AutodiffBackend, M: TrainableModel<B>>(
    cx: &RunContext<'_, B, M>,
    tuned: &Tuned,
    times: &mut StageTimes,
    store: &mut dyn RunStore,
) -> Result<Trajectory> {
    cx.hooks.check_stop()?;
    if let Some(t) = store.load_trajectory()? {
        tracing::info!(kept = t.kept.len(), "stage 2: checkpoints reloaded");
        cx.hooks.progress("trajectory", 1, 1);
        return Ok(t);
    }
    let t = Instant::now();
    let batcher = Batcher::new(
        cx.data.train_items.to_vec(),
        cx.data.pad_id,
        BatchConfig::train(tuned.batch_size, tuned.train.seed),
    )?;
    // Stage 1 may pick another batch size: evaluate after the same examples.
    let mut trajectory_config = cx.config.trajectory;
    trajectory_config.every = crate::hpbo::steps_at_batch_size(
        trajectory_config.every,
        cx.config.batch_size,
        tuned.batch_size,
    );
    let trajectory = collect_trajectory(
        (cx.make_model)(ModelRequest::TRAIN)?,
        &batcher,
        cx.data.validation,
        &tuned.train,
        &trajectory_config,
        cx.device,
        |step, total| cx.hooks.progress("trajectory", step, total),
    )?;
    store.save_trajectory(&trajectory)?;
    store.record(&RunEvent::Checkpoints {
        kept: trajectory.kept.clone(),
        best_step: trajectory.best_step,
    })?;
    times.trajectory += t.elapsed().as_secs_f64();
    times.save(store)?;
    Ok(trajectory)
}

/// Stage 3: the fusion search over `trajectory`'s checkpoints (resumed from the store), its
/// time and the evaluator's split of it added to `times`.
pub(super) fn stage3<
    B: AutodiffBackend,
    M: TrainableModel<B>,
    I: InferenceModel<B::InnerBackend>,
>(
    cx: &RunContext<'_, B, M>,
    trajectory: &Trajectory,
    metric: &str,
    evaluator: &mut FusedEvaluator<'_, B::InnerBackend, I>,
    times: &mut StageTimes,
    store: &mut dyn RunStore,
) -> Result<FusionSearch> {
    let t = Instant::now();
    let search = run_search(
        "bomf",
        || FusionSearch::new(cx.config.fusion.clone(), &trajectory.kept, metric),
        evaluator,
        cx.data.validation,
        store,
        cx.hooks,
    )?;
    times.fusion_bo += t.elapsed().as_secs_f64();
    times.fusion_eval += evaluator.eval_seconds;
    times.fusion_fuse += evaluator.fuse_seconds;
    times.save(store)?;
    Ok(search)
}

/// Runs (or resumes) the fusion search stored under `name` until its budget is spent.
pub(super) fn run_search<B: Backend, M: InferenceModel<B>>(
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
