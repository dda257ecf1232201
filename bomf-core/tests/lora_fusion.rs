//! The two fusions of LoRA checkpoints (`[fusion] lora`): `factors` averages `lora_A` and
//! `lora_B` separately, `delta` averages the updates `s·B_k A_k` exactly as one adapter of rank
//! K·r. Checked against the update computed directly in f64, through the peft export and the
//! merged model, and end to end through the pipeline (with the GP kernel setting, which must
//! reach stage 3 and the single-objective BO baselines).

mod common;

use std::collections::BTreeMap;

use bomf_bo::GpPreset;
use bomf_core::eval::EvalSet;
use bomf_core::fusion::{CheckpointSet, LoraFusion};
use bomf_core::fusion_bo::{FusionBoConfig, FusionSearch, GpKernel};
use bomf_core::generative::LoraLlama;
use bomf_core::pipeline::{
    BaselinesConfig, BomfConfig, ModelRequest, RunEvent, RunHooks, RunStore, run_bomf_with,
};
use bomf_core::train::{Budget, TrainConfig};
use bomf_core::trajectory::Trajectory;
use bomf_data::task::{Dataset, Example, Target, Task as DataTask};
use bomf_data::tokenize::TextEncoder;
use bomf_models::lora::{LlamaLoraAdapters, LoraConfig};
use bomf_models::params::named_tensors;
use bomf_models::{CpuAutodiffBackend as AB, CpuBackend as B, HfTensor, LlamaForCausalLM};
use burn::module::Module;
use burn::tensor::backend::Backend;
use common::generative::{
    Perturb, generative_set, llama_config, llama_encoder, lora_llama, train_items,
};

fn lora_config(rslora: bool) -> LoraConfig {
    let mut lora = LoraConfig::new(2, 6.0, &["q_proj", "v_proj", "down_proj"]).without_dropout();
    lora.use_rslora = rslora;
    lora
}

/// `k` random adapters of `lora` (non-zero `B`), and their set.
fn adapters(lora: &LoraConfig, k: usize) -> (Vec<LlamaLoraAdapters<B>>, CheckpointSet) {
    let device = Default::default();
    let mut set = CheckpointSet::new();
    let list: Vec<_> = (0..k)
        .map(|i| {
            B::seed(&device, 100 + i as u64);
            let a = LlamaLoraAdapters::<B>::new(lora, &llama_config(), &device).unwrap();
            a.map(&mut Perturb(0.3 + 0.2 * i as f32))
        })
        .collect();
    for a in &list {
        set.push_model(a).unwrap();
    }
    (list, set)
}

fn tensor_map(a: &LlamaLoraAdapters<B>) -> BTreeMap<String, HfTensor> {
    named_tensors(a).unwrap().into_iter().collect()
}

/// Σ_k w_k s·B_k A_k of the projection whose factors are `<stem>lora_A.weight` /
/// `<stem>lora_B.weight`, `[out, in]` row-major, in f64.
fn direct_update(
    checkpoints: &[BTreeMap<String, HfTensor>],
    stem: &str,
    w: &[f64],
    s: f64,
) -> Vec<f64> {
    let a0 = &checkpoints[0][&format!("{stem}lora_A.weight")];
    let b0 = &checkpoints[0][&format!("{stem}lora_B.weight")];
    let (r, d_in, d_out) = (a0.shape[0], a0.shape[1], b0.shape[0]);
    let mut out = vec![0.0f64; d_out * d_in];
    for (c, &wk) in checkpoints.iter().zip(w) {
        let a = &c[&format!("{stem}lora_A.weight")].data;
        let b = &c[&format!("{stem}lora_B.weight")].data;
        for o in 0..d_out {
            for i in 0..d_in {
                let dot: f64 = (0..r)
                    .map(|j| f64::from(b[o * r + j]) * f64::from(a[j * d_in + i]))
                    .sum();
                out[o * d_in + i] += wk * s * dot;
            }
        }
    }
    out
}

/// The update `s·B·A` of every adapted projection, by its factors' stem (`…q_proj.`).
fn updates(a: &LlamaLoraAdapters<B>) -> BTreeMap<String, Vec<f64>> {
    a.adapted()
        .map(|(layer, p, adapter)| {
            let stem = format!(
                "base_model.model.model.layers.{layer}.{}.",
                p.path_in_layer()
            );
            let data = adapter.delta_weight().into_data().to_vec::<f32>().unwrap();
            (stem, data.into_iter().map(f64::from).collect())
        })
        .collect()
}

fn max_abs_diff(x: &[f64], y: &[f64]) -> f64 {
    x.iter()
        .zip(y)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}

fn max_abs(x: &[f64]) -> f64 {
    x.iter().map(|v| v.abs()).fold(0.0, f64::max)
}

