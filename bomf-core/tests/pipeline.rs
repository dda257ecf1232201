//! Stages 1–3, the baselines and the whole pipeline: synthetic objectives for the searches
//! (exact expectations), a tiny random BERT for everything that trains.

mod common;

use std::collections::BTreeMap;

use bomf_core::baselines::{self, LearnedSoupConfig, fusion_weight_gradient, greedy_soup};
use bomf_core::eval::{EvalSet, Evaluation, evaluate};
use bomf_core::fusion_bo::{FusionBoConfig, FusionSearch, SelectionRule};
use bomf_core::hpbo::{HpSearch, HpboConfig, ProxyOutcome, trial_setup};
use bomf_core::pipeline::{BaselinesConfig, BomfConfig, BomfReport, ModelRequest, run_bomf};
use bomf_core::train::{Budget, LayerCount, TrainConfig, TrainOutcome};
use bomf_core::trajectory::{
    KeepRule, KeptCheckpoint, Trajectory, TrajectoryConfig, collect_trajectory, evenly_spaced,
    evenly_spaced_with,
};
use bomf_core::{CoreError, Result};
use bomf_data::batch::Item;
use bomf_models::CpuAutodiffBackend as AB;
use bomf_models::CpuBackend;
use burn::module::AutodiffModule;

fn evaluation(acc: f64, loss: f64) -> Evaluation {
    Evaluation {
        loss,
        metrics: BTreeMap::from([("accuracy".to_string(), acc)]),
        num_examples: 100,
    }
}

fn kept(values: &[(f64, f64)]) -> Vec<KeptCheckpoint> {
    values
        .iter()
        .enumerate()
        .map(|(i, &(acc, loss))| KeptCheckpoint {
            step: 10 * (i + 1),
            validation: evaluation(acc, loss),
        })
        .collect()
}

/// A smooth synthetic fusion landscape over 3 weights: accuracy peaks at (0.2, 0.5, 0.3), the
/// loss at (0.6, 0.2, 0.2): the two disagree, as in language tasks.
fn synthetic(w: &[f64]) -> Evaluation {
    let d = |c: [f64; 3]| w.iter().zip(c).map(|(a, b)| (a - b).powi(2)).sum::<f64>();
    evaluation(0.8 - d([0.2, 0.5, 0.3]), 0.5 + d([0.6, 0.2, 0.2]))
}

fn corners() -> Vec<KeptCheckpoint> {
    (0..3)
        .map(|k| {
            let w = baselines::one_hot(3, k);
            KeptCheckpoint {
                step: k,
                validation: synthetic(&w),
            }
        })
        .collect()
}

#[test]
fn evenly_spaced_keeps_the_ends() {
    assert_eq!(evenly_spaced(3, 5), vec![0, 1, 2]);
    assert_eq!(evenly_spaced(10, 4), vec![0, 3, 6, 9]);
    assert_eq!(evenly_spaced(7, 1), vec![6]);
    assert_eq!(evenly_spaced(5, 5), vec![0, 1, 2, 3, 4]);
}

#[test]
fn the_kept_checkpoints_always_include_the_best_step() {
    // Evenly spaced over 10 candidates: 0, 3, 6, 9; s* at 4 replaces its nearest, 3.
    assert_eq!(evenly_spaced_with(10, 4, Some(4)), vec![0, 4, 6, 9]);
    assert_eq!(evenly_spaced_with(10, 4, Some(6)), vec![0, 3, 6, 9]);
    assert_eq!(evenly_spaced_with(10, 1, Some(2)), vec![2]);
    assert_eq!(evenly_spaced_with(3, 5, Some(1)), vec![0, 1, 2]);
    assert_eq!(evenly_spaced_with(10, 4, None), evenly_spaced(10, 4));
    // A window that cannot contain s* is refused.
    for (low, high) in [(1.5, 2.0), (0.2, 0.8)] {
        let config = TrajectoryConfig {
            rule: KeepRule::BestStepWindow { low, high },
            ..TrajectoryConfig::default()
        };
        assert!(config.validate().is_err(), "[{low}, {high}]");
    }
}

