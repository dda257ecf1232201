//! The baselines on a run's trajectory, each one row of the table (skipped when a resumed run
//! has it): best and last checkpoint, SWA, the soups, single-objective BO and HPBO-full.

use std::time::Instant;

use burn::tensor::backend::{AutodiffBackend, Backend};

use crate::baselines;
use crate::error::{CoreError, Result};
use crate::eval::evaluate;
use crate::fusion::CheckpointSet;
use crate::fusion_bo::{FusionBoConfig, FusionObjective, FusionSearch, SelectionRule};
use crate::hpbo::{HpTrial, HpboConfig, retrain_to_step};
use crate::model::{InferenceModel, InnerModel, ModelRequest, TrainableModel};
use crate::trajectory::KeptCheckpoint;

use super::RunContext;
use super::results::{Found, FusedRows, MethodResult, Methods, StageTimes};
use super::stages::{HPBO_FULL, hp_search, hp_search_base, run_search};
use super::store::RunStore;

/// What the fused baselines share: the kept checkpoints as stage 3 fuses them (`[fusion]
/// lora`), the model request of their architecture, and the metric that ranks them.
pub(super) struct Fusion<'a> {
    pub(super) set: &'a CheckpointSet,
    pub(super) request: ModelRequest,
    pub(super) kept: &'a [KeptCheckpoint],
    pub(super) metric: &'a str,
}

/// The rows of the fused baselines of `cx`'s settings.
type Rows<'a, 'h, B, M> = FusedRows<'a, 'h, <B as AutodiffBackend>::InnerBackend, InnerModel<B, M>>;

/// Every baseline the settings ask for, in the table's order, their time added to `times`.
/// Returns HPBO-full's trials (none when it is off).
pub(super) fn run_baselines<B: AutodiffBackend, M: TrainableModel<B>>(
    cx: &RunContext<'_, B, M>,
    fusion: &Fusion<'_>,
    rows: &mut Rows<'_, '_, B, M>,
    times: &mut StageTimes,
    store: &mut dyn RunStore,
) -> Result<Vec<HpTrial>> {
    let t = Instant::now();
    cheap(fusion, rows, store)?;
    let settings = &cx.config.baselines;
    let validation = cx.data.validation;
    if settings.greedy_soup {
        rows.row("greedy soup", store, |evaluator, _| {
            let soup = baselines::greedy_soup(fusion.kept, fusion.metric, &mut |w| {
                evaluator.evaluate(w, validation)
            })?;
            Ok(Found {
                weights: soup.weights,
                validation: Some(soup.validation),
            })
        })?;
    }
    if let Some(soup) = &settings.learned_soup {
        rows.row("learned soup", store, |_, _| {
            let model = (cx.make_model)(fusion.request)?;
            Ok(Found {
                weights: baselines::learned_soup(fusion.set, model, validation, soup, cx.device)?,
                validation: None,
            })
        })?;
    }
    single_objective_bo(cx, fusion, rows, store)?;
    let trials = if settings.hpbo_full {
        hpbo_full(cx, &mut rows.methods, store)?
    } else {
        Vec::new()
    };
    times.baselines += t.elapsed().as_secs_f64();
    times.save(store)?;
    Ok(trials)
}

/// The baselines that cost at most one evaluation: the best and the last checkpoint, SWA.
fn cheap<B: Backend, M: InferenceModel<B>>(
    fusion: &Fusion<'_>,
    rows: &mut FusedRows<'_, '_, B, M>,
    store: &mut dyn RunStore,
) -> Result<()> {
    let (kept, metric) = (fusion.kept, fusion.metric);
    let k = kept.len();
    rows.row("best checkpoint", store, |_, _| {
        let weights = baselines::best_single(kept, metric)?;
        let best = weights.iter().position(|&x| x == 1.0).unwrap_or(0);
        Ok(Found {
            weights,
            validation: Some(kept[best].validation.clone()),
        })
    })?;
    rows.row("last checkpoint", store, |_, _| {
        Ok(Found {
            weights: baselines::last(kept)?,
            validation: Some(kept[k - 1].validation.clone()),
        })
    })?;
    rows.row("SWA", store, |_, _| {
        Ok(Found {
            weights: baselines::swa(k),
            validation: None,
        })
    })
}

/// Loss-only and metric-only BO, when enabled: stage 3's search on one objective, with its
/// budget, its pick the evaluation with the best value.
fn single_objective_bo<B: AutodiffBackend, M: TrainableModel<B>>(
    cx: &RunContext<'_, B, M>,
    fusion: &Fusion<'_>,
    rows: &mut Rows<'_, '_, B, M>,
    store: &mut dyn RunStore,
) -> Result<()> {
    let settings = &cx.config.baselines;
    for (enabled, objective, name) in [
        (settings.loss_only_bo, FusionObjective::Loss, "loss-only BO"),
        (
            settings.metric_only_bo,
            FusionObjective::Metric(fusion.metric.to_string()),
            "metric-only BO",
        ),
    ] {
        if !enabled {
            continue;
        }
        rows.row(name, store, |evaluator, store| {
            let single = FusionBoConfig {
                objectives: Some(vec![objective]),
                acquisition: None,
                selection: SelectionRule::HighestMetric,
                ..cx.config.fusion.clone()
            };
            let search = run_search(
                name,
                || FusionSearch::new(single, fusion.kept, fusion.metric),
                evaluator,
                cx.data.validation,
                store,
                cx.hooks,
            )?;
            let record = search.records[search.select(SelectionRule::HighestMetric)?].clone();
            Ok(Found {
                weights: record.weights,
                validation: record.validation,
            })
        })?;
    }
    Ok(())
}

/// HPBO-full: stage 1's search on the full model (resumed from its state; a finished one runs
/// nothing), its best trial retrained to its best step and tested. Returns the trials.
fn hpbo_full<B: AutodiffBackend, M: TrainableModel<B>>(
    cx: &RunContext<'_, B, M>,
    methods: &mut Methods<'_>,
    store: &mut dyn RunStore,
) -> Result<Vec<HpTrial>> {
    let started = Instant::now();
    let hpbo = HpboConfig {
        freeze_lower_layers: crate::train::LayerCount::Count(0),
        freeze_embeddings: false,
        lora_rank: None,
        ..cx.config.hpbo.clone().unwrap_or_default()
    };
    let search = hp_search(cx, HPBO_FULL, &hpbo, store)?;
    if !methods.done(HPBO_FULL.name) {
        let best = search.best()?;
        let step = best.result.best_step.ok_or_else(|| {
            CoreError::InvalidInput("the best HPBO-full trial has no best step".into())
        })?;
        let (model, validation) = retrain_to_step::<B, M>(
            &|| (cx.make_model)(ModelRequest::TRAIN),
            cx.trial_data(),
            &hp_search_base(cx.config, &hpbo),
            &best.hyperparams,
            step,
            cx.device,
        )?;
        let seconds = started.elapsed().as_secs_f64();
        let test = evaluate(&model, cx.data.test, cx.device)?;
        let row = MethodResult {
            method: HPBO_FULL.name.into(),
            // Not a fusion of the trajectory: a model of its own.
            weights: Vec::new(),
            validation,
            test,
            seconds,
        };
        methods.finish(row, store)?;
    }
    Ok(search.trials)
}
