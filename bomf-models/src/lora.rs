//! LoRA adapters for the LLaMA decoder, in peft's format and with peft's numerics.
//!
//! A LoRA adapter adds a low-rank update to chosen projections of every decoder layer:
//! `y = W x + s · B (A dropout(x))`, with the base weight `W` frozen, `A` `[r, in]`
//! (kaiming-uniform at creation, as peft), `B` `[out, r]` (zeros at creation, so a fresh adapter
//! leaves the model unchanged) and `s = lora_alpha / r` (`lora_alpha / √r` with rsLoRA).
//!
//! The adapters live in their own module, [`LlamaLoraAdapters`], separate from the base model:
//! - training updates only the adapters (an optimiser stepping `LlamaLoraAdapters` cannot touch
//!   the base model; [`freeze`] marks the base frozen so no gradient is even computed for it);
//! - the module is [`HfNamed`] with exactly the names peft saves in `adapter_model.safetensors`
//!   (`base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`), so the fusion code
//!   enumerates, combines and writes back *only* the adapter tensors of LoRA runs;
//! - [`LlamaLoraAdapters::merge_into`] folds `W + s·B·A` into dense weights, giving a plain
//!   [`LlamaForCausalLM`] that exports as an ordinary HF folder.
//!
//! Running the model with adapters goes through [`LlamaLoraAdapters::attach`], which checks the
//! adapters fit the model once and returns an [`AdaptedLlama`] with the usual entry points
//! (logits, greedy, sampled and beam-search generation).
//!
//! Checked against peft by `tests/llama_lora.rs` (fixtures from
//! `tests/fixtures/gen_llama_lora.py`).

use std::collections::BTreeSet;
use std::path::Path;

use burn::module::{Initializer, Module, Param};
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{ModelError, Result};
use crate::export;
use crate::llama::{
    BeamSearchConfig, CausalLmInput, LlamaConfig, LlamaDecoderLayer, LlamaForCausalLM,
    SamplingConfig,
};
use crate::params::{self, Coverage, HfNamed};
use crate::weights;

/// File names peft's `save_pretrained` uses.
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";
pub const ADAPTER_SAFETENSORS_FILE: &str = "adapter_model.safetensors";
pub const ADAPTER_PYTORCH_FILE: &str = "adapter_model.bin";

/// The prefix peft puts before the base model's own parameter names.
pub const PEFT_PREFIX: &str = "base_model.model";

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// The projections of a LLaMA decoder layer LoRA can adapt, in HF's module order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Projection {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl Projection {
    pub const ALL: [Projection; 7] = [
        Self::Q,
        Self::K,
        Self::V,
        Self::O,
        Self::Gate,
        Self::Up,
        Self::Down,
    ];

    /// HF's module name (`q_proj`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Q => "q_proj",
            Self::K => "k_proj",
            Self::V => "v_proj",
            Self::O => "o_proj",
            Self::Gate => "gate_proj",
            Self::Up => "up_proj",
            Self::Down => "down_proj",
        }
    }

    /// The module path inside a decoder layer (`self_attn.q_proj`, `mlp.down_proj`).
    pub fn path_in_layer(self) -> String {
        let parent = match self {
            Self::Q | Self::K | Self::V | Self::O => "self_attn",
            Self::Gate | Self::Up | Self::Down => "mlp",
        };
        format!("{parent}.{}", self.name())
    }

    /// `(in_features, out_features)` of this projection in a model with `config`.
    pub fn features(self, config: &LlamaConfig) -> (usize, usize) {
        let h = config.hidden_size;
        let q = config.num_attention_heads * config.head_dim();
        let kv = config.num_key_value_heads() * config.head_dim();
        let inter = config.intermediate_size;
        match self {
            Self::Q => (h, q),
            Self::K | Self::V => (h, kv),
            Self::O => (q, h),
            Self::Gate | Self::Up => (h, inter),
            Self::Down => (inter, h),
        }
    }
}

/// peft's `target_modules`: a list of module names (matched on the full name or a `.`-separated
/// suffix, as peft does), or one string (`"all-linear"`, or an exact module name; peft would
/// treat other strings as regular expressions, which we do not implement).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetModules {
    List(Vec<String>),
    Pattern(String),
}

/// peft's `layers_to_transform`: one layer index or a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LayerSelection {
    One(usize),
    Many(Vec<usize>),
}