#[test]
fn normaliser_maps_worst_checkpoint_to_zero_and_best_to_one() {
    let k = kept(&[(0.6, 1.0), (0.7, 0.8), (0.65, 0.9)]);
    let search = FusionSearch::new(FusionBoConfig::default(), &k, "accuracy").unwrap();
    let n = &search.normaliser;
    let worst = n.normalise(&evaluation(0.6, 1.0));
    let best = n.normalise(&evaluation(0.7, 0.8));
    for (a, b) in worst.iter().zip([0.0, 0.0]) {
        assert!((a - b).abs() < 1e-12, "{worst:?}");
    }
    for (a, b) in best.iter().zip([1.0, 1.0]) {
        assert!((a - b).abs() < 1e-12, "{best:?}");
    }
    // The loss is minimised: a lower loss normalises higher (the reference's sign slip).
    assert!(n.normalise(&evaluation(0.6, 0.7))[1] > 1.0);
    // Default budget: K Sobol points then 5K − 1 BO steps.
    assert_eq!(search.budget(), 3 + 14);
}

#[test]
fn fusion_search_improves_on_the_checkpoints_and_fills_the_front() {
    let config = FusionBoConfig {
        seed: 3,
        ..common::fusion_budget(14)
    };
    let mut search = FusionSearch::new(config, &corners(), "accuracy").unwrap();
    search
        .run(&mut |w| Ok(synthetic(w)), &mut |_| Ok(()))
        .unwrap();
    assert_eq!(search.records.len(), 14);
    assert_eq!(search.records.iter().filter(|r| r.initial).count(), 3);
    for r in &search.records {
        let sum: f64 = r.weights.iter().sum();
        assert!((sum - 1.0).abs() < 1e-9 && r.weights.iter().all(|&w| w >= 0.0));
    }
    let best_acc = search
        .records
        .iter()
        .filter_map(|r| r.validation.as_ref())
        .map(|e| e.metrics["accuracy"])
        .fold(f64::NEG_INFINITY, f64::max);
    let best_corner = corners()
        .iter()
        .map(|c| c.validation.metrics["accuracy"])
        .fold(f64::NEG_INFINITY, f64::max);
    assert!(best_acc > best_corner + 0.1, "{best_acc} vs {best_corner}");
    let hv = search.hypervolume_trace().unwrap();
    assert_eq!(hv.len(), 14);
    assert!(hv.windows(2).all(|p| p[1] >= p[0]));
    assert!(hv[13] > hv[2]);
    assert!(search.pareto_indices().len() >= 2);
}

#[test]
fn fusion_search_resumes_exactly_and_reevaluates_only_the_interrupted_point() {
    let config = FusionBoConfig {
        seed: 5,
        ..common::fusion_budget(9)
    };
    let mut straight = FusionSearch::new(config.clone(), &corners(), "accuracy").unwrap();
    straight
        .run(&mut |w| Ok(synthetic(w)), &mut |_| Ok(()))
        .unwrap();

    let mut first = FusionSearch::new(config, &corners(), "accuracy").unwrap();
    let mut calls = 0;
    let crash = first.run(
        &mut |w| {
            calls += 1;
            if calls == 6 {
                Err(CoreError::InvalidInput("killed".into()))
            } else {
                Ok(synthetic(w))
            }
        },
        &mut |_| Ok(()),
    );
    assert!(crash.is_err());
    assert_eq!(first.records.len(), 5);
    let saved = serde_json::to_string(&first).unwrap();
    let mut resumed: FusionSearch = serde_json::from_str(&saved).unwrap();
    let mut seen = Vec::new();
    resumed
        .run(
            &mut |w| {
                seen.push(w.to_vec());
                Ok(synthetic(w))
            },
            &mut |_| Ok(()),
        )
        .unwrap();
    assert_eq!(seen.len(), 4, "only the 4 missing evaluations run again");
    assert_eq!(resumed.records, straight.records);
}

