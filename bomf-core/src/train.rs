//! The fine-tuning loop: AdamW with no-decay groups ([`crate::optim`]), a warmup schedule
//! ([`crate::schedule`]), gradient accumulation, clipping by global norm, evaluation every N
//! steps with a callback (which may stop the run: early stopping, trajectory collection), layer
//! freezing for the stage-1 proxy, and divergence reported as a typed outcome.
//!
//! Determinism: the backend RNG (dropout) is seeded from [`TrainConfig::seed`] and the batch
//! order comes from the [`Batcher`]'s own seed, so the same inputs give the same run on the CPU.

use bomf_data::batch::{Batch, Batcher};
use bomf_models::HfNamed;
use bomf_models::params::{param_shapes, set_trainable};
use burn::module::AutodiffModule;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::eval::{EvalSet, Evaluation, evaluate};
use crate::model::{TaskModel, scalar};
use crate::optim::{AdamW, AdamWConfig, clip_coefficient, global_grad_norm};
use crate::schedule::{Schedule, ScheduleKind, Warmup};

/// How long to train.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Budget {
    Epochs(usize),
    /// Optimiser steps (the batch order keeps cycling through epochs).
    Steps(usize),
}

/// Everything that defines a fine-tuning run besides the model and the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub learning_rate: f64,
    pub adamw: AdamWConfig,
    pub schedule: ScheduleKind,
    pub warmup: Warmup,
    pub budget: Budget,
    /// Micro-batches per optimiser step (the batcher's batch size is the micro-batch).
    pub grad_accumulation: usize,
    /// Clip the global gradient norm to this value (`None`: no clipping).
    pub max_grad_norm: Option<f64>,
    /// Seeds the backend RNG (dropout). The batch order is seeded by the [`Batcher`].
    pub seed: u64,
    /// Evaluate every this many optimiser steps (and always after the last one).
    pub eval_every: Option<usize>,
    /// What stays frozen (the stage-1 proxy; nothing by default).
    pub freeze: Freeze,
}

/// How many of the lowest layers a proxy freezes: a count, or half of the model's layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCount {
    Count(usize),
    /// `⌊L/2⌋` of the model's `L` layers (the reference freezes 6 of BERT-base's 12).
    Half,
}

impl LayerCount {
    /// The number of layers for a model whose parameters are named `names`.
    pub fn resolve<'a>(self, names: impl IntoIterator<Item = &'a str>) -> usize {
        match self {
            Self::Count(n) => n,
            Self::Half => {
                let layers = names
                    .into_iter()
                    .filter_map(lower_layer_index)
                    .max()
                    .map_or(0, |i| i + 1);
                layers / 2
            }
        }
    }
}

/// In TOML a count (`3`) or `"half"`.
impl Serialize for LayerCount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Self::Count(n) => s.serialize_u64(*n as u64),
            Self::Half => s.serialize_str("half"),
        }
    }
}

