//! LoRA's low-rank update and the linear layer that carries one or not (candle-lora's design:
//! the model owns a projection that is either plain or LoRA-adapted).
//!
//! The adapter is `y = W x + s · B (A dropout(x))` with `A` `[r, in]`, `B` `[out, r]` and
//! `s = lora_alpha / r` (`/ √r` with rsLoRA), in peft's numerics. Its matrices are fields named
//! `lora_A` / `lora_B`, peft's own names, so parameter names need no renaming.

// peft's parameter names `lora_A` / `lora_B` are struct fields here (burn names parameters after
// fields), and the derived `Module` code binds them as variables, so the lint cannot be silenced
// on the struct alone.
#![allow(non_snake_case)]

use burn::module::{Initializer, Module, Param};
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::kernels;
use crate::params::HfPart;

/// One LoRA matrix, wrapped so its parameter is named `weight` like peft's `nn.Linear`. Stored in
/// HF's `[out, in]` layout (no transposition on the way to or from peft files).
#[derive(Module, Debug)]
pub struct LoraMatrix<B: Backend> {
    pub weight: Param<Tensor<B, 2>>,
}

/// The adapter of one projection: `s · B (A dropout(x))`.
#[derive(Module, Debug)]
pub struct LoraLinear<B: Backend> {
    /// `A`, `[r, in]`.
    pub lora_A: LoraMatrix<B>,
    /// `B`, `[out, r]`.
    pub lora_B: LoraMatrix<B>,
    dropout: Dropout,
    scaling: f64,
}

impl<B: Backend> LoraLinear<B> {
    /// peft's initialisation for a projection `d_in → d_out` at rank `rank`: `A` kaiming-uniform
    /// with `a = √5` (i.e. U(±1/√in)), `B` zeros, so a fresh adapter changes nothing. Parameters
    /// are lazy until first use or [`crate::params::materialize`].
    pub fn new(
        d_in: usize,
        d_out: usize,
        rank: usize,
        dropout: f64,
        scaling: f64,
        device: &B::Device,
    ) -> Self {
        let bound = 1.0 / (d_in as f64).sqrt();
        Self {
            lora_A: LoraMatrix {
                weight: Initializer::Uniform {
                    min: -bound,
                    max: bound,
                }
                .init([rank, d_in], device),
            },
            lora_B: LoraMatrix {
                weight: Initializer::Zeros.init([d_out, rank], device),
            },
            dropout: DropoutConfig::new(dropout).init(),
            scaling,
        }
    }

    /// The low-rank update for `x` `[batch, seq, in]`. Dropout acts only on an autodiff backend
    /// (training), as burn's `Dropout` does.
    pub fn delta(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, seq, d_in] = x.dims();
        let d_out = self.lora_B.weight.dims()[0];
        self.dropout
            .forward(x)
            .reshape([batch * seq, d_in])
            .matmul(self.lora_A.weight.val().transpose())
            .matmul(self.lora_B.weight.val().transpose())
            .mul_scalar(self.scaling)
            .reshape([batch, seq, d_out])
    }

    /// `s · B A`, `[out, in]`: what merging adds to the dense weight.
    pub fn delta_weight(&self) -> Tensor<B, 2> {
        self.lora_B
            .weight
            .val()
            .matmul(self.lora_A.weight.val())
            .mul_scalar(self.scaling)
    }

    /// `(in_features, out_features)` of the projection this adapter fits.
    pub fn features(&self) -> (usize, usize) {
        (self.lora_A.weight.dims()[1], self.lora_B.weight.dims()[0])
    }
}

/// A linear projection that is either plain or carries a LoRA adapter. The model owns it; the
/// adapter is set by attaching adapters to the model and folded away by merging.
///
/// Its own fields are not part of HF's names: a model holding it spells them with
/// [`AdaptableLinear::hf_part`], so `q_proj.base.weight` is HF's `q_proj.weight` and
/// `q_proj.lora.lora_A.weight` peft's `q_proj.lora_A.weight`.
#[derive(Module, Debug)]
pub struct AdaptableLinear<B: Backend> {
    /// The dense layer (frozen while an adapter trains).
    pub base: Linear<B>,
    pub lora: Option<LoraLinear<B>>,
}

impl<B: Backend> AdaptableLinear<B> {
    pub fn plain(base: Linear<B>) -> Self {
        Self { base, lora: None }
    }

    /// `base(x)` plus the adapter's update when there is one.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        match &self.lora {
            Some(lora) => kernels::linear3(&self.base, x.clone()) + lora.delta(x),
            None => kernels::linear3(&self.base, x),
        }
    }

    /// `(in_features, out_features)` of the dense layer (burn stores its weight `[in, out]`).
    pub fn features(&self) -> (usize, usize) {
        let [d_in, d_out] = self.base.weight.dims();
        (d_in, d_out)
    }

    /// Folds the adapter into the dense weight, `W ← W + s·B·A`, leaving a plain layer with the
    /// same outputs. The weight keeps its id and trainable flag.
    pub fn merge(&mut self) {
        let Some(lora) = self.lora.take() else {
            return;
        };
        // burn layout [in, out]: add the transposed HF-layout update.
        let delta = lora.delta_weight().transpose();
        self.base.weight = self.base.weight.clone().map(|w| {
            let trainable = w.is_require_grad();
            (w + delta).detach().set_require_grad(trainable)
        });
    }

    /// HF's spelling of this layer's own fields (see the type's docs): both are left out.
    pub fn hf_part(field: &str, container: &str) -> HfPart {
        match (field, container) {
            ("base" | "lora", "Struct:AdaptableLinear") => HfPart::Skip,
            _ => HfPart::Keep,
        }
    }
}