#[test]
fn delta_fusion_is_the_weighted_sum_of_the_updates() {
    let (_rng, device) = common::locked_device();
    for rslora in [false, true] {
        let lora = lora_config(rslora);
        let s = lora.scaling();
        let (list, set) = adapters(&lora, 3);
        let maps: Vec<_> = list.iter().map(tensor_map).collect();
        let delta = set.for_lora_fusion(LoraFusion::Delta).unwrap();
        assert_eq!(set.lora_rank().unwrap(), Some(2));
        assert_eq!(delta.lora_rank().unwrap(), Some(6));
        let wide = lora.clone().with_rank(6);
        assert!((wide.scaling() - s).abs() < 1e-12, "rsLoRA {rslora}");
        for w in [[0.2, 0.5, 0.3], [0.0, 1.0, 0.0]] {
            let template = LlamaLoraAdapters::<B>::new(&wide, &llama_config(), &device).unwrap();
            let fused = delta.fused_model(template, &w, &device).unwrap();
            let factors = set.fused_model(list[0].clone(), &w, &device).unwrap();
            let (got, averaged) = (updates(&fused), updates(&factors));
            assert_eq!(got.len(), 2 * 3);
            for (stem, got) in &got {
                let want = direct_update(&maps, stem, &w, s);
                let scale = max_abs(&want);
                let err = max_abs_diff(got, &want);
                assert!(err <= 1e-5 * scale, "{stem} {w:?}: {err} vs {scale}");
                let gap = max_abs_diff(&averaged[stem], &want);
                if w[0] > 0.0 {
                    // Averaging the factors is not averaging the updates.
                    assert!(gap > 1e-2 * scale, "{stem}: factors {gap} vs {scale}");
                } else {
                    // One checkpoint alone: both are that checkpoint's update.
                    assert!(gap <= 1e-5 * scale, "{stem}: one-hot {gap}");
                }
            }
        }
    }
}

#[test]
fn delta_fusion_needs_weights_on_the_simplex_and_leaves_other_sets_alone() {
    let _rng = common::rng_lock();
    let (_, set) = adapters(&lora_config(false), 2);
    let delta = set.for_lora_fusion(LoraFusion::Delta).unwrap();
    let err = delta.fuse(&[0.5, 0.6]).unwrap_err().to_string();
    assert!(err.contains("sum to 1.1"), "{err}");
    assert!(set.fuse(&[0.5, 0.6]).is_ok());
    // Factors, or checkpoints without adapters: the same set.
    let factors = set.for_lora_fusion(LoraFusion::Factors).unwrap();
    assert_eq!(factors.layout(), set.layout());
    let bert = common::tiny_model::<B>(false, 1);
    let mut dense = CheckpointSet::new();
    dense.push_model(&bert).unwrap();
    dense.push_model(&bert).unwrap();
    let same = dense.for_lora_fusion(LoraFusion::Delta).unwrap();
    assert_eq!(same.layout(), dense.layout());
    assert_eq!(same.lora_rank().unwrap(), None);
    assert!(same.fuse(&[0.5, 0.6]).is_ok());
}

#[test]
fn the_delta_adapter_exports_losslessly_and_merges_into_the_base() {
    let (_rng, device) = common::locked_device();
    let lora = lora_config(false);
    let (list, set) = adapters(&lora, 2);
    let maps: Vec<_> = list.iter().map(tensor_map).collect();
    let w = [0.35, 0.65];
    let delta = set.for_lora_fusion(LoraFusion::Delta).unwrap();
    let template =
        LlamaLoraAdapters::<B>::new(&lora.clone().with_rank(4), &llama_config(), &device).unwrap();
    let fused = delta.fused_model(template, &w, &device).unwrap();

    // peft folder: rank K·r, lora_alpha scaled so that lora_alpha / r is still s.
    let dir = tempfile::tempdir().unwrap();
    fused.save(dir.path()).unwrap();
    let saved = LoraConfig::from_file(dir.path().join("adapter_config.json")).unwrap();
    assert_eq!(saved.r, 4);
    assert!((saved.lora_alpha / 4.0 - lora.scaling()).abs() < 1e-12);
    let loaded = LlamaLoraAdapters::<B>::load(dir.path(), &llama_config(), &device).unwrap();
    assert_eq!(updates(&loaded), updates(&fused));

    // Merged: W + Σ_k w_k s·B_k A_k.
    B::seed(&device, 7);
    let base = LlamaForCausalLM::<B>::new(&llama_config(), &device).unwrap();
    let before: BTreeMap<_, _> = named_tensors(&base).unwrap().into_iter().collect();
    let merged = LoraLlama::new(base, fused).unwrap().merged().unwrap();
    let after: BTreeMap<_, _> = named_tensors(&merged).unwrap().into_iter().collect();
    for stem in updates(&list[0]).keys() {
        let name = format!("{}weight", stem.trim_start_matches("base_model.model."));
        let want = direct_update(&maps, stem, &w, lora.scaling());
        let got: Vec<f64> = after[&name]
            .data
            .iter()
            .zip(&before[&name].data)
            .map(|(a, b)| f64::from(a - b))
            .collect();
        let err = max_abs_diff(&got, &want);
        assert!(err <= 1e-5 * (1.0 + max_abs(&want)), "{name}: {err}");
    }
}

