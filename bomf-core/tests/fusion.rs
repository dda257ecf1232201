//! Fusion: exactness for one-hot weights, linearity, mismatched checkpoints, loading by name.

mod common;

use bomf_core::CoreError;
use bomf_core::fusion::{CheckpointSet, weighted_sum_into};
use bomf_models::CpuBackend as B;
use bomf_models::params::named_tensors;
use bomf_models::{BertWithHead, HfTensor};
use proptest::prelude::*;

fn tensors(seed: f32, shapes: &[(&str, Vec<usize>)]) -> Vec<(String, HfTensor)> {
    shapes
        .iter()
        .enumerate()
        .map(|(t, (name, shape))| {
            let n: usize = shape.iter().product();
            let data = (0..n)
                .map(|i| ((i as f32 + 1.0) * 0.37 + seed * 1.9 + t as f32).sin())
                .collect();
            (
                name.to_string(),
                HfTensor::new(shape.clone(), data).unwrap(),
            )
        })
        .collect()
}

fn shapes() -> Vec<(&'static str, Vec<usize>)> {
    vec![
        ("a.weight", vec![3, 4]),
        ("a.bias", vec![3]),
        ("b", vec![40_000]),
    ]
}

#[test]
fn one_hot_weights_return_that_checkpoint_exactly() {
    let _rng = common::rng_lock();
    let mut set = CheckpointSet::new();
    for k in 0..4 {
        set.push_tensors(&tensors(k as f32, &shapes())).unwrap();
    }
    for k in 0..4 {
        let mut w = vec![0.0; 4];
        w[k] = 1.0;
        assert_eq!(set.fuse(&w).unwrap(), set.checkpoint(k).unwrap());
    }
}

#[test]
fn fusing_tiny_models_and_loading_by_name_round_trips() {
    let (_rng, device) = common::locked_device();
    let models: Vec<_> = (0..3).map(|s| common::tiny_model::<B>(false, s)).collect();
    let mut set = CheckpointSet::new();
    for m in &models {
        set.push_model(m).unwrap();
    }
    let w = [0.2, 0.5, 0.3];
    let fused = set
        .fused_model(common::tiny_model::<B>(false, 99), &w, &device)
        .unwrap();
    // The reference: bomf-models' on-device weighted sum.
    let reference = bomf_models::params::weighted_sum(&models, &w).unwrap();
    assert_same_tensors(&fused, &reference);
}

/// Same names, shapes and values (relative 1e-6) of every parameter.
fn assert_same_tensors(got: &BertWithHead<B>, want: &BertWithHead<B>) {
    let got = named_tensors(got).unwrap();
    let want = named_tensors(want).unwrap();
    assert_eq!(got.len(), want.len());
    for ((n1, a), (n2, b)) in got.iter().zip(&want) {
        assert_eq!(n1, n2);
        assert_eq!(a.shape, b.shape);
        for (x, y) in a.data.iter().zip(&b.data) {
            assert!((x - y).abs() <= 1e-6 * (1.0 + y.abs()), "{n1}: {x} vs {y}");
        }
    }
}

#[test]
fn mismatched_checkpoints_name_the_tensor() {
    let _rng = common::rng_lock();
    let mut set = CheckpointSet::new();
    set.push_tensors(&tensors(0.0, &shapes())).unwrap();

    let mut other_shape = shapes();
    other_shape[1].1 = vec![4];
    let err = set.push_tensors(&tensors(1.0, &other_shape)).unwrap_err();
    assert!(
        matches!(&err, CoreError::CheckpointMismatch { index: 1, message } if message.contains("a.bias") && message.contains("[4]")),
        "{err}"
    );

    let mut other_name = shapes();
    other_name[2].0 = "c";
    let err = set.push_tensors(&tensors(1.0, &other_name)).unwrap_err();
    assert!(err.to_string().contains("`c`"), "{err}");

    let err = set.push_tensors(&tensors(1.0, &shapes()[..2])).unwrap_err();
    assert!(err.to_string().contains("lacks tensor `b`"), "{err}");

    // A rejected checkpoint is not kept.
    assert_eq!(set.len(), 1);
    assert!(set.fuse(&[1.0, 0.0]).is_err());
}

