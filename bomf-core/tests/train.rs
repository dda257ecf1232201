//! The training loop on a tiny random BERT: determinism, learning, divergence, the AdamW update
//! and its no-decay group, clipping, freezing.

mod common;

use std::collections::BTreeMap;

use bomf_core::hpbo::HpboConfig;
use bomf_core::model::TaskModel;
use bomf_core::optim::{AdamW, AdamWConfig, clip_coefficient, global_grad_norm, is_no_decay};
use bomf_core::train::{
    Budget, Control, Freeze, LayerCount, TrainConfig, TrainOutcome, is_embedding,
    is_in_lower_layers, train,
};
use bomf_models::CpuAutodiffBackend as AB;
use bomf_models::params::{Coverage, named_gradients, named_tensors, set_tensors};
use burn::optim::GradientsParams;

fn config(steps: usize) -> TrainConfig {
    TrainConfig {
        learning_rate: 3e-3,
        budget: Budget::Steps(steps),
        eval_every: Some(steps),
        seed: 7,
        ..TrainConfig::default()
    }
}

fn values(m: &bomf_models::BertWithHead<AB>) -> Vec<(String, Vec<f32>)> {
    named_tensors(m)
        .unwrap()
        .into_iter()
        .map(|(n, t)| (n, t.data))
        .collect()
}

#[test]
fn same_seed_same_run_with_dropout() {
    let (_rng, device) = common::locked_device();
    let run = || {
        let model = common::tiny_model::<AB>(true, 1);
        let r = train(
            model,
            &common::batcher(24, 4, 3),
            Some(&common::eval_set(16)),
            &config(4),
            &device,
            |_| Control::Continue,
        )
        .unwrap();
        (values(&r.model), r.history)
    };
    let (a, ha) = run();
    let (b, hb) = run();
    assert_eq!(ha, hb);
    assert_eq!(a, b);
}

#[test]
fn training_lowers_the_loss_and_evaluates_on_schedule() {
    let (_rng, device) = common::locked_device();
    let cfg = TrainConfig {
        learning_rate: 1e-2,
        warmup: bomf_core::schedule::Warmup::Steps(2),
        budget: Budget::Epochs(6),
        eval_every: Some(10),
        ..config(1)
    };
    let set = common::eval_set(48);
    let before = bomf_core::eval::evaluate(
        &common::tiny_model::<burn::backend::Flex>(false, 2),
        &set,
        &device,
    )
    .unwrap();
    let mut seen = Vec::new();
    let run = train(
        common::tiny_model::<AB>(false, 2),
        &common::batcher(48, 8, 0),
        Some(&set),
        &cfg,
        &device,
        |e| {
            seen.push(e.step);
            Control::Continue
        },
    )
    .unwrap();
    assert_eq!(run.outcome, TrainOutcome::Completed);
    assert_eq!(run.total_steps, 36);
    assert_eq!(seen, [10, 20, 30, 36]);
    let after = &run.evaluations.last().unwrap().1;
    assert!(
        after.loss < before.loss,
        "{} !< {}",
        after.loss,
        before.loss
    );
    assert!(after.metrics.contains_key("accuracy") && after.metrics.contains_key("f1_macro"));
    // The first update runs at learning rate 0 (HF warmup), the third at the full rate.
    assert_eq!(run.history[0].learning_rate, 0.0);
    assert_eq!(run.history[2].learning_rate, 1e-2);
}

#[test]
fn callback_can_stop_early() {
    let (_rng, device) = common::locked_device();
    let cfg = TrainConfig {
        eval_every: Some(2),
        ..config(8)
    };
    let run = train(
        common::tiny_model::<AB>(false, 2),
        &common::batcher(24, 4, 0),
        Some(&common::eval_set(8)),
        &cfg,
        &device,
        |e| {
            if e.step >= 4 {
                Control::Stop
            } else {
                Control::Continue
            }
        },
    )
    .unwrap();
    assert_eq!(run.outcome, TrainOutcome::Stopped { step: 4 });
    assert_eq!(run.steps_done, 4);
}

#[test]
fn a_nan_loss_is_a_diverged_outcome_not_a_panic() {
    let (_rng, device) = common::locked_device();
    let model = common::tiny_model::<AB>(false, 3);
    let mut poison = BTreeMap::new();
    poison.insert(
        "classifier.bias".to_string(),
        bomf_models::HfTensor::new(vec![3], vec![f32::NAN, 0.0, 0.0]).unwrap(),
    );
    let model = set_tensors(model, &poison, Coverage::Partial, &device).unwrap();
    let run = train(
        model,
        &common::batcher(8, 4, 0),
        None,
        &config(3),
        &device,
        |_| Control::Continue,
    )
    .unwrap();
    assert!(
        matches!(run.outcome, TrainOutcome::Diverged { step: 0, value } if value.is_nan()),
        "{:?}",
        run.outcome
    );
    assert_eq!(run.steps_done, 0);
}