// ---------------------------------------------------------------------------------------------
// Through the pipeline
// ---------------------------------------------------------------------------------------------

/// A [`RunStore`] that keeps the saved states (to read the searches back).
#[derive(Default)]
struct StateStore(BTreeMap<String, serde_json::Value>);

impl RunStore for StateStore {
    fn load_state(&mut self, name: &str) -> bomf_core::Result<Option<serde_json::Value>> {
        Ok(self.0.get(name).cloned())
    }
    fn save_state(&mut self, name: &str, state: &serde_json::Value) -> bomf_core::Result<()> {
        self.0.insert(name.to_string(), state.clone());
        Ok(())
    }
    fn load_trajectory(&mut self) -> bomf_core::Result<Option<Trajectory>> {
        Ok(None)
    }
    fn save_trajectory(&mut self, _: &Trajectory) -> bomf_core::Result<()> {
        Ok(())
    }
    fn record(&mut self, _: &RunEvent) -> bomf_core::Result<()> {
        Ok(())
    }
}

fn e2e(n: usize, offset: usize) -> Dataset {
    let names = ["Alpha", "Brown", "Crowd", "Stage"];
    let examples = (offset..offset + n)
        .map(|i| Example {
            id: i.to_string(),
            inputs: vec![format!("name[{}]", names[i % names.len()])],
            options: vec![],
            target: Some(Target::Text(vec![format!("{} serves food.", names[i % 4])])),
        })
        .collect();
    Dataset {
        task: DataTask::e2e_nlg(),
        examples,
    }
}

/// `dataset` as a generation set, decoding 2 tokens.
fn eval_set(encoder: &TextEncoder, dataset: &Dataset) -> EvalSet {
    generative_set(encoder, dataset, 2)
}

#[test]
fn the_pipeline_fuses_updates_and_searches_with_the_configured_kernel() {
    let (_rng, device) = common::locked_device();
    let encoder = llama_encoder();
    let train_items = train_items(&encoder, &e2e(8, 0));
    let (validation, test) = (
        eval_set(&encoder, &e2e(4, 100)),
        eval_set(&encoder, &e2e(4, 200)),
    );
    let config = BomfConfig {
        train: TrainConfig {
            learning_rate: 3e-2,
            budget: Budget::Steps(4),
            eval_every: None,
            seed: 5,
            ..TrainConfig::default()
        },
        batch_size: 4,
        trajectory: common::last_k(2, 2),
        fusion: FusionBoConfig {
            lora: LoraFusion::Delta,
            kernel: GpKernel::Matern52Gamma,
            ..common::fusion_budget(3)
        },
        baselines: BaselinesConfig {
            loss_only_bo: true,
            ..common::soups()
        },
        ..BomfConfig::default()
    };
    let requests = std::cell::RefCell::new(Vec::new());
    let make = |request: ModelRequest| -> bomf_core::Result<LoraLlama<AB>> {
        requests.borrow_mut().push(request);
        Ok(lora_llama::<AB>(17, &lora_config(false), request.lora_rank))
    };
    let mut store = StateStore::default();
    let data = common::pipeline_data(&train_items, encoder.pad_id(), &validation, &test);
    let report = run_bomf_with::<AB, _>(
        &make,
        data,
        &config,
        &mut store,
        RunHooks::default(),
        &device,
    )
    .unwrap();
    // Stage 3's template and the learned soup's model: adapters of rank K·r = 4.
    let wide = ModelRequest {
        lora_rank: Some(4),
        ..ModelRequest::FROZEN
    };
    let requests = requests.into_inner();
    assert_eq!(
        requests.iter().filter(|r| **r == wide).count(),
        2,
        "{requests:?}"
    );
    assert!(!requests.contains(&ModelRequest::FROZEN));
    assert_eq!(report.fusion_records.len(), 3);
    for m in &report.methods {
        assert!(
            m.validation.loss.is_finite() && m.test.loss.is_finite(),
            "{}",
            m.method
        );
    }
    for name in ["search-bomf", "search-loss-only-BO"] {
        let search: FusionSearch = serde_json::from_value(store.0[name].clone()).unwrap();
        assert_eq!(search.config.lora, LoraFusion::Delta, "{name}");
        assert_eq!(
            search.optimizer().settings().gp_preset,
            GpPreset::MaternGamma,
            "{name}"
        );
    }
}
