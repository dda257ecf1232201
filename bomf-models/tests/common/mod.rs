//! Shared helpers of the integration tests: fixture paths, JSON → tensors, comparisons.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bomf_models::params::{self, named_gradients};
use bomf_models::weights::read_safetensors;
use bomf_models::{CausalLmInput, EarlyStopping, EncoderInput, HfNamed, HfTensor};
use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor};
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
    let shape = serde_json::from_value(v["shape"].clone()).expect("shape");
    let data = serde_json::from_value(v["data"].clone()).expect("data");
    (shape, data)
}

fn int_rows(v: &Value) -> (Vec<i64>, usize, usize) {
    let rows = rows(v);
    let cols = rows[0].len();
    (rows.concat(), rows.len(), cols)
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

/// Asserts an encoder's outputs, `last_hidden_state` and `pooled`, against the fixture's
/// `expected` (its `base` entry); prints both diffs under `what`.
pub fn assert_base_outputs<Bk: Backend>(
    what: &str,
    last_hidden_state: Tensor<Bk, 3>,
    pooled: Tensor<Bk, 2>,
    expected: &Value,
    tol: f32,
) {
    let hidden = assert_close(
        "last_hidden_state",
        last_hidden_state,
        &expected["last_hidden_state"],
        tol,
    );
    let pooled = assert_close("pooled", pooled, &expected["pooled"], tol);
    println!("{what}: max abs diff hidden {hidden:e}, pooled {pooled:e}");
}

/// Asserts a head's `logits`, and the loss `loss_of(logits, labels)` computes from them and the
/// fixture's `expected["labels"]`, against `expected["logits"]` and `expected["loss"]`; returns
/// the logits' max abs diff.
pub fn assert_logits_and_loss<Bk: Backend>(
    logits: Tensor<Bk, 2>,
    expected: &Value,
    tol: f32,
    loss_of: impl FnOnce(Tensor<Bk, 2>, &Value) -> Tensor<Bk, 1>,
) -> f32 {
    let diff = assert_close("logits", logits.clone(), &expected["logits"], tol);
    let loss = loss_of(logits, &expected["labels"]);
    assert_scalar("loss", loss, &expected["loss"], tol);
    diff
}

pub fn assert_scalar(what: &str, got: Tensor<impl Backend, 1>, expected: &Value, tol: f32) {
    let (_, v) = to_vec(got);
    let e = expected.as_f64().unwrap() as f32;
    assert!((v[0] - e).abs() <= tol, "{what}: {} vs expected {e}", v[0]);
}

pub fn int_tensor<Bk: Backend>(v: &Value, device: &Bk::Device) -> Tensor<Bk, 1, burn::tensor::Int> {
    let data = ints(v);
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

/// Integers as JSON holds them (`[..]`).
pub fn ints(v: &Value) -> Vec<i64> {
    serde_json::from_value(v.clone()).expect("a list of integers")
}

/// Rows of integers as JSON holds them (`[[..], ..]`).
pub fn rows(v: &Value) -> Vec<Vec<i64>> {
    serde_json::from_value(v.clone()).expect("rows of integers")
}

/// `{"input_ids": rows, "attention_mask": rows}` as a causal-LM input.
pub fn causal_input(v: &Value) -> CausalLmInput {
    CausalLmInput {
        input_ids: rows(&v["input_ids"]),
        attention_mask: rows(&v["attention_mask"]),
    }
}

/// Max abs diff over the logits of real tokens only (`mask` 1): padded query rows are undefined
/// in HF (it fills them with whatever a fully-masked softmax gives).
pub fn real_token_diff(got: &[f32], want: &[f32], mask: &[Vec<i64>], vocab: usize) -> f32 {
    let mut diff = 0.0f32;
    for (b, row) in mask.iter().enumerate() {
        for (t, &m) in row.iter().enumerate() {
            if m == 1 {
                let at = (b * row.len() + t) * vocab;
                diff = diff.max(max_abs_diff(&got[at..at + vocab], &want[at..at + vocab]));
            }
        }
    }
    diff
}

/// transformers' `early_stopping` setting (`false`, `true` or `"never"`).
pub fn early_stopping(v: &Value) -> EarlyStopping {
    match v {
        Value::Bool(false) => EarlyStopping::Heuristic,
        Value::Bool(true) => EarlyStopping::WhenFinished,
        Value::String(s) if s == "never" => EarlyStopping::Never,
        other => panic!("early_stopping {other}"),
    }
}

/// Tensors by name from a fixture's JSON object of `{"shape": [...], "data": [...]}`.
pub fn json_tensors(v: &Value) -> BTreeMap<String, HfTensor> {
    v.as_object()
        .expect("an object of tensors")
        .iter()
        .map(|(name, t)| {
            let (shape, data) = flat(t);
            (name.clone(), HfTensor::new(shape, data).unwrap())
        })
        .collect()
}

/// Tensors by name from the safetensors `file`, those whose name starts with `prefix` (dropped).
pub fn file_tensors(file: &Path, prefix: &str) -> BTreeMap<String, HfTensor> {
    read_safetensors(file)
        .unwrap()
        .tensors
        .into_iter()
        .filter_map(|(n, t)| n.strip_prefix(prefix).map(|n| (n.to_string(), t)))
        .collect()
}

/// Asserts every reference tensor in `want` has a tensor of its name and shape in `got` within
/// `tol` (max abs diff); returns the largest diff.
pub fn assert_tensors_close(
    what: &str,
    got: &[(String, HfTensor)],
    want: &BTreeMap<String, HfTensor>,
    tol: f32,
) -> f32 {
    let mut worst = 0.0f32;
    for (name, w) in want {
        let (_, g) = got
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{what}: no tensor {name}"));
        assert_eq!(g.shape, w.shape, "{what}: {name}");
        let diff = max_abs_diff(&g.data, &w.data);
        assert!(diff <= tol, "{what} {name}: max diff {diff:e}");
        worst = worst.max(diff);
    }
    println!("{what}: {} tensors, max diff {worst:e}", want.len());
    worst
}

/// torch's AdamW with a fixture's hyper-parameters (`eps`, `weight_decay`, and `betas` where
/// it names them).
pub fn adamw(t: &Value) -> AdamWConfig {
    let config = AdamWConfig::new()
        .with_epsilon(t["eps"].as_f64().unwrap() as f32)
        .with_weight_decay(t["weight_decay"].as_f64().unwrap() as f32);
    match t["betas"].as_array() {
        Some(b) => config
            .with_beta_1(b[0].as_f64().unwrap() as f32)
            .with_beta_2(b[1].as_f64().unwrap() as f32),
        None => config,
    }
}

/// Two AdamW steps of `model` at the fixture's `lr` (see [`adamw`]) on the loss `loss` gives:
/// `check(step, model, loss, gradients)` before each update; returns the model after both.
pub fn two_adamw_steps<M: AutodiffModule<AB>>(
    mut model: M,
    t: &Value,
    loss: impl Fn(&M) -> Tensor<AB, 1>,
    mut check: impl FnMut(usize, &M, Tensor<AB, 1>, &<AB as AutodiffBackend>::Gradients),
) -> M {
    let mut optim = adamw(t).init::<AB, M>();
    let lr = t["lr"].as_f64().unwrap();
    for step in 0..2 {
        let loss = loss(&model);
        let grads = loss.backward();
        check(step, &model, loss, &grads);
        let grads = GradientsParams::from_grads(grads, &model);
        model = optim.step(lr, model, grads);
    }
    model
}

/// Two AdamW steps (see [`two_adamw_steps`]) against a fixture's `train` block `t`:
/// `check_loss(what, loss, want)` on each step's loss against `t["losses"]`, the first step's
/// gradients against `t["grads_step1"]`, the weights after the second against
/// `t["weights_after"]`, each within `tol`.
pub fn check_training_steps<M: AutodiffModule<AB> + HfNamed<AB>>(
    what: &str,
    model: M,
    t: &Value,
    tol: f32,
    loss: impl Fn(&M) -> Tensor<AB, 1>,
    check_loss: impl Fn(&str, Tensor<AB, 1>, &Value),
) {
    let model = two_adamw_steps(model, t, loss, |step, model, loss, grads| {
        check_loss(
            &format!("{what}: loss at step {step}"),
            loss,
            &t["losses"][step],
        );
        if step == 0 {
            let named = named_gradients(model, grads).unwrap();
            let want = json_tensors(&t["grads_step1"]);
            assert_tensors_close(&format!("{what}: grads"), &named, &want, tol);
        }
    });
    let named = params::named_tensors(&model).unwrap();
    let want = json_tensors(&t["weights_after"]);
    assert_tensors_close(
        &format!("{what}: weights after 2 steps"),
        &named,
        &want,
        tol,
    );
}

/// [`check_training_steps`] of a sequence classifier on an encoder fixture `e`: the loss is what
/// `loss_of(model, inputs, labels)` computes from `e["inputs"]` and `e["seqcls"]["labels"]`.
pub fn check_classifier_training<M: AutodiffModule<AB> + HfNamed<AB>>(
    what: &str,
    model: M,
    e: &Value,
    tol: f32,
    loss_of: impl Fn(&M, &EncoderInput<AB>, Tensor<AB, 1, Int>) -> Tensor<AB, 1>,
) {
    let device = Default::default();
    let inputs = input::<AB>(&e["inputs"], &device);
    let labels = int_tensor::<AB>(&e["seqcls"]["labels"], &device);
    check_training_steps(
        what,
        model,
        &e["train"],
        tol,
        |model: &M| loss_of(model, &inputs, labels.clone()),
        |what, loss, want| assert_scalar(what, loss, want, tol),
    );
}

/// One `#[test]` function per case, each calling `check` with its arguments:
/// `tests_of!(check { name_a("bert"), name_b("roberta") });`.
#[macro_export]
macro_rules! tests_of {
    ($check:ident { $($name:ident ( $($arg:expr),* )),+ $(,)? }) => {
        $(
            #[test]
            fn $name() {
                $check($($arg),*);
            }
        )+
    };
}
