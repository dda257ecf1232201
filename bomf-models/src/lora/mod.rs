//! LoRA adapters for the LLaMA decoder, in peft's format and with peft's numerics.
//!
//! A LoRA adapter adds a low-rank update to chosen projections of every decoder layer:
//! `y = W x + s · B (A dropout(x))`, with the base weight `W` frozen, `A` `[r, in]`
//! (kaiming-uniform at creation, as peft), `B` `[out, r]` (zeros at creation, so a fresh adapter
//! leaves the model unchanged) and `s = lora_alpha / r` (`lora_alpha / √r` with rsLoRA). The
//! update itself is the shared layer [`LoraLinear`].
//!
//! The adapters of a model live in their own module, [`LlamaLoraAdapters`], separate from the
//! base model:
//! - training updates only the adapters (an optimiser stepping `LlamaLoraAdapters` cannot touch
//!   the base model; [`freeze`] marks the base frozen so no gradient is even computed for it);
//! - the module is [`HfNamed`] with exactly the names peft saves in `adapter_model.safetensors`
//!   (`base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`), so the fusion code
//!   enumerates, combines and writes back *only* the adapter tensors of LoRA runs.
//!
//! Running the model with adapters: [`LlamaLoraAdapters::attach`] checks they fit and returns the
//! model with each adapter in the projection it adapts (LLaMA's projections are
//! [`AdaptableLinear`](crate::layers::AdaptableLinear)s); [`LlamaLoraAdapters::merge_into`]
//! folds `W + s·B·A` into dense weights, giving a plain model that exports as an ordinary HF
//! folder.
//!
//! Checked against peft by `tests/llama_lora.rs` (fixtures from
//! `tests/fixtures/gen_llama_lora.py`).

use std::path::Path;

use burn::module::Module;
use burn::tensor::backend::Backend;

use crate::error::{ModelError, Result};
use crate::hf_json;
use crate::llama::{LlamaConfig, LlamaForCausalLM, projection_field};
use crate::params::{self, Coverage, HfNamed};
use crate::{export, weights};

mod config;

pub use crate::layers::{LoraLinear, LoraMatrix};
pub use crate::llama::Projection;
pub use config::{LayerSelection, LoraConfig, TargetModules};

/// File names peft's `save_pretrained` uses.
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";
pub const ADAPTER_SAFETENSORS_FILE: &str = "adapter_model.safetensors";
pub const ADAPTER_PYTORCH_FILE: &str = "adapter_model.bin";

/// The prefix peft puts before the base model's own parameter names.
pub const PEFT_PREFIX: &str = "base_model.model";

/// Adapters of the attention projections of one layer.
#[derive(Module, Debug)]
pub struct LoraAttention<B: Backend> {
    pub q_proj: Option<LoraLinear<B>>,
    pub k_proj: Option<LoraLinear<B>>,
    pub v_proj: Option<LoraLinear<B>>,
    pub o_proj: Option<LoraLinear<B>>,
}

/// Adapters of the feed-forward projections of one layer.
#[derive(Module, Debug)]
pub struct LoraMlp<B: Backend> {
    pub gate_proj: Option<LoraLinear<B>>,
    pub up_proj: Option<LoraLinear<B>>,
    pub down_proj: Option<LoraLinear<B>>,
}

/// The adapters of one decoder layer, mirroring [`crate::llama::LlamaDecoderLayer`]'s field
/// names.
#[derive(Module, Debug)]
pub struct LoraDecoderLayer<B: Backend> {
    pub self_attn: LoraAttention<B>,
    pub mlp: LoraMlp<B>,
}

impl<B: Backend> LoraDecoderLayer<B> {
    pub fn get(&self, p: Projection) -> Option<&LoraLinear<B>> {
        projection_field!(self, p, &).as_ref()
    }

    fn slot(&mut self, p: Projection) -> &mut Option<LoraLinear<B>> {
        projection_field!(self, p, &mut)
    }
}

/// The decoder's layers (HF's `model.layers`).
#[derive(Module, Debug)]
pub struct LoraDecoder<B: Backend> {
    pub layers: Vec<LoraDecoderLayer<B>>,
}

/// Every LoRA adapter of a [`LlamaForCausalLM`], named as peft saves them (root field `base` =
/// `base_model.model.model`).
#[derive(Module, Debug)]
pub struct LlamaLoraAdapters<B: Backend> {
    pub base: LoraDecoder<B>,
    #[module(skip)]
    config: LoraConfig,
}

impl<B: Backend> HfNamed<B> for LlamaLoraAdapters<B> {
    fn hf_base_prefix(&self) -> &str {
        "base_model.model.model"
    }
}