/// One AdamW step against the formula evaluated in f64 from the model's own gradients:
/// at t = 1, m̂ = g and v̂ = g², so θ' = θ(1 − lr·wd) − lr·g/(|g| + ε), with wd = 0 for the
/// no-decay group.
#[test]
fn first_adamw_step_matches_the_formula_with_no_decay_groups() {
    let (_rng, device) = common::locked_device();
    let model = common::tiny_model::<AB>(false, 4);
    let batch = &common::batcher(8, 8, 0).epoch(0)[0];
    let loss = model.forward_batch(batch, &device).unwrap().loss;
    let raw = loss.backward();
    let grads_by_name: BTreeMap<String, Vec<f32>> = named_gradients(&model, &raw)
        .unwrap()
        .into_iter()
        .map(|(n, t)| (n, t.data))
        .collect();
    let mut grads = GradientsParams::from_grads(raw, &model);
    let before = values(&model);
    let cfg = AdamWConfig {
        weight_decay: 0.5,
        ..AdamWConfig::default()
    };
    let (lr, scale) = (0.01, 0.5);
    let mut opt = AdamW::<AB>::new(cfg).unwrap();
    let after = values(&opt.step(model, &mut grads, lr, scale));
    let mut decayed = 0;
    for ((name, theta), (_, theta_new)) in before.iter().zip(&after) {
        let g = &grads_by_name[name];
        let wd = if is_no_decay(name) { 0.0 } else { 0.5 };
        decayed += usize::from(wd > 0.0);
        for i in 0..theta.len() {
            let gi = g[i] as f64 * scale;
            let want = theta[i] as f64 * (1.0 - lr * wd) - lr * gi / (gi.abs() + cfg.eps);
            let got = theta_new[i] as f64;
            assert!((got - want).abs() < 1e-6, "{name}[{i}]: {got} vs {want}");
        }
    }
    assert!(decayed > 0 && decayed < before.len());
}

#[test]
fn no_decay_group_is_biases_and_layer_norms() {
    let _rng = common::rng_lock();
    assert!(is_no_decay("bert.encoder.layer.0.output.dense.bias"));
    assert!(is_no_decay("bert.embeddings.LayerNorm.weight"));
    assert!(is_no_decay(
        "bert.encoder.layer.3.attention.output.LayerNorm.weight"
    ));
    assert!(!is_no_decay("bert.encoder.layer.0.output.dense.weight"));
    assert!(!is_no_decay("bert.embeddings.word_embeddings.weight"));
    assert!(!is_no_decay("classifier.weight"));
}

#[test]
fn global_norm_is_the_norm_of_all_gradients_and_clipping_follows_torch() {
    let (_rng, device) = common::locked_device();
    let model = common::tiny_model::<AB>(false, 5);
    let batch = &common::batcher(8, 8, 0).epoch(0)[0];
    let raw = model.forward_batch(batch, &device).unwrap().loss.backward();
    let want: f64 = named_gradients(&model, &raw)
        .unwrap()
        .iter()
        .flat_map(|(_, t)| t.data.iter().map(|&x| x as f64 * x as f64))
        .sum::<f64>()
        .sqrt();
    let grads = GradientsParams::from_grads(raw, &model);
    let got = global_grad_norm::<AB, _>(&model, &grads).unwrap();
    assert!((got - want).abs() < 1e-5 * want, "{got} vs {want}");
    assert_eq!(clip_coefficient(0.5, Some(1.0)), 1.0);
    assert_eq!(clip_coefficient(3.0, None), 1.0);
    assert!((clip_coefficient(4.0, Some(1.0)) - 1.0 / (4.0 + 1e-6)).abs() < 1e-12);
}

/// Trains the tiny model (2 layers) with `freeze` and returns the names that moved.
fn moved_under(freeze: Freeze) -> Vec<String> {
    let device = Default::default();
    let model = common::tiny_model::<AB>(false, 6);
    let before = values(&model);
    let cfg = TrainConfig {
        freeze,
        ..config(3)
    };
    let run = train(
        model,
        &common::batcher(12, 4, 0),
        None,
        &cfg,
        &device,
        |_| Control::Continue,
    )
    .unwrap();
    before
        .iter()
        .zip(&values(&run.model))
        .filter(|((_, a), (_, b))| a != b)
        .map(|((name, _), _)| name.clone())
        .collect()
}