#[test]
fn failed_fusion_evaluations_are_recorded_not_fatal() {
    let config = common::fusion_budget(8);
    let mut search = FusionSearch::new(config, &corners(), "accuracy").unwrap();
    let mut n = 0;
    search
        .run(
            &mut |w| {
                n += 1;
                let mut e = synthetic(w);
                if n == 2 || n == 5 {
                    e.loss = f64::NAN;
                }
                Ok(e)
            },
            &mut |_| Ok(()),
        )
        .unwrap();
    assert_eq!(search.records.len(), 8);
    assert_eq!(
        search
            .records
            .iter()
            .filter(|r| r.validation.is_none())
            .count(),
        2
    );
    assert!(search.select(SelectionRule::HighestMetric).is_ok());
}

#[test]
fn selection_rules_pick_what_they_promise() {
    let k = kept(&[(0.5, 1.0), (0.7, 0.6)]);
    let mut search = FusionSearch::new(common::fusion_budget(4), &k, "accuracy").unwrap();
    // Observed: A highest accuracy but high loss; B the balanced one; C lowest loss; D dominated.
    let points = [
        (vec![0.1, 0.9], evaluation(0.72, 0.95)),
        (vec![0.4, 0.6], evaluation(0.69, 0.62)),
        (vec![0.8, 0.2], evaluation(0.55, 0.55)),
        (vec![0.6, 0.4], evaluation(0.54, 0.9)),
    ];
    for (w, e) in &points {
        search.tell(w, Some(e.clone())).unwrap();
    }
    assert_eq!(search.select(SelectionRule::HighestMetric).unwrap(), 0);
    assert_eq!(search.select(SelectionRule::Knee).unwrap(), 1);
    let mut front = search.pareto_indices();
    front.sort();
    assert_eq!(front, vec![0, 1, 2]);
    let pm = search.select(SelectionRule::PosteriorMean).unwrap();
    assert!(pm < 4);
}

#[test]
fn greedy_soup_adds_only_improving_ingredients() {
    // Checkpoint accuracies 0.7, 0.6, 0.65; soups: {0,2} improves, {0,2,1} does not.
    let k = kept(&[(0.7, 1.0), (0.6, 1.0), (0.65, 1.0)]);
    let mut tried = Vec::new();
    let soup = greedy_soup(&k, "accuracy", &mut |w| {
        tried.push(w.to_vec());
        let acc = if w[1] > 0.0 { 0.66 } else { 0.75 };
        Ok(evaluation(acc, 1.0))
    })
    .unwrap();
    assert_eq!(soup.order, vec![0, 2, 1]);
    assert_eq!(soup.ingredients, vec![0, 2]);
    assert_eq!(soup.weights, vec![0.5, 0.0, 0.5]);
    assert_eq!(tried.len(), 2);
    assert_eq!(soup.validation.metrics["accuracy"], 0.75);
}

#[test]
fn every_trial_sees_the_same_data_whatever_its_batch_size() {
    let items = common::items(64, 0);
    let base = TrainConfig {
        budget: Budget::Steps(40),
        eval_every: Some(10),
        ..TrainConfig::default()
    };
    let at = |batch_size| {
        let hp = bomf_core::hpbo::HyperParams {
            learning_rate: 1e-4,
            batch_size: Some(batch_size),
            warmup_ratio: None,
            weight_decay: None,
        };
        let (config, batcher) = trial_setup(&items, 0, 32, &base, &hp).unwrap();
        assert_eq!(batcher.plan(0)[0].len(), batch_size.min(64));
        (config.budget, config.eval_every)
    };
    // 40 steps of 32 = 1280 examples, evaluated every 320: at batch 8 that is 160 steps, every 40.
    assert_eq!(at(8), (Budget::Steps(160), Some(40)));
    assert_eq!(at(32), (Budget::Steps(40), Some(10)));
    assert_eq!(at(64), (Budget::Steps(20), Some(5)));
    // A budget in epochs is the same data at any batch size.
    let epochs = TrainConfig {
        budget: Budget::Epochs(2),
        ..base
    };
    let hp = bomf_core::hpbo::HyperParams {
        learning_rate: 1e-4,
        batch_size: Some(8),
        warmup_ratio: None,
        weight_decay: None,
    };
    let (config, _) = trial_setup(&items, 0, 32, &epochs, &hp).unwrap();
    assert_eq!(config.budget, Budget::Epochs(2));
    assert_eq!(config.learning_rate, 1e-4);
}

