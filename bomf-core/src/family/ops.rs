//! What one does with an opened model, written once for every family as a [`ModelVisitor`]:
//! evaluate it, predict with it, fine-tune it keeping a trajectory of checkpoints, and fuse
//! checkpoints of its architecture. Each is a method of [`OpenedModel`] on the autodiff backend
//! `B` (inference runs on `B::InnerBackend`, on the same device).

use std::path::{Path, PathBuf};

use bomf_data::batch::{BatchConfig, Batcher, Item, ItemTarget};
use bomf_data::tokenize::Encoded;
use burn::tensor::backend::{AutodiffBackend, Backend};

use super::{ExportDirs, Family, ModelKit, ModelVisitor, OpenedModel, Prediction};
use crate::error::{CoreError, Result, ResultExt};
use crate::eval::{EvalSet, Evaluation, evaluate};
use crate::fusion::CheckpointSet;
use crate::model::ModelRequest;
use crate::rundir::StagedDir;
use crate::train::TrainConfig;
use crate::trajectory::{Trajectory, TrajectoryConfig, collect_trajectory};

/// One fine-tune that keeps a trajectory ([`OpenedModel::train_trajectory`]).
pub struct TrainJob<'a> {
    pub batches: &'a Batcher,
    pub validation: &'a EvalSet,
    pub train: &'a TrainConfig,
    pub trajectory: &'a TrajectoryConfig,
    /// Seeds the backend before the model is built (a fresh head, LoRA's `A` matrices).
    pub seed: u64,
    /// Where the trajectory is saved, with the files that make its checkpoints loadable.
    pub dir: &'a Path,
}

/// Rows of input texts to predict on ([`OpenedModel::predict`], [`ModelKit::predict`]).
pub struct PredictJob<'a, D> {
    /// Each row the text fields of one example.
    pub rows: &'a [Vec<String>],
    /// How many rows go through the model at a time (in row order).
    pub batch_size: usize,
    /// Where the model runs.
    pub device: &'a D,
}

impl<D> PredictJob<'_, D> {
    /// The rows as an evaluation [`Batcher`] (`batch_size` rows a batch, in row order), row `i`
    /// tokenised by `encode(i, texts)`.
    pub fn batcher(
        &self,
        pad_id: u32,
        encode: impl Fn(usize, &[String]) -> bomf_data::Result<Encoded>,
    ) -> Result<Batcher> {
        let mut items = Vec::with_capacity(self.rows.len());
        for (i, texts) in self.rows.iter().enumerate() {
            let encoded = encode(i, texts).context(|| format!("row {}: tokenising", i + 1))?;
            items.push(Item::new(encoded, ItemTarget::None));
        }
        Ok(Batcher::new(
            items,
            pad_id,
            BatchConfig::eval(self.batch_size),
        )?)
    }
}

impl OpenedModel {
    /// The loss and every metric of the opened model on `set`.
    pub fn evaluate<B: AutodiffBackend>(
        &self,
        set: &EvalSet,
        device: &B::Device,
    ) -> Result<Evaluation> {
        self.visit::<B, _>(Evaluate { set, device })
    }

    /// One output per row of input texts (a row is the text fields of one example).
    pub fn predict<B: AutodiffBackend>(
        &self,
        rows: &[Vec<String>],
        batch_size: usize,
        device: &B::Device,
    ) -> Result<Vec<Prediction>> {
        self.visit::<B, _>(&PredictJob {
            rows,
            batch_size,
            device,
        })
    }

    /// Fine-tunes the opened model (fitted to its task, see [`Family::fit_task`]) and saves the
    /// kept checkpoints to `job.dir` with what makes them loadable: the `config.json` and
    /// tokenizer of the model, or for LoRA each checkpoint as a peft adapter folder. The
    /// manifest, written last, marks a finished folder.
    pub fn train_trajectory<B: AutodiffBackend>(
        &self,
        job: &TrainJob<'_>,
        device: &B::Device,
    ) -> Result<Trajectory> {
        self.visit::<B, _>(Train { job, device })
    }

