//! Stage 2: fine-tune the full model once and keep K checkpoints from a window of its
//! trajectory.
//!
//! The reference's rule ([`KeepRule::BestStepWindow`]) needs the best validation step s*, which
//! is only known once training has gone past it. We get it in one pass: the model is evaluated
//! (and snapshotted) every `every` steps; s* is the best step so far; snapshots older than
//! `low·s*` can never enter the window again (s* only moves forward), so they are dropped at
//! once; and training stops as soon as it reaches `high·s*` without a better evaluation. Memory
//! stays at the window's snapshots, not the whole run.
//!
//! A trajectory can be written to a folder (one safetensors file per checkpoint, HF names, and a
//! `manifest.json` written last and atomically) and read back, so later stages and resumed runs
//! need not hold it in memory or retrain.

use std::path::Path;

use bomf_data::batch::Batcher;
use bomf_models::HfNamed;
use bomf_models::HfTensor;
use bomf_models::params::named_tensors;
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::eval::{EvalSet, Evaluation};
use crate::fusion::CheckpointSet;
use crate::model::TaskModel;
use crate::train::{Control, StepRecord, TrainConfig, TrainOutcome, train};

/// Which evaluated checkpoints of the run are kept.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum KeepRule {
    /// The reference's rule: s* = step of the best validation metric (ties: lower loss); keep
    /// the checkpoints in `[low·s*, high·s*]` and stop training at `high·s*`.
    BestStepWindow { low: f64, high: f64 },
    /// Every checkpoint after `start_fraction` of the training budget.
    AfterFraction { start_fraction: f64 },
    /// The last K checkpoints of the run.
    LastK,
}

impl Default for KeepRule {
    fn default() -> Self {
        Self::BestStepWindow {
            low: 0.5,
            high: 2.0,
        }
    }
}

/// How the trajectory is sampled.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrajectoryConfig {
    pub rule: KeepRule,
    /// Number of checkpoints to keep (evenly spaced over the candidates when there are more,
    /// the best validation step s* always among them).
    pub k: usize,
    /// Evaluate and snapshot every this many optimiser steps.
    pub every: usize,
    /// `BestStepWindow`: stop at `high·s*` only after this many evaluations without a better
    /// one (early stopping's patience). Without it an early plateau — a model that still predicts
    /// the majority class at step 10 and 20 — makes s* = 10 and stops training at step 20.
    pub patience: usize,
}

impl Default for TrajectoryConfig {
    fn default() -> Self {
        Self {
            rule: KeepRule::default(),
            k: 10,
            every: 10,
            patience: 5,
        }
    }
}

impl TrajectoryConfig {
    pub fn validate(&self) -> Result<()> {
        if self.k == 0 {
            return Err(CoreError::config("trajectory.k", "must be at least 1"));
        }
        if self.every == 0 {
            return Err(CoreError::config("trajectory.every", "must be at least 1"));
        }
        match self.rule {
            KeepRule::BestStepWindow { low, high } => {
                if !((0.0..=1.0).contains(&low) && high >= 1.0 && high.is_finite()) {
                    return Err(CoreError::config(
                        "trajectory.rule",
                        format!(
                            "window [{low}, {high}] must contain s* itself: \
                             0 <= low <= 1 <= high < inf"
                        ),
                    ));
                }
            }
            KeepRule::AfterFraction { start_fraction } => {
                if !(0.0..1.0).contains(&start_fraction) {
                    return Err(CoreError::config(
                        "trajectory.rule.start_fraction",
                        format!("{start_fraction} is not in [0, 1)"),
                    ));
                }
            }
            KeepRule::LastK => {}
        }
        Ok(())
    }
}

/// A kept checkpoint: its step and its validation evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptCheckpoint {
    pub step: usize,
    pub validation: Evaluation,
}

/// The result of stage 2.
#[derive(Debug, Clone)]
pub struct Trajectory {
    /// The kept parameters, in the order of `kept`.
    pub checkpoints: CheckpointSet,
    pub kept: Vec<KeptCheckpoint>,
    /// Every validation evaluation of the run (the learning curve).
    pub curve: Vec<(usize, Evaluation)>,
    /// The best validation step found (s*).
    pub best_step: Option<usize>,
    pub history: Vec<StepRecord>,
    pub outcome: TrainOutcome,
}

/// `a` is better than `b` by the task's primary metric, ties broken by the lower loss.
pub fn better(a: &Evaluation, b: &Evaluation, metric: &str) -> bool {
    let ma = a.metrics.get(metric).copied().unwrap_or(f64::NEG_INFINITY);
    let mb = b.metrics.get(metric).copied().unwrap_or(f64::NEG_INFINITY);
    ma > mb || (ma == mb && a.loss < b.loss)
}

/// A snapshot taken during training, before the keep rule decides.
/// A candidate checkpoint of the window; its parameters are the same index of the pool's
/// [`CheckpointSet`] (which spills to disk past the memory budget).
struct Snapshot {
    step: usize,
    evaluation: Evaluation,
}