#[test]
fn hp_search_finds_the_good_learning_rate_and_survives_divergence() {
    let mut config = common::lr_search((1e-6, 1e-2), 5, 14);
    config.space.batch_size = Some((8, 64));
    config.seed = 1;
    let mut search = HpSearch::new(config).unwrap();
    // Peak at lr = 1e-4; lr above 3e-3 diverges; batch size matters a little.
    let mut objective = |hp: &bomf_core::hpbo::HyperParams| -> Result<ProxyOutcome> {
        let bs = hp.batch_size.unwrap() as f64;
        assert!((8.0..=64.0).contains(&bs) && bs.fract() == 0.0);
        if hp.learning_rate > 3e-3 {
            return Ok(ProxyOutcome {
                best_metric: None,
                best_step: None,
                outcome: TrainOutcome::Diverged {
                    step: 1,
                    value: f64::NAN,
                },
            });
        }
        let x = hp.learning_rate.log10() + 4.0;
        Ok(ProxyOutcome {
            best_metric: Some(0.9 - 0.1 * x * x - 0.001 * (bs - 32.0).abs()),
            best_step: Some(10),
            outcome: TrainOutcome::Completed,
        })
    };
    search.run(&mut objective, &mut |_| Ok(())).unwrap();
    assert_eq!(search.trials.len(), 14);
    let best = search.best().unwrap();
    let lr = best.hyperparams.learning_rate;
    assert!((3e-5..3e-4).contains(&lr), "best lr {lr}");
    assert!(best.result.best_metric.unwrap() > 0.88);
}

/// The pipeline on the tiny classifier (`common::tiny_model`, seed 11): trained on
/// `train_items`, selected on `validation`, reported on `test`.
fn run_tiny(
    train_items: &[Item],
    validation: &EvalSet,
    test: &EvalSet,
    config: &BomfConfig,
) -> Result<BomfReport> {
    let make = |request: ModelRequest| -> Result<_> {
        request.reject_lora_rank()?;
        Ok(common::tiny_model::<AB>(request.dropout, 11))
    };
    let data = common::pipeline_data(train_items, 0, validation, test);
    run_bomf::<AB, _>(&make, data, config, &Default::default())
}

fn tiny_train_config(steps: usize) -> TrainConfig {
    TrainConfig {
        learning_rate: 1e-2,
        warmup: bomf_core::schedule::Warmup::Steps(2),
        budget: Budget::Steps(steps),
        max_grad_norm: Some(1.0),
        seed: 3,
        ..TrainConfig::default()
    }
}