impl<B: Backend> LlamaLoraAdapters<B> {
    /// Fresh adapters as peft creates them (`A` random, `B` zero: the model's outputs are
    /// unchanged until training moves `B`).
    pub fn new(lora: &LoraConfig, model: &LlamaConfig, device: &B::Device) -> Result<Self> {
        Ok(params::materialize(Self::new_lazy(lora, model, device)?))
    }

    fn new_lazy(lora: &LoraConfig, model: &LlamaConfig, device: &B::Device) -> Result<Self> {
        let targets = lora.targets(model.num_hidden_layers)?;
        let layers = targets
            .iter()
            .map(|chosen| {
                let mut layer = LoraDecoderLayer {
                    self_attn: LoraAttention {
                        q_proj: None,
                        k_proj: None,
                        v_proj: None,
                        o_proj: None,
                    },
                    mlp: LoraMlp {
                        gate_proj: None,
                        up_proj: None,
                        down_proj: None,
                    },
                };
                for &p in chosen {
                    let (d_in, d_out) = p.features(model);
                    *layer.slot(p) = Some(LoraLinear::new(
                        d_in,
                        d_out,
                        lora.r,
                        lora.lora_dropout,
                        lora.scaling(),
                        device,
                    ));
                }
                layer
            })
            .collect();
        Ok(Self {
            base: LoraDecoder { layers },
            config: lora.clone(),
        })
    }

    /// Loads a peft adapter folder (`adapter_config.json` + `adapter_model.safetensors`, or
    /// `adapter_model.bin`) for a base model with `model` config. Strict: a missing, unexpected
    /// or wrongly-shaped adapter tensor is an error naming it.
    pub fn load(dir: impl AsRef<Path>, model: &LlamaConfig, device: &B::Device) -> Result<Self> {
        let dir = dir.as_ref();
        let lora = LoraConfig::from_file(dir.join(ADAPTER_CONFIG_FILE))?;
        Self::load_with_config(dir, &lora, model, device)
    }

    /// Like [`Self::load`] with the adapter config given (e.g. [`LoraConfig::without_dropout`]).
    pub fn load_with_config(
        dir: impl AsRef<Path>,
        lora: &LoraConfig,
        model: &LlamaConfig,
        device: &B::Device,
    ) -> Result<Self> {
        let dir = dir.as_ref();
        let safetensors = dir.join(ADAPTER_SAFETENSORS_FILE);
        let pytorch = dir.join(ADAPTER_PYTORCH_FILE);
        let checkpoint = if safetensors.is_file() {
            weights::read_safetensors(&safetensors)?
        } else if pytorch.is_file() {
            weights::read_pytorch(&pytorch)?
        } else {
            return Err(ModelError::WeightsFile {
                path: dir.to_path_buf(),
                message: format!(
                    "no {ADAPTER_SAFETENSORS_FILE} or {ADAPTER_PYTORCH_FILE} in the adapter folder"
                ),
            });
        };
        let adapters = Self::new_lazy(lora, model, device)?;
        let adapters = params::set_tensors(adapters, &checkpoint.tensors, Coverage::All, device)?;
        Ok(params::materialize(adapters))
    }

    /// Writes the adapters as peft does: `adapter_config.json` and `adapter_model.safetensors`
    /// (peft names, f32), loadable by `PeftModel.from_pretrained`.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
        let mut config = self.config.clone();
        config.peft_type.get_or_insert_with(|| "LORA".into());
        hf_json::write(&dir.join(ADAPTER_CONFIG_FILE), &config)?;
        let tensors = params::named_tensors(self)?;
        export::write_safetensors(&dir.join(ADAPTER_SAFETENSORS_FILE), &tensors)
    }

    pub fn config(&self) -> &LoraConfig {
        &self.config
    }

    /// The adapted projections, layer by layer.
    pub fn adapted(&self) -> impl Iterator<Item = (usize, Projection, &LoraLinear<B>)> {
        self.base.layers.iter().enumerate().flat_map(|(i, layer)| {
            Projection::ALL
                .into_iter()
                .filter_map(move |p| layer.get(p).map(|a| (i, p, a)))
        })
    }

    /// Checks that every adapter fits the model's projection it adapts.
    pub fn check_fits(&self, model: &LlamaForCausalLM<B>) -> Result<()> {
        let layers = &model.base.layers;
        if layers.len() != self.base.layers.len() {
            return Err(ModelError::InvalidInput(format!(
                "the adapters cover {} layers, the model has {}",
                self.base.layers.len(),
                layers.len()
            )));
        }
        for (i, p, adapter) in self.adapted() {
            let dense = layers[i].projection(p).features();
            if adapter.features() != dense {
                let (a_in, a_out) = adapter.features();
                return Err(ModelError::ShapeMismatch {
                    name: format!(
                        "{PEFT_PREFIX}.model.layers.{i}.{} (in, out)",
                        p.path_in_layer()
                    ),
                    expected: vec![dense.0, dense.1],
                    found: vec![a_in, a_out],
                });
            }
        }
        Ok(())
    }

    /// The model with these adapters in the projections they adapt (replacing any it carries),
    /// after checking they fit. The model's parameters are shared, not copied, and gradients
    /// reach these adapters' parameters.
    pub fn attach(&self, model: &LlamaForCausalLM<B>) -> Result<LlamaForCausalLM<B>> {
        self.attach_to(model.clone())
    }

    fn attach_to(&self, mut model: LlamaForCausalLM<B>) -> Result<LlamaForCausalLM<B>> {
        self.check_fits(&model)?;
        for (layer, adapters) in model.base.layers.iter_mut().zip(&self.base.layers) {
            for p in Projection::ALL {
                layer.projection_mut(p).lora = adapters.get(p).cloned();
            }
        }
        Ok(model)
    }

    /// Folds every adapter into its dense weight, `W ← W + s·B·A`, and returns the plain model
    /// (its outputs equal the adapted model's; export it like any LLaMA). Adapters the model
    /// already carries are replaced, as by [`Self::attach`], not merged.
    pub fn merge_into(&self, model: LlamaForCausalLM<B>) -> Result<LlamaForCausalLM<B>> {
        Ok(self.attach_to(model)?.merged())
    }
}

