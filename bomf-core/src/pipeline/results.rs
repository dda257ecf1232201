//! What a run produces: one row per method ([`MethodResult`]), the stage times and the whole
//! [`BomfReport`]; and the table of finished methods as a run fills it, saved after each row.

use std::time::Instant;

use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::eval::{EvalSet, Evaluation};
use crate::fusion_bo::{FusionRecord, FusionSearch, SelectionRule};
use crate::hpbo::HpTrial;
use crate::model::InferenceModel;
use crate::train::TrainConfig;
use crate::trajectory::KeptCheckpoint;

use super::evaluator::FusedEvaluator;
use super::store::{RunEvent, RunHooks, RunStore, from_value, to_value};

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

/// The state name of the stage times and of the finished methods.
const TIMES_STATE: &str = "times";
const METHODS_STATE: &str = "methods";

impl StageTimes {
    /// The times of a resumed run so far (zero for a fresh one).
    pub(super) fn load(store: &mut dyn RunStore) -> Result<Self> {
        match store.load_state(TIMES_STATE)? {
            Some(v) => from_value(v, "timing"),
            None => Ok(Self::default()),
        }
    }

    pub(super) fn save(&self, store: &mut dyn RunStore) -> Result<()> {
        store.save_state(TIMES_STATE, &to_value(self, "timing")?)
    }
}

/// What [`super::run_bomf`] found.
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

/// The rows of the final table so far: those of a resumed run first. Each finished row is
/// logged and saved before the next method starts, so a resumed run reruns none.
pub(super) struct Methods<'h> {
    rows: Vec<MethodResult>,
    hooks: RunHooks<'h>,
}

impl<'h> Methods<'h> {
    /// The finished methods of a resumed run (none for a fresh one).
    pub(super) fn load(store: &mut dyn RunStore, hooks: RunHooks<'h>) -> Result<Self> {
        let rows = match store.load_state(METHODS_STATE)? {
            Some(v) => from_value(v, "methods")?,
            None => Vec::new(),
        };
        Ok(Self { rows, hooks })
    }

    /// Whether the method `name` has its row already.
    pub(super) fn done(&self, name: &str) -> bool {
        self.rows.iter().any(|m| m.method == name)
    }

    /// Adds a finished method: logged, saved, then a stop request is honoured.
    pub(super) fn finish(&mut self, result: MethodResult, store: &mut dyn RunStore) -> Result<()> {
        store.record(&RunEvent::Method(result.clone()))?;
        self.rows.push(result);
        store.save_state(METHODS_STATE, &to_value(&self.rows, "methods")?)?;
        self.hooks.check_stop()
    }

    /// The test evaluation of `weights`: reused from a finished method with the same weights
    /// (the selection rules and the soups often agree), else computed.
    pub(super) fn test_of<B: Backend, M: InferenceModel<B>>(
        &self,
        weights: &[f64],
        evaluator: &mut FusedEvaluator<'_, B, M>,
        test: &EvalSet,
    ) -> Result<Evaluation> {
        match self.rows.iter().find(|m| m.weights == weights) {
            Some(m) => Ok(m.test.clone()),
            None => evaluator.evaluate(weights, test),
        }
    }

    pub(super) fn into_rows(self) -> Vec<MethodResult> {
        self.rows
    }
}

/// A model found by searching fusion weights: the weights, and their validation evaluation
/// when the search has it already.
pub(super) struct Found {
    pub(super) weights: Vec<f64>,
    pub(super) validation: Option<Evaluation>,
}

/// The table's rows that are fusions of the trajectory: the evaluator over its checkpoints,
/// the table so far, and the splits each row is scored on.
pub(super) struct FusedRows<'a, 'h, B: Backend, M> {
    pub(super) evaluator: FusedEvaluator<'a, B, M>,
    pub(super) methods: Methods<'h>,
    pub(super) validation: &'a EvalSet,
    pub(super) test: &'a EvalSet,
}

impl<'a, B: Backend, M: InferenceModel<B>> FusedRows<'a, '_, B, M> {
    /// Adds the row `name` unless a resumed run has it: `search` finds the weights, which are
    /// then evaluated on the validation split (unless `search` did) and tested.
    pub(super) fn row(
        &mut self,
        name: &str,
        store: &mut dyn RunStore,
        search: impl FnOnce(&mut FusedEvaluator<'a, B, M>, &mut dyn RunStore) -> Result<Found>,
    ) -> Result<()> {
        if self.methods.done(name) {
            return Ok(());
        }
        let started = Instant::now();
        let Found {
            weights,
            validation,
        } = search(&mut self.evaluator, store)?;
        let validation = match validation {
            Some(v) => v,
            None => self.evaluator.evaluate(&weights, self.validation)?,
        };
        let seconds = started.elapsed().as_secs_f64();
        let test = self
            .methods
            .test_of(&weights, &mut self.evaluator, self.test)?;
        let row = MethodResult {
            method: name.into(),
            weights,
            validation,
            test,
            seconds,
        };
        self.methods.finish(row, store)
    }

    /// The BOMF rows: one per selection rule, `configured` first, each tested once. `seconds`
    /// is stage 3's time (the search they share).
    pub(super) fn selection_rows(
        &mut self,
        search: &FusionSearch,
        configured: SelectionRule,
        seconds: f64,
        store: &mut dyn RunStore,
    ) -> Result<()> {
        let mut rules = vec![configured];
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
            if self.methods.done(rule_name(rule)) {
                continue;
            }
            let record = &search.records[search.select(rule)?];
            let validation = record
                .validation
                .clone()
                .ok_or_else(|| CoreError::InvalidInput("selected a failed evaluation".into()))?;
            let test = self
                .methods
                .test_of(&record.weights, &mut self.evaluator, self.test)?;
            let row = MethodResult {
                method: rule_name(rule).into(),
                weights: record.weights.clone(),
                validation,
                test,
                seconds,
            };
            self.methods.finish(row, store)?;
        }
        Ok(())
    }
}

fn rule_name(rule: SelectionRule) -> &'static str {
    match rule {
        SelectionRule::HighestMetric => "BOMF (highest metric)",
        SelectionRule::Knee => "BOMF (knee)",
        SelectionRule::PosteriorMean => "BOMF (posterior mean)",
    }
}
