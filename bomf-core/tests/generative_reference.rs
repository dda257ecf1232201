//! Training of the generative families through bomf-core against the reference scripts of
//! bomf-models (`bomf-models/tests/fixtures`): two torch AdamW steps of peft's q/v adapter on a
//! frozen LLaMA (`gen_llama_lora.py`) and of T5 v1.1 without dropout (`gen_t5.py`).

use std::path::{Path, PathBuf};

use bomf_core::generative::LoraLlama;
use bomf_core::model::TaskModel;
use bomf_core::optim::AdamWConfig;
use bomf_core::schedule::{ScheduleKind, Warmup};
use bomf_core::train::{Budget, Control, TrainConfig, TrainRun, train};
use bomf_data::batch::{BatchConfig, Batcher, Item, ItemTarget};
use bomf_models::llama::load_llama;
use bomf_models::lora::LoraConfig;
use bomf_models::params::named_tensors;
use bomf_models::t5::load_t5_checkpoint;
use bomf_models::weights::read_safetensors;
use bomf_models::{
    CpuAutodiffBackend as AB, CpuBackend as B, HfNamed, LlamaLoraAdapters, T5Config,
};
use burn::module::AutodiffModule;
use serde_json::Value;

fn models_fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bomf-models/tests/fixtures")
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Rows of integers as the fixtures hold them.
fn rows(v: &Value) -> Vec<Vec<i64>> {
    serde_json::from_value(v.clone()).unwrap()
}

/// One training batch holding every row of a fixture (real tokens only; the batcher re-pads).
fn fixture_batcher(ids: &[Vec<i64>], mask: &[Vec<i64>], targets: Vec<ItemTarget>) -> Batcher {
    let items: Vec<Item> = ids
        .iter()
        .zip(mask)
        .zip(targets)
        .map(|((ids, mask), target)| Item {
            ids: ids
                .iter()
                .zip(mask)
                .filter(|(_, m)| **m == 1)
                .map(|(&t, _)| t as u32)
                .collect(),
            type_ids: vec![],
            target,
        })
        .collect();
    let n = items.len();
    Batcher::new(items, 0, BatchConfig::train(n, 0)).unwrap()
}

/// The optimiser of the reference scripts: torch AdamW, constant lr, no warmup, no clipping.
fn reference_steps(t: &Value) -> TrainConfig {
    let betas = t["betas"].as_array().map_or((0.9, 0.999), |b| {
        (b[0].as_f64().unwrap(), b[1].as_f64().unwrap())
    });
    TrainConfig {
        learning_rate: t["lr"].as_f64().unwrap(),
        adamw: AdamWConfig {
            beta1: betas.0,
            beta2: betas.1,
            eps: t["eps"].as_f64().unwrap(),
            weight_decay: t["weight_decay"].as_f64().unwrap(),
        },
        schedule: ScheduleKind::Constant,
        warmup: Warmup::Steps(0),
        budget: Budget::Steps(2),
        max_grad_norm: None,
        eval_every: None,
        ..TrainConfig::default()
    }
}

/// The two reference steps (`t`) of `model` on the fixture `inputs` (`input_ids`,
/// `attention_mask`, and `targets` made from the mask rows): each step's loss must equal
/// `losses` (the reference's) within `tol`.
fn train_like_the_reference<M>(
    model: M,
    inputs: &Value,
    targets: Vec<ItemTarget>,
    t: &Value,
    losses: &Value,
    tol: f64,
) -> TrainRun<M>
where
    M: AutodiffModule<AB> + TaskModel<AB> + HfNamed<AB>,
    M::InnerModule: TaskModel<B>,
{
    let (ids, mask) = (rows(&inputs["input_ids"]), rows(&inputs["attention_mask"]));
    let run = train(
        model,
        &fixture_batcher(&ids, &mask, targets),
        None,
        &reference_steps(t),
        &Default::default(),
        |_| Control::Continue,
    )
    .unwrap();
    assert_eq!(run.history.len(), 2);
    for (step, record) in run.history.iter().enumerate() {
        let want = losses[step].as_f64().unwrap();
        assert!(
            (record.loss - want).abs() < tol,
            "step {step}: {} vs the reference {want}",
            record.loss
        );
    }
    run
}

#[test]
fn lora_training_through_core_matches_peft() {
    // `gen_llama_lora.py`: two torch AdamW steps of peft's q/v adapter on a frozen LLaMA.
    let dir = models_fixtures().join("llama_lora");
    let expected = read_json(&dir.join("expected.json"));
    let t = &expected["train"];
    let device = Default::default();
    let (base, config) = load_llama::<AB>(dir.join("base"), &device).unwrap();
    let lora_dir = dir.join("adapter_qv");
    let lora = LoraConfig::from_file(lora_dir.join("adapter_config.json"))
        .unwrap()
        .without_dropout();
    let adapters =
        LlamaLoraAdapters::<AB>::load_with_config(&lora_dir, &lora, &config, &device).unwrap();
    let model = LoraLlama::new(base, adapters).unwrap();
    let inputs = &t["inputs"];
    let targets = rows(&inputs["labels"])
        .iter()
        .zip(&rows(&inputs["attention_mask"]))
        .map(|(l, m)| {
            let real = m.iter().filter(|&&x| x == 1).count();
            ItemTarget::AlignedLabels(l[..real].to_vec())
        })
        .collect();
    let run = train_like_the_reference(model, inputs, targets, t, &t["lora_losses"], 1e-5);
    let after = read_safetensors(&dir.join("train_lora.safetensors")).unwrap();
    assert_eq!(
        named_tensors(&run.model).unwrap().len(),
        8,
        "2 layers × (q, v) × (A, B)"
    );
    for (name, tensor) in named_tensors(&run.model).unwrap() {
        let reference = &after.tensors[&format!("after.{name}")];
        let diff = tensor
            .data
            .iter()
            .zip(&reference.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-5, "{name}: max diff {diff:e} after two steps");
    }
}

#[test]
fn t5_training_through_core_matches_transformers() {
    // `gen_t5.py`: two torch AdamW steps of T5 v1.1 without dropout. Our AdamW exempts the
    // layer norms from weight decay (torch's run decays them), a ~1e-5 relative difference in
    // those weights after one step, far below the loss tolerance.
    let dir = models_fixtures().join("t5");
    let expected = read_json(&dir.join("expected_t5.json"));
    let e = &expected["v1_1"];
    let t = &e["train"];
    let device = Default::default();
    let config = T5Config::from_file(dir.join("v1_1/config.json"))
        .unwrap()
        .without_dropout();
    let model = load_t5_checkpoint::<AB>(
        &config,
        bomf_models::weights::read_checkpoint(dir.join("v1_1")).unwrap(),
        &device,
    )
    .unwrap();
    let targets = rows(&e["inputs"]["labels"])
        .into_iter()
        .map(|l| ItemTarget::Labels(l.into_iter().filter(|&x| x != -100).collect()))
        .collect();
    train_like_the_reference(model, &e["inputs"], targets, t, &t["losses"], 1e-4);
}
