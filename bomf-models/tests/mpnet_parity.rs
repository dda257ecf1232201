//! MPNet against `transformers`: the base encoder, the classification and regression heads,
//! losses, gradients through the padding rows and the position bias, two AdamW steps, loading
//! across checkpoint kinds and export, compared with the fixtures written by
//! `tests/fixtures/gen_mpnet.py`; and the real all-mpnet-base-v2 from the assets folder
//! (`cargo xtask assets --only mpnet && cargo test -p bomf-models --test mpnet_parity`).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bomf_models::bert::{ProblemType, SequenceClassifier};
use bomf_models::mpnet::{self, MpnetConfig, MpnetForSequenceClassification, PADDING_IDX};
use bomf_models::params::{self, Coverage, HfTensor, named_gradients};
use bomf_models::weights;
use burn::tensor::Tensor;
use common::*;
use serde_json::Value;

/// fp32 tolerance of every comparison with PyTorch (max abs diff).
const TOL: f32 = 1e-4;

fn dir(folder: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/mpnet")
        .join(folder)
}

fn expected() -> Value {
    read_json(&dir("expected_mpnet.json"))
}

fn load_seqcls<Bk: burn::tensor::backend::Backend>(
    folder: &str,
    dropout: bool,
) -> MpnetForSequenceClassification<Bk> {
    let path = dir(folder);
    let config = MpnetConfig::from_file(path.join("config.json")).unwrap();
    let config = if dropout {
        config
    } else {
        config.without_dropout()
    };
    let device = Default::default();
    let (model, report) =
        mpnet::load_mpnet_for_sequence_classification_with_config::<Bk>(&path, &config, &device)
            .unwrap();
    assert!(
        report.freshly_initialised.is_empty(),
        "{folder}: {report:?}"
    );
    model
}

#[test]
fn base_model_matches_transformers() {
    let e = expected();
    let device = Default::default();
    let (model, config, report) = mpnet::load_mpnet::<B>(dir("mpnet_base"), &device).unwrap();
    assert_eq!(config.num_hidden_layers, 2);
    assert!(
        report.freshly_initialised.is_empty() && report.ignored.is_empty(),
        "{report:?}"
    );
    let out = model.forward(&input(&e["inputs"], &device)).unwrap();
    assert_base_outputs(
        "mpnet_base",
        out.last_hidden_state,
        out.pooled.unwrap(),
        &e["base"],
        TOL,
    );
}

#[test]
fn sequence_classification_matches_transformers() {
    let e = expected();
    let device = Default::default();
    let (model, config, _) =
        mpnet::load_mpnet_for_sequence_classification::<B>(dir("mpnet_seqcls"), &device).unwrap();
    assert_eq!((config.num_labels(), model.num_labels()), (3, 3));
    assert_eq!(model.problem_type(), ProblemType::SingleLabelClassification);
    let logits = model
        .sequence_logits(&input(&e["inputs"], &device))
        .unwrap();
    let d = assert_logits_and_loss(logits, &e["seqcls"], TOL, |logits, labels| {
        model.classification_loss(logits, int_tensor(labels, &device))
    });
    println!("mpnet_seqcls: max abs diff logits {d:e}");
}

#[test]
fn regression_matches_transformers() {
    let e = expected();
    let device = Default::default();
    let model = load_seqcls::<B>("mpnet_regression", true);
    assert_eq!(model.problem_type(), ProblemType::Regression);
    let logits = model
        .sequence_logits(&input(&e["inputs"], &device))
        .unwrap();
    assert_logits_and_loss(logits, &e["regression"], TOL, |logits, labels| {
        model.regression_loss(logits, float_tensor(labels, &device))
    });
}

/// Fine-tuning starts from a base checkpoint: the head is fresh, the pooler ignored, the
/// encoder the checkpoint's (its tensors gain the `mpnet.` prefix).
#[test]
fn head_from_a_base_checkpoint_is_fresh_and_the_encoder_loaded() {
    let e = expected();
    let device = Default::default();
    let path = dir("mpnet_base");
    let config = MpnetConfig::from_file(path.join("config.json"))
        .unwrap()
        .with_num_labels(4);
    let (model, report) =
        mpnet::load_mpnet_for_sequence_classification_with_config::<B>(&path, &config, &device)
            .unwrap();
    assert_eq!(
        report.freshly_initialised,
        [
            "classifier.dense.bias",
            "classifier.dense.weight",
            "classifier.out_proj.bias",
            "classifier.out_proj.weight"
        ]
    );
    assert_eq!(report.ignored, ["pooler.dense.bias", "pooler.dense.weight"]);
    let hidden = model
        .base
        .forward(&input(&e["inputs"], &device))
        .unwrap()
        .last_hidden_state;
    assert_close(
        "encoder from a base checkpoint",
        hidden,
        &e["base"]["last_hidden_state"],
        TOL,
    );
    let logits = model
        .sequence_logits(&input(&e["inputs"], &device))
        .unwrap();
    assert_eq!(logits.dims(), [3, 4]);
}