#[test]
fn frozen_lower_layers_do_not_move() {
    let _rng = common::rng_lock();
    // The stage-1 default: half of the layers (1 of 2), embeddings trained.
    let default = HpboConfig::default();
    let moved = moved_under(Freeze {
        lower_layers: default.freeze_lower_layers,
        embeddings: default.freeze_embeddings,
    });
    let moved_word_embeddings = moved.iter().any(|n| n.contains("word_embeddings"));
    assert!(
        moved_word_embeddings,
        "embeddings frozen by default: {moved:?}"
    );
    assert!(
        moved.iter().any(|n| n.contains("encoder.layer.1.")),
        "{moved:?}"
    );
    assert!(
        !moved.iter().any(|n| n.contains("encoder.layer.0.")),
        "{moved:?}"
    );
    // Asked for: the embeddings as well.
    let moved = moved_under(Freeze {
        lower_layers: LayerCount::Count(1),
        embeddings: true,
    });
    assert!(
        !moved
            .iter()
            .any(|n| is_in_lower_layers(n, 1) || is_embedding(n)),
        "{moved:?}"
    );
    assert!(
        moved.iter().any(|n| n.contains("encoder.layer.1.")),
        "{moved:?}"
    );

    assert_eq!(
        LayerCount::Half.resolve(["encoder.layer.11.x", "encoder.layer.3.y"]),
        6
    );
    assert_eq!(LayerCount::Half.resolve(["model.layers.29.x"]), 15);
    assert_eq!(LayerCount::Count(4).resolve(["model.layers.29.x"]), 4);
    assert!(is_embedding("bert.embeddings.word_embeddings.weight"));
    assert!(is_embedding("model.embed_tokens.weight"));
    assert!(is_embedding("shared.weight"));
    assert!(!is_embedding("bert.encoder.layer.0.output.dense.bias"));
    assert!(is_in_lower_layers(
        "bert.encoder.layer.0.output.dense.bias",
        1
    ));
    assert!(!is_in_lower_layers(
        "bert.embeddings.word_embeddings.weight",
        1
    ));
    assert!(!is_in_lower_layers(
        "bert.encoder.layer.1.output.dense.bias",
        1
    ));
    assert!(!is_in_lower_layers(
        "bert.encoder.layer.0.output.dense.bias",
        0
    ));
    // LLaMA and T5 names.
    assert!(is_in_lower_layers("model.layers.1.mlp.up_proj.weight", 2));
    assert!(!is_in_lower_layers("model.layers.2.mlp.up_proj.weight", 2));
    assert!(!is_in_lower_layers("model.norm.weight", 2));
    assert!(is_in_lower_layers(
        "encoder.block.0.layer.0.SelfAttention.q.weight",
        1
    ));
    assert!(!is_in_lower_layers(
        "decoder.block.0.layer.0.SelfAttention.q.weight",
        1
    ));
}

#[test]
fn layer_counts_parse_from_numbers_or_half() {
    #[derive(serde::Deserialize)]
    struct T {
        n: LayerCount,
    }
    let parse = |t: &str| serde_json::from_str::<T>(t).map(|t| t.n);
    assert_eq!(parse(r#"{"n": 3}"#).unwrap(), LayerCount::Count(3));
    assert_eq!(parse(r#"{"n": "half"}"#).unwrap(), LayerCount::Half);
    let err = parse(r#"{"n": "most"}"#).unwrap_err().to_string();
    assert!(err.contains("`most` is neither"), "{err}");
    assert!(parse(r#"{"n": -1}"#).is_err());
}

#[test]
fn a_diverged_run_suggests_a_lower_learning_rate() {
    let err = bomf_core::CoreError::Diverged {
        step: 3,
        value: f64::NAN,
    }
    .to_string();
    assert!(
        err.contains("step 3") && err.contains("lower learning rate"),
        "{err}"
    );
    assert!(!err.contains("evaluate more often"), "{err}");
}

/// The error of training the tiny model (seed `seed`) on `n` items in batches of 4 with `cfg`.
fn train_error(cfg: &TrainConfig, seed: u64, n: usize) -> bomf_core::CoreError {
    train(
        common::tiny_model::<AB>(false, seed),
        &common::batcher(n, 4, 0),
        None,
        cfg,
        &Default::default(),
        |_| Control::Continue,
    )
    .unwrap_err()
}

#[test]
fn absurd_step_counts_are_refused_without_allocating_them() {
    for budget in [
        Budget::Epochs(1_000_000_000_000),
        Budget::Steps(1_000_000_000_000),
        Budget::Steps(usize::MAX),
    ] {
        let cfg = TrainConfig {
            budget,
            grad_accumulation: 2,
            ..config(3)
        };
        let err = train_error(&cfg, 1, 12).to_string();
        assert!(
            err.contains("optimiser steps; at most"),
            "{budget:?}: {err}"
        );
    }
}

#[test]
fn invalid_configs_are_typed_errors() {
    let _rng = common::rng_lock();
    for cfg in [
        TrainConfig {
            learning_rate: f64::NAN,
            ..config(1)
        },
        TrainConfig {
            grad_accumulation: 0,
            ..config(1)
        },
        TrainConfig {
            budget: Budget::Steps(0),
            ..config(1)
        },
    ] {
        let err = train_error(&cfg, 0, 4);
        assert!(
            matches!(err, bomf_core::CoreError::InvalidConfig { .. }),
            "{err}"
        );
    }
}
