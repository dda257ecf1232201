//! MPNet's `config.json`, field for field as `transformers.MPNetConfig` writes it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::bert::{HiddenAct, ProblemType};
use crate::error::{ModelError, Result};
use crate::hf_json;

/// The relative-position buckets `transformers` computes, whatever the config says:
/// `MPNetEncoder.compute_position_bias` is always called with its default of 32, and
/// `relative_attention_num_buckets` only sizes the bias table.
pub const POSITION_BUCKETS: usize = 32;
/// The distance from which every relative position shares the last bucket of its direction.
pub const POSITION_MAX_DISTANCE: usize = 128;
/// `MPNetEmbeddings.padding_idx`: fixed at 1 in `transformers`, whatever `pad_token_id` says.
pub const PADDING_IDX: usize = 1;

fn default_vocab_size() -> usize {
    30527
}
fn default_hidden_size() -> usize {
    768
}
fn default_layers() -> usize {
    12
}
fn default_heads() -> usize {
    12
}
fn default_intermediate_size() -> usize {
    3072
}
fn default_hidden_act() -> String {
    "gelu".into()
}
fn default_dropout() -> f64 {
    0.1
}
fn default_max_positions() -> usize {
    512
}
fn default_initializer_range() -> f64 {
    0.02
}
fn default_layer_norm_eps() -> f64 {
    1e-12
}
fn default_buckets() -> usize {
    POSITION_BUCKETS
}
fn default_pad() -> usize {
    PADDING_IDX
}

/// An MPNet `config.json` (defaults are `MPNetConfig`'s). Fields we do not interpret
/// (`bos_token_id`, `transformers_version`, `label2id`, ...) are kept in `extra` and written
/// back on export.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MpnetConfig {
    #[serde(default = "default_vocab_size")]
    pub vocab_size: usize,
    #[serde(default = "default_hidden_size")]
    pub hidden_size: usize,
    #[serde(default = "default_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "default_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "default_intermediate_size")]
    pub intermediate_size: usize,
    /// `gelu`, `gelu_new`, `gelu_pytorch_tanh`, `relu`, `silu` or `swish`.
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    /// Dropout after the embeddings, each residual branch and in the classification head.
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    /// Scale of HF's random init (only used for fresh parameters).
    #[serde(default = "default_initializer_range")]
    pub initializer_range: f64,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Rows of the relative-attention bias table (at least [`POSITION_BUCKETS`]).
    #[serde(default = "default_buckets")]
    pub relative_attention_num_buckets: usize,
    #[serde(default = "default_pad")]
    pub pad_token_id: usize,
    /// Label names by id, `0..num_labels`; when absent, `num_labels` (default 2) `LABEL_i`s.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        with = "string_keys"
    )]
    pub id2label: BTreeMap<usize, String>,
    /// `regression`, `single_label_classification` or `multi_label_classification`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem_type: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

hf_json::impl_label_methods!(MpnetConfig);

