//! Stage 3: multi-objective BO over fusion weights on the simplex.
//!
//! Objectives are the validation metric(s) (maximised) and the validation loss (minimised), each
//! normalised by the range observed on the K checkpoints themselves, so that 0 is the worst
//! checkpoint and 1 the best in every objective; the reference point is that worst corner. (The
//! reference takes hand-set constants and flips the loss's sign in one place but not the other.)
//! The search starts with K Sobol points, then asks the acquisition (qNEHVI by default) for one
//! point per step. Its GPs use the [`GpKernel`] of the config: BoTorch's current RBF preset by
//! default, or the Matérn-5/2 + Gamma-priors preset of the BoTorch 0.10 the authors pinned.
//!
//! [`FusionSearch`] is plain serialisable state: a run persists it after every evaluation and
//! resumes from it; a point asked but not told (a crash mid-evaluation) is evaluated again first,
//! never a completed one. The model side is a closure `weights → Evaluation`, so the search is
//! the same for every model family and testable on synthetic functions.

use bomf_bo::gp::{FitOptions, GaussianProcess};
use bomf_bo::{
    AcquisitionKind, GpPreset, Objective, Optimizer, OptimizerSettings, SimplexMap, Space,
};
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::eval::Evaluation;
use crate::fusion::{CheckpointSet, LoraFusion};
use crate::model::ModelRequest;
use crate::trajectory::KeptCheckpoint;

/// One quantity the search optimises.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "name")]
pub enum FusionObjective {
    /// A validation metric of the task, by name (maximised).
    Metric(String),
    /// The validation loss (minimised).
    Loss,
    /// A named quantity of the evaluation, minimised (`bomf search`'s evaluators report any).
    Minimize(String),
}

impl FusionObjective {
    /// The raw value in `evaluation`, oriented so that larger is better.
    fn oriented(&self, evaluation: &Evaluation) -> f64 {
        match self {
            Self::Metric(name) => evaluation.metrics.get(name).copied().unwrap_or(f64::NAN),
            Self::Loss => -evaluation.loss,
            Self::Minimize(name) => -evaluation.metrics.get(name).copied().unwrap_or(f64::NAN),
        }
    }

    pub fn label(&self) -> String {
        match self {
            Self::Metric(name) | Self::Minimize(name) => name.clone(),
            Self::Loss => "loss".into(),
        }
    }
}

/// How the final model is picked from the evaluated fusions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelectionRule {
    /// The reference's: the highest observed validation metric, ties broken by the lower loss.
    HighestMetric,
    /// The Pareto point closest to the ideal corner (1, …, 1) of the normalised objectives,
    /// counting only shortfalls (`max(0, 1 − v)` per objective): exceeding the best checkpoint
    /// costs nothing. Points at distance 0 are ranked by their summed objectives.
    Knee,
    /// The evaluated point with the best GP posterior mean of the (first) metric: smooths out
    /// the noise of a small validation set.
    #[default]
    PosteriorMean,
}

/// Settings of stage 3.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FusionBoConfig {
    /// `None`: the task's first metric and the loss (BOMF).
    pub objectives: Option<Vec<FusionObjective>>,
    /// Sobol points before BO (`None`: K).
    pub n_initial: Option<usize>,
    /// Total evaluations, initial ones included (`None`: the reference's K + 5K − 1).
    pub budget: Option<usize>,
    /// `None`: qNEHVI for several objectives, qLogEI for one.
    pub acquisition: Option<AcquisitionKind>,
    pub simplex_map: SimplexMap,
    pub selection: SelectionRule,
    pub seed: u64,
    pub mc_samples: usize,
    /// Where θ(w) is computed for each evaluation.
    pub fuse_on: FuseOn,
    /// How LoRA adapters are fused (stage 3, the fusing baselines and the export); no effect on
    /// checkpoints without adapters.
    pub lora: LoraFusion,
    /// The GP prior family of the search's surrogates (and of the posterior-mean selection).
    pub kernel: GpKernel,
}

