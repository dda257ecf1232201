//! θ(w) as a model, fused on the host or on the device, and its evaluation.

use std::time::Instant;

use bomf_models::StackedParams;
use burn::tensor::backend::Backend;

use crate::error::{CoreError, Result};
use crate::eval::{EvalSet, Evaluation, evaluate};
use crate::fusion::CheckpointSet;
use crate::fusion_bo::FuseOn;
use crate::model::InferenceModel;

/// Evaluates fusions θ(w) of a checkpoint set with one reusable buffer and model, and keeps the
/// time split between fusing and evaluating (stage 3 should spend it evaluating).
pub struct FusedEvaluator<'a, B: Backend, M> {
    checkpoints: &'a CheckpointSet,
    template: M,
    /// θ(w) on the host, reused across evaluations (empty when fusing on the device).
    buffer: Vec<f32>,
    /// The checkpoints resident on the device, when fusing there.
    stacked: Option<StackedParams<B>>,
    device: B::Device,
    /// Seconds spent computing θ(w) and loading it into the model.
    pub fuse_seconds: f64,
    /// Seconds spent in forward passes and metrics.
    pub eval_seconds: f64,
    /// Testing aid for crash/resume tests: `BOMF_TEST_EVAL_DELAY_MS` slows every evaluation so a
    /// test can kill a run mid-search.
    delay: Option<std::time::Duration>,
}

impl<'a, B: Backend, M: InferenceModel<B>> FusedEvaluator<'a, B, M> {
    /// `template` gives the architecture (an inference model); its values are replaced. θ(w)
    /// is fused on the host, or on the device per `fuse_on` (see [`FuseOn`]).
    pub fn new(
        checkpoints: &'a CheckpointSet,
        template: M,
        device: B::Device,
        fuse_on: FuseOn,
    ) -> Result<Self> {
        let n = checkpoints
            .layout()
            .ok_or_else(|| CoreError::InvalidInput("no checkpoints to fuse".into()))?
            .num_params();
        let on_device = match fuse_on {
            FuseOn::Host => false,
            FuseOn::Device => true,
            FuseOn::Auto => !is_cpu_backend::<B>(),
        };
        let stacked = if on_device {
            Some(checkpoints.stacked(&template, &device)?)
        } else {
            None
        };
        Ok(Self {
            checkpoints,
            template,
            buffer: if on_device { Vec::new() } else { vec![0.0; n] },
            stacked,
            device,
            fuse_seconds: 0.0,
            eval_seconds: 0.0,
            delay: std::env::var("BOMF_TEST_EVAL_DELAY_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .map(std::time::Duration::from_millis),
        })
    }

    /// Whether θ(w) is computed on the device (the checkpoints resident there).
    pub fn fuses_on_device(&self) -> bool {
        self.stacked.is_some()
    }

    /// θ(w) as a model.
    pub fn model(&mut self, weights: &[f64]) -> Result<M> {
        let t = Instant::now();
        let model = match &self.stacked {
            Some(stacked) => {
                crate::fusion::check_weights(weights, stacked.len())?;
                stacked.fused(self.template.clone(), weights)?
            }
            None => {
                self.checkpoints.fuse_into(weights, &mut self.buffer)?;
                self.checkpoints
                    .load_into(self.template.clone(), &self.buffer, &self.device)?
            }
        };
        self.fuse_seconds += t.elapsed().as_secs_f64();
        Ok(model)
    }

    /// Loss and metrics of θ(w) on `set`.
    pub fn evaluate(&mut self, weights: &[f64], set: &EvalSet) -> Result<Evaluation> {
        let model = self.model(weights)?;
        if let Some(d) = self.delay {
            std::thread::sleep(d);
        }
        let t = Instant::now();
        let e = evaluate(&model, set, &self.device);
        self.eval_seconds += t.elapsed().as_secs_f64();
        e
    }
}

/// Whether `B` is the CPU backend (`Flex`), where fusing on the host is the faster choice.
fn is_cpu_backend<B: Backend>() -> bool {
    std::any::TypeId::of::<B>() == std::any::TypeId::of::<burn::backend::Flex>()
}