#[test]
fn trajectory_keeps_the_window_around_the_best_step_and_round_trips() {
    let (_rng, device) = common::locked_device();
    let val = common::eval_set(40);
    let config = TrajectoryConfig {
        rule: KeepRule::BestStepWindow {
            low: 0.5,
            high: 2.0,
        },
        k: 4,
        every: 3,
        // Longer than the window (2·s*) here, so the stop is set by the patience.
        patience: 15,
    };
    let traj = collect_trajectory(
        common::tiny_model::<AB>(false, 4),
        &common::batcher(48, 8, 1),
        &val,
        &tiny_train_config(240),
        &config,
        &device,
        |_, _| {},
    )
    .unwrap();
    let s = traj.best_step.unwrap();
    assert!(!traj.kept.is_empty() && traj.kept.len() <= 4);
    assert_eq!(traj.checkpoints.len(), traj.kept.len());
    for c in &traj.kept {
        assert!(
            c.step as f64 >= 0.5 * s as f64 && c.step as f64 <= 2.0 * s as f64,
            "{} outside [{}, {}]",
            c.step,
            s / 2,
            2 * s
        );
        // Each checkpoint carries the evaluation of its own step on the learning curve.
        let on_curve = traj.curve.iter().find(|(st, _)| *st == c.step).unwrap();
        assert_eq!(on_curve.1, c.validation);
    }
    // s* is kept, so the best-checkpoint baseline is the best of every evaluated step.
    assert!(traj.kept.iter().any(|c| c.step == s), "s* = {s} not kept");
    // s* is the best of the curve (accuracy, then loss).
    for (_, e) in &traj.curve {
        assert!(!bomf_core::trajectory::better(
            e,
            &traj.curve.iter().find(|(st, _)| *st == s).unwrap().1,
            "accuracy"
        ));
    }
    // Training stopped at the first evaluation past both 2·s* and s* + patience evaluations,
    // unless the budget ran out first.
    let last = traj.curve.last().unwrap().0;
    let earliest_stop = (2 * s).max(s + config.patience * config.every);
    eprintln!("s* = {s}, last evaluation {last}, earliest stop {earliest_stop}");
    assert!(
        last == 240 || (last >= earliest_stop && last < earliest_stop + config.every),
        "last {last}, s* {s}, earliest stop {earliest_stop}"
    );

    let dir = tempfile::tempdir().unwrap();
    traj.save(dir.path()).unwrap();
    let back = Trajectory::load(dir.path()).unwrap();
    assert_eq!(back.kept, traj.kept);
    assert_eq!(back.curve, traj.curve);
    let w = vec![1.0 / traj.kept.len() as f64; traj.kept.len()];
    // Loading sorts tensors by name; the fused model must still be the same model.
    let template = common::tiny_model::<CpuBackend>(false, 9);
    let a = traj
        .checkpoints
        .fused_model(template.clone(), &w, &device)
        .unwrap();
    let b = back.checkpoints.fused_model(template, &w, &device).unwrap();
    assert_eq!(
        evaluate(&a, &val, &device).unwrap(),
        evaluate(&b, &val, &device).unwrap()
    );

    // A folder whose manifest is missing (an interrupted save) is a clear error.
    std::fs::remove_file(dir.path().join("manifest.json")).unwrap();
    let err = Trajectory::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("manifest.json"), "{err}");
}

#[test]
fn last_k_and_after_fraction_rules() {
    let (_rng, device) = common::locked_device();
    let val = common::eval_set(16);
    let run = |rule| {
        collect_trajectory(
            common::tiny_model::<AB>(false, 4),
            &common::batcher(32, 8, 1),
            &val,
            &tiny_train_config(12),
            &TrajectoryConfig {
                rule,
                ..common::last_k(3, 2)
            },
            &device,
            |_, _| {},
        )
        .unwrap()
    };
    let steps = |t: &Trajectory| t.kept.iter().map(|c| c.step).collect::<Vec<_>>();
    assert_eq!(steps(&run(KeepRule::LastK)), vec![8, 10, 12]);
    // After half of 12 steps: candidates 6, 8, 10, 12 → 3 evenly spaced.
    assert_eq!(
        steps(&run(KeepRule::AfterFraction {
            start_fraction: 0.5
        })),
        vec![6, 10, 12]
    );
}

