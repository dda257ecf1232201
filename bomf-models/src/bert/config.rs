//! BERT/RoBERTa `config.json`: the architecture flavour, activation, problem type, the task
//! (which decides the head and the `architectures` entry) and the validated config.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::Tensor;
use burn::tensor::activation;
use burn::tensor::backend::Backend;
use serde_json::{Map, Value};

use crate::error::{ModelError, Result};
use crate::hf_json;
use crate::kernels;

/// Which of the two architectures a config describes. They share every layer; they differ in
/// position ids (RoBERTa offsets them past the padding index), default special ids, the HF name
/// prefix (`bert.` / `roberta.`) and the sequence-classification head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncoderFlavor {
    Bert,
    Roberta,
}

impl EncoderFlavor {
    /// The prefix `transformers` gives the base model inside a model with a head
    /// (`base_model_prefix`).
    pub fn hf_prefix(self) -> &'static str {
        match self {
            EncoderFlavor::Bert => "bert",
            EncoderFlavor::Roberta => "roberta",
        }
    }
}

/// The activation of the feed-forward block (`hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HiddenAct {
    /// `gelu`: the exact, erf-based GELU.
    Gelu,
    /// `gelu_new`, `gelu_pytorch_tanh`: the tanh approximation.
    GeluTanh,
    Relu,
    /// `silu` / `swish`.
    Silu,
}

impl HiddenAct {
    pub(crate) fn parse(name: &str) -> Result<Self> {
        match name {
            "gelu" => Ok(HiddenAct::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" => Ok(HiddenAct::GeluTanh),
            "relu" => Ok(HiddenAct::Relu),
            "silu" | "swish" => Ok(HiddenAct::Silu),
            other => Err(ModelError::unsupported(
                "hidden_act",
                format!(
                    "`{other}` is not supported (supported: gelu, gelu_new, gelu_pytorch_tanh, relu, silu, swish)"
                ),
            )),
        }
    }

    pub(crate) fn apply<B: Backend, const D: usize>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            HiddenAct::Gelu => kernels::gelu(x),
            HiddenAct::GeluTanh => activation::gelu_approximate(x),
            HiddenAct::Relu => activation::relu(x),
            HiddenAct::Silu => activation::silu(x),
        }
    }
}

/// How `transformers` computes the sequence-classification loss (`problem_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemType {
    /// Mean squared error; the default when `num_labels == 1`.
    Regression,
    /// Cross-entropy over integer labels; the default when `num_labels > 1`.
    SingleLabelClassification,
    /// Binary cross-entropy with logits over a 0/1 label matrix.
    MultiLabelClassification,
}

impl ProblemType {
    pub(crate) fn parse(name: &str) -> Result<Self> {
        match name {
            "regression" => Ok(ProblemType::Regression),
            "single_label_classification" => Ok(ProblemType::SingleLabelClassification),
            "multi_label_classification" => Ok(ProblemType::MultiLabelClassification),
            other => Err(ModelError::unsupported(
                "problem_type",
                format!("unknown problem type `{other}`"),
            )),
        }
    }

    /// The name `transformers` writes in config.json.
    pub fn hf_name(self) -> &'static str {
        match self {
            ProblemType::Regression => "regression",
            ProblemType::SingleLabelClassification => "single_label_classification",
            ProblemType::MultiLabelClassification => "multi_label_classification",
        }
    }
}

/// A BERT/RoBERTa `config.json`, validated. Fields mirror `transformers.BertConfig`.
///
/// The original JSON is kept (`raw`) so that [`crate::export`] writes back every field we do not
/// interpret (tokenizer ids, `transformers_version`, custom keys) unchanged.
#[derive(Debug, Clone)]
pub struct BertConfig {
    pub flavor: EncoderFlavor,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: HiddenAct,
    pub hidden_dropout_prob: f64,
    pub attention_probs_dropout_prob: f64,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub initializer_range: f64,
    pub layer_norm_eps: f64,
    pub pad_token_id: usize,
    /// Dropout before the classifier; `None` means "use `hidden_dropout_prob`", as in HF.
    pub classifier_dropout: Option<f64>,
    /// Label names by id; its length is `num_labels`.
    pub id2label: BTreeMap<usize, String>,
    pub problem_type: Option<ProblemType>,
    raw: Map<String, Value>,
}

fn get_usize(raw: &Map<String, Value>, field: &str, default: usize) -> Result<usize> {
    match raw.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v.as_u64().map(|x| x as usize).ok_or_else(|| {
            ModelError::unsupported(field, format!("expected a non-negative integer, found {v}"))
        }),
    }
}

fn get_f64(raw: &Map<String, Value>, field: &str, default: f64) -> Result<f64> {
    match raw.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_f64()
            .ok_or_else(|| ModelError::unsupported(field, format!("expected a number, found {v}"))),
    }
}

