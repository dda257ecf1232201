//! Shared helpers of the integration tests: fixture paths, JSON → tensors, comparisons.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use bomf_models::EncoderInput;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use serde_json::Value;

pub type B = bomf_models::CpuBackend;
pub type AB = bomf_models::CpuAutodiffBackend;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/encoder")
}

pub fn expected(flavor: &str) -> Value {
    read_json(&fixtures().join(format!("expected_{flavor}.json")))
}

pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `{"shape": [...], "data": [...]}` → (shape, data).
pub fn flat(v: &Value) -> (Vec<usize>, Vec<f32>) {
    let shape = v["shape"]
        .as_array()
        .expect("shape")
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    let data = v["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    (shape, data)
}

fn int_rows(v: &Value) -> (Vec<i64>, usize, usize) {
    let rows = v.as_array().expect("rows");
    let cols = rows[0].as_array().unwrap().len();
    let data = rows
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()))
        .collect();
    (data, rows.len(), cols)
}

/// The fixture inputs as an [`EncoderInput`].
pub fn input<Bk: Backend>(inputs: &Value, device: &Bk::Device) -> EncoderInput<Bk> {
    let (ids, batch, seq) = int_rows(&inputs["input_ids"]);
    let (mask, _, _) = int_rows(&inputs["attention_mask"]);
    let tt = (!inputs["token_type_ids"].is_null()).then(|| int_rows(&inputs["token_type_ids"]).0);
    EncoderInput::from_rows(&ids, &mask, tt.as_deref(), batch, seq, device).unwrap()
}

pub fn to_vec<Bk: Backend, const D: usize>(t: Tensor<Bk, D>) -> (Vec<usize>, Vec<f32>) {
    let shape = t.dims().to_vec();
    (
        shape,
        t.into_data().convert::<f32>().into_vec::<f32>().unwrap(),
    )
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Asserts a tensor equals a fixture within `tol` (max abs diff); returns the diff.
pub fn assert_close<Bk: Backend, const D: usize>(
    what: &str,
    got: Tensor<Bk, D>,
    expected: &Value,
    tol: f32,
) -> f32 {
    let (shape, data) = to_vec(got);
    let (eshape, edata) = flat(expected);
    assert_eq!(shape, eshape, "{what}: shape");
    let diff = max_abs_diff(&data, &edata);
    assert!(diff <= tol, "{what}: max abs diff {diff:e} > {tol:e}");
    diff
}

pub fn assert_scalar(what: &str, got: Tensor<impl Backend, 1>, expected: &Value, tol: f32) {
    let (_, v) = to_vec(got);
    let e = expected.as_f64().unwrap() as f32;
    assert!((v[0] - e).abs() <= tol, "{what}: {} vs expected {e}", v[0]);
}

pub fn int_tensor<Bk: Backend>(v: &Value, device: &Bk::Device) -> Tensor<Bk, 1, burn::tensor::Int> {
    let data: Vec<i64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    let n = data.len();
    Tensor::from_data(burn::tensor::TensorData::new(data, [n]), device)
}

pub fn float_tensor<Bk: Backend>(v: &Value, device: &Bk::Device) -> Tensor<Bk, 1> {
    let data: Vec<f32> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    let n = data.len();
    Tensor::from_data(burn::tensor::TensorData::new(data, [n]), device)
}
