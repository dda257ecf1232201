//! T5's `config.json` and the feed-forward shape and activation it asks for.

use std::path::Path;

use burn::tensor::Tensor;
use burn::tensor::activation;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{ModelError, Result};
use crate::hf_json;

fn default_num_buckets() -> usize {
    32
}
fn default_max_distance() -> usize {
    128
}
fn default_dropout() -> f64 {
    0.1
}
fn default_eps() -> f64 {
    1e-6
}
fn default_initializer_factor() -> f64 {
    1.0
}
fn default_feed_forward_proj() -> String {
    "relu".into()
}
fn default_true() -> bool {
    true
}
fn default_pad() -> Option<i64> {
    Some(0)
}
fn default_eos() -> Option<Value> {
    Some(Value::from(1))
}

/// A T5 `config.json`, field for field as `transformers.T5Config` writes it. Fields we do not
/// interpret (`dense_act_fn`, `is_gated_act`, `task_specific_params`, ...) are kept in `extra`
/// and written back unchanged on export.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct T5Config {
    pub vocab_size: usize,
    pub d_model: usize,
    /// Size of one attention head (`heads * d_kv` need not equal `d_model`).
    pub d_kv: usize,
    pub d_ff: usize,
    /// Encoder blocks.
    pub num_layers: usize,
    /// Decoder blocks (`num_layers` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_decoder_layers: Option<usize>,
    pub num_heads: usize,
    #[serde(default = "default_num_buckets")]
    pub relative_attention_num_buckets: usize,
    #[serde(default = "default_max_distance")]
    pub relative_attention_max_distance: usize,
    #[serde(default = "default_dropout")]
    pub dropout_rate: f64,
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    /// Scale of HF's random init (only used for fresh models).
    #[serde(default = "default_initializer_factor")]
    pub initializer_factor: f64,
    /// `"relu"` (T5 v1.0), `"gated-gelu"` (T5 v1.1), or more generally `[gated-]ACT`.
    #[serde(default = "default_feed_forward_proj")]
    pub feed_forward_proj: String,
    #[serde(default = "default_true")]
    pub tie_word_embeddings: bool,
    /// Whether the decoder output is multiplied by `d_model^-0.5` before the LM head. Written by
    /// transformers ≥ 5; older configs imply it from `tie_word_embeddings`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_decoder_outputs: Option<bool>,
    #[serde(default = "default_pad")]
    pub pad_token_id: Option<i64>,
    /// One id or a list (HF allows both).
    #[serde(default = "default_eos")]
    pub eos_token_id: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoder_start_token_id: Option<i64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The nonlinearity of the feed-forward block (HF's `dense_act_fn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum T5Activation {
    Relu,
    /// Exact GELU (`erf`), HF's `"gelu"`.
    Gelu,
    /// The tanh approximation of GELU, HF's `"gelu_new"` (what `"gated-gelu"` means).
    GeluTanh,
    Silu,
}

impl T5Activation {
    pub(super) fn apply<B: Backend, const D: usize>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Self::Relu => activation::relu(x),
            Self::Gelu => activation::gelu(x),
            Self::GeluTanh => gelu_tanh(x),
            Self::Silu => activation::silu(x),
        }
    }
}

/// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`, written with products so negative inputs never go
/// through a real-valued power.
fn gelu_tanh<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let sqrt_2_over_pi = (2.0 / std::f64::consts::PI).sqrt();
    let cube = x.clone() * x.clone() * x.clone();
    let inner = (x.clone() + cube.mul_scalar(0.044715)).mul_scalar(sqrt_2_over_pi);
    x.mul_scalar(0.5) * inner.tanh().add_scalar(1.0)
}

/// The feed-forward shape a config asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedForwardKind {
    /// `wi_0`/`wi_1` (gated) or a single `wi`.
    pub gated: bool,
    pub activation: T5Activation,
}