fn get_opt_f64(raw: &Map<String, Value>, field: &str) -> Result<Option<f64>> {
    match raw.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| {
            ModelError::unsupported(field, format!("expected a number or null, found {v}"))
        }),
    }
}

fn get_str<'a>(raw: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>> {
    match raw.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(ModelError::unsupported(
            field,
            format!("expected a string, found {v}"),
        )),
    }
}

fn get_bool(raw: &Map<String, Value>, field: &str) -> Result<bool> {
    match raw.get(field) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(ModelError::unsupported(
            field,
            format!("expected true/false, found {v}"),
        )),
    }
}

hf_json::impl_label_methods!(BertConfig);

impl BertConfig {
    /// Reads and validates `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_json(hf_json::read(path.as_ref())?)
    }

    /// Validates a parsed `config.json`. Options that would change the computation and that we do
    /// not implement are errors, never silently ignored.
    pub fn from_json(value: Value) -> Result<Self> {
        let Value::Object(raw) = value else {
            return Err(ModelError::unsupported(
                "<root>",
                "config.json must be a JSON object",
            ));
        };
        let flavor = match get_str(&raw, "model_type")? {
            Some("bert") => EncoderFlavor::Bert,
            Some("roberta") | Some("xlm-roberta") | Some("camembert") => EncoderFlavor::Roberta,
            Some(other) => {
                return Err(ModelError::unsupported(
                    "model_type",
                    format!(
                        "`{other}` is not a BERT/RoBERTa encoder (expected bert, roberta, xlm-roberta or camembert)"
                    ),
                ));
            }
            None => return Err(ModelError::unsupported("model_type", "missing")),
        };
        // transformers' defaults (RobertaConfig only changes the special ids).
        let (default_vocab, default_pad) = match flavor {
            EncoderFlavor::Bert => (30522, 0),
            EncoderFlavor::Roberta => (50265, 1),
        };
        if let Some(kind) = get_str(&raw, "position_embedding_type")?
            && kind != "absolute"
        {
            return Err(ModelError::unsupported(
                "position_embedding_type",
                format!("`{kind}` is not supported (only `absolute`)"),
            ));
        }
        if get_bool(&raw, "is_decoder")? {
            return Err(ModelError::unsupported(
                "is_decoder",
                "decoder (causal) BERT is not supported",
            ));
        }
        if get_bool(&raw, "add_cross_attention")? {
            return Err(ModelError::unsupported(
                "add_cross_attention",
                "cross-attention is not supported",
            ));
        }
        let hidden_act = HiddenAct::parse(get_str(&raw, "hidden_act")?.unwrap_or("gelu"))?;
        let problem_type = get_str(&raw, "problem_type")?
            .map(ProblemType::parse)
            .transpose()?;

        let id2label = parse_id2label(&raw)?;

        let config = BertConfig {
            flavor,
            vocab_size: get_usize(&raw, "vocab_size", default_vocab)?,
            hidden_size: get_usize(&raw, "hidden_size", 768)?,
            num_hidden_layers: get_usize(&raw, "num_hidden_layers", 12)?,
            num_attention_heads: get_usize(&raw, "num_attention_heads", 12)?,
            intermediate_size: get_usize(&raw, "intermediate_size", 3072)?,
            hidden_act,
            hidden_dropout_prob: get_f64(&raw, "hidden_dropout_prob", 0.1)?,
            attention_probs_dropout_prob: get_f64(&raw, "attention_probs_dropout_prob", 0.1)?,
            max_position_embeddings: get_usize(&raw, "max_position_embeddings", 512)?,
            type_vocab_size: get_usize(&raw, "type_vocab_size", 2)?,
            initializer_range: get_f64(&raw, "initializer_range", 0.02)?,
            layer_norm_eps: get_f64(&raw, "layer_norm_eps", 1e-12)?,
            pad_token_id: get_usize(&raw, "pad_token_id", default_pad)?,
            classifier_dropout: get_opt_f64(&raw, "classifier_dropout")?,
            id2label,
            problem_type,
            raw,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        hf_json::check_heads_divide_hidden(self.hidden_size, self.num_attention_heads)?;
        hf_json::check_positive(&[
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ])?;
        if self.pad_token_id >= self.vocab_size {
            return Err(ModelError::unsupported(
                "pad_token_id",
                "must be below vocab_size",
            ));
        }
        if self.flavor == EncoderFlavor::Roberta
            && self.pad_token_id + 1 >= self.max_position_embeddings
        {
            return Err(ModelError::unsupported(
                "max_position_embeddings",
                "RoBERTa positions start at pad_token_id + 1, which must be below max_position_embeddings",
            ));
        }
        hf_json::check_dropouts(&[
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
            ("classifier_dropout", self.classifier_dropout.unwrap_or(0.0)),
        ])?;
        if self.id2label.is_empty() {
            return Err(ModelError::unsupported(
                "id2label",
                "at least one label is required",
            ));
        }
        Ok(())
    }

    /// The problem type used for the loss: the explicit one, else HF's inference from `num_labels`.
    pub fn effective_problem_type(&self) -> ProblemType {
        self.problem_type.unwrap_or(if self.num_labels() == 1 {
            ProblemType::Regression
        } else {
            ProblemType::SingleLabelClassification
        })
    }

    /// Disables every dropout (used by the parity tests, and handy for deterministic training).
    pub fn without_dropout(mut self) -> Self {
        self.hidden_dropout_prob = 0.0;
        self.attention_probs_dropout_prob = 0.0;
        self.classifier_dropout = Some(0.0);
        self
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// The config as `transformers` would write it: the original JSON with our interpreted fields
    /// written back over it, and `architectures` set for `task`.
    pub fn to_hf_json(&self, task: Task) -> Value {
        let mut raw = self.raw.clone();
        let flavor_name = match self.flavor {
            EncoderFlavor::Bert => "Bert",
            EncoderFlavor::Roberta => match raw.get("model_type").and_then(Value::as_str) {
                Some("xlm-roberta") => "XLMRoberta",
                Some("camembert") => "Camembert",
                _ => "Roberta",
            },
        };
        let arch = format!("{flavor_name}{}", task.hf_suffix());
        raw.insert(
            "architectures".into(),
            Value::Array(vec![Value::String(arch)]),
        );
        let id2label: Map<String, Value> = self
            .id2label
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.clone())))
            .collect();
        raw.insert("id2label".into(), Value::Object(id2label));
        raw.insert(
            "label2id".into(),
            Value::Object(hf_json::label2id(&self.id2label)),
        );
        raw.remove("num_labels");
        match self.problem_type {
            Some(p) => raw.insert("problem_type".into(), Value::String(p.hf_name().into())),
            None => raw.remove("problem_type"),
        };
        let numbers: [(&str, Value); 13] = [
            ("vocab_size", self.vocab_size.into()),
            ("hidden_size", self.hidden_size.into()),
            ("num_hidden_layers", self.num_hidden_layers.into()),
            ("num_attention_heads", self.num_attention_heads.into()),
            ("intermediate_size", self.intermediate_size.into()),
            ("hidden_dropout_prob", self.hidden_dropout_prob.into()),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob.into(),
            ),
            (
                "max_position_embeddings",
                self.max_position_embeddings.into(),
            ),
            ("type_vocab_size", self.type_vocab_size.into()),
            ("initializer_range", self.initializer_range.into()),
            ("layer_norm_eps", self.layer_norm_eps.into()),
            ("pad_token_id", self.pad_token_id.into()),
            (
                "classifier_dropout",
                self.classifier_dropout.map_or(Value::Null, Value::from),
            ),
        ];
        for (k, v) in numbers {
            raw.insert(k.into(), v);
        }
        Value::Object(raw)
    }
}

