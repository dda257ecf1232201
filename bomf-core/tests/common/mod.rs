//! A tiny random BERT and a synthetic, learnable 3-class task for fast tests.
#![allow(dead_code)]

pub mod generative;

use bomf_core::baselines::LearnedSoupConfig;
use bomf_core::eval::EvalSet;
use bomf_core::fusion_bo::FusionBoConfig;
use bomf_core::hpbo::{HpSpace, HpboConfig};
use bomf_core::pipeline::{BaselinesConfig, PipelineData};
use bomf_core::train::LayerCount;
use bomf_core::trajectory::{KeepRule, TrajectoryConfig};
use bomf_data::batch::{BatchConfig, Batcher, Item, ItemTarget};
use bomf_data::metrics::Metric;
use bomf_data::task::{Task as DataTask, TaskKind};
use bomf_models::bert::BertConfig;
use bomf_models::{BertWithHead, Task};
use burn::tensor::backend::Backend;

pub fn tiny_config(dropout: bool) -> BertConfig {
    let c = BertConfig::from_json(serde_json::json!({
        "model_type": "bert", "vocab_size": 24, "hidden_size": 16, "num_hidden_layers": 2,
        "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 32,
        "type_vocab_size": 2, "pad_token_id": 0, "num_labels": 3
    }))
    .unwrap();
    if dropout { c } else { c.without_dropout() }
}

pub fn tiny_model<B: Backend>(dropout: bool, seed: u64) -> BertWithHead<B> {
    let device = Default::default();
    B::seed(&device, seed);
    BertWithHead::new(&tiny_config(dropout), Task::SequenceClassification, &device)
}

pub fn data_task() -> DataTask {
    DataTask {
        name: "synthetic".into(),
        kind: TaskKind::Classification {
            labels: vec!["a".into(), "b".into(), "c".into()],
        },
        input_fields: vec!["text".into()],
        metrics: vec![Metric::Accuracy, Metric::F1Macro],
    }
}

/// `n` sequences whose label is the second token modulo 3 (learnable from `[CLS]` attention).
pub fn items(n: usize, offset: usize) -> Vec<Item> {
    (0..n)
        .map(|i| {
            let i = i + offset;
            let len = 3 + i % 5;
            let key = 1 + (i * 7) % 22;
            let mut ids = vec![1u32, key as u32];
            ids.extend((0..len).map(|j| (1 + (i + j * 3) % 22) as u32));
            Item {
                ids,
                type_ids: vec![],
                target: ItemTarget::Class(key % 3),
            }
        })
        .collect()
}

pub fn batcher(n: usize, batch_size: usize, seed: u64) -> Batcher {
    Batcher::new(items(n, 0), 0, BatchConfig::train(batch_size, seed)).unwrap()
}

pub fn eval_set(n: usize) -> EvalSet {
    EvalSet::new(data_task(), items(n, 1000), 0, 16).unwrap()
}

/// burn's backend RNG (dropout, initialisation) is process-global and the test harness runs tests
/// on parallel threads: tests that seed it take this lock so another test cannot draw from it
/// mid-run.
pub fn rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// [`rng_lock`] held, and the default device.
pub fn locked_device<D: Default>() -> (std::sync::MutexGuard<'static, ()>, D) {
    (rng_lock(), D::default())
}

/// [`rng_lock`] held, and the default device with the backend's RNG seeded with `seed`.
pub fn seeded<B: Backend>(seed: u64) -> (std::sync::MutexGuard<'static, ()>, B::Device) {
    let (lock, device) = locked_device();
    B::seed(&device, seed);
    (lock, device)
}

/// The data of a pipeline run: `train_items` (padded with `pad_id`), selection on `validation`,
/// the report on `test`.
pub fn pipeline_data<'a>(
    train_items: &'a [Item],
    pad_id: u32,
    validation: &'a EvalSet,
    test: &'a EvalSet,
) -> PipelineData<'a> {
    PipelineData {
        train_items,
        pad_id,
        validation,
        test,
    }
}

/// Keeps the last `k` checkpoints of a trajectory evaluated every `every` steps.
pub fn last_k(k: usize, every: usize) -> TrajectoryConfig {
    TrajectoryConfig {
        rule: KeepRule::LastK,
        k,
        every,
        patience: 5,
    }
}

/// The fusion search at its defaults, with a budget of `budget` evaluations.
pub fn fusion_budget(budget: usize) -> FusionBoConfig {
    FusionBoConfig {
        budget: Some(budget),
        ..FusionBoConfig::default()
    }
}

/// The greedy soup and a learned soup of one epoch at 0.05; no other baseline.
pub fn soups() -> BaselinesConfig {
    BaselinesConfig {
        greedy_soup: true,
        learned_soup: Some(LearnedSoupConfig {
            epochs: 1,
            learning_rate: 0.05,
        }),
        loss_only_bo: false,
        metric_only_bo: false,
        hpbo_full: false,
    }
}

/// Stage 1 over the learning rate alone, in `learning_rate`: `n_initial` design points of
/// `budget` trials, nothing frozen.
pub fn lr_search(learning_rate: (f64, f64), n_initial: usize, budget: usize) -> HpboConfig {
    HpboConfig {
        space: HpSpace {
            learning_rate,
            batch_size: None,
            warmup_ratio: None,
            weight_decay: None,
        },
        n_initial,
        budget,
        freeze_lower_layers: LayerCount::Count(0),
        freeze_embeddings: false,
        epochs: None,
        lora_rank: None,
        seed: 0,
    }
}
