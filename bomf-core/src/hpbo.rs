//! Stage 1: hyperparameter BO (qLogEI) on a cheap proxy of the model.
//!
//! The search space is the learning rate (log scale) and the batch size (integer), optionally the
//! warmup ratio and the weight decay. Each trial fine-tunes the proxy (lower layers frozen, or
//! for LoRA runs adapters of a smaller rank, see [`crate::model::ModelRequest`]) and
//! reports the **best validation metric along the run** — the reference's code returns 0.0 here,
//! which makes its stage 1 a random search. A diverged run reports a failed evaluation, which the
//! optimiser records and steers away from.
//!
//! Like [`crate::fusion_bo::FusionSearch`], [`HpSearch`] is serialisable state with a closure for
//! the expensive part, so runs resume and tests use synthetic objectives.

use bomf_bo::{AcquisitionKind, Objective, Optimizer, OptimizerSettings, Param, Space};
use bomf_data::batch::{BatchConfig, Batcher, Item};
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::eval::{EvalSet, Evaluation};
use crate::model::{InnerModel, TrainableModel};
use crate::train::{Budget, Control, LayerCount, TrainConfig, TrainOutcome, train};
use crate::trajectory::better;

/// Ranges of the searched hyperparameters (`None`: not searched, the base config's value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HpSpace {
    /// Learning rate range, searched on a log scale.
    pub learning_rate: (f64, f64),
    pub batch_size: Option<(usize, usize)>,
    pub warmup_ratio: Option<(f64, f64)>,
    pub weight_decay: Option<(f64, f64)>,
}

impl Default for HpSpace {
    /// The paper's GLUE ranges: lr in [1e-6, 1e-4] (log), batch size in [8, 64].
    fn default() -> Self {
        Self {
            learning_rate: (1e-6, 1e-4),
            batch_size: Some((8, 64)),
            warmup_ratio: None,
            weight_decay: None,
        }
    }
}

impl HpSpace {
    fn space(&self) -> Result<Space> {
        let (lo, hi) = self.learning_rate;
        let mut params = vec![Param::new("learning_rate", lo, hi).log_scale()];
        if let Some((lo, hi)) = self.batch_size {
            params.push(Param::new("batch_size", lo as f64, hi as f64).integer());
        }
        if let Some((lo, hi)) = self.warmup_ratio {
            params.push(Param::new("warmup_ratio", lo, hi));
        }
        if let Some((lo, hi)) = self.weight_decay {
            params.push(Param::new("weight_decay", lo, hi));
        }
        Ok(Space::new_box(params)?)
    }

    /// The hyperparameters of a point of [`Self::space`].
    fn decode(&self, x: &[f64]) -> HyperParams {
        let mut it = x.iter().copied();
        let learning_rate = it.next().unwrap_or(self.learning_rate.0);
        let batch_size = self
            .batch_size
            .and_then(|_| it.next())
            .map(|v| v.round() as usize);
        let warmup_ratio = self.warmup_ratio.and_then(|_| it.next());
        let weight_decay = self.weight_decay.and_then(|_| it.next());
        HyperParams {
            learning_rate,
            batch_size,
            warmup_ratio,
            weight_decay,
        }
    }
}

/// One point of the hyperparameter space (`None`: keep the base configuration's value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HyperParams {
    pub learning_rate: f64,
    pub batch_size: Option<usize>,
    pub warmup_ratio: Option<f64>,
    pub weight_decay: Option<f64>,
}

impl HyperParams {
    /// `base` with these values substituted.
    pub fn apply(&self, base: &TrainConfig) -> TrainConfig {
        let mut c = base.clone();
        c.learning_rate = self.learning_rate;
        if let Some(w) = self.warmup_ratio {
            c.warmup = crate::schedule::Warmup::Ratio(w);
        }
        if let Some(wd) = self.weight_decay {
            c.adamw.weight_decay = wd;
        }
        c
    }
}

/// Settings of stage 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HpboConfig {
    pub space: HpSpace,
    /// Sobol trials before BO.
    pub n_initial: usize,
    /// Total trials, initial ones included.
    pub budget: usize,
    /// Proxy: freeze this many lower layers, or `"half"` of them (the default; the reference
    /// freezes 6 of BERT-base's 12). `0` for LoRA-rank proxies.
    pub freeze_lower_layers: LayerCount,
    /// Proxy: freeze the embeddings too (not by default; the reference trains them).
    pub freeze_embeddings: bool,
    /// Epochs of each trial (`None`: the run's `[train] epochs`, as the reference). Fewer is a
    /// cheaper, lower-fidelity proxy; HPBO-full trains as many, so the two stay comparable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epochs: Option<usize>,
    /// Proxy of LoRA runs: adapters of this (smaller) rank, at the run's update scale (the
    /// paper's proxy for LLMs). Usually with `freeze_lower_layers = 0`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lora_rank: Option<usize>,
    pub seed: u64,
}

