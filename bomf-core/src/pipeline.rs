//! The three stages end to end, and the baselines on the same trajectory.
//!
//! [`run_bomf`] is what `bomf run` does without the run directory: (1) optional HPBO on the
//! proxy, (2) one full fine-tune keeping K checkpoints, (3) qNEHVI over fusion weights, then
//! every baseline, and one test evaluation per method. Each stage is also usable alone
//! ([`crate::hpbo`], [`crate::trajectory`], [`crate::fusion_bo`], [`crate::baselines`]).

use std::time::Instant;

use bomf_data::batch::{BatchConfig, Batcher, Item};
use bomf_models::HfNamed;
use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use serde::{Deserialize, Serialize};

use crate::baselines::{self, LearnedSoupConfig};
use crate::error::{CoreError, Result};
use crate::eval::{EvalSet, Evaluation, evaluate};
use crate::fusion::CheckpointSet;
use crate::fusion_bo::{
    FusionBoConfig, FusionObjective, FusionRecord, FusionSearch, SelectionRule,
};
use crate::hpbo::{HpSearch, HpTrial, HpboConfig, HyperParams, proxy_run};
use crate::model::TaskModel;
use crate::train::TrainConfig;
use crate::trajectory::{KeptCheckpoint, Trajectory, TrajectoryConfig, collect_trajectory};

/// Evaluates fusions θ(w) of a checkpoint set with one reusable buffer and model, and keeps the
/// time split between fusing and evaluating (stage 3 should spend it evaluating).
pub struct FusedEvaluator<'a, B: Backend, M> {
    checkpoints: &'a CheckpointSet,
    template: M,
    buffer: Vec<f32>,
    device: B::Device,
    /// Seconds spent computing θ(w) and loading it into the model.
    pub fuse_seconds: f64,
    /// Seconds spent in forward passes and metrics.
    pub eval_seconds: f64,
}

impl<'a, B: Backend, M: TaskModel<B> + Clone> FusedEvaluator<'a, B, M> {
    /// `template` gives the architecture (an inference model); its values are replaced.
    pub fn new(checkpoints: &'a CheckpointSet, template: M, device: B::Device) -> Result<Self> {
        let n = checkpoints
            .layout()
            .ok_or_else(|| CoreError::InvalidInput("no checkpoints to fuse".into()))?
            .num_params();
        Ok(Self {
            checkpoints,
            template,
            buffer: vec![0.0; n],
            device,
            fuse_seconds: 0.0,
            eval_seconds: 0.0,
        })
    }

    /// θ(w) as a model.
    pub fn model(&mut self, weights: &[f64]) -> Result<M> {
        let t = Instant::now();
        self.checkpoints.fuse_into(weights, &mut self.buffer)?;
        let model =
            self.checkpoints
                .load_into(self.template.clone(), &self.buffer, &self.device)?;
        self.fuse_seconds += t.elapsed().as_secs_f64();
        Ok(model)
    }

    /// Loss and metrics of θ(w) on `set`.
    pub fn evaluate(&mut self, weights: &[f64], set: &EvalSet) -> Result<Evaluation> {
        let model = self.model(weights)?;
        let t = Instant::now();
        let e = evaluate(&model, set, &self.device);
        self.eval_seconds += t.elapsed().as_secs_f64();
        e
    }
}

/// Which baselines to run besides BOMF (the cheap ones always run: best, last, SWA).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BaselinesConfig {
    pub greedy_soup: bool,
    /// `None`: skip learned soup.
    pub learned_soup: Option<LearnedSoupConfig>,
    /// Single-objective BO on the validation loss, with stage 3's budget.
    pub loss_only_bo: bool,
    /// Single-objective BO on the validation metric, with stage 3's budget.
    pub metric_only_bo: bool,
}