/// The GP model family of the fusion search: bomf-bo's two BoTorch presets ([`GpPreset`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GpKernel {
    /// BoTorch ≥ 0.12's default: RBF with ARD and no outputscale, dimension-scaled LogNormal
    /// lengthscale priors.
    #[default]
    RbfDimScaled,
    /// BoTorch ≤ 0.11's default, the one the authors' pinned BoTorch 0.10 used: Matérn-5/2 with
    /// ARD and an outputscale, Gamma priors.
    #[serde(rename = "matern52_gamma")]
    Matern52Gamma,
}

impl GpKernel {
    /// bomf-bo's preset of this kernel (the optimiser's and the selection GP's).
    pub fn preset(self) -> GpPreset {
        match self {
            Self::RbfDimScaled => GpPreset::RbfDimScaled,
            Self::Matern52Gamma => GpPreset::MaternGamma,
        }
    }
}

/// Where θ(w) = Σ_k w_k θ_k is computed for each evaluation of stage 3 and the baselines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FuseOn {
    /// `host` on the CPU backend, `device` on any other (a GPU).
    #[default]
    Auto,
    /// Streamed on the CPU from the checkpoints in memory (or memory-mapped), then loaded
    /// into the model: near two model copies of memory, and the fastest on the CPU.
    Host,
    /// The K checkpoints uploaded once and kept on the device; θ(w) is one product per
    /// parameter there (no per-evaluation upload). K model copies of device memory.
    Device,
}

impl Default for FusionBoConfig {
    fn default() -> Self {
        Self {
            objectives: None,
            n_initial: None,
            budget: None,
            acquisition: None,
            simplex_map: SimplexMap::Normalize,
            selection: SelectionRule::default(),
            seed: 0,
            mc_samples: 128,
            fuse_on: FuseOn::Auto,
            lora: LoraFusion::default(),
            kernel: GpKernel::default(),
        }
    }
}

impl FusionBoConfig {
    /// The checkpoints as every fusion of the run sees them under [`Self::lora`] (see
    /// [`CheckpointSet::for_lora_fusion`]), and the request for a model of their architecture:
    /// with `delta` on K LoRA checkpoints of rank r, adapters of rank K·r at the checkpoints'
    /// update scale.
    pub fn fusion_set(&self, checkpoints: &CheckpointSet) -> Result<(CheckpointSet, ModelRequest)> {
        let set = checkpoints.for_lora_fusion(self.lora)?;
        let lora_rank = match self.lora {
            LoraFusion::Delta => set.lora_rank()?,
            LoraFusion::Factors => None,
        };
        Ok((
            set,
            ModelRequest {
                lora_rank,
                ..ModelRequest::FROZEN
            },
        ))
    }
}

/// Affine maps of each objective to "0 = worst checkpoint, 1 = best checkpoint".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normaliser {
    pub objectives: Vec<FusionObjective>,
    /// Oriented (larger is better) value of the worst checkpoint, per objective.
    pub low: Vec<f64>,
    /// Oriented range over the checkpoints (floored so a flat objective stays finite).
    pub scale: Vec<f64>,
}

impl Normaliser {
    /// From the checkpoints' own validation evaluations.
    pub fn from_checkpoints(
        objectives: Vec<FusionObjective>,
        checkpoints: &[KeptCheckpoint],
    ) -> Result<Self> {
        let evaluations: Vec<Evaluation> =
            checkpoints.iter().map(|c| c.validation.clone()).collect();
        Self::from_evaluations(objectives, &evaluations)
    }