#[test]
fn fusion_weight_gradient_matches_finite_differences() {
    let (_rng, device) = common::locked_device();
    let mut set = bomf_core::fusion::CheckpointSet::new();
    for seed in [1, 2, 3] {
        set.push_model(&common::tiny_model::<CpuBackend>(false, seed))
            .unwrap();
    }
    let template = common::tiny_model::<AB>(false, 7);
    let val = common::eval_set(16);
    let batch = &val.batches[0];
    let thetas: Vec<&[f32]> = (0..3).map(|k| set.checkpoint(k).unwrap()).collect();
    let mut flat = vec![0.0f32; set.layout().unwrap().num_params()];
    let w = [0.2, 0.5, 0.3];
    let (loss, grad) =
        fusion_weight_gradient(&set, &thetas, &template, batch, &w, &mut flat, &device).unwrap();
    let h = 1e-2;
    for k in 0..3 {
        let (mut up, mut down) = (w, w);
        up[k] += h;
        down[k] -= h;
        let f = |w: &[f64; 3], flat: &mut Vec<f32>| {
            fusion_weight_gradient(&set, &thetas, &template, batch, w, flat, &device)
                .unwrap()
                .0
        };
        let fd = (f(&up, &mut flat) - f(&down, &mut flat)) / (2.0 * h);
        assert!(
            (fd - grad[k]).abs() <= 2e-2 * grad[k].abs().max(0.05),
            "k={k}: analytic {} vs finite difference {fd} (loss {loss})",
            grad[k]
        );
    }
}

#[test]
fn learned_soup_moves_weight_to_the_trained_checkpoint() {
    let (_rng, device) = common::locked_device();
    let val = common::eval_set(48);
    // Checkpoint 0: trained; 1: the same model untrained.
    let untrained = common::tiny_model::<AB>(false, 2);
    let trained = bomf_core::train::train(
        untrained.clone(),
        &common::batcher(48, 8, 0),
        None,
        &TrainConfig {
            budget: Budget::Epochs(6),
            ..tiny_train_config(1)
        },
        &device,
        |_| bomf_core::train::Control::Continue,
    )
    .unwrap()
    .model;
    let mut set = bomf_core::fusion::CheckpointSet::new();
    set.push_model(&trained.valid()).unwrap();
    set.push_model(&untrained.valid()).unwrap();
    let w = baselines::learned_soup(
        &set,
        common::tiny_model::<AB>(false, 9),
        &val,
        &LearnedSoupConfig {
            epochs: 4,
            learning_rate: 0.1,
        },
        &device,
    )
    .unwrap();
    assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    assert!(w[0] > 0.6, "weights {w:?}");
}

/// A LoRA-rank proxy asked of a model without adapters stops stage 1 with an error naming the
/// key, before any training.
#[test]
fn a_lora_rank_proxy_needs_a_lora_model() {
    let _rng = common::rng_lock();
    let train_items = common::items(16, 0);
    let val = common::eval_set(8);
    let config = BomfConfig {
        train: tiny_train_config(4),
        batch_size: 8,
        hpbo: Some(HpboConfig {
            lora_rank: Some(2),
            ..HpboConfig::default()
        }),
        ..BomfConfig::default()
    };
    let err = run_tiny(&train_items, &val, &val, &config).unwrap_err();
    assert!(
        matches!(&err, CoreError::InvalidConfig { field, .. } if field == "hpbo.lora_rank"),
        "{err}"
    );
}

