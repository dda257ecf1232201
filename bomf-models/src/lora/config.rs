//! peft's `adapter_config.json` for LoRA: the options we interpret, the ones we refuse, and which
//! projections of which layer the adapters target.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{ModelError, Result};
use crate::hf_json;
use crate::llama::Projection;

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
        let config: Self = hf_json::read(path)?;
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
        self.validate_options()
    }

    /// The checks of [`Self::validate`] on peft's newer and rarer options: each must be at its
    /// neutral value, and the targets and layers must be names we resolve.
    fn validate_options(&self) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