/// Drops the snapshots (and their parameters) that fail `keep`.
fn retain_pool(
    pool: &mut Vec<Snapshot>,
    params: &mut CheckpointSet,
    keep: impl Fn(&Snapshot) -> bool,
) {
    for i in (0..pool.len()).rev() {
        if !keep(&pool[i]) {
            pool.remove(i);
            params.remove(i);
        }
    }
}

/// `k` indices spread evenly over `0..n` (first and last included), always including `must`
/// when given: the evenly spaced index nearest to it is replaced by it. The stage-2 window keeps
/// s* this way, so the best validation checkpoint is always among the fused ones and the
/// best-checkpoint baseline is the best over every evaluated step, not only over those kept.
pub fn evenly_spaced_with(n: usize, k: usize, must: Option<usize>) -> Vec<usize> {
    let mut out = evenly_spaced(n, k);
    if let Some(m) = must.filter(|&m| m < n && !out.contains(&m))
        && let Some(nearest) = out.iter_mut().min_by_key(|i| i.abs_diff(m))
    {
        *nearest = m;
        out.sort_unstable();
        out.dedup();
    }
    out
}

/// `k` indices spread evenly over `0..n` (first and last included).
pub fn evenly_spaced(n: usize, k: usize) -> Vec<usize> {
    if n <= k {
        return (0..n).collect();
    }
    if k == 1 {
        return vec![n - 1];
    }
    let mut out: Vec<usize> = (0..k)
        .map(|i| ((i as f64) * (n - 1) as f64 / (k - 1) as f64).round() as usize)
        .collect();
    out.dedup();
    out
}

/// Fine-tunes `model` under `train_config` (its `eval_every` is replaced by `config.every`) and
/// keeps checkpoints by `config.rule`. The validation split drives s* and labels every
/// checkpoint with its evaluation, which the baselines and stage 3 reuse. `on_evaluation(step,
/// total_steps)` is called after each validation evaluation (a progress report: training may
/// stop before `total_steps`).
pub fn collect_trajectory<B, M>(
    model: M,
    train_batches: &Batcher,
    validation: &EvalSet,
    train_config: &TrainConfig,
    config: &TrajectoryConfig,
    device: &B::Device,
    mut on_evaluation: impl FnMut(usize, usize),
) -> Result<Trajectory>
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + TaskModel<B> + HfNamed<B>,
    M::InnerModule: TaskModel<B::InnerBackend> + HfNamed<B::InnerBackend>,
{
    config.validate()?;
    let metric = validation.primary_metric()?;
    let mut train_config = train_config.clone();
    train_config.eval_every = Some(config.every);

    let mut pool: Vec<Snapshot> = Vec::new();
    let mut pool_params = CheckpointSet::new();
    let mut best: Option<(usize, Evaluation)> = None;
    let mut error: Option<CoreError> = None;
    let run = train(
        model,
        train_batches,
        Some(validation),
        &train_config,
        device,
        |event| {
            on_evaluation(event.step, event.total_steps);
            if best
                .as_ref()
                .is_none_or(|(_, b)| better(event.evaluation, b, &metric))
            {
                best = Some((event.step, event.evaluation.clone()));
            }
            let best_step = best.as_ref().map_or(event.step, |(s, _)| *s);
            let keep_now = match config.rule {
                KeepRule::BestStepWindow { .. } | KeepRule::LastK => true,
                KeepRule::AfterFraction { start_fraction } => {
                    event.step as f64 >= start_fraction * event.total_steps as f64
                }
            };
            if keep_now {
                let pushed = named_tensors(event.model)
                    .map_err(CoreError::from)
                    .and_then(|tensors| pool_params.push_tensors(&tensors));
                if let Err(e) = pushed {
                    error = Some(e);
                    return Control::Stop;
                }
                pool.push(Snapshot {
                    step: event.step,
                    evaluation: event.evaluation.clone(),
                });
            }
            match config.rule {
                KeepRule::BestStepWindow { low, high } => {
                    retain_pool(&mut pool, &mut pool_params, |s| {
                        s.step as f64 >= low * best_step as f64
                    });
                    let waited = (event.step - best_step) / config.every;
                    if event.step as f64 >= high * best_step as f64
                        && event.step > best_step
                        && waited >= config.patience
                    {
                        return Control::Stop;
                    }
                }
                KeepRule::LastK => {
                    if pool.len() > config.k {
                        pool.remove(0);
                        pool_params.remove(0);
                    }
                }
                KeepRule::AfterFraction { .. } => {}
            }
            Control::Continue
        },
    )?;
    if let Some(e) = error {
        return Err(e);
    }
    if let KeepRule::BestStepWindow { high, .. } = config.rule
        && let Some((s, _)) = &best
    {
        retain_pool(&mut pool, &mut pool_params, |snap| {
            snap.step as f64 <= high * *s as f64
        });
    }
    if pool.is_empty() {
        return Err(match run.outcome {
            TrainOutcome::Diverged { step, value } => CoreError::Diverged { step, value },
            _ => CoreError::InvalidInput(
                "no checkpoint was kept: the run was shorter than one evaluation interval".into(),
            ),
        });
    }
    if let TrainOutcome::Diverged { step, value } = run.outcome {
        tracing::warn!(
            step,
            value,
            "training diverged (non-finite loss or gradient): the trajectory ends at the last \
             finite step; a lower learning rate may give a longer one"
        );
    } else if pool.len() < config.k {
        tracing::warn!(
            kept = pool.len(),
            k = config.k,
            "fewer checkpoints than asked for in the window; evaluate more often (trajectory.every)"
        );
    }
    let best_index = best
        .as_ref()
        .and_then(|(s, _)| pool.iter().position(|snap| snap.step == *s));
    let chosen = evenly_spaced_with(pool.len(), config.k, best_index);
    let checkpoints = pool_params.select(&chosen)?;
    let kept = chosen
        .iter()
        .map(|&i| KeptCheckpoint {
            step: pool[i].step,
            validation: pool[i].evaluation.clone(),
        })
        .collect();
    Ok(Trajectory {
        checkpoints,
        kept,
        curve: run.evaluations,
        best_step: best.map(|(s, _)| s),
        history: run.history,
        outcome: run.outcome,
    })
}