impl<'de> Deserialize<'de> for LayerCount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = LayerCount;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number of layers or \"half\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<LayerCount, E> {
                usize::try_from(v)
                    .map(LayerCount::Count)
                    .map_err(|_| E::custom(format!("{v} layers is too many")))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<LayerCount, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom(format!("{v}: the number of layers cannot be negative")))
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<LayerCount, E> {
                match v {
                    "half" => Ok(LayerCount::Half),
                    other => Err(E::custom(format!(
                        "`{other}` is neither a number of layers nor \"half\""
                    ))),
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// The frozen part of a model during fine-tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freeze {
    /// The lowest encoder (decoder-only: transformer) layers.
    pub lower_layers: LayerCount,
    /// The token (and position, type) embeddings too.
    pub embeddings: bool,
}

impl Default for Freeze {
    fn default() -> Self {
        Self {
            lower_layers: LayerCount::Count(0),
            embeddings: false,
        }
    }
}

impl Freeze {
    /// Whether anything is frozen at all.
    pub fn is_none(&self) -> bool {
        self.lower_layers == LayerCount::Count(0) && !self.embeddings
    }
}

impl Default for TrainConfig {
    /// The paper's GLUE setting: constant schedule with 20% warmup, reference AdamW, one epoch.
    fn default() -> Self {
        Self {
            learning_rate: 2e-5,
            adamw: AdamWConfig::default(),
            schedule: ScheduleKind::Constant,
            warmup: Warmup::Ratio(0.2),
            budget: Budget::Epochs(1),
            grad_accumulation: 1,
            max_grad_norm: Some(1.0),
            seed: 0,
            eval_every: None,
            freeze: Freeze::default(),
        }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return Err(CoreError::config(
                "learning_rate",
                "must be positive and finite",
            ));
        }
        self.adamw.validate()?;
        if self.grad_accumulation == 0 {
            return Err(CoreError::config("grad_accumulation", "must be at least 1"));
        }
        if let Some(m) = self.max_grad_norm
            && !(m > 0.0 && m.is_finite())
        {
            return Err(CoreError::config(
                "max_grad_norm",
                "must be positive and finite",
            ));
        }
        if self.eval_every == Some(0) {
            return Err(CoreError::config("eval_every", "must be at least 1"));
        }
        match self.budget {
            Budget::Epochs(0) | Budget::Steps(0) => {
                Err(CoreError::config("budget", "must be at least 1"))
            }
            _ => Ok(()),
        }
    }
}

/// What the evaluation callback decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop,
}

/// Passed to the evaluation callback.
#[derive(Debug)]
pub struct EvalEvent<'a, M> {
    /// Optimiser steps done so far.
    pub step: usize,
    pub total_steps: usize,
    pub evaluation: &'a Evaluation,
    /// The model after `step` updates (inference copy: clone it to keep a checkpoint).
    pub model: &'a M,
}

/// One optimiser step of the log.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: usize,
    pub learning_rate: f64,
    /// Mean training loss of the step's micro-batches.
    pub loss: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TrainOutcome {
    /// The whole budget was used.
    Completed,
    /// The evaluation callback asked to stop.
    Stopped { step: usize },
    /// A loss or gradient norm was NaN/∞ at optimiser step `step`; the returned model is the one
    /// from before that step (still finite).
    Diverged { step: usize, value: f64 },
}

/// The result of [`train`].
#[derive(Debug)]
pub struct TrainRun<M> {
    pub model: M,
    pub outcome: TrainOutcome,
    pub steps_done: usize,
    pub total_steps: usize,
    pub history: Vec<StepRecord>,
    /// `(step, evaluation)` for every evaluation done.
    pub evaluations: Vec<(usize, Evaluation)>,
}

impl<M> TrainRun<M> {
    /// The best evaluation by `key` (higher is better), e.g. the task's primary metric.
    pub fn best_by(&self, key: impl Fn(&Evaluation) -> Option<f64>) -> Option<(usize, f64)> {
        self.evaluations
            .iter()
            .filter_map(|(s, e)| key(e).filter(|v| v.is_finite()).map(|v| (*s, v)))
            .fold(None, |best, (s, v)| match best {
                Some((_, b)) if b >= v => best,
                _ => Some((s, v)),
            })
    }
}

/// Whether `hf_name` belongs to encoder layer `< n` (the frozen part of a proxy with `n` frozen
/// layers; embeddings are [`is_embedding`]).
pub fn is_in_lower_layers(hf_name: &str, n: usize) -> bool {
    lower_layer_index(hf_name).is_some_and(|i| i < n)
}

/// Whether `hf_name` is an embedding table: BERT/RoBERTa `embeddings.*`, T5 `shared`, LLaMA
/// `model.embed_tokens`.
pub fn is_embedding(hf_name: &str) -> bool {
    hf_name
        .split('.')
        .enumerate()
        .any(|(i, p)| p == "embeddings" || p == "embed_tokens" || (i == 0 && p == "shared"))
}