    /// From the checkpoints' evaluations, in checkpoint order.
    pub fn from_evaluations(
        objectives: Vec<FusionObjective>,
        checkpoints: &[Evaluation],
    ) -> Result<Self> {
        if checkpoints.is_empty() {
            return Err(CoreError::InvalidInput(
                "normalising the objectives needs at least one checkpoint".into(),
            ));
        }
        let mut low = Vec::new();
        let mut scale = Vec::new();
        for objective in &objectives {
            let values: Vec<f64> = checkpoints.iter().map(|c| objective.oriented(c)).collect();
            if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                return Err(CoreError::InvalidInput(format!(
                    "checkpoint {i} has no finite value for objective `{}`",
                    objective.label()
                )));
            }
            let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            // A flat objective (e.g. equal accuracies on a small split) gets a scale of 1% of
            // its magnitude, so fusions that move it still register.
            let floor = 1e-2 * lo.abs().max(hi.abs()).max(1e-3);
            low.push(lo);
            scale.push((hi - lo).max(floor));
        }
        Ok(Self {
            objectives,
            low,
            scale,
        })
    }

    /// Normalised, oriented objective values of an evaluation (NaN when a metric is missing or
    /// the evaluation failed).
    pub fn normalise(&self, evaluation: &Evaluation) -> Vec<f64> {
        self.objectives
            .iter()
            .enumerate()
            .map(|(i, o)| (o.oriented(evaluation) - self.low[i]) / self.scale[i])
            .collect()
    }
}

/// Squared distance of normalised objectives `y` to the region at least as good as the ideal
/// corner (1, …, 1): only shortfalls count, `Σ max(0, 1 − v)²`, so a fusion beyond the best
/// checkpoint in some objective (v > 1) is not penalised for being better.
fn knee_distance(y: &[f64]) -> f64 {
    y.iter().map(|v| (1.0 - v).max(0.0).powi(2)).sum()
}

/// One evaluated fusion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FusionRecord {
    pub weights: Vec<f64>,
    /// `None` when the evaluation failed (non-finite loss).
    pub validation: Option<Evaluation>,
    /// Whether the point came from the initial design.
    pub initial: bool,
}

/// The state of a stage-3 search; serialise it to resume.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FusionSearch {
    pub config: FusionBoConfig,
    pub normaliser: Normaliser,
    pub k: usize,
    optimizer: Optimizer,
    pub records: Vec<FusionRecord>,
}

impl FusionSearch {
    /// A search over the fusion weights of `checkpoints` (their validation evaluations set the
    /// normalisation). `default_metric` is the task's selection metric.
    pub fn new(
        config: FusionBoConfig,
        checkpoints: &[KeptCheckpoint],
        default_metric: &str,
    ) -> Result<Self> {
        let evaluations: Vec<Evaluation> =
            checkpoints.iter().map(|c| c.validation.clone()).collect();
        Self::from_evaluations(config, &evaluations, default_metric)
    }

    /// [`Self::new`] from the checkpoints' evaluations alone (in checkpoint order).
    pub fn from_evaluations(
        config: FusionBoConfig,
        checkpoints: &[Evaluation],
        default_metric: &str,
    ) -> Result<Self> {
        let k = checkpoints.len();
        if k < 2 {
            return Err(CoreError::InvalidInput(format!(
                "fusion needs at least 2 checkpoints, got {k}"
            )));
        }
        let objectives = config.objectives.clone().unwrap_or_else(|| {
            vec![
                FusionObjective::Metric(default_metric.to_string()),
                FusionObjective::Loss,
            ]
        });
        if objectives.is_empty() {
            return Err(CoreError::config(
                "fusion.objectives",
                "at least one objective",
            ));
        }
        let normaliser = Normaliser::from_evaluations(objectives.clone(), checkpoints)?;
        let names = (0..k).map(|i| format!("w{i}")).collect();
        let space = Space::simplex(names, config.simplex_map)?;
        let bo_objectives = objectives
            .iter()
            .map(|o| Objective::maximize(o.label()))
            .collect();
        let settings = OptimizerSettings {
            acquisition: config.acquisition,
            n_initial: Some(config.n_initial.unwrap_or(k)),
            seed: config.seed,
            mc_samples: config.mc_samples,
            gp_preset: config.kernel.preset(),
            ..OptimizerSettings::default()
        };
        let mut optimizer = Optimizer::new(space, bo_objectives, settings)?;
        if objectives.len() > 1 {
            optimizer = optimizer.with_ref_point(vec![0.0; objectives.len()])?;
        }
        Ok(Self {
            config,
            normaliser,
            k,
            optimizer,
            records: Vec::new(),
        })
    }