impl Default for HpboConfig {
    fn default() -> Self {
        Self {
            space: HpSpace::default(),
            n_initial: 4,
            budget: 10,
            freeze_lower_layers: LayerCount::Half,
            freeze_embeddings: false,
            epochs: None,
            lora_rank: None,
            seed: 0,
        }
    }
}

/// What one proxy run reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyOutcome {
    /// Best validation metric along the run; `None`: the run failed (diverged).
    pub best_metric: Option<f64>,
    /// Step of that evaluation.
    pub best_step: Option<usize>,
    pub outcome: TrainOutcome,
}

/// One evaluated hyperparameter point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HpTrial {
    pub hyperparams: HyperParams,
    pub result: ProxyOutcome,
}

/// The state of a stage-1 search; serialise it to resume.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HpSearch {
    pub config: HpboConfig,
    optimizer: Optimizer,
    pub trials: Vec<HpTrial>,
}

impl HpSearch {
    pub fn new(config: HpboConfig) -> Result<Self> {
        if config.budget == 0 || config.n_initial == 0 {
            return Err(CoreError::config(
                "hpbo",
                "budget and n_initial must be at least 1",
            ));
        }
        if config.epochs == Some(0) {
            return Err(CoreError::config("hpbo.epochs", "must be at least 1"));
        }
        if config.lora_rank == Some(0) {
            return Err(CoreError::config(
                "hpbo.lora_rank",
                "the proxy's LoRA rank must be at least 1",
            ));
        }
        let settings = OptimizerSettings {
            acquisition: Some(AcquisitionKind::QLogEi),
            n_initial: Some(config.n_initial),
            seed: config.seed,
            ..OptimizerSettings::default()
        };
        let optimizer = Optimizer::new(
            config.space.space()?,
            vec![Objective::maximize("validation metric")],
            settings,
        )?;
        Ok(Self {
            config,
            optimizer,
            trials: Vec::new(),
        })
    }

    pub fn is_done(&self) -> bool {
        self.trials.len() >= self.config.budget
    }

    /// One trial: ask, run `objective`, tell. A point asked before a crash is run again first.
    pub fn step(
        &mut self,
        objective: &mut dyn FnMut(&HyperParams) -> Result<ProxyOutcome>,
    ) -> Result<&HpTrial> {
        let x =
            match self.optimizer.pending().first() {
                Some(p) => p.clone(),
                None => self.optimizer.ask(1)?.pop().ok_or_else(|| {
                    CoreError::InvalidInput("the optimiser proposed no point".into())
                })?,
            };
        let hyperparams = self.config.space.decode(&x);
        let result = objective(&hyperparams)?;
        let y = result
            .best_metric
            .filter(|v| v.is_finite())
            .unwrap_or(f64::NAN);
        self.optimizer.tell(&x, &[y])?;
        self.trials.push(HpTrial {
            hyperparams,
            result,
        });
        self.trials
            .last()
            .ok_or_else(|| CoreError::InvalidInput("no trial after a step".into()))
    }

    /// Runs the remaining budget, calling `after_each` (e.g. persist the state).
    pub fn run(
        &mut self,
        objective: &mut dyn FnMut(&HyperParams) -> Result<ProxyOutcome>,
        after_each: &mut dyn FnMut(&Self) -> Result<()>,
    ) -> Result<()> {
        while !self.is_done() {
            self.step(objective)?;
            after_each(self)?;
        }
        Ok(())
    }

    /// The trial with the best metric.
    pub fn best(&self) -> Result<&HpTrial> {
        self.trials
            .iter()
            .filter(|t| t.result.best_metric.is_some_and(f64::is_finite))
            .max_by(|a, b| {
                a.result
                    .best_metric
                    .unwrap_or(f64::NEG_INFINITY)
                    .total_cmp(&b.result.best_metric.unwrap_or(f64::NEG_INFINITY))
            })
            .ok_or_else(|| CoreError::InvalidInput("every hyperparameter trial failed".into()))
    }
}

/// The training settings and batches of one trial: `base` with `hyperparams` applied, batched at
/// the trial's batch size (or `default_batch_size` when it is not searched).
///
/// Every trial sees the same data: a budget in epochs is kept as it is, a budget in steps (at
/// `default_batch_size`) becomes the steps that cover the same number of examples at the trial's
/// batch size, and the evaluation interval scales the same way — a trial at batch 8 takes four
/// times the steps of one at 32 and is evaluated after the same examples, not four times as
/// early. Warm-up, a ratio of the trial's own step count, follows.
pub fn trial_setup(
    train_items: &[Item],
    pad_id: u32,
    default_batch_size: usize,
    base: &TrainConfig,
    hyperparams: &HyperParams,
) -> Result<(TrainConfig, Batcher)> {
    let default_batch_size = default_batch_size.max(1);
    let batch_size = hyperparams.batch_size.unwrap_or(default_batch_size).max(1);
    let batcher = Batcher::new(
        train_items.to_vec(),
        pad_id,
        BatchConfig::train(batch_size, base.seed),
    )?;
    let config = at_batch_size(&hyperparams.apply(base), default_batch_size, batch_size);
    Ok((config, batcher))
}