impl Default for BaselinesConfig {
    fn default() -> Self {
        Self {
            greedy_soup: true,
            learned_soup: Some(LearnedSoupConfig::default()),
            loss_only_bo: false,
            metric_only_bo: false,
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
    pub hpbo_trials: Vec<HpTrial>,
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

/// Runs stage 1 (when configured) and returns the fine-tuning settings and batch size to use.
pub fn run_stage1<B, M>(
    make_model: &dyn Fn(bool) -> Result<M>,
    data: PipelineData<'_>,
    config: &BomfConfig,
    hpbo: &HpboConfig,
    device: &B::Device,
) -> Result<(TrainConfig, usize, Vec<HpTrial>)>
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + TaskModel<B> + HfNamed<B>,
    M::InnerModule: TaskModel<B::InnerBackend>,
{
    let mut search = HpSearch::new(hpbo.clone())?;
    let mut base = config.train.clone();
    base.freeze_lower_layers = hpbo.freeze_lower_layers;
    if base.eval_every.is_none() {
        base.eval_every = Some(config.trajectory.every);
    }
    let proxy = || make_model(true);
    search.run(
        &mut |hp: &HyperParams| {
            let outcome = proxy_run::<B, M>(
                &proxy,
                data.train_items,
                data.pad_id,
                config.batch_size,
                data.validation,
                &base,
                hp,
                device,
            )?;
            tracing::info!(?hp, best = ?outcome.best_metric, "stage 1 trial");
            Ok(outcome)
        },
        &mut |_| Ok(()),
    )?;
    let best = search.best()?.hyperparams.clone();
    let train = best.apply(&config.train);
    let batch_size = best.batch_size.unwrap_or(config.batch_size);
    Ok((train, batch_size, search.trials))
}

/// The whole pipeline on one model family. `make_model(dropout)` builds a fresh pretrained model
/// (with a new head) on an autodiff backend; `dropout = false` is used for the learned soup.
pub fn run_bomf<B, M>(
    make_model: &dyn Fn(bool) -> Result<M>,
    data: PipelineData<'_>,
    config: &BomfConfig,
    device: &B::Device,
) -> Result<BomfReport>
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + TaskModel<B> + HfNamed<B> + Clone,
    M::InnerModule: TaskModel<B::InnerBackend> + HfNamed<B::InnerBackend> + Clone,
{
    let mut times = StageTimes::default();
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
        Some(hpbo) => run_stage1::<B, M>(make_model, data, config, hpbo, device)?,
        None => (config.train.clone(), config.batch_size, Vec::new()),
    };
    times.hpbo = t.elapsed().as_secs_f64();

    // Stage 2.
    let t = Instant::now();
    let batcher = Batcher::new(
        data.train_items.to_vec(),
        data.pad_id,
        BatchConfig::train(batch_size, train_config.seed),
    )?;
    let trajectory: Trajectory = collect_trajectory(
        make_model(true)?,
        &batcher,
        data.validation,
        &train_config,
        &config.trajectory,
        device,
    )?;
    times.trajectory = t.elapsed().as_secs_f64();
    tracing::info!(
        kept = ?trajectory.kept.iter().map(|c| c.step).collect::<Vec<_>>(),
        best_step = ?trajectory.best_step,
        "stage 2 done"
    );

    let template = make_model(false)?.valid();
    let mut evaluator = FusedEvaluator::<B::InnerBackend, _>::new(
        &trajectory.checkpoints,
        template,
        device.clone(),
    )?;
    let k = trajectory.kept.len();
    let mut methods = Vec::new();

    // Stage 3.
    let t = Instant::now();
    let mut search = FusionSearch::new(config.fusion.clone(), &trajectory.kept, &metric)?;
    if k >= 2 {
        search.run(
            &mut |w: &[f64]| evaluator.evaluate(w, data.validation),
            &mut |s: &FusionSearch| {
                tracing::info!(evaluations = s.records.len(), "stage 3 step");
                Ok(())
            },
        )?;
    }
    times.fusion_bo = t.elapsed().as_secs_f64();
    times.fusion_eval = evaluator.eval_seconds;
    times.fusion_fuse = evaluator.fuse_seconds;

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
        let chosen = search.select(rule)?;
        let record = &search.records[chosen];
        let validation = record
            .validation
            .clone()
            .ok_or_else(|| CoreError::InvalidInput("selected a failed evaluation".into()))?;
        let test = evaluator.evaluate(&record.weights, data.test)?;
        methods.push(MethodResult {
            method: rule_name(rule).into(),
            weights: record.weights.clone(),
            validation,
            test,
            seconds: times.fusion_bo,
        });
    }

    // Baselines.
    let t = Instant::now();
    let mut add = |method: &str,
                   weights: Vec<f64>,
                   validation: Option<Evaluation>,
                   seconds: f64,
                   evaluator: &mut FusedEvaluator<'_, B::InnerBackend, M::InnerModule>|
     -> Result<()> {
        let validation = match validation {
            Some(v) => v,
            None => evaluator.evaluate(&weights, data.validation)?,
        };
        let test = evaluator.evaluate(&weights, data.test)?;
        methods.push(MethodResult {
            method: method.into(),
            weights,
            validation,
            test,
            seconds,
        });
        Ok(())
    };
    let best = baselines::best_single(&trajectory.kept, &metric)?;
    let best_k = best.iter().position(|&w| w == 1.0).unwrap_or(0);
    add(
        "best checkpoint",
        best,
        Some(trajectory.kept[best_k].validation.clone()),
        0.0,
        &mut evaluator,
    )?;
    add(
        "last checkpoint",
        baselines::last(&trajectory.kept)?,
        Some(trajectory.kept[k - 1].validation.clone()),
        0.0,
        &mut evaluator,
    )?;
    let t_swa = Instant::now();
    let swa_validation = evaluator.evaluate(&baselines::swa(k), data.validation)?;
    add(
        "SWA",
        baselines::swa(k),
        Some(swa_validation),
        t_swa.elapsed().as_secs_f64(),
        &mut evaluator,
    )?;
    if config.baselines.greedy_soup {
        let t = Instant::now();
        let soup = baselines::greedy_soup(&trajectory.kept, &metric, &mut |w| {
            evaluator.evaluate(w, data.validation)
        })?;
        let seconds = t.elapsed().as_secs_f64();
        add(
            "greedy soup",
            soup.weights,
            Some(soup.validation),
            seconds,
            &mut evaluator,
        )?;
    }
    if let Some(ls) = &config.baselines.learned_soup {
        let t = Instant::now();
        let weights = baselines::learned_soup(
            &trajectory.checkpoints,
            make_model(false)?,
            data.validation,
            ls,
            device,
        )?;
        let seconds = t.elapsed().as_secs_f64();
        add("learned soup", weights, None, seconds, &mut evaluator)?;
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
        if !enabled || k < 2 {
            continue;
        }
        let t = Instant::now();
        let single = FusionBoConfig {
            objectives: Some(vec![objective]),
            acquisition: None,
            selection: SelectionRule::HighestMetric,
            ..config.fusion.clone()
        };
        let mut s = FusionSearch::new(single, &trajectory.kept, &metric)?;
        s.run(
            &mut |w: &[f64]| evaluator.evaluate(w, data.validation),
            &mut |_| Ok(()),
        )?;
        let chosen = s.select(SelectionRule::HighestMetric)?;
        let record = s.records[chosen].clone();
        add(
            name,
            record.weights,
            record.validation,
            t.elapsed().as_secs_f64(),
            &mut evaluator,
        )?;
    }
    times.baselines = t.elapsed().as_secs_f64();

    Ok(BomfReport {
        hpbo_trials,
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
