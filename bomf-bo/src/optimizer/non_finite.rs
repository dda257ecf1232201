//! Serde for `Vec<f64>` that keeps non-finite values: written as the strings `"nan"`, `"inf"`,
//! `"-inf"` (JSON has no such numbers); read back from those strings, from `null` (as NaN), or
//! from numbers.

use serde::de::Error;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Value {
    Number(f64),
    Text(String),
    Null(()),
}

pub fn serialize<S: Serializer>(values: &[f64], s: S) -> Result<S::Ok, S::Error> {
    let out: Vec<Value> = values
        .iter()
        .map(|&v| {
            if v.is_finite() {
                Value::Number(v)
            } else if v.is_nan() {
                Value::Text("nan".into())
            } else if v > 0.0 {
                Value::Text("inf".into())
            } else {
                Value::Text("-inf".into())
            }
        })
        .collect();
    out.serialize(s)
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    let raw: Vec<Value> = Vec::deserialize(d)?;
    raw.into_iter()
        .map(|v| match v {
            Value::Number(x) => Ok(x),
            Value::Null(()) => Ok(f64::NAN),
            Value::Text(t) => match t.to_ascii_lowercase().as_str() {
                "nan" => Ok(f64::NAN),
                "inf" | "+inf" | "infinity" => Ok(f64::INFINITY),
                "-inf" | "-infinity" => Ok(f64::NEG_INFINITY),
                _ => Err(D::Error::custom(format!(
                    "expected a number, null, \"nan\", \"inf\" or \"-inf\", got \"{t}\""
                ))),
            },
        })
        .collect()
}