/// Marks every parameter of the base model frozen, so that LoRA training computes gradients for
/// the adapters only.
pub fn freeze<B: Backend>(model: LlamaForCausalLM<B>) -> LlamaForCausalLM<B> {
    params::set_trainable(model, |_| false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> LlamaConfig {
        serde_json::from_value(serde_json::json!({
            "vocab_size": 10, "hidden_size": 8, "intermediate_size": 12,
            "num_hidden_layers": 3, "num_attention_heads": 2, "num_key_value_heads": 1
        }))
        .unwrap()
    }

    #[test]
    fn fresh_adapters_have_peft_shapes_and_zero_b() {
        let device = Default::default();
        let lora = LoraConfig::new(3, 6.0, &["k_proj", "down_proj"]);
        let a = LlamaLoraAdapters::<crate::CpuBackend>::new(&lora, &tiny(), &device).unwrap();
        let shapes = params::param_shapes(&a);
        assert_eq!(shapes.len(), 3 * 2 * 2);
        assert_eq!(
            shapes[0],
            (
                "base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight".to_string(),
                vec![3, 8]
            )
        );
        assert_eq!(
            shapes[3],
            (
                "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight".to_string(),
                vec![8, 3]
            )
        );
        let named = params::named_tensors(&a).unwrap();
        let bound = 1.0 / 8f32.sqrt();
        for (name, t) in named {
            if name.contains("lora_B") {
                assert!(t.data.iter().all(|&x| x == 0.0), "{name}");
            } else {
                assert!(t.data.iter().all(|&x| x.abs() <= bound), "{name}");
                assert!(t.data.iter().any(|&x| x != 0.0), "{name}");
            }
        }
    }

    /// An attached adapter sits in the projection it adapts: the base weights keep their HF
    /// names, the adapter's are peft's under the model's prefix; merging leaves a plain model
    /// whose parameters are the base model's (same names, ids and trainable flags).
    #[test]
    fn attached_adapters_are_named_like_peft_and_merge_away() {
        type AD = crate::CpuAutodiffBackend;
        let device = Default::default();
        let model = freeze(LlamaForCausalLM::<AD>::new(&tiny(), &device).unwrap());
        let lora = LoraConfig::new(2, 4.0, &["v_proj"]);
        let adapters = LlamaLoraAdapters::<AD>::new(&lora, &tiny(), &device).unwrap();
        let base = params::param_shapes(&model);
        let attached = adapters.attach(&model).unwrap();
        let names: Vec<String> = params::param_shapes(&attached)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(names.len(), base.len() + 3 * 2);
        assert!(names.contains(&"model.layers.0.self_attn.v_proj.weight".to_string()));
        assert!(names.contains(&"model.layers.2.self_attn.v_proj.lora_B.weight".to_string()));
        assert!(base.iter().all(|(name, _)| names.contains(name)));

        let merged = attached.merged();
        assert_eq!(params::param_shapes(&merged), base);
        let v = |m: &LlamaForCausalLM<AD>| m.base.layers[1].self_attn.v_proj.base.weight.clone();
        assert_eq!(v(&merged).id, v(&model).id);
        assert!(!v(&merged).val().is_require_grad());
    }
}
