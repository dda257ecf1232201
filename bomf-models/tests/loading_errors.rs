//! Loading is strict: every deviation from the model's tensor set is an error naming the tensor,
//! and config options we do not implement are refused with the field's name.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use bomf_models::bert::Task;
use bomf_models::export::write_safetensors;
use bomf_models::weights::{self, load_bert};
use bomf_models::{BertConfig, HfTensor, ModelError};
use common::*;
use safetensors::Dtype;
use safetensors::tensor::TensorView;

/// Copies `bert_base` into a temp folder with its tensors transformed by `edit`.
fn edited_base(edit: impl FnOnce(&mut BTreeMap<String, HfTensor>)) -> tempfile::TempDir {
    let src = fixtures().join("bert_base");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
    let mut tensors = weights::read_checkpoint(&src).unwrap().tensors;
    edit(&mut tensors);
    let list: Vec<(String, HfTensor)> = tensors.into_iter().collect();
    write_safetensors(&dir.path().join("model.safetensors"), &list).unwrap();
    dir
}

/// `bert_base` with the tensors `extra` added (or replacing those of their names).
fn base_with(extra: Vec<(&str, HfTensor)>) -> tempfile::TempDir {
    edited_base(|t| {
        t.extend(
            extra
                .into_iter()
                .map(|(name, tensor)| (name.to_string(), tensor)),
        )
    })
}

/// A tensor of `shape` filled with `value`.
fn filled(shape: &[usize], value: f32) -> HfTensor {
    HfTensor::new(shape.to_vec(), vec![value; shape.iter().product()]).unwrap()
}

fn load_err(dir: &Path, task: Task) -> ModelError {
    match load_bert::<B>(dir, task, &Default::default()) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e,
    }
}

#[test]
fn missing_tensor_is_an_error_naming_it() {
    let dir = edited_base(|t| {
        t.remove("encoder.layer.1.attention.self.key.bias");
    });
    match load_err(dir.path(), Task::Base) {
        ModelError::MissingTensors { names } => {
            assert_eq!(names, ["encoder.layer.1.attention.self.key.bias"])
        }
        e => panic!("unexpected error {e}"),
    }
}

#[test]
fn unexpected_tensor_is_an_error_naming_it() {
    let extra = HfTensor::new(vec![2], vec![1.0, 2.0]).unwrap();
    let dir = base_with(vec![("encoder.layer.0.extra.weight", extra)]);
    let e = load_err(dir.path(), Task::Base);
    assert!(
        e.to_string().contains("encoder.layer.0.extra.weight"),
        "{e}"
    );
    assert!(matches!(e, ModelError::UnexpectedTensors { .. }));
}

#[test]
fn wrong_shape_is_an_error_naming_it() {
    let dir = base_with(vec![("pooler.dense.bias", filled(&[31], 0.0))]);
    match load_err(dir.path(), Task::Base) {
        ModelError::ShapeMismatch {
            name,
            expected,
            found,
        } => {
            assert_eq!(name, "pooler.dense.bias");
            assert_eq!(expected, [32]);
            assert_eq!(found, [31]);
        }
        e => panic!("unexpected error {e}"),
    }
}

#[test]
fn partially_present_head_is_an_error() {
    // A classifier bias without its weight cannot be a fresh head.
    let dir = base_with(vec![("classifier.bias", filled(&[2], 0.0))]);
    match load_err(dir.path(), Task::SequenceClassification) {
        ModelError::MissingTensors { names } => assert_eq!(names, ["classifier.weight"]),
        e => panic!("unexpected error {e}"),
    }
}

#[test]
fn position_ids_buffer_and_pretraining_heads_are_ignored() {
    let position_ids = HfTensor::new(vec![1, 4], vec![0.0, 1.0, 2.0, 3.0]).unwrap();
    let dir = base_with(vec![
        ("embeddings.position_ids", position_ids),
        ("cls.predictions.bias", filled(&[99], 0.0)),
    ]);
    let (_, _, report) = load_bert::<B>(dir.path(), Task::Base, &Default::default()).unwrap();
    assert_eq!(
        report.ignored,
        ["cls.predictions.bias", "embeddings.position_ids"]
    );
}

#[test]
fn prefixed_checkpoint_loads_into_a_base_model() {
    // Checkpoints saved from a model with a head carry the `bert.` prefix.
    let dir = edited_base(|t| {
        *t = std::mem::take(t)
            .into_iter()
            .map(|(k, v)| (format!("bert.{k}"), v))
            .collect();
    });
    let e = expected("bert");
    let (model, _, _) = load_bert::<B>(dir.path(), Task::Base, &Default::default()).unwrap();
    let out = model
        .base
        .forward(&input(&e["inputs"], &Default::default()));
    assert_close(
        "hidden",
        out.last_hidden_state,
        &e["base"]["last_hidden_state"],
        1e-4,
    );
}