    /// Total evaluations of the search (initial design included).
    pub fn budget(&self) -> usize {
        self.config.budget.unwrap_or(self.k + 5 * self.k - 1)
    }

    pub fn is_done(&self) -> bool {
        self.records.len() >= self.budget()
    }

    /// The BO state (for reports and tests).
    pub fn optimizer(&self) -> &Optimizer {
        &self.optimizer
    }

    /// The weights to evaluate next: a point asked before a crash first, else a new one.
    pub fn next_weights(&mut self) -> Result<Vec<f64>> {
        if let Some(p) = self.optimizer.pending().first() {
            return Ok(p.clone());
        }
        let mut asked = self.optimizer.ask(1)?;
        asked
            .pop()
            .ok_or_else(|| CoreError::InvalidInput("the optimiser proposed no point".into()))
    }

    /// A new point to evaluate while the points already asked are still pending (parallel
    /// evaluations): the acquisition counts the pending points, so it is none of them.
    pub fn ask_new(&mut self) -> Result<Vec<f64>> {
        let mut asked = self.optimizer.ask(1)?;
        asked
            .pop()
            .ok_or_else(|| CoreError::InvalidInput("the optimiser proposed no point".into()))
    }

    /// Points asked and not yet told (being evaluated, or lost to a crash).
    pub fn pending(&self) -> &[Vec<f64>] {
        self.optimizer.pending()
    }

    /// Records the evaluation of `weights` (`None`: it failed).
    pub fn tell(&mut self, weights: &[f64], validation: Option<Evaluation>) -> Result<()> {
        let initial = self.optimizer.n_successful() < self.optimizer.n_initial();
        let y = match &validation {
            Some(e) if e.loss.is_finite() => self.normaliser.normalise(e),
            _ => vec![f64::NAN; self.normaliser.objectives.len()],
        };
        self.optimizer.tell(weights, &y)?;
        self.records.push(FusionRecord {
            weights: weights.to_vec(),
            validation,
            initial,
        });
        Ok(())
    }

    /// One step: next weights, `evaluate`, tell. An `Err` from `evaluate` aborts (and leaves the
    /// point pending for a resume); a non-finite loss is recorded as a failed evaluation.
    pub fn step(
        &mut self,
        evaluate: &mut dyn FnMut(&[f64]) -> Result<Evaluation>,
    ) -> Result<&FusionRecord> {
        let w = self.next_weights()?;
        let evaluation = evaluate(&w)?;
        let validation = evaluation.loss.is_finite().then_some(evaluation);
        self.tell(&w, validation)?;
        self.records
            .last()
            .ok_or_else(|| CoreError::InvalidInput("no record after a step".into()))
    }

    /// Runs until the budget is spent, calling `after_each` (e.g. persist the state).
    pub fn run(
        &mut self,
        evaluate: &mut dyn FnMut(&[f64]) -> Result<Evaluation>,
        after_each: &mut dyn FnMut(&Self) -> Result<()>,
    ) -> Result<()> {
        while !self.is_done() {
            self.step(evaluate)?;
            after_each(self)?;
        }
        Ok(())
    }

    /// Indices of the successful records that no other successful record dominates.
    pub fn pareto_indices(&self) -> Vec<usize> {
        self.optimizer.pareto_indices()
    }

