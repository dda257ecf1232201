//! The baselines of the paper's tables, on the same trajectory as BOMF: best single checkpoint,
//! last checkpoint, SWA (uniform average), greedy soup, learned soup, and single-objective BO
//! (loss-only, metric-only; see [`crate::fusion_bo`] with one objective).
//!
//! Each baseline returns fusion weights over the K checkpoints, so every method is evaluated,
//! reported and exported the same way. OTfusion and TWA are not implemented (ARCHITECTURE.md).

use bomf_models::HfNamed;
use bomf_models::params::named_gradients;
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::eval::{EvalSet, Evaluation};
use crate::fusion::CheckpointSet;
use crate::model::{TaskModel, scalar};
use crate::trajectory::{KeptCheckpoint, better};

/// One-hot weights on checkpoint `k` of `n`.
pub fn one_hot(n: usize, k: usize) -> Vec<f64> {
    (0..n).map(|i| if i == k { 1.0 } else { 0.0 }).collect()
}

/// The checkpoint with the best validation metric (ties: lower loss, then the earlier one).
pub fn best_single(kept: &[KeptCheckpoint], metric: &str) -> Result<Vec<f64>> {
    let mut best: Option<usize> = None;
    for (i, c) in kept.iter().enumerate() {
        if best.is_none_or(|b| better(&c.validation, &kept[b].validation, metric)) {
            best = Some(i);
        }
    }
    best.map(|b| one_hot(kept.len(), b))
        .ok_or_else(|| CoreError::InvalidInput("no checkpoint".into()))
}

/// The last checkpoint of the trajectory.
pub fn last(kept: &[KeptCheckpoint]) -> Result<Vec<f64>> {
    match kept.len() {
        0 => Err(CoreError::InvalidInput("no checkpoint".into())),
        n => Ok(one_hot(n, n - 1)),
    }
}

/// Stochastic weight averaging over the kept checkpoints: uniform weights.
pub fn swa(k: usize) -> Vec<f64> {
    vec![1.0 / k as f64; k]
}

/// What greedy soup did (weights plus the ingredients' order, for the report).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GreedySoup {
    pub weights: Vec<f64>,
    /// Checkpoint indices in the order tried (best validation metric first).
    pub order: Vec<usize>,
    pub ingredients: Vec<usize>,
    pub validation: Evaluation,
}

/// Wortsman et al.'s greedy soup: sort the checkpoints by validation metric; starting from the
/// best, add each next one to the uniform soup only if the soup's validation metric improves
/// (ties: if its loss drops). `evaluate` scores fusion weights on the validation split.
pub fn greedy_soup(
    kept: &[KeptCheckpoint],
    metric: &str,
    evaluate: &mut dyn FnMut(&[f64]) -> Result<Evaluation>,
) -> Result<GreedySoup> {
    let n = kept.len();
    if n == 0 {
        return Err(CoreError::InvalidInput("no checkpoint".into()));
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| {
        if better(&kept[a].validation, &kept[b].validation, metric) {
            std::cmp::Ordering::Less
        } else if better(&kept[b].validation, &kept[a].validation, metric) {
            std::cmp::Ordering::Greater
        } else {
            a.cmp(&b)
        }
    });
    let uniform = |ingredients: &[usize]| {
        let mut w = vec![0.0; n];
        for &i in ingredients {
            w[i] = 1.0 / ingredients.len() as f64;
        }
        w
    };
    let mut ingredients = vec![order[0]];
    let mut current = kept[order[0]].validation.clone();
    for &candidate in &order[1..] {
        let mut trial = ingredients.clone();
        trial.push(candidate);
        let evaluation = evaluate(&uniform(&trial))?;
        if evaluation.loss.is_finite() && better(&evaluation, &current, metric) {
            ingredients = trial;
            current = evaluation;
        }
    }
    Ok(GreedySoup {
        weights: uniform(&ingredients),
        order,
        ingredients,
        validation: current,
    })
}

/// Settings of [`learned_soup`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LearnedSoupConfig {
    /// Passes over the validation batches.
    pub epochs: usize,
    /// Adam step size on the softmax logits of the weights.
    pub learning_rate: f64,
}

impl Default for LearnedSoupConfig {
    fn default() -> Self {
        Self {
            epochs: 3,
            learning_rate: 0.05,
        }
    }
}

