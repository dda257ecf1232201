//! What the Hugging Face JSON files of every family share: reading and writing them with errors
//! that name the file, and the checks on config fields that several architectures have in common.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::{ModelError, Result};

/// Reads and parses the JSON file at `path`.
pub(crate) fn read<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    serde_json::from_str(&text).map_err(|source| ModelError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `value` to `path`, pretty-printed and ending in a newline as `transformers` writes
/// its files.
pub(crate) fn write<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|source| ModelError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    std::fs::write(path, text + "\n").map_err(|e| ModelError::io(path, e))
}

/// `num_attention_heads` must be positive and split `hidden_size` evenly.
pub(crate) fn check_heads_divide_hidden(
    hidden_size: usize,
    num_attention_heads: usize,
) -> Result<()> {
    if num_attention_heads == 0 || !hidden_size.is_multiple_of(num_attention_heads) {
        return Err(ModelError::unsupported(
            "num_attention_heads",
            format!(
                "hidden_size {hidden_size} is not a multiple of num_attention_heads {num_attention_heads}"
            ),
        ));
    }
    Ok(())
}

/// Every `(field, value)` must be positive; the first that is not is the error.
pub(crate) fn check_positive(fields: &[(&str, usize)]) -> Result<()> {
    match fields.iter().find(|(_, value)| *value == 0) {
        Some((field, _)) => Err(ModelError::unsupported(field, "must be positive")),
        None => Ok(()),
    }
}

/// Every `(field, probability)` must be a dropout probability in `[0, 1)`.
pub(crate) fn check_dropouts(fields: &[(&str, f64)]) -> Result<()> {
    match fields.iter().find(|(_, p)| !(0.0..1.0).contains(p)) {
        Some((field, _)) => Err(ModelError::unsupported(field, "dropout must be in [0, 1)")),
        None => Ok(()),
    }
}

/// HF's label names when a config gives only `num_labels`: `LABEL_0`, `LABEL_1`, ...
pub(crate) fn default_id2label(num_labels: usize) -> BTreeMap<usize, String> {
    (0..num_labels).map(|i| (i, format!("LABEL_{i}"))).collect()
}

/// `label2id` as `transformers` writes it: each name of `id2label` mapped back to its id.
pub(crate) fn label2id(id2label: &BTreeMap<usize, String>) -> Map<String, Value> {
    id2label
        .iter()
        .map(|(id, name)| (name.clone(), Value::from(*id)))
        .collect()
}

/// The label accessors of the encoder configs, which keep their labels by id in a public
/// `id2label: BTreeMap<usize, String>` field.
macro_rules! impl_label_methods {
    ($config:ty) => {
        impl $config {
            /// Outputs of the sequence-classification head.
            pub fn num_labels(&self) -> usize {
                self.id2label.len()
            }

            /// Sets `num_labels` with HF's default names `LABEL_i`.
            pub fn with_num_labels(mut self, num_labels: usize) -> Self {
                self.id2label = $crate::hf_json::default_id2label(num_labels.max(1));
                self
            }

            /// Sets named labels (id = position).
            pub fn with_labels<S: AsRef<str>>(mut self, labels: &[S]) -> Self {
                self.id2label = labels
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (i, s.as_ref().to_string()))
                    .collect();
                self
            }
        }
    };
}
pub(crate) use impl_label_methods;