fn default_r() -> usize {
    8
}
fn default_alpha() -> f64 {
    8.0
}
fn default_bias() -> String {
    "none".into()
}

/// An `adapter_config.json` as peft writes it for LoRA. The fields we interpret are typed; the
/// others are kept in `extra` (and written back unchanged), after [`LoraConfig::validate`] has
/// checked none of them asks for something we would silently compute differently (DoRA, LoRA
/// biases, per-module ranks, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    #[serde(default = "default_r")]
    pub r: usize,
    #[serde(default = "default_alpha")]
    pub lora_alpha: f64,
    #[serde(default)]
    pub lora_dropout: f64,
    /// `None`: peft's default for LLaMA, `["q_proj", "v_proj"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_modules: Option<TargetModules>,
    #[serde(default = "default_bias")]
    pub bias: String,
    /// rsLoRA: scale by `lora_alpha / √r` instead of `lora_alpha / r`.
    #[serde(default)]
    pub use_rslora: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers_to_transform: Option<LayerSelection>,
    #[serde(default)]
    pub fan_in_fan_out: bool,
    #[serde(default)]
    pub use_dora: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modules_to_save: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peft_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_model_name_or_path: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// peft options that change the computation when set; we accept them only at their neutral
/// value (null, false, empty).
const NEUTRAL_EXTRAS: [&str; 10] = [
    "lora_bias",
    "rank_pattern",
    "alpha_pattern",
    "target_parameters",
    "layer_replication",
    "trainable_token_indices",
    "exclude_modules",
    "use_qalora",
    "use_bdlora",
    "alora_invocation_tokens",
];

fn is_neutral(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            r: default_r(),
            lora_alpha: default_alpha(),
            lora_dropout: 0.0,
            target_modules: None,
            bias: default_bias(),
            use_rslora: false,
            layers_to_transform: None,
            fan_in_fan_out: false,
            use_dora: false,
            modules_to_save: None,
            peft_type: Some("LORA".into()),
            task_type: Some("CAUSAL_LM".into()),
            base_model_name_or_path: None,
            extra: Map::new(),
        }
    }
}

impl LoraConfig {
    /// A config for `r`, `lora_alpha` and explicit target module names (peft's defaults
    /// otherwise).
    pub fn new(r: usize, lora_alpha: f64, target_modules: &[&str]) -> Self {
        Self {
            r,
            lora_alpha,
            target_modules: Some(TargetModules::List(
                target_modules.iter().map(|s| s.to_string()).collect(),
            )),
            ..Self::default()
        }
    }

