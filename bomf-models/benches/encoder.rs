//! MiniLM-sized encoder throughput on the CPU backend: forward (batch 32, length 64) and one
//! training step (forward + backward + AdamW) of a sequence classifier. Uses the real MiniLM from
//! the assets folder when present (`BOMF_ASSETS` or `<workspace>/.bomf/assets`), else a random
//! model with MiniLM's config. Throughput is reported in rows (sequences) per second.
//!
//! `cargo bench -p bomf-models --bench encoder`

use std::path::PathBuf;
use std::time::Duration;

use bomf_models::bert::Task;
use bomf_models::{
    BertConfig, BertWithHead, CpuAutodiffBackend, CpuBackend, EncoderInput, SequenceClassifier,
    weights,
};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

mod common;

use common::{BATCH, SEQ_LEN};

fn minilm_config() -> serde_json::Value {
    serde_json::json!({
        "model_type": "bert", "vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6,
        "num_attention_heads": 12, "intermediate_size": 1536, "hidden_act": "gelu",
        "max_position_embeddings": 512, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
        "pad_token_id": 0
    })
}

fn minilm_dir() -> Option<PathBuf> {
    let root = std::env::var_os("BOMF_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.bomf/assets"));
    let dir = root.join("minilm");
    dir.join("model.safetensors").is_file().then_some(dir)
}

/// MiniLM with a 2-label classification head (fresh), from the assets or random.
fn model<Bk: Backend>(device: &Bk::Device) -> BertWithHead<Bk> {
    match minilm_dir() {
        Some(dir) => {
            let config = BertConfig::from_file(dir.join("config.json"))
                .expect("MiniLM config")
                .with_num_labels(2);
            weights::load_bert_with_config(&dir, &config, Task::SequenceClassification, device)
                .expect("MiniLM weights")
                .0
        }
        None => {
            let config = BertConfig::from_json(minilm_config())
                .expect("config")
                .with_num_labels(2);
            BertWithHead::new(&config, Task::SequenceClassification, device)
        }
    }
}

/// A deterministic batch with some right padding.
fn batch<Bk: Backend>(device: &Bk::Device) -> EncoderInput<Bk> {
    let (ids, mask) = common::anchor_rows();
    EncoderInput::from_rows(&ids, &mask, None, BATCH, SEQ_LEN, device).expect("batch")
}

fn bench_encoder(c: &mut Criterion) {
    println!(
        "MiniLM source: {}",
        minilm_dir().map_or("random init (assets not found)".to_string(), |d| d
            .display()
            .to_string())
    );
    let mut group = c.benchmark_group("minilm_b32_l64");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(3));
    group.measurement_time(Duration::from_secs(20));

    let device = Default::default();
    let eval_model = model::<CpuBackend>(&device);
    let input = batch::<CpuBackend>(&device);
    group.bench_function("forward", |b| {
        b.iter(|| {
            let logits = eval_model.sequence_logits(&input).expect("forward");
            logits.into_data()
        })
    });

    let train_model = model::<CpuAutodiffBackend>(&device);
    let input = batch::<CpuAutodiffBackend>(&device);
    let labels: Tensor<CpuAutodiffBackend, 1, Int> = Tensor::from_data(
        TensorData::new((0..BATCH as i64).map(|i| i % 2).collect(), [BATCH]),
        &device,
    );
    let mut optim = AdamWConfig::new()
        .with_epsilon(1e-8)
        .with_weight_decay(0.01)
        .init();
    let mut current = Some(train_model);
    group.bench_function("train_step", |b| {
        b.iter(|| {
            let model = current.take().expect("model");
            let logits = model.sequence_logits(&input).expect("forward");
            let loss = model.classification_loss(logits, labels.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            current = Some(optim.step(2e-5, model, grads));
        })
    });
    group.finish();
}

criterion_group!(benches, bench_encoder);
criterion_main!(benches);