/// The other way round: the bare encoder from a classifier's checkpoint drops the `mpnet.`
/// prefix, ignores the head and gets a fresh pooler.
#[test]
fn base_model_from_a_classifier_checkpoint_gets_a_fresh_pooler() {
    let device = Default::default();
    let (_, _, report) = mpnet::load_mpnet::<B>(dir("mpnet_seqcls"), &device).unwrap();
    assert_eq!(
        report.freshly_initialised,
        ["pooler.dense.bias", "pooler.dense.weight"]
    );
    assert!(
        report.ignored.iter().all(|n| n.starts_with("classifier.")),
        "{report:?}"
    );
}

/// A loss over every position reaches the padded ones: like PyTorch's `padding_idx`, row 1 of
/// both embedding tables gets no gradient; every other row, and the position-bias table, gets
/// exactly PyTorch's.
#[test]
fn embedding_and_position_bias_gradients_match_and_skip_the_padding_rows() {
    let e = expected();
    let g = &e["padded_gradients"];
    let device = Default::default();
    let path = dir("mpnet_base");
    let config = MpnetConfig::from_file(path.join("config.json"))
        .unwrap()
        .without_dropout();
    let (model, _) = mpnet::load_mpnet_with_config::<AB>(&path, &config, &device).unwrap();
    let out = model
        .forward(&input(&e["inputs"], &device))
        .unwrap()
        .last_hidden_state;
    let (_, w) = flat(&g["output_weights"]);
    let w = Tensor::<AB, 1>::from_floats(w.as_slice(), &device).reshape([1, 1, w.len()]);
    let named = named_gradients(&model, &(out * w).sum().backward()).unwrap();
    for (name, expected) in g["grads"].as_object().unwrap() {
        let (_, grad) = named.iter().find(|(n, _)| n == name).unwrap();
        let diff = max_abs_diff(&grad.data, &flat(expected).1);
        println!("grad {name}: max diff {diff:e}");
        assert!(diff <= TOL, "grad {name}: max diff {diff:e}");
        if name.contains("embeddings") {
            let row = &grad.data[PADDING_IDX * config.hidden_size..][..config.hidden_size];
            assert!(row.iter().all(|&x| x == 0.0), "{name}: padding row");
        }
    }
}

/// Two AdamW steps (no dropout) against PyTorch: losses, first-step gradients and the weights
/// after the second step.
#[test]
fn training_steps_match_pytorch() {
    let e = expected();
    let model = load_seqcls::<AB>("mpnet_seqcls", false);
    check_classifier_training(
        "mpnet",
        model,
        &e,
        TOL,
        |model: &MpnetForSequenceClassification<AB>, inputs, labels| {
            model.classification_loss(model.sequence_logits(inputs).unwrap(), labels)
        },
    );
}

/// A fused classifier (θ = 0.6 θ_a + 0.4 θ_b) exported and read back gives the same logits,
/// under the checkpoint's own tensor names, with its labels.
#[test]
fn a_fused_classifier_exports_under_hf_names_and_reloads_unchanged() {
    let e = expected();
    let device = Default::default();
    let a = load_seqcls::<B>("mpnet_seqcls", true);
    let config = MpnetConfig::from_file(dir("mpnet_seqcls").join("config.json"))
        .unwrap()
        .with_labels(&["negative", "neutral", "positive"]);
    let (b, _) = mpnet::load_mpnet_for_sequence_classification_with_config::<B>(
        dir("mpnet_base"),
        &config,
        &device,
    )
    .unwrap();
    let fused = params::weighted_sum(&[a, b], &[0.6, 0.4]).unwrap();
    let out = tempfile::tempdir().unwrap();
    mpnet::export_mpnet(&fused, &config, out.path(), None).unwrap();

    let stored: Vec<String> = weights::read_checkpoint(dir("mpnet_seqcls"))
        .unwrap()
        .tensors
        .into_keys()
        .filter(|n| !n.ends_with("position_ids"))
        .collect();
    let exported: Vec<String> = weights::read_checkpoint(out.path())
        .unwrap()
        .tensors
        .into_keys()
        .collect();
    assert_eq!(exported, stored);

    let (back, back_config, report) =
        mpnet::load_mpnet_for_sequence_classification::<B>(out.path(), &device).unwrap();
    assert!(report.freshly_initialised.is_empty() && report.ignored.is_empty());
    assert_eq!(back_config.id2label[&2], "positive");
    let inputs = input(&e["inputs"], &device);
    let (_, want) = to_vec(fused.sequence_logits(&inputs).unwrap());
    let (_, got) = to_vec(back.sequence_logits(&inputs).unwrap());
    assert_eq!(got, want);

    let wrong = config.with_num_labels(2);
    let err = mpnet::export_mpnet(&fused, &wrong, out.path(), None).unwrap_err();
    assert!(err.to_string().contains("labels"), "{err}");
}