    /// Reads and validates an `adapter_config.json`; errors name the file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let config: Self = serde_json::from_str(&text).map_err(|source| ModelError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        config.validate().map_err(|e| ModelError::WeightsFile {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(config)
    }

    /// Checks every option we would otherwise silently mis-compute.
    pub fn validate(&self) -> Result<()> {
        if let Some(kind) = &self.peft_type
            && kind != "LORA"
        {
            return Err(ModelError::unsupported(
                "peft_type",
                format!("`{kind}` adapters are not supported (only LORA)"),
            ));
        }
        if self.r == 0 {
            return Err(ModelError::unsupported(
                "r",
                "the LoRA rank must be positive",
            ));
        }
        if !self.lora_alpha.is_finite() {
            return Err(ModelError::unsupported(
                "lora_alpha",
                "must be a finite number",
            ));
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return Err(ModelError::unsupported(
                "lora_dropout",
                format!("must be in [0, 1), got {}", self.lora_dropout),
            ));
        }
        if self.bias != "none" {
            return Err(ModelError::unsupported(
                "bias",
                format!(
                    "`{}` is not supported (only \"none\": biases stay frozen)",
                    self.bias
                ),
            ));
        }
        if self.fan_in_fan_out {
            return Err(ModelError::unsupported(
                "fan_in_fan_out",
                "only for GPT-2-style Conv1D layers; LLaMA uses Linear",
            ));
        }
        if self.use_dora {
            return Err(ModelError::unsupported("use_dora", "DoRA is not supported"));
        }
        if self
            .modules_to_save
            .as_ref()
            .is_some_and(|v| !is_neutral(v))
        {
            return Err(ModelError::unsupported(
                "modules_to_save",
                "fully trained extra modules are not supported",
            ));
        }
        // Other LoRA variants and parallel layouts come as `<something>_config` objects.
        let variant_configs = self
            .extra
            .keys()
            .filter(|k| k.ends_with("_config"))
            .map(String::as_str);
        for field in NEUTRAL_EXTRAS.into_iter().chain(variant_configs) {
            if let Some(v) = self.extra.get(field)
                && !is_neutral(v)
            {
                return Err(ModelError::unsupported(
                    field,
                    format!("{v} is not supported (only the neutral default)"),
                ));
            }
        }
        if let Some(v) = self.extra.get("layers_pattern")
            && !is_neutral(v)
            && v != "layers"
            && *v != serde_json::json!(["layers"])
        {
            return Err(ModelError::unsupported(
                "layers_pattern",
                format!("{v}: LLaMA's decoder layers are `layers`"),
            ));
        }
        if let Some(TargetModules::Pattern(p)) = &self.target_modules
            && p != "all-linear"
            && p.contains(|c: char| "\\^$.|?*+()[]{}".contains(c))
        {
            return Err(ModelError::unsupported(
                "target_modules",
                format!(
                    "the regular expression `{p}` is not supported (give a list of module names or \"all-linear\")"
                ),
            ));
        }
        Ok(())
    }

    /// The factor of the low-rank update: `lora_alpha / r`, or `lora_alpha / √r` with rsLoRA.
    pub fn scaling(&self) -> f64 {
        if self.use_rslora {
            self.lora_alpha / (self.r as f64).sqrt()
        } else {
            self.lora_alpha / self.r as f64
        }
    }

    /// The same adapters at rank `r` with the same [`scaling`](Self::scaling) (`lora_alpha` moves
    /// with the rank): a smaller rank makes a cheaper stage-1 proxy, and keeping the factor of
    /// the update fixed keeps the learning rates it finds comparable with the full rank's. The
    /// exact fusion of K adapters' updates is one adapter of rank K·r at this same scale.
    pub fn with_rank(mut self, r: usize) -> Self {
        let factor = self.scaling();
        self.r = r;
        self.lora_alpha = if self.use_rslora {
            factor * (r as f64).sqrt()
        } else {
            factor * r as f64
        };
        self
    }

    /// The same config with `lora_dropout = 0` (deterministic training, e.g. parity checks).
    pub fn without_dropout(mut self) -> Self {
        self.lora_dropout = 0.0;
        self
    }

    /// Which projections of which layer get an adapter in a model of `num_layers` layers, as peft
    /// resolves `target_modules` (full module name or `.`-suffix match; `"all-linear"` = every
    /// projection but the LM head) and `layers_to_transform`. A target naming no decoder
    /// projection (`lm_head`, `embed_tokens`, a typo) is an error naming it.
    pub fn targets(&self, num_layers: usize) -> Result<Vec<BTreeSet<Projection>>> {
        self.validate()?;
        let key =
            |layer: usize, p: Projection| format!("model.layers.{layer}.{}", p.path_in_layer());
        let names: Vec<String> = match &self.target_modules {
            None => vec!["q_proj".into(), "v_proj".into()],
            Some(TargetModules::Pattern(p)) if p == "all-linear" => Projection::ALL
                .iter()
                .map(|p| p.name().to_string())
                .collect(),
            Some(TargetModules::Pattern(p)) => vec![p.clone()],
            Some(TargetModules::List(list)) => list.clone(),
        };
        if names.is_empty() {
            return Err(ModelError::unsupported(
                "target_modules",
                "the list of target modules is empty",
            ));
        }
        let mut targets = vec![BTreeSet::new(); num_layers];
        for name in &names {
            let mut matched = false;
            for (layer, chosen) in targets.iter_mut().enumerate() {
                for p in Projection::ALL {
                    let k = key(layer, p);
                    if k == *name || k.ends_with(&format!(".{name}")) {
                        chosen.insert(p);
                        matched = true;
                    }
                }
            }
            if !matched {
                return Err(ModelError::unsupported(
                    "target_modules",
                    format!(
                        "`{name}` matches no projection of the {num_layers}-layer LLaMA decoder \
                         (LoRA is supported on {})",
                        Projection::ALL.map(Projection::name).join(", ")
                    ),
                ));
            }
        }
        if let Some(selection) = &self.layers_to_transform {
            let keep: Vec<usize> = match selection {
                LayerSelection::One(i) => vec![*i],
                LayerSelection::Many(v) => v.clone(),
            };
            if let Some(bad) = keep.iter().find(|&&i| i >= num_layers) {
                return Err(ModelError::unsupported(
                    "layers_to_transform",
                    format!("layer {bad} does not exist (the model has {num_layers})"),
                ));
            }
            for (layer, chosen) in targets.iter_mut().enumerate() {
                if !keep.contains(&layer) {
                    chosen.clear();
                }
            }
        }
        Ok(targets)
    }
}