#[test]
fn whole_pipeline_on_a_tiny_model() {
    let _rng = common::rng_lock();
    let train_items = common::items(64, 0);
    let val = common::eval_set(32);
    let test =
        bomf_core::eval::EvalSet::new(common::data_task(), common::items(32, 5000), 0, 16).unwrap();
    let config = BomfConfig {
        train: tiny_train_config(30),
        batch_size: 8,
        hpbo: Some(HpboConfig {
            freeze_lower_layers: LayerCount::Count(1),
            freeze_embeddings: true,
            ..common::lr_search((1e-3, 3e-2), 2, 3)
        }),
        trajectory: common::last_k(3, 3),
        fusion: common::fusion_budget(6),
        baselines: BaselinesConfig {
            loss_only_bo: true,
            metric_only_bo: true,
            hpbo_full: true,
            ..common::soups()
        },
    };
    let report = run_tiny(&train_items, &val, &test, &config).unwrap();
    assert_eq!(report.hpbo_trials.len(), 3);
    assert_eq!(report.kept.len(), 3);
    assert_eq!(report.fusion_records.len(), 6);
    assert_eq!(report.hypervolume.len(), 6);
    let names: Vec<&str> = report.methods.iter().map(|m| m.method.as_str()).collect();
    for expected in [
        "BOMF (posterior mean)",
        "BOMF (highest metric)",
        "BOMF (knee)",
        "best checkpoint",
        "last checkpoint",
        "SWA",
        "greedy soup",
        "learned soup",
        "loss-only BO",
        "metric-only BO",
        "HPBO (full)",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    // HPBO-full: the same search on the full model; its row is its best trial's model, retrained
    // to the best step (so its validation metric is exactly that trial's best).
    assert_eq!(report.hpbo_full_trials.len(), 3);
    let full = report
        .methods
        .iter()
        .find(|m| m.method == "HPBO (full)")
        .unwrap();
    assert!(full.weights.is_empty());
    let best_trial = report
        .hpbo_full_trials
        .iter()
        .filter_map(|t| t.result.best_metric)
        .fold(f64::NEG_INFINITY, f64::max);
    assert_eq!(full.validation.metrics["accuracy"], best_trial);
    assert!(full.test.loss.is_finite());
    assert_ne!(
        report.hpbo_full_trials, report.hpbo_trials,
        "the proxy froze a layer"
    );
    for m in report.methods.iter().filter(|m| m.method != "HPBO (full)") {
        assert_eq!(m.weights.len(), 3);
        assert!((m.weights.iter().sum::<f64>() - 1.0).abs() < 1e-6, "{m:?}");
        assert!(m.test.loss.is_finite() && m.validation.loss.is_finite());
        assert_eq!(m.test.num_examples, 32);
    }
    // The best checkpoint's row reuses the trajectory's evaluation: same numbers as re-evaluating.
    let best = report
        .methods
        .iter()
        .find(|m| m.method == "best checkpoint")
        .unwrap();
    let k = best.weights.iter().position(|&w| w == 1.0).unwrap();
    assert_eq!(best.validation, report.kept[k].validation);
    assert!(report.times.fusion_eval > 0.0 && report.times.fusion_eval <= report.times.fusion_bo);
    let json = serde_json::to_string(&report).unwrap();
    assert!(json.contains("greedy soup"));
}

#[test]
fn learned_soup_can_be_switched_off_on_or_configured() {
    let parse = |json: &str| serde_json::from_str::<BaselinesConfig>(json);
    assert_eq!(
        parse(r#"{"learned_soup": false}"#).unwrap().learned_soup,
        None
    );
    assert_eq!(
        parse(r#"{"learned_soup": true}"#).unwrap().learned_soup,
        Some(LearnedSoupConfig::default())
    );
    assert_eq!(
        parse(r#"{"learned_soup": {"epochs": 1}}"#)
            .unwrap()
            .learned_soup,
        Some(LearnedSoupConfig {
            epochs: 1,
            ..LearnedSoupConfig::default()
        })
    );
    assert_eq!(
        parse("{}").unwrap().learned_soup,
        BaselinesConfig::default().learned_soup
    );
    assert!(parse(r#"{"learned_soup": 3}"#).is_err());
    assert!(parse(r#"{"learned_soup": {"epochz": 1}}"#).is_err());
    // What a report saves comes back unchanged.
    let off = BaselinesConfig {
        learned_soup: None,
        ..BaselinesConfig::default()
    };
    assert_eq!(parse(&serde_json::to_string(&off).unwrap()).unwrap(), off);
}