    /// Hypervolume of the normalised front after each evaluation (reference point: the worst
    /// checkpoint corner), for the report.
    pub fn hypervolume_trace(&self) -> Result<Vec<f64>> {
        let m = self.normaliser.objectives.len();
        let mut points: Vec<f64> = Vec::new();
        let mut trace = Vec::with_capacity(self.records.len());
        for r in &self.records {
            if let Some(e) = &r.validation {
                let y = self.normaliser.normalise(e);
                if y.iter().all(|v| v.is_finite()) {
                    points.extend(y);
                }
            }
            let hv = if m == 1 {
                points.iter().copied().fold(0.0f64, f64::max)
            } else {
                bomf_bo::hypervolume(&points, m, &vec![0.0; m])?
            };
            trace.push(hv);
        }
        Ok(trace)
    }

    /// The record chosen by `rule` (an index into `records`).
    pub fn select(&self, rule: SelectionRule) -> Result<usize> {
        let ok: Vec<usize> = (0..self.records.len())
            .filter(|&i| self.records[i].validation.is_some())
            .collect();
        if ok.is_empty() {
            return Err(CoreError::InvalidInput(
                "no successful fusion evaluation to select from".into(),
            ));
        }
        let normalised = |i: usize| {
            self.records[i]
                .validation
                .as_ref()
                .map(|e| self.normaliser.normalise(e))
                .unwrap_or_default()
        };
        let primary = |i: usize| normalised(i).first().copied().unwrap_or(f64::NAN);
        let by_metric_then_loss = |a: usize, b: usize| {
            let (ya, yb) = (normalised(a), normalised(b));
            ya.iter()
                .zip(&yb)
                .map(|(p, q)| p.total_cmp(q))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        };
        let chosen = match rule {
            SelectionRule::HighestMetric => ok.iter().copied().max_by(|&a, &b| {
                by_metric_then_loss(a, b).then_with(|| b.cmp(&a)) // earliest on exact ties
            }),
            SelectionRule::Knee => {
                let front = self.pareto_indices();
                front.into_iter().min_by(|&a, &b| {
                    let (ya, yb) = (normalised(a), normalised(b));
                    knee_distance(&ya)
                        .total_cmp(&knee_distance(&yb))
                        .then_with(|| yb.iter().sum::<f64>().total_cmp(&ya.iter().sum()))
                        .then_with(|| a.cmp(&b))
                })
            }
            SelectionRule::PosteriorMean => {
                let means = self.posterior_means(&ok, primary)?;
                ok.iter()
                    .zip(&means)
                    .max_by(|(a, ma), (b, mb)| {
                        ma.total_cmp(mb)
                            .then_with(|| by_metric_then_loss(**a, **b))
                            .then_with(|| b.cmp(a))
                    })
                    .map(|(i, _)| *i)
            }
        };
        chosen.ok_or_else(|| CoreError::InvalidInput("no fusion to select".into()))
    }