// ---------------------------------------------------------------------------------------------
// Modules
// ---------------------------------------------------------------------------------------------

/// One LoRA matrix, wrapped so its parameter is named `weight` like peft's `nn.Linear`. Stored in
/// HF's `[out, in]` layout (no transposition on the way to or from peft files).
#[derive(Module, Debug)]
pub struct LoraMatrix<B: Backend> {
    pub weight: Param<Tensor<B, 2>>,
}

/// The adapter of one projection: `s · B (A dropout(x))`.
#[derive(Module, Debug)]
pub struct LoraLinear<B: Backend> {
    /// `A`, `[r, in]`; named `lora_A` (see [`crate::params`]).
    pub lora_a: LoraMatrix<B>,
    /// `B`, `[out, r]`; named `lora_B`.
    pub lora_b: LoraMatrix<B>,
    dropout: Dropout,
    scaling: f64,
}

impl<B: Backend> LoraLinear<B> {
    /// peft's initialisation: `A` kaiming-uniform with `a = √5` (i.e. U(±1/√in)), `B` zeros.
    /// Parameters are lazy until first use or [`params::materialize`].
    fn new(d_in: usize, d_out: usize, config: &LoraConfig, device: &B::Device) -> Self {
        let bound = 1.0 / (d_in as f64).sqrt();
        Self {
            lora_a: LoraMatrix {
                weight: Initializer::Uniform {
                    min: -bound,
                    max: bound,
                }
                .init([config.r, d_in], device),
            },
            lora_b: LoraMatrix {
                weight: Initializer::Zeros.init([d_out, config.r], device),
            },
            dropout: DropoutConfig::new(config.lora_dropout).init(),
            scaling: config.scaling(),
        }
    }

    /// The low-rank update for `x` `[batch, seq, in]`. Dropout acts only on an autodiff backend
    /// (training), as burn's `Dropout` does.
    pub fn delta(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, seq, d_in] = x.dims();
        let d_out = self.lora_b.weight.dims()[0];
        self.dropout
            .forward(x)
            .reshape([batch * seq, d_in])
            .matmul(self.lora_a.weight.val().transpose())
            .matmul(self.lora_b.weight.val().transpose())
            .mul_scalar(self.scaling)
            .reshape([batch, seq, d_out])
    }

    /// `s · B A`, `[out, in]`: what merging adds to the dense weight.
    pub fn delta_weight(&self) -> Tensor<B, 2> {
        self.lora_b
            .weight
            .val()
            .matmul(self.lora_a.weight.val())
            .mul_scalar(self.scaling)
    }

    fn features(&self) -> (usize, usize) {
        (self.lora_a.weight.dims()[1], self.lora_b.weight.dims()[0])
    }
}

/// `linear(x)` plus the adapter's update when there is one.
pub(crate) fn adapted_forward<B: Backend>(
    linear: &Linear<B>,
    adapter: Option<&LoraLinear<B>>,
    x: Tensor<B, 3>,
) -> Tensor<B, 3> {
    match adapter {
        Some(a) => crate::kernels::linear3(linear, x.clone()) + a.delta(x),
        None => crate::kernels::linear3(linear, x),
    }
}

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

/// The adapters of one decoder layer, mirroring [`LlamaDecoderLayer`]'s field names.
#[derive(Module, Debug)]
pub struct LoraDecoderLayer<B: Backend> {
    pub self_attn: LoraAttention<B>,
    pub mlp: LoraMlp<B>,
}