    /// Writes θ = Σ_k w_k θ_k of `checkpoints` (folders or `.safetensors` files) into `out` as
    /// an HF folder, each checkpoint loaded strictly into the opened configuration first. The
    /// folder is written beside `out` and moved into place whole. Returns the number of
    /// parameters fused.
    pub fn fuse_checkpoints<B: AutodiffBackend>(
        &self,
        checkpoints: &[PathBuf],
        weights: &[f64],
        out: &Path,
        device: &B::Device,
    ) -> Result<usize> {
        self.visit::<B, _>(Fuse {
            family: &**self,
            checkpoints,
            weights,
            out,
            device,
        })
    }
}

struct Evaluate<'a, B: Backend> {
    set: &'a EvalSet,
    device: &'a B::Device,
}

impl<B: AutodiffBackend> ModelVisitor<B> for Evaluate<'_, B> {
    type Output = Result<Evaluation>;

    fn visit<K: ModelKit<B>>(self, kit: &K) -> Self::Output {
        evaluate(&kit.inference(self.device)?, self.set, self.device)
    }
}

impl<B: AutodiffBackend> ModelVisitor<B> for &PredictJob<'_, B::Device> {
    type Output = Result<Vec<Prediction>>;

    fn visit<K: ModelKit<B>>(self, kit: &K) -> Self::Output {
        let model = kit.inference(self.device)?;
        kit.predict(&model, self)
    }
}

struct Train<'a, B: Backend> {
    job: &'a TrainJob<'a>,
    device: &'a B::Device,
}

impl<B: AutodiffBackend> ModelVisitor<B> for Train<'_, B> {
    type Output = Result<Trajectory>;

    fn visit<K: ModelKit<B>>(self, kit: &K) -> Self::Output {
        let (job, device) = (self.job, self.device);
        B::seed(device, job.seed);
        let model = kit.build(ModelRequest::TRAIN, device)?;
        let trajectory = collect_trajectory(
            model,
            job.batches,
            job.validation,
            job.train,
            job.trajectory,
            device,
            |_, _| {},
        )?;
        std::fs::create_dir_all(job.dir).map_err(|e| CoreError::file(job.dir, e))?;
        kit.describe_trajectory(&trajectory, job.dir, device)?;
        trajectory
            .save(job.dir)
            .context(|| format!("saving to {}", job.dir.display()))?;
        Ok(trajectory)
    }
}

struct Fuse<'a, B: Backend> {
    family: &'a dyn Family,
    checkpoints: &'a [PathBuf],
    weights: &'a [f64],
    out: &'a Path,
    device: &'a B::Device,
}

impl<B: AutodiffBackend> ModelVisitor<B> for Fuse<'_, B> {
    type Output = Result<usize>;

    fn visit<K: ModelKit<B>>(self, kit: &K) -> Self::Output {
        let mut set = CheckpointSet::new();
        let mut template = None;
        for (i, path) in self.checkpoints.iter().enumerate() {
            let which = format!("checkpoint {} ({})", i + 1, path.display());
            let weights = self
                .family
                .read_checkpoint(path)
                .context(|| which.clone())?;
            let model = kit.load(weights, self.device).context(|| {
                format!(
                    "{which} does not fit the config of {}",
                    self.family.path().display()
                )
            })?;
            set.push_model(&model).context(|| which.clone())?;
            template.get_or_insert(model);
        }
        let template =
            template.ok_or_else(|| CoreError::InvalidInput("no checkpoint given".into()))?;
        let fused = set.fused_model(template, self.weights, self.device)?;
        let staged = StagedDir::new(self.out)?;
        kit.export(&fused, &ExportDirs::model(staged.path()))
            .context(|| format!("writing {}", self.out.display()))?;
        staged.publish()?;
        Ok(set.layout().map_or(0, |l| l.num_params()))
    }
}
