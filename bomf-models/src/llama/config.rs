//! LLaMA's `config.json`, with both RoPE spellings and the frequency scalings.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{ModelError, Result};
use crate::hf_json;

fn default_rms_eps() -> f64 {
    1e-6
}
fn default_rope_theta() -> f64 {
    10_000.0
}
fn default_max_pos() -> usize {
    2048
}
fn default_act() -> String {
    "silu".into()
}
fn default_init_range() -> f64 {
    0.02
}

/// A LLaMA `config.json`, field for field as `transformers.LlamaConfig` writes it. Fields we do not
/// interpret are kept in `extra` and written back unchanged on export.
///
/// Both RoPE spellings are accepted: transformers ≤ 4 (`rope_theta` + `rope_scaling`) and ≥ 5
/// (`rope_parameters` holding `rope_type`, `rope_theta` and the scaling fields).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LlamaConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_key_value_heads: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    #[serde(default = "default_rms_eps")]
    pub rms_norm_eps: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_parameters: Option<Value>,
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_token_id: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// How RoPE frequencies are rescaled for longer contexts (HF's `rope_type`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    None,
    /// Position interpolation: every frequency divided by `factor`.
    Linear {
        factor: f64,
    },
    /// LLaMA 3.1's band-wise scaling.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
}

impl LlamaConfig {
    /// Reads and validates a `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let config: Self = hf_json::read(path.as_ref())?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every option we would otherwise silently mis-compute.
    pub fn validate(&self) -> Result<()> {
        if !matches!(self.hidden_act.as_str(), "silu" | "swish") {
            return Err(ModelError::unsupported(
                "hidden_act",
                format!("`{}` is not supported (LLaMA uses silu)", self.hidden_act),
            ));
        }
        let heads = self.num_attention_heads;
        if heads == 0
            || self.num_key_value_heads() == 0
            || !heads.is_multiple_of(self.num_key_value_heads())
        {
            return Err(ModelError::unsupported(
                "num_key_value_heads",
                format!(
                    "{} attention heads cannot be grouped over {} key/value heads",
                    heads,
                    self.num_key_value_heads()
                ),
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(ModelError::unsupported(
                "head_dim",
                "RoPE needs an even head size",
            ));
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(heads) {
            return Err(ModelError::unsupported(
                "hidden_size",
                "not divisible by num_attention_heads",
            ));
        }
        self.rope_scaling()?;
        if let Some(v) = self.extra.get("pretraining_tp")
            && v.as_u64().is_some_and(|tp| tp > 1)
        {
            return Err(ModelError::unsupported(
                "pretraining_tp",
                "values > 1 are not supported",
            ));
        }
        Ok(())
    }

    pub fn num_key_value_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// RoPE base frequency, from either spelling.
    pub fn rope_theta(&self) -> f64 {
        self.rope_parameters
            .as_ref()
            .and_then(|p| p.get("rope_theta"))
            .and_then(Value::as_f64)
            .or(self.rope_theta)
            .unwrap_or_else(default_rope_theta)
    }

    /// The RoPE scaling, from `rope_parameters` (transformers 5) or `rope_scaling` (older).
    pub fn rope_scaling(&self) -> Result<RopeScaling> {
        let (field, params) = match (&self.rope_parameters, &self.rope_scaling) {
            (Some(p), _) if !p.is_null() => ("rope_parameters", p),
            (_, Some(s)) if !s.is_null() => ("rope_scaling", s),
            _ => return Ok(RopeScaling::None),
        };
        let kind = params
            .get("rope_type")
            .or_else(|| params.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        let num = |name: &str| -> Result<f64> {
            params.get(name).and_then(Value::as_f64).ok_or_else(|| {
                ModelError::unsupported(
                    field,
                    format!("rope type `{kind}` needs a numeric `{name}`"),
                )
            })
        };
        match kind {
            "default" => Ok(RopeScaling::None),
            "linear" => Ok(RopeScaling::Linear {
                factor: num("factor")?,
            }),
            "llama3" => Ok(RopeScaling::Llama3 {
                factor: num("factor")?,
                low_freq_factor: num("low_freq_factor")?,
                high_freq_factor: num("high_freq_factor")?,
                original_max_position_embeddings: num("original_max_position_embeddings")?,
            }),
            other => Err(ModelError::unsupported(
                field,
                format!(
                    "rope type `{other}` is not supported (supported: default, linear, llama3)"
                ),
            )),
        }
    }

    /// The inverse frequencies of RoPE, `head_dim / 2` of them, scaled as configured.
    pub fn rope_inv_freq(&self) -> Result<Vec<f32>> {
        let dim = self.head_dim();
        let theta = self.rope_theta();
        // HF computes these in f32: `1 / theta^(arange(0, dim, 2) / dim)`.
        let base: Vec<f32> = (0..dim / 2)
            .map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / dim as f32))
            .collect();
        Ok(match self.rope_scaling()? {
            RopeScaling::None => base,
            RopeScaling::Linear { factor } => base.iter().map(|f| f / factor as f32).collect(),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: old_len,
            } => {
                let (factor, low, high, old_len) = (
                    factor as f32,
                    low_freq_factor as f32,
                    high_freq_factor as f32,
                    old_len as f32,
                );
                let low_freq_wavelen = old_len / low;
                let high_freq_wavelen = old_len / high;
                base.iter()
                    .map(|&f| {
                        let wavelen = 2.0 * std::f32::consts::PI / f;
                        let scaled = if wavelen > low_freq_wavelen {
                            f / factor
                        } else {
                            f
                        };
                        let medium = wavelen >= high_freq_wavelen && wavelen <= low_freq_wavelen;
                        if medium {
                            let smooth = (old_len / wavelen - low) / (high - low);
                            (1.0 - smooth) * scaled / factor + smooth * scaled
                        } else {
                            scaled
                        }
                    })
                    .collect()
            }
        })
    }

    /// The config as `transformers` would write it (our fields plus the untouched extras).
    pub fn to_json(&self) -> Result<Value> {
        serde_json::to_value(self).map_err(|e| ModelError::InvalidInput(e.to_string()))
    }

    /// The first `eos_token_id` (HF allows a list).
    pub fn eos_token_ids(&self) -> Vec<i64> {
        match &self.eos_token_id {
            Some(Value::Number(n)) => n.as_i64().into_iter().collect(),
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_i64).collect(),
            _ => Vec::new(),
        }
    }
}