#[test]
fn half_precision_weights_are_converted_to_f32() {
    let src = weights::read_checkpoint(fixtures().join("bert_base"))
        .unwrap()
        .tensors;
    let dir = tempfile::tempdir().unwrap();
    for (dtype, file) in [
        (Dtype::F16, "f16.safetensors"),
        (Dtype::BF16, "bf16.safetensors"),
    ] {
        let encoded: Vec<(String, Vec<usize>, Vec<u8>)> = src
            .iter()
            .map(|(n, t)| {
                let bytes = t
                    .data
                    .iter()
                    .flat_map(|&x| match dtype {
                        Dtype::F16 => half::f16::from_f32(x).to_le_bytes(),
                        _ => half::bf16::from_f32(x).to_le_bytes(),
                    })
                    .collect();
                (n.clone(), t.shape.clone(), bytes)
            })
            .collect();
        let views: Vec<(String, TensorView)> = encoded
            .iter()
            .map(|(n, s, b)| (n.clone(), TensorView::new(dtype, s.clone(), b).unwrap()))
            .collect();
        let path = dir.path().join(file);
        safetensors::serialize_to_file(views, None, &path).unwrap();
        let back = weights::read_safetensors(&path).unwrap().tensors;
        for (name, t) in &src {
            let got = &back[name];
            assert_eq!(got.shape, t.shape);
            for (g, x) in got.data.iter().zip(&t.data) {
                let rounded = match dtype {
                    Dtype::F16 => half::f16::from_f32(*x).to_f32(),
                    _ => half::bf16::from_f32(*x).to_f32(),
                };
                assert_eq!(*g, rounded, "{name}");
            }
        }
    }
}

#[test]
fn integer_weights_and_non_finite_values_are_errors_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, dtype: Dtype, bytes: &[u8], len: usize| {
        let path = dir.path().join(format!("{name}.safetensors"));
        let view = TensorView::new(dtype, vec![len], bytes).unwrap();
        safetensors::serialize_to_file(vec![(name.to_string(), view)], None, &path).unwrap();
        path
    };
    // An integer weight (values that cast to plausible floats) is refused, not cast.
    let ints: Vec<u8> = [1_000_000_000i32, -7]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let path = write(
        "encoder.layer.0.attention.self.query.weight",
        Dtype::I32,
        &ints,
        2,
    );
    match weights::read_safetensors(&path) {
        Err(ModelError::IntegerWeight { name, dtype }) => {
            assert_eq!(name, "encoder.layer.0.attention.self.query.weight");
            assert_eq!(dtype, "I32");
        }
        other => panic!("{other:?}"),
    }
    // An integer buffer is still read (and ignored when loading).
    let ids: Vec<u8> = [0i64, 1, 2].iter().flat_map(|v| v.to_le_bytes()).collect();
    let path = write("embeddings.position_ids", Dtype::I64, &ids, 3);
    let buffer = weights::read_safetensors(&path).unwrap();
    assert_eq!(
        buffer.tensors["embeddings.position_ids"].data,
        [0.0, 1.0, 2.0]
    );
    // NaN or infinity anywhere in a weight is refused with its name and place.
    for (bad, shown) in [(f32::NAN, "NaN"), (f32::INFINITY, "inf")] {
        let values: Vec<u8> = [0.5f32, bad].iter().flat_map(|v| v.to_le_bytes()).collect();
        let path = write("classifier.weight", Dtype::F32, &values, 2);
        let err = weights::read_safetensors(&path).unwrap_err();
        assert!(
            matches!(err, ModelError::NonFinite { index: 1, .. }),
            "{err}"
        );
        let message = err.to_string();
        assert!(
            message.contains("classifier.weight") && message.contains(shown),
            "{message}"
        );
    }
    // A whole model folder with one NaN weight does not load.
    let dir = edited_base(|t| {
        let bias = t.get_mut("encoder.layer.1.output.dense.bias").unwrap();
        bias.data[3] = f32::NAN;
    });
    let err = load_err(dir.path(), Task::Base).to_string();
    assert!(err.contains("encoder.layer.1.output.dense.bias"), "{err}");
}

#[test]
fn folder_without_weights_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        weights::read_checkpoint(dir.path()),
        Err(ModelError::NoWeights { .. })
    ));
}

fn config_with(
    edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> Result<BertConfig, ModelError> {
    let mut v = read_json(&fixtures().join("bert_base/config.json"));
    edit(v.as_object_mut().unwrap());
    BertConfig::from_json(v)
}

fn unsupported_field(r: Result<BertConfig, ModelError>) -> String {
    match r {
        Err(ModelError::UnsupportedConfig { field, .. }) => field,
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("config should be refused"),
    }
}

#[test]
fn unsupported_config_options_are_refused_by_field() {
    let cases: [(&str, serde_json::Value); 6] = [
        ("position_embedding_type", "relative_key".into()),
        ("is_decoder", true.into()),
        ("hidden_act", "mish".into()),
        ("model_type", "t5".into()),
        ("num_attention_heads", 5.into()),
        ("hidden_size", "big".into()),
    ];
    for (field, value) in cases {
        let config = config_with(|c| {
            c.insert(field.into(), value);
        });
        assert_eq!(unsupported_field(config), field);
    }
}

#[test]
fn labels_and_problem_type_follow_transformers() {
    let c = config_with(|_| {}).unwrap();
    assert_eq!(c.num_labels(), 2); // transformers' default
    let c = config_with(|c| {
        c.insert(
            "id2label".into(),
            serde_json::json!({"0": "neg", "1": "neu", "2": "pos"}),
        );
    })
    .unwrap();
    assert_eq!(c.num_labels(), 3);
    assert_eq!(
        c.effective_problem_type(),
        bomf_models::bert::ProblemType::SingleLabelClassification
    );
    assert_eq!(
        c.with_num_labels(1).effective_problem_type(),
        bomf_models::bert::ProblemType::Regression
    );
}