impl<B: Backend> LoraDecoderLayer<B> {
    pub fn get(&self, p: Projection) -> Option<&LoraLinear<B>> {
        match p {
            Projection::Q => self.self_attn.q_proj.as_ref(),
            Projection::K => self.self_attn.k_proj.as_ref(),
            Projection::V => self.self_attn.v_proj.as_ref(),
            Projection::O => self.self_attn.o_proj.as_ref(),
            Projection::Gate => self.mlp.gate_proj.as_ref(),
            Projection::Up => self.mlp.up_proj.as_ref(),
            Projection::Down => self.mlp.down_proj.as_ref(),
        }
    }

    fn slot(&mut self, p: Projection) -> &mut Option<LoraLinear<B>> {
        match p {
            Projection::Q => &mut self.self_attn.q_proj,
            Projection::K => &mut self.self_attn.k_proj,
            Projection::V => &mut self.self_attn.v_proj,
            Projection::O => &mut self.self_attn.o_proj,
            Projection::Gate => &mut self.mlp.gate_proj,
            Projection::Up => &mut self.mlp.up_proj,
            Projection::Down => &mut self.mlp.down_proj,
        }
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

/// The dense projection `p` of a decoder layer.
fn dense<B: Backend>(layer: &LlamaDecoderLayer<B>, p: Projection) -> &Linear<B> {
    match p {
        Projection::Q => &layer.self_attn.q_proj,
        Projection::K => &layer.self_attn.k_proj,
        Projection::V => &layer.self_attn.v_proj,
        Projection::O => &layer.self_attn.o_proj,
        Projection::Gate => &layer.mlp.gate_proj,
        Projection::Up => &layer.mlp.up_proj,
        Projection::Down => &layer.mlp.down_proj,
    }
}

fn dense_mut<B: Backend>(layer: &mut LlamaDecoderLayer<B>, p: Projection) -> &mut Linear<B> {
    match p {
        Projection::Q => &mut layer.self_attn.q_proj,
        Projection::K => &mut layer.self_attn.k_proj,
        Projection::V => &mut layer.self_attn.v_proj,
        Projection::O => &mut layer.self_attn.o_proj,
        Projection::Gate => &mut layer.mlp.gate_proj,
        Projection::Up => &mut layer.mlp.up_proj,
        Projection::Down => &mut layer.mlp.down_proj,
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
                    *layer.slot(p) = Some(LoraLinear::new(d_in, d_out, lora, device));
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
        let path = dir.join(ADAPTER_CONFIG_FILE);
        let text = serde_json::to_string_pretty(&config).map_err(|source| ModelError::Json {
            path: path.clone(),
            source,
        })?;
        std::fs::write(&path, text + "\n").map_err(|e| ModelError::io(&path, e))?;
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
            // burn stores Linear weights [in, out].
            let [d_in, d_out] = dense(&layers[i], p).weight.dims();
            if adapter.features() != (d_in, d_out) {
                let (a_in, a_out) = adapter.features();
                return Err(ModelError::ShapeMismatch {
                    name: format!(
                        "{PEFT_PREFIX}.model.layers.{i}.{} (in, out)",
                        p.path_in_layer()
                    ),
                    expected: vec![d_in, d_out],
                    found: vec![a_in, a_out],
                });
            }
        }
        Ok(())
    }

    /// The model with these adapters applied, after checking they fit.
    pub fn attach<'a>(&'a self, model: &'a LlamaForCausalLM<B>) -> Result<AdaptedLlama<'a, B>> {
        self.check_fits(model)?;
        Ok(AdaptedLlama {
            model,
            adapters: self,
        })
    }

    /// Folds every adapter into its dense weight, `W ← W + s·B·A`, and returns the plain model
    /// (its outputs equal the adapted model's; export it like any LLaMA).
    pub fn merge_into(&self, mut model: LlamaForCausalLM<B>) -> Result<LlamaForCausalLM<B>> {
        self.check_fits(&model)?;
        for (i, p, adapter) in self.adapted() {
            let linear = dense_mut(&mut model.base.layers[i], p);
            // burn layout [in, out]: add the transposed HF-layout update.
            let delta = adapter.delta_weight().transpose();
            linear.weight = linear.weight.clone().map(|w| {
                let trainable = w.is_require_grad();
                (w + delta).detach().set_require_grad(trainable)
            });
        }
        Ok(model)
    }
}

/// Marks every parameter of the base model frozen, so that LoRA training computes gradients for
/// the adapters only.
pub fn freeze<B: Backend>(model: LlamaForCausalLM<B>) -> LlamaForCausalLM<B> {
    params::set_trainable(model, |_| false)
}

/// A base model seen through its LoRA adapters (made by [`LlamaLoraAdapters::attach`]).
#[derive(Debug, Clone, Copy)]
pub struct AdaptedLlama<'a, B: Backend> {
    pub model: &'a LlamaForCausalLM<B>,
    pub adapters: &'a LlamaLoraAdapters<B>,
}

