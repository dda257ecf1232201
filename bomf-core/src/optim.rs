//! AdamW over a model's parameters, with per-parameter weight decay decided by Hugging Face name,
//! and clipping by global gradient norm.
//!
//! Why not `burn::optim::AdamW`: burn 0.21 applies one weight decay to every parameter and clips
//! each parameter's gradient by its *own* norm, while the reference (and every HF fine-tuning
//! script) exempts biases and LayerNorm weights from decay and clips by the norm of all gradients
//! together (`clip_grad_norm_`). Writing the update out gives exact control over both.
//!
//! The update is PyTorch's `torch.optim.AdamW`:
//! `θ ← θ·(1 − lr·wd)`, `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`,
//! `θ ← θ − lr/(1−β1^t) · m / (√v/√(1−β2^t) + ε)`, one fused parallel pass per parameter on the
//! CPU ([`bomf_models::ops::adamw_update`]).

use std::collections::HashMap;

use bomf_models::HfNamed;
use bomf_models::ops::{AdamWStep, Moments, adamw_update, squared_sum};
use bomf_models::params::param_shapes;
use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::model::scalar;

/// AdamW hyperparameters; the defaults are the reference's (betas 0.9/0.98, eps 1e-6, wd 0.1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-6,
            weight_decay: 0.1,
        }
    }
}

impl AdamWConfig {
    pub fn validate(&self) -> Result<()> {
        for (field, v) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return Err(CoreError::config(field, format!("{v} is not in [0, 1)")));
            }
        }
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            return Err(CoreError::config("eps", "must be positive and finite"));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return Err(CoreError::config(
                "weight_decay",
                "must be non-negative and finite",
            ));
        }
        Ok(())
    }
}

/// The usual no-decay group: every bias and every LayerNorm parameter (HF's
/// `["bias", "LayerNorm.weight"]`; LayerNorm biases are biases too).
pub fn is_no_decay(hf_name: &str) -> bool {
    hf_name.ends_with("bias") || hf_name.contains("LayerNorm") || hf_name.contains("layer_norm")
}

/// AdamW state: first and second moments per parameter, flattened.
pub struct AdamW<B: AutodiffBackend> {
    config: AdamWConfig,
    moments: HashMap<ParamId, Moments<B::InnerBackend>>,
    /// Number of updates done (`t` in the bias corrections).
    steps: u64,
}

impl<B: AutodiffBackend> std::fmt::Debug for AdamW<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdamW")
            .field("config", &self.config)
            .field("steps", &self.steps)
            .field("parameters_with_state", &self.moments.len())
            .finish()
    }
}

impl<B: AutodiffBackend> AdamW<B> {
    pub fn new(config: AdamWConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            moments: HashMap::new(),
            steps: 0,
        })
    }

    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// One update of every parameter that has a gradient in `grads`, at learning rate `lr`,
    /// with gradients multiplied by `grad_scale` first (the clipping coefficient, 1 for none).
    pub fn step<M>(&mut self, model: M, grads: &mut GradientsParams, lr: f64, grad_scale: f64) -> M
    where
        M: AutodiffModule<B> + HfNamed<B>,
    {
        self.steps += 1;
        let names = param_shapes(&model).into_iter().map(|(n, _)| n).collect();
        let mut mapper = AdamWMapper {
            optimizer: self,
            grads,
            names,
            index: 0,
            lr,
            grad_scale,
        };
        model.map(&mut mapper)
    }
}

struct AdamWMapper<'a, B: AutodiffBackend> {
    optimizer: &'a mut AdamW<B>,
    grads: &'a mut GradientsParams,
    /// HF names in module order (the order `map_float` sees parameters).
    names: Vec<String>,
    index: usize,
    lr: f64,
    grad_scale: f64,
}

impl<B: AutodiffBackend> ModuleMapper<B> for AdamWMapper<'_, B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let name_index = self.index;
        self.index += 1;
        let id = param.id;
        let Some(grad) = self.grads.remove::<B::InnerBackend, D>(id) else {
            return param; // frozen: no gradient, no decay, no state
        };
        let decay = match self.names.get(name_index) {
            Some(name) if is_no_decay(name) => 0.0,
            _ => self.optimizer.config.weight_decay,
        };
        let AdamWConfig {
            beta1, beta2, eps, ..
        } = self.optimizer.config;
        let t = self.optimizer.steps as i32;
        let step = AdamWStep {
            lr: self.lr,
            beta1,
            beta2,
            eps,
            weight_decay: decay,
            grad_scale: self.grad_scale,
            bias_correction1: 1.0 - beta1.powi(t),
            bias_correction2: 1.0 - beta2.powi(t),
        };
        let moments = &mut self.optimizer.moments;
        param.map(|tensor| {
            let dims = tensor.dims();
            let n: usize = dims.iter().product();
            let theta = tensor.inner().reshape([n]);
            let (theta, state) = adamw_update(theta, grad.reshape([n]), moments.remove(&id), &step);
            moments.insert(id, state);
            Tensor::from_inner(theta.reshape(dims)).require_grad()
        })
    }
}

struct SquaredNorm<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    total: Option<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SquaredNorm<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let s = squared_sum(g);
            self.total = Some(match self.total.take() {
                Some(t) => t + s,
                None => s,
            });
        }
    }
}

/// The L2 norm of all gradients together (`torch.nn.utils.clip_grad_norm_`'s total norm);
/// 0 when no parameter has a gradient.
pub fn global_grad_norm<B, M>(model: &M, grads: &GradientsParams) -> Result<f64>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
{
    let mut visitor = SquaredNorm::<B> { grads, total: None };
    model.visit(&mut visitor);
    match visitor.total {
        Some(t) => Ok(scalar(t)?.sqrt()),
        None => Ok(0.0),
    }
}

/// The factor `clip_grad_norm_` multiplies gradients by: `max_norm / (norm + 1e-6)` when the
/// norm exceeds `max_norm`, else 1.
pub fn clip_coefficient(norm: f64, max_norm: Option<f64>) -> f64 {
    match max_norm {
        Some(max) => {
            let c = max / (norm + 1e-6);
            if c < 1.0 { c } else { 1.0 }
        }
        None => 1.0,
    }
}