/// `id2label` (labels by id, `0..num_labels`), or `LABEL_i` names for `num_labels` (2 by default).
fn parse_id2label(raw: &Map<String, Value>) -> Result<BTreeMap<usize, String>> {
    match raw.get("id2label") {
        Some(Value::Object(map)) => {
            let mut out = BTreeMap::new();
            for (k, v) in map {
                let id: usize = k.parse().map_err(|_| {
                    ModelError::unsupported("id2label", format!("key `{k}` is not an integer"))
                })?;
                let name = v.as_str().ok_or_else(|| {
                    ModelError::unsupported("id2label", format!("label {k} is not a string"))
                })?;
                out.insert(id, name.to_string());
            }
            if out.keys().copied().ne(0..out.len()) {
                return Err(ModelError::unsupported(
                    "id2label",
                    "ids must be 0..num_labels",
                ));
            }
            Ok(out)
        }
        None | Some(Value::Null) => Ok(hf_json::default_id2label(get_usize(raw, "num_labels", 2)?)),
        Some(v) => Err(ModelError::unsupported(
            "id2label",
            format!("expected an object, found {v}"),
        )),
    }
}

/// The task a model is built for; decides the head, whether the pooler exists, and the
/// `architectures` entry written on export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// The bare encoder with its pooler (`BertModel`).
    Base,
    SequenceClassification,
    MultipleChoice,
    QuestionAnswering,
}

impl Task {
    fn hf_suffix(self) -> &'static str {
        match self {
            Task::Base => "Model",
            Task::SequenceClassification => "ForSequenceClassification",
            Task::MultipleChoice => "ForMultipleChoice",
            Task::QuestionAnswering => "ForQuestionAnswering",
        }
    }

    /// Whether HF's model for this task has `pooler.*` weights.
    pub fn uses_pooler(self, flavor: EncoderFlavor) -> bool {
        match self {
            Task::Base | Task::MultipleChoice => true,
            Task::SequenceClassification => flavor == EncoderFlavor::Bert,
            Task::QuestionAnswering => false,
        }
    }
}