impl T5Config {
    /// Reads and validates a `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let config: Self = hf_json::read(path.as_ref())?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every option we would otherwise silently mis-compute.
    pub fn validate(&self) -> Result<()> {
        self.feed_forward()?;
        hf_json::check_positive(&[
            ("vocab_size", self.vocab_size),
            ("d_model", self.d_model),
            ("d_kv", self.d_kv),
            ("d_ff", self.d_ff),
            ("num_heads", self.num_heads),
        ])?;
        let buckets = self.relative_attention_num_buckets;
        // Bidirectional buckets split in two halves, each half in exact and logarithmic parts.
        if buckets < 4 {
            return Err(ModelError::unsupported(
                "relative_attention_num_buckets",
                format!("{buckets} is too small (at least 4 are needed)"),
            ));
        }
        if self.relative_attention_max_distance <= buckets / 2 {
            return Err(ModelError::unsupported(
                "relative_attention_max_distance",
                format!(
                    "{} must exceed half the number of buckets ({})",
                    self.relative_attention_max_distance,
                    buckets / 2
                ),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout_rate) {
            return Err(ModelError::unsupported(
                "dropout_rate",
                format!("{} is not in [0, 1)", self.dropout_rate),
            ));
        }
        if self.extra.get("is_decoder").and_then(Value::as_bool) == Some(true) {
            return Err(ModelError::unsupported(
                "is_decoder",
                "a decoder-only T5 is not supported (T5ForConditionalGeneration only)",
            ));
        }
        Ok(())
    }

    /// Parses `feed_forward_proj` the way `T5Config` does: `[gated-]ACT`, where `gated-gelu`
    /// means the tanh approximation.
    pub fn feed_forward(&self) -> Result<FeedForwardKind> {
        let proj = self.feed_forward_proj.as_str();
        let parts: Vec<&str> = proj.split('-').collect();
        let bad = |why: String| ModelError::unsupported("feed_forward_proj", why);
        let (gated, act) = match parts.as_slice() {
            [act] => (false, *act),
            ["gated", act] => (true, *act),
            _ => {
                return Err(bad(format!(
                    "`{proj}` is not of the form `ACT` or `gated-ACT` (e.g. `relu`, `gated-gelu`)"
                )));
            }
        };
        let activation = match (proj, act) {
            ("gated-gelu", _) => T5Activation::GeluTanh,
            (_, "relu") => T5Activation::Relu,
            (_, "gelu") => T5Activation::Gelu,
            (_, "gelu_new" | "gelu_pytorch_tanh") => T5Activation::GeluTanh,
            (_, "silu" | "swish") => T5Activation::Silu,
            (_, other) => {
                return Err(bad(format!(
                    "activation `{other}` is not supported (relu, gelu, gelu_new, gelu_pytorch_tanh, silu)"
                )));
            }
        };
        Ok(FeedForwardKind { gated, activation })
    }

    pub fn num_decoder_layers(&self) -> usize {
        self.num_decoder_layers.unwrap_or(self.num_layers)
    }

    /// Whether the decoder output is rescaled by `d_model^-0.5` (see the field's docs).
    pub fn scales_decoder_outputs(&self) -> bool {
        self.scale_decoder_outputs
            .unwrap_or(self.tie_word_embeddings)
    }

    /// The end-of-sequence ids (HF allows one or a list).
    pub fn eos_token_ids(&self) -> Vec<i64> {
        match &self.eos_token_id {
            Some(Value::Number(n)) => n.as_i64().into_iter().collect(),
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_i64).collect(),
            _ => Vec::new(),
        }
    }

    /// The config for training without dropout (as the parity tests do).
    pub fn without_dropout(mut self) -> Self {
        self.dropout_rate = 0.0;
        self
    }

    /// The config as `transformers` would write it (our fields plus the untouched extras).
    pub fn to_json(&self) -> Result<Value> {
        serde_json::to_value(self).map_err(|e| ModelError::InvalidInput(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_forward_proj_is_parsed_like_transformers() {
        let mut config: T5Config = serde_json::from_value(serde_json::json!({
            "vocab_size": 10, "d_model": 8, "d_kv": 2, "d_ff": 16, "num_layers": 1, "num_heads": 4
        }))
        .unwrap();
        assert_eq!(
            config.feed_forward().unwrap(),
            FeedForwardKind {
                gated: false,
                activation: T5Activation::Relu
            }
        );
        config.feed_forward_proj = "gated-gelu".into();
        assert_eq!(
            config.feed_forward().unwrap().activation,
            T5Activation::GeluTanh
        );
        config.feed_forward_proj = "gated-silu".into();
        assert!(config.feed_forward().unwrap().gated);
        for bad in ["gated-mish", "ungated-relu", "gated-gelu-x"] {
            config.feed_forward_proj = bad.into();
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains("feed_forward_proj"), "{err}");
        }
    }
}