/// The layer index of `hf_name` among the lower layers a proxy may freeze: `encoder.layer.N`
/// (BERT), `encoder.block.N` (T5's encoder), `model.layers.N` (LLaMA).
fn lower_layer_index(hf_name: &str) -> Option<usize> {
    let parts: Vec<&str> = hf_name.split('.').collect();
    parts
        .windows(3)
        .find(|w| {
            (w[0] == "encoder" && (w[1] == "layer" || w[1] == "block"))
                || (w[0] == "model" && w[1] == "layers")
        })
        .and_then(|w| w[2].parse::<usize>().ok())
}

/// The most optimiser steps a run may plan: the step log alone takes tens of bytes per step, and
/// a run this long is a mistake in the config (an epoch count meant as steps, or a typo).
pub const MAX_STEPS: usize = 100_000_000;

/// The optimiser steps of a run, computed on demand: step `i` is the micro-batches
/// `i·accum .. (i+1)·accum` of the epoch-major sequence `(epoch, index in epoch)` (the last step of
/// an epoch budget may have fewer). Nothing is materialised, so the plan's size costs nothing.
#[derive(Debug, Clone, Copy)]
struct StepPlan {
    batches_per_epoch: usize,
    accum: usize,
    micro_batches: usize,
}

impl StepPlan {
    fn new(batches_per_epoch: usize, config: &TrainConfig) -> Result<Self> {
        let accum = config.grad_accumulation;
        let micro_batches = match config.budget {
            Budget::Epochs(e) => e.checked_mul(batches_per_epoch),
            Budget::Steps(s) => s.checked_mul(accum),
        };
        let plan = micro_batches.map(|m| Self {
            batches_per_epoch,
            accum,
            micro_batches: m,
        });
        match plan {
            Some(plan) if plan.total_steps() <= MAX_STEPS => Ok(plan),
            _ => Err(CoreError::config(
                "budget",
                format!(
                    "{:?} at {batches_per_epoch} batches per epoch and {accum} micro-batches per \
                     step would take {} optimiser steps; at most {MAX_STEPS} are supported \
                     (fewer epochs or steps, or a larger batch size)",
                    config.budget,
                    plan.map_or_else(
                        || "more than 2^64".to_string(),
                        |p| p.total_steps().to_string()
                    )
                ),
            )),
        }
    }

    fn total_steps(&self) -> usize {
        self.micro_batches.div_ceil(self.accum)
    }

    /// The micro-batches `(epoch, index in epoch)` of optimiser step `step`.
    fn step(&self, step: usize) -> impl Iterator<Item = (u64, usize)> + '_ {
        let start = step * self.accum;
        let end = (start + self.accum).min(self.micro_batches);
        (start..end).map(|m| {
            (
                (m / self.batches_per_epoch) as u64,
                m % self.batches_per_epoch,
            )
        })
    }
}