impl<B: Backend> AdaptedLlama<'_, B> {
    /// Logits `[batch, seq, vocab]`, as [`LlamaForCausalLM::logits`] with the adapters.
    pub fn logits(&self, input: &CausalLmInput) -> Result<Tensor<B, 3>> {
        self.model.logits_adapted(input, Some(self.adapters))
    }

    /// Logits at selected positions, as [`LlamaForCausalLM::logits_at`] with the adapters.
    pub fn logits_at(&self, input: &CausalLmInput, index: &[usize]) -> Result<Tensor<B, 2>> {
        self.model
            .logits_at_adapted(input, index, Some(self.adapters))
    }

    /// Greedy decoding, as [`LlamaForCausalLM::generate_greedy`] with the adapters.
    pub fn generate_greedy(
        &self,
        prompt: &CausalLmInput,
        max_new_tokens: usize,
        eos_token_ids: &[i64],
        pad_token_id: i64,
    ) -> Result<Vec<Vec<i64>>> {
        self.model.generate_greedy_adapted(
            prompt,
            max_new_tokens,
            eos_token_ids,
            pad_token_id,
            Some(self.adapters),
        )
    }

    /// Seeded sampling, as [`LlamaForCausalLM::generate_sampled`] with the adapters.
    pub fn generate_sampled(
        &self,
        prompt: &CausalLmInput,
        max_new_tokens: usize,
        eos_token_ids: &[i64],
        pad_token_id: i64,
        sampling: &SamplingConfig,
    ) -> Result<Vec<Vec<i64>>> {
        self.model.generate_sampled_adapted(
            prompt,
            max_new_tokens,
            eos_token_ids,
            pad_token_id,
            sampling,
            Some(self.adapters),
        )
    }

    /// Beam search, as [`LlamaForCausalLM::generate_beam`] with the adapters.
    pub fn generate_beam(
        &self,
        prompt: &CausalLmInput,
        beam: &BeamSearchConfig,
        eos_token_ids: &[i64],
        pad_token_id: i64,
    ) -> Result<Vec<Vec<i64>>> {
        self.model.beam_search(
            prompt,
            beam,
            eos_token_ids,
            pad_token_id,
            Some(self.adapters),
        )
    }
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
    fn targets_resolve_like_peft() {
        let c = LoraConfig::default();
        let t = c.targets(2).unwrap();
        assert_eq!(t[0], BTreeSet::from([Projection::Q, Projection::V]));
        let mut c = LoraConfig::new(
            2,
            4.0,
            &["mlp.down_proj", "model.layers.1.self_attn.k_proj"],
        );
        c.layers_to_transform = Some(LayerSelection::Many(vec![1, 2]));
        let t = c.targets(3).unwrap();
        assert!(t[0].is_empty());
        assert_eq!(t[1], BTreeSet::from([Projection::K, Projection::Down]));
        assert_eq!(t[2], BTreeSet::from([Projection::Down]));
        c.target_modules = Some(TargetModules::Pattern("all-linear".into()));
        assert_eq!(c.targets(3).unwrap()[2].len(), 7);
    }

    #[test]
    fn scaling_follows_rslora() {
        let mut c = LoraConfig::new(4, 8.0, &["q_proj"]);
        assert_eq!(c.scaling(), 2.0);
        c.use_rslora = true;
        assert_eq!(c.scaling(), 4.0);
    }

    #[test]
    fn a_lower_rank_keeps_the_scaling() {
        let plain = LoraConfig::new(8, 16.0, &["q_proj"]).with_rank(2);
        assert_eq!((plain.r, plain.lora_alpha, plain.scaling()), (2, 4.0, 2.0));
        let mut rs = LoraConfig::new(16, 8.0, &["q_proj"]);
        rs.use_rslora = true;
        let rs = rs.with_rank(4);
        assert_eq!((rs.r, rs.lora_alpha, rs.scaling()), (4, 4.0, 2.0));
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
}
