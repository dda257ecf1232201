//! Parameter enumeration by HF name, assignment, weighted sums (the fusion primitive), freezing,
//! and export → re-load.

mod common;

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use bomf_models::bert::Task;
use bomf_models::params::{self, Coverage};
use bomf_models::weights::{self, load_bert};
use bomf_models::{BertConfig, BertWithHead, SequenceClassifier, export};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use common::*;

fn roberta_seqcls<Bk: burn::tensor::backend::Backend>() -> (BertWithHead<Bk>, BertConfig) {
    let (m, c, _) = load_bert::<Bk>(
        fixtures().join("roberta_seqcls"),
        Task::SequenceClassification,
        &Default::default(),
    )
    .unwrap();
    (m, c)
}

/// The backend's RNG is one per process and the tests of this file run in parallel: a fresh model
/// (or dropout) in one test would move the RNG under `loading_a_full_checkpoint_draws_nothing_…`.
/// Every test holds this lock.
fn rng_lock() -> MutexGuard<'static, ()> {
    static RNG: Mutex<()> = Mutex::new(());
    RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn names_and_shapes_are_exactly_the_checkpoints() {
    let _rng = rng_lock();
    let (model, _) = roberta_seqcls::<B>();
    let ours: BTreeMap<String, Vec<usize>> = params::param_shapes(&model).into_iter().collect();
    let stored: BTreeMap<String, Vec<usize>> =
        weights::read_checkpoint(fixtures().join("roberta_seqcls"))
            .unwrap()
            .tensors
            .into_iter()
            .map(|(n, t)| (n, t.shape))
            .collect();
    assert_eq!(ours, stored);
    assert_eq!(
        ours["roberta.encoder.layer.0.intermediate.dense.weight"],
        [37, 32]
    );
    assert_eq!(
        ours["roberta.encoder.layer.1.attention.self.query.weight"],
        [32, 32]
    );
    assert_eq!(ours["classifier.out_proj.weight"], [3, 32]);
}

#[test]
fn named_tensors_equal_the_checkpoint_data() {
    let _rng = rng_lock();
    let (model, _) = roberta_seqcls::<B>();
    let stored = weights::read_checkpoint(fixtures().join("roberta_seqcls"))
        .unwrap()
        .tensors;
    for (name, t) in params::named_tensors(&model).unwrap() {
        assert_eq!(&t, &stored[&name], "{name}");
    }
}

#[test]
fn set_tensors_round_trips_and_rejects_bad_input() {
    let _rng = rng_lock();
    let (model, config) = roberta_seqcls::<B>();
    let tensors: BTreeMap<_, _> = params::named_tensors(&model).unwrap().into_iter().collect();
    let device = Default::default();
    let fresh = BertWithHead::<B>::new(&config, Task::SequenceClassification, &device);
    let restored = params::set_tensors(fresh, &tensors, Coverage::All, &device).unwrap();
    let e = expected("roberta");
    let logits = restored
        .sequence_logits(&input(&e["inputs"], &device))
        .unwrap();
    assert_close(
        "logits after set_tensors",
        logits,
        &e["seqcls"]["logits"],
        1e-4,
    );

    let mut incomplete = tensors.clone();
    incomplete.remove("classifier.dense.bias");
    let fresh = BertWithHead::<B>::new(&config, Task::SequenceClassification, &device);
    let err = params::set_tensors(fresh, &incomplete, Coverage::All, &device).unwrap_err();
    assert!(err.to_string().contains("classifier.dense.bias"), "{err}");

    let mut wrong = tensors;
    wrong.insert(
        "classifier.dense.bias".into(),
        bomf_models::HfTensor::new(vec![2], vec![0.0, 0.0]).unwrap(),
    );
    let fresh = BertWithHead::<B>::new(&config, Task::SequenceClassification, &device);
    let err = params::set_tensors(fresh, &wrong, Coverage::All, &device).unwrap_err();
    assert!(err.to_string().contains("classifier.dense.bias"), "{err}");
}

#[test]
fn weighted_sum_mixes_every_tensor() {
    let _rng = rng_lock();
    let device = Default::default();
    let (a, config) = roberta_seqcls::<B>();
    let (b, _) = weights::load_bert_with_config::<B>(
        fixtures().join("roberta_base"),
        &config,
        Task::SequenceClassification,
        &device,
    )
    .unwrap();
    let (w_a, w_b) = (0.3, 0.7);
    let mixed = params::weighted_sum(&[a.clone(), b.clone()], &[w_a, w_b]).unwrap();
    let ta = params::named_tensors(&a).unwrap();
    let tb = params::named_tensors(&b).unwrap();
    let tm = params::named_tensors(&mixed).unwrap();
    for ((name, x), ((_, y), (_, m))) in ta.iter().zip(tb.iter().zip(&tm)) {
        let want: Vec<f32> = x
            .data
            .iter()
            .zip(&y.data)
            .map(|(p, q)| (w_a as f32) * p + (w_b as f32) * q)
            .collect();
        assert!(max_abs_diff(&m.data, &want) < 1e-6, "{name}");
    }
    // Mismatched architectures are refused.
    let other = BertWithHead::<B>::new(
        &config.clone().with_num_labels(2),
        Task::SequenceClassification,
        &device,
    );
    assert!(params::weighted_sum(&[a, other], &[0.5, 0.5]).is_err());
}