#[test]
fn a_bert_folder_is_refused_naming_model_type() {
    let device = Default::default();
    let bert = fixtures().join("bert_base");
    let err = mpnet::load_mpnet::<B>(&bert, &device).unwrap_err();
    assert!(err.to_string().contains("model_type"), "{err}");
}

/// The real all-mpnet-base-v2, when `cargo xtask assets` installed it: `None` (skipped) when
/// absent, unless `BOMF_REQUIRE_ASSETS` asks for every asset.
fn real_mpnet_dir() -> Option<PathBuf> {
    let root = std::env::var_os("BOMF_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.bomf/assets"));
    let root = if root.is_relative() {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(root)
    } else {
        root
    };
    let dir = root.join("mpnet");
    if dir.join("model.safetensors").is_file() {
        return Some(dir);
    }
    let required = std::env::var("BOMF_REQUIRE_ASSETS").is_ok_and(|v| {
        !matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "" | "0" | "false" | "no"
        )
    });
    assert!(
        !required,
        "BOMF_REQUIRE_ASSETS is set but MPNet is not at {} (run `cargo xtask assets --only mpnet`)",
        dir.display()
    );
    println!(
        "skipped: MPNet not found at {} (run `cargo xtask assets --only mpnet`)",
        dir.display()
    );
    None
}

/// The classifier weights `gen_mpnet.py` gives the real model: `0.05 sin(0.37 r + 0.11 c + k)`.
fn formula_head(hidden: usize, labels: usize) -> BTreeMap<String, HfTensor> {
    let grid = |rows: usize, cols: usize, k: f64| {
        let data = (0..rows * cols)
            .map(|i| {
                let (r, c) = ((i / cols) as f64, (i % cols) as f64);
                (0.05 * (r * 0.37 + c * 0.11 + k).sin()) as f32
            })
            .collect();
        HfTensor::new(vec![rows, cols], data).unwrap()
    };
    let vector = |n: usize, k: f64| HfTensor::new(vec![n], grid(1, n, k).data).unwrap();
    BTreeMap::from([
        ("classifier.dense.weight".into(), grid(hidden, hidden, 0.0)),
        ("classifier.dense.bias".into(), vector(hidden, 1.0)),
        (
            "classifier.out_proj.weight".into(),
            grid(labels, hidden, 2.0),
        ),
        ("classifier.out_proj.bias".into(), vector(labels, 3.0)),
    ])
}

#[test]
fn real_all_mpnet_base_v2_matches_transformers() {
    let Some(real) = real_mpnet_dir() else { return };
    let e = read_json(&dir("mpnet_real_expected.json"));
    let device = Default::default();
    let inputs = input(&e["inputs"], &device);
    let (model, config, report) = mpnet::load_mpnet::<B>(&real, &device).unwrap();
    assert_eq!((config.hidden_size, config.num_hidden_layers), (768, 12));
    assert_eq!(report.ignored, ["embeddings.position_ids"]);
    let out = model.forward(&inputs).unwrap();
    let hidden = out.last_hidden_state;
    let [batch, seq, _] = hidden.dims();
    let width = flat(&e["hidden_head"]).0[2];
    let h = assert_close(
        "real last hidden state (first dimensions)",
        hidden.clone().slice([0..batch, 0..seq, 0..width]),
        &e["hidden_head"],
        TOL,
    );
    // Every dimension of every token, through its norm (a relative tolerance: norms are ~10).
    let norms = hidden.square().sum_dim(2).sqrt().reshape([batch, seq]);
    let (_, got) = to_vec(norms);
    let (_, want) = flat(&e["hidden_norms"]);
    let n = got
        .iter()
        .zip(&want)
        .map(|(g, w)| (g - w).abs() / w.abs().max(1.0))
        .fold(0.0, f32::max);
    assert!(n <= TOL, "real hidden-state norms: max relative diff {n:e}");
    let p = assert_close("real pooled", out.pooled.unwrap(), &e["pooled"], TOL);
    drop(model);

    let labels = e["num_labels"].as_u64().unwrap() as usize;
    let config = config.with_num_labels(labels);
    let (model, _) =
        mpnet::load_mpnet_for_sequence_classification_with_config::<B>(&real, &config, &device)
            .unwrap();
    let head = formula_head(config.hidden_size, labels);
    let model = params::set_tensors(model, &head, Coverage::Partial, &device).unwrap();
    let logits = model.sequence_logits(&inputs).unwrap();
    let l = assert_close("real logits", logits, &e["logits"], TOL);
    println!(
        "all-mpnet-base-v2: max abs diff hidden {h:e}, pooled {p:e}, logits {l:e}; norms rel {n:e}"
    );
}