/// Fine-tunes `model` on the batches of `train_batches` under `config`, evaluating on `eval_set`
/// every `config.eval_every` steps and at the end, and calling `on_eval` after each evaluation.
pub fn train<B, M>(
    model: M,
    train_batches: &Batcher,
    eval_set: Option<&EvalSet>,
    config: &TrainConfig,
    device: &B::Device,
    mut on_eval: impl FnMut(&EvalEvent<'_, M::InnerModule>) -> Control,
) -> Result<TrainRun<M>>
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + TaskModel<B> + HfNamed<B>,
    M::InnerModule: TaskModel<B::InnerBackend>,
{
    config.validate()?;
    if train_batches.is_empty() {
        return Err(CoreError::InvalidInput("the training set is empty".into()));
    }
    B::seed(device, config.seed);
    let mut model = if config.freeze.is_none() {
        model
    } else {
        let names = param_shapes(&model);
        let n = config
            .freeze
            .lower_layers
            .resolve(names.iter().map(|(name, _)| name.as_str()));
        let embeddings = config.freeze.embeddings;
        tracing::debug!(layers = n, embeddings, "freezing the proxy's lower part");
        set_trainable(model, move |name| {
            !(is_in_lower_layers(name, n) || embeddings && is_embedding(name))
        })
    };

    let batches_per_epoch = train_batches.plan(0).len();
    let plan = StepPlan::new(batches_per_epoch, config)?;
    let total_steps = plan.total_steps();
    let schedule = Schedule::new(config.schedule, config.warmup, total_steps)?;
    let mut optimizer = AdamW::<B>::new(config.adamw)?;
    let mut history = Vec::new();
    let mut evaluations = Vec::new();
    let mut epoch_cache: Option<(u64, Vec<Batch>)> = None;
    let mut outcome = TrainOutcome::Completed;
    let mut steps_done = 0;

    for step in 0..total_steps {
        let micro_batches: Vec<(u64, usize)> = plan.step(step).collect();
        let mut accumulator = GradientsAccumulator::<M>::new();
        let weight = 1.0 / micro_batches.len() as f64;
        let mut step_loss = 0.0;
        let mut diverged = None;
        for &(epoch, index) in &micro_batches {
            if epoch_cache.as_ref().is_none_or(|(e, _)| *e != epoch) {
                epoch_cache = Some((epoch, train_batches.epoch(epoch)));
            }
            let batch = epoch_cache
                .as_ref()
                .and_then(|(_, b)| b.get(index))
                .ok_or_else(|| CoreError::InvalidInput("batch plan out of range".into()))?;
            let out = model.forward_batch(batch, device)?;
            let loss = out.loss.mul_scalar(weight);
            let value = scalar(loss.clone())? / weight;
            if !value.is_finite() {
                diverged = Some(value);
                break;
            }
            step_loss += value * weight;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            accumulator.accumulate(&model, grads);
        }
        if let Some(value) = diverged {
            outcome = TrainOutcome::Diverged { step, value };
            break;
        }
        let mut grads = accumulator.grads();
        let grad_norm = global_grad_norm::<B, M>(&model, &grads)?;
        if !grad_norm.is_finite() {
            outcome = TrainOutcome::Diverged {
                step,
                value: grad_norm,
            };
            break;
        }
        let lr = config.learning_rate * schedule.factor(step);
        let scale = clip_coefficient(grad_norm, config.max_grad_norm);
        model = optimizer.step(model, &mut grads, lr, scale);
        steps_done = step + 1;
        history.push(StepRecord {
            step: steps_done,
            learning_rate: lr,
            loss: step_loss,
            grad_norm,
        });
        tracing::debug!(
            step = steps_done,
            lr,
            loss = step_loss,
            grad_norm,
            "train step"
        );

        let due =
            config.eval_every.is_some_and(|n| steps_done % n == 0) || steps_done == total_steps;
        if let (Some(set), true) = (eval_set, due) {
            let inference = model.valid();
            let evaluation = evaluate::<B::InnerBackend, _>(&inference, set, device)?;
            tracing::info!(step = steps_done, loss = evaluation.loss, metrics = ?evaluation.metrics, "evaluation");
            let control = on_eval(&EvalEvent {
                step: steps_done,
                total_steps,
                evaluation: &evaluation,
                model: &inference,
            });
            evaluations.push((steps_done, evaluation));
            if control == Control::Stop {
                if steps_done < total_steps {
                    outcome = TrainOutcome::Stopped { step: steps_done };
                }
                break;
            }
        }
    }
    Ok(TrainRun {
        model,
        outcome,
        steps_done,
        total_steps,
        history,
        evaluations,
    })
}

/// Evaluates any model (autodiff or not) through its inference copy: a convenience for callers.
pub fn evaluate_inference<B, M>(model: &M, set: &EvalSet, device: &B::Device) -> Result<Evaluation>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    M::InnerModule: TaskModel<B::InnerBackend>,
{
    evaluate::<B::InnerBackend, _>(&model.valid(), set, device)
}