#[test]
fn frozen_parameters_do_not_move_in_an_optimiser_step() {
    let _rng = rng_lock();
    let device = Default::default();
    let (model, _) = roberta_seqcls::<AB>();
    // Stage-1 proxy: freeze embeddings and the lowest layer.
    let frozen = |name: &str| {
        name.starts_with("roberta.embeddings.") || name.starts_with("roberta.encoder.layer.0.")
    };
    let model = params::set_trainable(model, |n| !frozen(n));
    let before = params::named_tensors(&model).unwrap();
    let e = expected("roberta");
    let logits = model
        .sequence_logits(&input(&e["inputs"], &device))
        .unwrap();
    let loss = model.classification_loss(logits, int_tensor(&e["seqcls"]["labels"], &device));
    let grads = loss.backward();
    let with_grad: Vec<String> = params::named_gradients(&model, &grads)
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(with_grad.iter().all(|n| !frozen(n)));
    let grads = GradientsParams::from_grads(grads, &model);
    let mut optim = AdamWConfig::new()
        .with_weight_decay(0.01)
        .init::<AB, BertWithHead<AB>>();
    let model = optim.step(1e-2, model, grads);
    let after = params::named_tensors(&model).unwrap();
    let (mut n_frozen, mut n_moved) = (0, 0);
    for ((name, b), (_, a)) in before.iter().zip(&after) {
        if frozen(name) {
            assert_eq!(a, b, "frozen {name} changed");
            n_frozen += 1;
        } else if a != b {
            n_moved += 1;
        }
    }
    assert!(n_frozen > 0);
    assert_eq!(
        n_moved + n_frozen,
        before.len(),
        "every trainable tensor should move"
    );
}

#[test]
fn exported_folder_reloads_identically() {
    let _rng = rng_lock();
    let device = Default::default();
    let (model, config) = roberta_seqcls::<B>();
    let config = config.with_labels(&["negative", "neutral", "positive"]);
    let dir = tempfile::tempdir().unwrap();
    let tok_src = tempfile::tempdir().unwrap();
    std::fs::write(tok_src.path().join("tokenizer.json"), "{}").unwrap();
    export::export_bert(&model, &config, dir.path(), Some(tok_src.path())).unwrap();
    assert!(dir.path().join("tokenizer.json").is_file());

    let written = read_json(&dir.path().join("config.json"));
    assert_eq!(
        written["architectures"][0],
        "RobertaForSequenceClassification"
    );
    assert_eq!(written["id2label"]["2"], "positive");
    assert_eq!(written["label2id"]["neutral"], 1);
    // Fields we do not interpret are preserved.
    assert_eq!(written["bos_token_id"], 0);

    let (reloaded, reconfig, report) =
        load_bert::<B>(dir.path(), Task::SequenceClassification, &device).unwrap();
    assert!(report.freshly_initialised.is_empty() && report.ignored.is_empty());
    assert_eq!(reconfig.id2label[&0], "negative");
    let e = expected("roberta");
    let logits = reloaded
        .sequence_logits(&input(&e["inputs"], &device))
        .unwrap();
    assert_close("reloaded logits", logits, &e["seqcls"]["logits"], 1e-4);
}

#[test]
fn clones_of_a_fresh_model_are_identical() {
    let _rng = rng_lock();
    let device = Default::default();
    let (_, config) = roberta_seqcls::<B>();
    let model = BertWithHead::<B>::new(&config, Task::MultipleChoice, &device);
    let copy = model.clone();
    assert_eq!(
        params::named_tensors(&copy).unwrap(),
        params::named_tensors(&model).unwrap()
    );
}

/// Loading a complete checkpoint draws no random initial values it would overwrite: the backend
/// RNG is where the seed left it (a fresh head, absent from the file, is what draws).
#[test]
fn loading_a_full_checkpoint_draws_nothing_from_the_rng() {
    let _rng = rng_lock();
    use burn::tensor::{Distribution, Tensor, backend::Backend};
    let device = Default::default();
    let draw = || Tensor::<B, 1>::random([8], Distribution::Default, &device).into_data();
    B::seed(&device, 11);
    let expected = draw();
    B::seed(&device, 11);
    let (model, _) = roberta_seqcls::<B>();
    assert_eq!(draw(), expected, "the load drew from the RNG");
    // Still the values of the file, every parameter initialised.
    let names = params::named_tensors(&model).unwrap();
    assert!(!names.is_empty());
}