    /// GP posterior mean of the first objective at the records `ok` (the GP is fitted to them,
    /// in the optimiser's unit coordinates).
    fn posterior_means(&self, ok: &[usize], primary: impl Fn(usize) -> f64) -> Result<Vec<f64>> {
        if ok.len() < 3 {
            return Ok(ok.iter().map(|&i| primary(i)).collect());
        }
        let space = self.optimizer.space();
        let mut x = Vec::new();
        for &i in ok {
            x.extend(space.to_unit(&self.records[i].weights)?);
        }
        let y: Vec<f64> = ok.iter().map(|&i| primary(i)).collect();
        let d = space.unit_dim();
        let options = FitOptions {
            preset: self.config.kernel.preset(),
            seed: self.config.seed,
            ..FitOptions::default()
        };
        let gp = GaussianProcess::fit(&x, &y, d, None, &options)?;
        Ok(gp.predict(&x)?.0)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn evaluation(accuracy: f64, loss: f64) -> Evaluation {
        Evaluation {
            loss,
            metrics: BTreeMap::from([("accuracy".to_string(), accuracy)]),
            num_examples: 100,
        }
    }

    /// Two checkpoints: accuracy 0.5..0.7 and loss 1.0..0.6 normalise to 0..1.
    fn checkpoints() -> Vec<KeptCheckpoint> {
        [(0.5, 1.0), (0.7, 0.6)]
            .into_iter()
            .enumerate()
            .map(|(step, (a, l))| KeptCheckpoint {
                step,
                validation: evaluation(a, l),
            })
            .collect()
    }

    fn search(config: FusionBoConfig) -> FusionSearch {
        FusionSearch::new(config, &checkpoints(), "accuracy").unwrap()
    }

    #[test]
    fn knee_does_not_penalise_a_fusion_beyond_the_best_checkpoint() {
        let mut s = search(FusionBoConfig::default());
        // `worse`: normalised (1.02, 0.8), short of the best checkpoint's loss.
        // `beyond`: normalised (1.0, 1.5), the best accuracy and a loss below every checkpoint's.
        // Neither dominates the other, so both are on the front.
        let worse = evaluation(0.704, 0.68);
        let beyond = evaluation(0.7, 0.4);
        s.tell(&[0.4, 0.6], Some(worse)).unwrap();
        s.tell(&[0.3, 0.7], Some(beyond)).unwrap();
        assert_eq!(s.pareto_indices().len(), 2);
        assert_eq!(s.select(SelectionRule::Knee).unwrap(), 1);
    }

    #[test]
    fn the_kernel_setting_reaches_the_optimiser() {
        let default = search(FusionBoConfig::default());
        assert_eq!(
            default.optimizer().settings().gp_preset,
            GpPreset::RbfDimScaled
        );
        let config: FusionBoConfig =
            serde_json::from_value(serde_json::json!({ "kernel": "matern52_gamma" })).unwrap();
        assert_eq!(config.kernel, GpKernel::Matern52Gamma);
        let mut s = search(config);
        assert_eq!(s.optimizer().settings().gp_preset, GpPreset::MaternGamma);
        // The saved state carries it, and the posterior-mean selection fits with it.
        let state = serde_json::to_string(&s).unwrap();
        let resumed: FusionSearch = serde_json::from_str(&state).unwrap();
        assert_eq!(
            resumed.optimizer().settings().gp_preset,
            GpPreset::MaternGamma
        );
        for (i, (a, l)) in [(0.6, 0.9), (0.65, 0.7), (0.55, 0.8)]
            .into_iter()
            .enumerate()
        {
            let w = 0.2 + 0.3 * i as f64;
            s.tell(&[w, 1.0 - w], Some(evaluation(a, l))).unwrap();
        }
        assert_eq!(s.select(SelectionRule::PosteriorMean).unwrap(), 1);
        let rbf: FusionBoConfig =
            serde_json::from_value(serde_json::json!({ "kernel": "rbf_dim_scaled" })).unwrap();
        assert_eq!(rbf.kernel, GpKernel::RbfDimScaled);
        let err =
            serde_json::from_value::<FusionBoConfig>(serde_json::json!({ "kernel": "matern" }))
                .unwrap_err()
                .to_string();
        assert!(err.contains("unknown variant `matern`"), "{err}");
    }

    #[test]
    fn the_lora_fusion_mode_parses() {
        assert_eq!(FusionBoConfig::default().lora, LoraFusion::Factors);
        let config: FusionBoConfig =
            serde_json::from_value(serde_json::json!({ "lora": "delta" })).unwrap();
        assert_eq!(config.lora, LoraFusion::Delta);
        let factors: FusionBoConfig =
            serde_json::from_value(serde_json::json!({ "lora": "factors" })).unwrap();
        assert_eq!(factors.lora, LoraFusion::Factors);
        let err = serde_json::from_value::<FusionBoConfig>(serde_json::json!({ "lora": "merged" }))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown variant `merged`"), "{err}");
    }
}