impl MpnetConfig {
    /// Reads and validates a `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        Self::from_json(hf_json::read(path)?).map_err(|e| match e {
            ModelError::Json { source, .. } => ModelError::Json {
                path: path.to_path_buf(),
                source,
            },
            other => other,
        })
    }

    /// Validates a parsed `config.json` (`model_type` must be `mpnet`). Labels default as in
    /// `transformers`: `num_labels` (2 when absent) names `LABEL_i` when `id2label` is missing.
    pub fn from_json(value: Value) -> Result<Self> {
        match value.get("model_type").and_then(Value::as_str) {
            Some("mpnet") => {}
            Some(other) => {
                return Err(ModelError::unsupported(
                    "model_type",
                    format!("`{other}` is not MPNet (expected `mpnet`)"),
                ));
            }
            None => return Err(ModelError::unsupported("model_type", "missing")),
        }
        let mut config: Self =
            serde_json::from_value(value).map_err(|source| ModelError::Json {
                path: "config.json".into(),
                source,
            })?;
        if config.id2label.is_empty() {
            let num_labels = match config.extra.remove("num_labels") {
                None | Some(Value::Null) => 2,
                Some(v) => v.as_u64().map(|n| n as usize).ok_or_else(|| {
                    ModelError::unsupported("num_labels", format!("expected an integer, found {v}"))
                })?,
            };
            config.id2label = hf_json::default_id2label(num_labels);
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks every option we would otherwise silently mis-compute.
    pub fn validate(&self) -> Result<()> {
        hf_json::check_heads_divide_hidden(self.hidden_size, self.num_attention_heads)?;
        hf_json::check_positive(&[
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("intermediate_size", self.intermediate_size),
        ])?;
        if self.relative_attention_num_buckets < POSITION_BUCKETS {
            return Err(ModelError::unsupported(
                "relative_attention_num_buckets",
                format!(
                    "{} rows cannot hold the {POSITION_BUCKETS} buckets transformers uses",
                    self.relative_attention_num_buckets
                ),
            ));
        }
        if PADDING_IDX >= self.vocab_size || PADDING_IDX + 1 >= self.max_position_embeddings {
            return Err(ModelError::unsupported(
                "max_position_embeddings",
                "positions start at padding index 1 + 1, which must be below \
                 max_position_embeddings (and 1 below vocab_size)",
            ));
        }
        hf_json::check_dropouts(&[
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
        ])?;
        if self.id2label.is_empty() || self.id2label.keys().copied().ne(0..self.id2label.len()) {
            return Err(ModelError::unsupported(
                "id2label",
                "ids must be 0..num_labels, with at least one label",
            ));
        }
        self.activation()?;
        self.parsed_problem_type()?;
        Ok(())
    }

    /// The feed-forward activation `hidden_act` names.
    pub fn activation(&self) -> Result<HiddenAct> {
        HiddenAct::parse(&self.hidden_act)
    }

    fn parsed_problem_type(&self) -> Result<Option<ProblemType>> {
        self.problem_type
            .as_deref()
            .map(ProblemType::parse)
            .transpose()
    }

    /// The problem type used for the loss: the explicit one, else HF's inference from
    /// `num_labels`. Call on a validated config (an unknown name falls back to inference).
    pub fn effective_problem_type(&self) -> ProblemType {
        match self.parsed_problem_type() {
            Ok(Some(p)) => p,
            _ if self.num_labels() == 1 => ProblemType::Regression,
            _ => ProblemType::SingleLabelClassification,
        }
    }

    /// Disables every dropout (parity tests, deterministic training).
    pub fn without_dropout(mut self) -> Self {
        self.hidden_dropout_prob = 0.0;
        self.attention_probs_dropout_prob = 0.0;
        self
    }

    /// The longest input in tokens the position table takes: positions start past the
    /// padding index (`max_position_embeddings - 2`, 512 for all-mpnet-base-v2).
    pub fn max_sequence_length(&self) -> usize {
        self.max_position_embeddings.saturating_sub(PADDING_IDX + 1)
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// The config as `transformers` writes it for a model of class `architecture`
    /// (`MPNetModel`, `MPNetForSequenceClassification`): labels with a matching `label2id`.
    pub fn to_hf_json(&self, architecture: &str) -> Result<Value> {
        let mut config = self.clone();
        config.extra.insert(
            "architectures".into(),
            Value::Array(vec![Value::from(architecture)]),
        );
        config
            .extra
            .insert("model_type".into(), Value::from("mpnet"));
        config.extra.insert(
            "label2id".into(),
            Value::Object(hf_json::label2id(&self.id2label)),
        );
        config.extra.remove("num_labels");
        serde_json::to_value(&config).map_err(|source| ModelError::Json {
            path: "config.json".into(),
            source,
        })
    }
}

/// `id2label` with its ids as the JSON object keys (strings) HF writes. serde's `flatten`
/// (for `extra`) hands map keys over as strings, so they are parsed here.
mod string_keys {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<usize, String>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_map(map.iter().map(|(k, v)| (k.to_string(), v)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<usize, String>, D::Error> {
        let raw = Option::<BTreeMap<String, String>>::deserialize(deserializer)?;
        raw.unwrap_or_default()
            .into_iter()
            .map(|(k, v)| {
                k.parse::<usize>()
                    .map(|id| (id, v))
                    .map_err(|_| D::Error::custom(format!("id2label key `{k}` is not an integer")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real_config() -> Value {
        serde_json::json!({
            "architectures": ["MPNetForMaskedLM"], "model_type": "mpnet",
            "attention_probs_dropout_prob": 0.1, "bos_token_id": 0, "eos_token_id": 2,
            "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 768,
            "initializer_range": 0.02, "intermediate_size": 3072, "layer_norm_eps": 1e-05,
            "max_position_embeddings": 514, "num_attention_heads": 12, "num_hidden_layers": 12,
            "pad_token_id": 1, "relative_attention_num_buckets": 32, "vocab_size": 30527
        })
    }

    #[test]
    fn the_real_config_parses_with_two_default_labels() {
        let c = MpnetConfig::from_json(real_config()).unwrap();
        assert_eq!((c.hidden_size, c.head_dim(), c.num_labels()), (768, 64, 2));
        assert_eq!(c.layer_norm_eps, 1e-5);
        assert_eq!(c.max_sequence_length(), 512);
        assert_eq!(
            c.effective_problem_type(),
            ProblemType::SingleLabelClassification
        );
        assert_eq!(c.extra["bos_token_id"], 0);
    }

    #[test]
    fn export_json_round_trips_labels_and_unknown_fields() {
        let c = MpnetConfig::from_json(real_config())
            .unwrap()
            .with_labels(&["neg", "pos", "neutral"]);
        let json = c.to_hf_json("MPNetForSequenceClassification").unwrap();
        assert_eq!(json["id2label"]["2"], "neutral");
        assert_eq!(json["label2id"]["pos"], 1);
        assert_eq!(json["architectures"][0], "MPNetForSequenceClassification");
        let back = MpnetConfig::from_json(json).unwrap();
        assert_eq!(back.id2label, c.id2label);
        assert_eq!(back.extra["eos_token_id"], 2);
    }

    #[test]
    fn num_labels_without_id2label_names_default_labels() {
        let mut v = real_config();
        v["num_labels"] = 1.into();
        let c = MpnetConfig::from_json(v).unwrap();
        assert_eq!(c.num_labels(), 1);
        assert_eq!(c.effective_problem_type(), ProblemType::Regression);
        assert!(!c.extra.contains_key("num_labels"));
    }

    #[test]
    fn options_we_would_mis_compute_are_refused_naming_the_field() {
        let cases: [(&str, Value, &str); 5] = [
            ("model_type", "bert".into(), "model_type"),
            ("hidden_act", "gelu_fast".into(), "hidden_act"),
            (
                "relative_attention_num_buckets",
                16.into(),
                "relative_attention_num_buckets",
            ),
            ("num_attention_heads", 5.into(), "num_attention_heads"),
            ("problem_type", "ranking".into(), "problem_type"),
        ];
        for (field, value, named) in cases {
            let mut v = real_config();
            v[field] = value;
            let err = MpnetConfig::from_json(v).unwrap_err().to_string();
            assert!(err.contains(named), "{field}: {err}");
        }
    }
}