fn softmax(logits: &[f64]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = logits.iter().map(|a| (a - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

/// Learned soup (Wortsman et al.): weights `w = softmax(α)` on the simplex, α learned by Adam on
/// the validation loss of θ(w), batch by batch.
///
/// The gradient needs no autodiff through the fusion: with g = ∇_θ L at θ(w),
/// ∂L/∂w_k = ⟨g, θ_k⟩, and the softmax Jacobian gives ∂L/∂α_j = w_j (∂L/∂w_j − Σ_k w_k ∂L/∂w_k).
/// `template` gives the architecture (on an autodiff backend); build it without dropout so the
/// gradient is the loss's, not a noisy estimate.
pub fn learned_soup<B, M>(
    checkpoints: &CheckpointSet,
    template: M,
    validation: &EvalSet,
    config: &LearnedSoupConfig,
    device: &B::Device,
) -> Result<Vec<f64>>
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + TaskModel<B> + HfNamed<B> + Clone,
{
    let k = checkpoints.len();
    if k == 0 {
        return Err(CoreError::InvalidInput("no checkpoint".into()));
    }
    if config.epochs == 0 || config.learning_rate.is_nan() || config.learning_rate <= 0.0 {
        return Err(CoreError::config(
            "learned_soup",
            "epochs and learning_rate must be positive",
        ));
    }
    let n = checkpoints
        .layout()
        .ok_or_else(|| CoreError::InvalidInput("no checkpoint".into()))?
        .num_params();
    let (beta1, beta2, eps) = (0.9, 0.999, 1e-8);
    let mut alpha = vec![0.0f64; k];
    let (mut m1, mut m2) = (vec![0.0f64; k], vec![0.0f64; k]);
    let mut t = 0i32;
    let thetas: Vec<&[f32]> = (0..k)
        .map(|i| {
            checkpoints
                .checkpoint(i)
                .ok_or_else(|| CoreError::InvalidInput(format!("checkpoint {i} is missing")))
        })
        .collect::<Result<_>>()?;
    let mut flat = vec![0.0f32; n];
    for _ in 0..config.epochs {
        for batch in validation.loss_batches() {
            let w = softmax(&alpha);
            let (loss_value, dw) = fusion_weight_gradient(
                checkpoints,
                &thetas,
                &template,
                batch,
                &w,
                &mut flat,
                device,
            )?;
            if !loss_value.is_finite() {
                return Err(CoreError::Diverged {
                    step: t as usize,
                    value: loss_value,
                });
            }
            let mean: f64 = w.iter().zip(&dw).map(|(wi, di)| wi * di).sum();
            t += 1;
            for j in 0..k {
                let g = w[j] * (dw[j] - mean);
                m1[j] = beta1 * m1[j] + (1.0 - beta1) * g;
                m2[j] = beta2 * m2[j] + (1.0 - beta2) * g * g;
                let mh = m1[j] / (1.0 - beta1.powi(t));
                let vh = m2[j] / (1.0 - beta2.powi(t));
                alpha[j] -= config.learning_rate * mh / (vh.sqrt() + eps);
            }
        }
    }
    Ok(softmax(&alpha))
}

/// Loss of θ(w) on `batch` and its gradient with respect to the fusion weights,
/// ∂L/∂w_k = ⟨∇_θ L(θ(w)), θ_k⟩ (one forward and backward pass). `thetas` are the checkpoints'
/// flat buffers and `flat` a scratch buffer of the layout's size.
pub fn fusion_weight_gradient<B, M>(
    checkpoints: &CheckpointSet,
    thetas: &[&[f32]],
    template: &M,
    batch: &bomf_data::batch::Batch,
    weights: &[f64],
    flat: &mut [f32],
    device: &B::Device,
) -> Result<(f64, Vec<f64>)>
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + TaskModel<B> + HfNamed<B> + Clone,
{
    let layout = checkpoints
        .layout()
        .ok_or_else(|| CoreError::InvalidInput("no checkpoint".into()))?;
    checkpoints.fuse_into(weights, flat)?;
    let model = checkpoints.load_into(template.clone(), flat, device)?;
    let out = model.forward_batch(batch, device)?;
    let loss_value = scalar(out.loss.clone())?;
    let grads = out.loss.backward();
    let named = named_gradients(&model, &grads)?;
    let mut dw = vec![0.0f64; thetas.len()];
    for (name, grad) in &named {
        let Some(i) = layout.names.iter().position(|n| n == name) else {
            return Err(CoreError::InvalidInput(format!(
                "gradient of `{name}`, which the checkpoints do not have"
            )));
        };
        let (start, end) = (layout.offsets[i], layout.offsets[i + 1]);
        for (d, theta) in dw.iter_mut().zip(thetas) {
            *d += grad
                .data
                .iter()
                .zip(&theta[start..end])
                .map(|(g, x)| *g as f64 * *x as f64)
                .sum::<f64>();
        }
    }
    Ok((loss_value, dw))
}