/// Optimiser steps at batch size `to` that cover the examples `steps` cover at batch size `from`
/// (at least 1).
pub fn steps_at_batch_size(steps: usize, from: usize, to: usize) -> usize {
    ((steps as f64 * from.max(1) as f64 / to.max(1) as f64).round() as usize).max(1)
}

/// `config`, written for batch size `from`, moved to batch size `to` at equal data: a budget in
/// steps and the evaluation interval are rescaled ([`steps_at_batch_size`]); a budget in epochs
/// and a warm-up ratio already are.
pub fn at_batch_size(config: &TrainConfig, from: usize, to: usize) -> TrainConfig {
    let mut config = config.clone();
    if let Budget::Steps(s) = config.budget {
        config.budget = Budget::Steps(steps_at_batch_size(s, from, to));
    }
    config.eval_every = config.eval_every.map(|n| steps_at_batch_size(n, from, to));
    config
}

/// What a hyperparameter trial trains and evaluates on.
#[derive(Debug, Clone, Copy)]
pub struct TrialData<'a> {
    pub train_items: &'a [Item],
    pub pad_id: u32,
    /// The batch size of a trial that does not search it, and the one a budget in steps and the
    /// evaluation interval of the base settings are written for (see [`trial_setup`]).
    pub default_batch_size: usize,
    pub validation: &'a EvalSet,
}

impl TrialData<'_> {
    /// [`trial_setup`] on these items.
    fn setup(
        &self,
        base: &TrainConfig,
        hyperparams: &HyperParams,
    ) -> Result<(TrainConfig, Batcher)> {
        trial_setup(
            self.train_items,
            self.pad_id,
            self.default_batch_size,
            base,
            hyperparams,
        )
    }
}

/// Trains a model made by `make_model` with `hyperparams` on `data` and returns the best
/// validation metric along the run. `base.freeze` selects the proxy; evaluation follows
/// `base.eval_every`.
pub fn proxy_run<B: AutodiffBackend, M: TrainableModel<B>>(
    make_model: &dyn Fn() -> Result<M>,
    data: TrialData<'_>,
    base: &TrainConfig,
    hyperparams: &HyperParams,
    device: &B::Device,
) -> Result<ProxyOutcome> {
    let (config, batcher) = data.setup(base, hyperparams)?;
    let validation = data.validation;
    let metric = validation.primary_metric()?;
    let run = train(
        make_model()?,
        &batcher,
        Some(validation),
        &config,
        device,
        |_| Control::Continue,
    )?;
    if let TrainOutcome::Diverged { .. } = run.outcome {
        return Ok(ProxyOutcome {
            best_metric: None,
            best_step: None,
            outcome: run.outcome,
        });
    }
    let best =
        run.evaluations
            .iter()
            .fold(None::<&(usize, crate::eval::Evaluation)>, |b, e| match b {
                Some(b) if !better(&e.1, &b.1, &metric) => Some(b),
                _ => Some(e),
            });
    Ok(ProxyOutcome {
        best_metric: best.and_then(|(_, e)| e.metrics.get(&metric).copied()),
        best_step: best.map(|(s, _)| *s),
        outcome: run.outcome,
    })
}

/// Trains like [`proxy_run`] with `hyperparams` and stops at `step`, returning the inference model
/// and its validation evaluation there: a trial's best model, recomputed instead of kept (training
/// is seeded and deterministic on the CPU, so this is the trial's own model; HPBO-full uses it).
pub fn retrain_to_step<B: AutodiffBackend, M: TrainableModel<B>>(
    make_model: &dyn Fn() -> Result<M>,
    data: TrialData<'_>,
    base: &TrainConfig,
    hyperparams: &HyperParams,
    step: usize,
    device: &B::Device,
) -> Result<(InnerModel<B, M>, Evaluation)> {
    let (config, batcher) = data.setup(base, hyperparams)?;
    let mut captured = None;
    train(
        make_model()?,
        &batcher,
        Some(data.validation),
        &config,
        device,
        |event| {
            if event.step == step {
                captured = Some((event.model.clone(), event.evaluation.clone()));
                Control::Stop
            } else {
                Control::Continue
            }
        },
    )?;
    captured.ok_or_else(|| {
        CoreError::InvalidInput(format!(
            "retraining with {hyperparams:?} never evaluated step {step} (evaluation steps \
             follow `eval_every`)"
        ))
    })
}