const MANIFEST: &str = "manifest.json";
const MANIFEST_VERSION: u32 = 1;

/// What `manifest.json` records about a saved trajectory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    version: u32,
    checkpoints: Vec<ManifestEntry>,
    curve: Vec<(usize, Evaluation)>,
    best_step: Option<usize>,
    history: Vec<StepRecord>,
    outcome: TrainOutcome,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestEntry {
    file: String,
    #[serde(flatten)]
    checkpoint: KeptCheckpoint,
}

impl Trajectory {
    /// Writes every checkpoint as `checkpoint-<step>.safetensors` (HF names) and then
    /// `manifest.json` (atomically, last: a folder without a manifest is an unfinished save).
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| CoreError::file(dir, e))?;
        let mut entries = Vec::with_capacity(self.kept.len());
        for (k, kept) in self.kept.iter().enumerate() {
            let flat = self
                .checkpoints
                .checkpoint(k)
                .ok_or_else(|| CoreError::InvalidInput(format!("checkpoint {k} is missing")))?;
            let tensors: Vec<(String, HfTensor)> =
                self.checkpoints.unflatten(flat)?.into_iter().collect();
            let file = format!("checkpoint-{:06}.safetensors", kept.step);
            bomf_models::export::write_safetensors(&dir.join(&file), &tensors)?;
            entries.push(ManifestEntry {
                file,
                checkpoint: kept.clone(),
            });
        }
        let manifest = Manifest {
            version: MANIFEST_VERSION,
            checkpoints: entries,
            curve: self.curve.clone(),
            best_step: self.best_step,
            history: self.history.clone(),
            outcome: self.outcome,
        };
        let text = serde_json::to_string_pretty(&manifest)
            .map_err(|e| CoreError::file(&dir.join(MANIFEST), e))?;
        write_atomic(&dir.join(MANIFEST), text.as_bytes())
    }

    /// Reads a folder written by [`Trajectory::save`]; every checkpoint must have the layout of
    /// the first.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            CoreError::file(
                &path,
                format!("{e} (a trajectory folder without a manifest was not saved completely)"),
            )
        })?;
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|e| CoreError::file(&path, e))?;
        if manifest.version != MANIFEST_VERSION {
            return Err(CoreError::file(
                &path,
                format!(
                    "manifest version {} is not supported (expected {MANIFEST_VERSION})",
                    manifest.version
                ),
            ));
        }
        let mut checkpoints = CheckpointSet::new();
        let mut kept = Vec::new();
        for entry in manifest.checkpoints {
            let file = dir.join(&entry.file);
            let ckpt = bomf_models::weights::read_safetensors(&file)?;
            let tensors: Vec<(String, HfTensor)> = ckpt.tensors.into_iter().collect();
            checkpoints.push_tensors(&tensors)?;
            kept.push(entry.checkpoint);
        }
        if kept.is_empty() {
            return Err(CoreError::file(&path, "the manifest lists no checkpoint"));
        }
        Ok(Self {
            checkpoints,
            kept,
            curve: manifest.curve,
            best_step: manifest.best_step,
            history: manifest.history,
            outcome: manifest.outcome,
        })
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so a
/// crash leaves either the old file or the new one, never half of one.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(|e| CoreError::file(&tmp, e))?;
    f.write_all(bytes).map_err(|e| CoreError::file(&tmp, e))?;
    f.sync_all().map_err(|e| CoreError::file(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| CoreError::file(path, e))
}