proptest! {
    /// θ(a·w + b·v) = a·θ(w) + b·θ(v), and each value equals the plain f64 sum.
    #[test]
    fn fusion_is_linear_and_matches_a_scalar_sum(
        n in 1usize..70_000,
        w in proptest::collection::vec(-2.0f32..2.0, 3),
        v in proptest::collection::vec(-2.0f32..2.0, 3),
    ) {
        let inputs: Vec<Vec<f32>> = (0..3)
            .map(|k| (0..n).map(|i| ((i * (k + 3)) as f32 * 0.01).cos()).collect())
            .collect();
        let refs: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
        let fuse = |weights: &[f32]| {
            let mut out = vec![f32::NAN; n];
            weighted_sum_into(&mut out, &refs, weights).unwrap();
            out
        };
        let (fw, fv) = (fuse(&w), fuse(&v));
        let sum: Vec<f32> = w.iter().zip(&v).map(|(a, b)| a + 0.5 * b).collect();
        let fs = fuse(&sum);
        for i in 0..n {
            let exact: f64 = (0..3).map(|k| w[k] as f64 * inputs[k][i] as f64).sum();
            prop_assert!((fw[i] as f64 - exact).abs() < 1e-5);
            prop_assert!((fs[i] - (fw[i] + 0.5 * fv[i])).abs() < 1e-5);
        }
    }
}

/// Fusion with the checkpoints resident on the device (one `[1, K] × [K, n]` product per
/// parameter) gives the host's streamed fusion, tensor by tensor (Linear weights are stored
/// transposed on both sides), and the evaluator gives the same loss and metrics either way.
#[test]
fn fusing_on_the_device_matches_the_host_fusion() {
    use bomf_core::fusion_bo::FuseOn;
    use bomf_core::pipeline::FusedEvaluator;

    let (_rng, device) = common::locked_device();
    let mut set = CheckpointSet::new();
    for s in 0..3 {
        set.push_model(&common::tiny_model::<B>(false, s)).unwrap();
    }
    let template = common::tiny_model::<B>(false, 99);
    let stacked = set.stacked(&template, &device).unwrap();
    assert_eq!(stacked.len(), 3);
    for w in [[0.2, 0.5, 0.3], [0.0, 1.0, 0.0], [-0.5, 1.0, 0.5]] {
        assert_same_tensors(
            &stacked.fused(template.clone(), &w).unwrap(),
            &set.fused_model(template.clone(), &w, &device).unwrap(),
        );
    }
    assert!(stacked.fused(template.clone(), &[0.5, 0.5]).is_err());

    let val = common::eval_set(24);
    let mut host =
        FusedEvaluator::<B, _>::new(&set, template.clone(), device, FuseOn::Host).unwrap();
    let mut resident =
        FusedEvaluator::<B, _>::new(&set, template.clone(), device, FuseOn::Device).unwrap();
    let auto = FusedEvaluator::<B, _>::new(&set, template, device, FuseOn::Auto).unwrap();
    assert!(!host.fuses_on_device() && resident.fuses_on_device());
    assert!(!auto.fuses_on_device(), "the CPU backend fuses on the host");
    let w = [0.1, 0.6, 0.3];
    let (a, b) = (
        host.evaluate(&w, &val).unwrap(),
        resident.evaluate(&w, &val).unwrap(),
    );
    assert!((a.loss - b.loss).abs() < 1e-6, "{} vs {}", a.loss, b.loss);
    assert_eq!(a.metrics, b.metrics);
    assert!(resident.evaluate(&[f64::NAN, 0.5, 0.5], &val).is_err());
}

/// A stack needs every parameter of the model from the checkpoints.
#[test]
fn stacking_checkpoints_of_another_architecture_names_the_tensor() {
    let (_rng, device) = common::locked_device();
    let mut set = CheckpointSet::new();
    set.push_tensors(&tensors(0.0, &shapes())).unwrap();
    let err = set
        .stacked(&common::tiny_model::<B>(false, 1), &device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("embeddings"), "{err}");
}
