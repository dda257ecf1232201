//! Real check of the training loop: MiniLM + a fresh 2-class head fine-tuned for one epoch on
//! 3,000 Rotten Tomatoes review snippets (fresh or rotten), then validation accuracy next to
//! the majority-class rate of the same validation split (computed and printed, so a run shows
//! whether the model learnt more than the class balance).
//! `reviews_finetune.py` is the same recipe in PyTorch/transformers, on the very same split
//! (written by `--dump-split`), so the two can be compared side by side.
//!
//! ```text
//! cargo run -p bomf-core --release --example reviews_finetune -- [--lr 5e-5] [--batch 32]
//!     [--max-len 128] [--seed 0] [--epochs 1] [--train 3000] [--val 1000] [--dump-split DIR]
//!     [--bucketing megabatch|none]
//! ```
//! Constant schedule with 10% warmup, reference AdamW (0.9, 0.98, 1e-6, wd 0.1), clipping at
//! 1.0. The split (by hash rank, seed 0) is `--train` training / `--val` validation / 1,000 test
//! snippets; a smaller `--train` is only for a quick smoke run. The last line is JSON:
//! `{"impl", "lr", "batch", "seed", "bucketing", "steps", "accuracy", "loss", "majority"}`.

#[path = "common/reviews.rs"]
mod common;

use anyhow::Context;
use bomf_core::eval::EvalSet;
use bomf_core::schedule::{ScheduleKind, Warmup};
use bomf_core::train::{Budget, Control, TrainConfig, train};
use bomf_data::batch::{BatchConfig, Batcher, Bucketing, items_for_dataset};
use bomf_data::split::split_by_rank;
use bomf_data::task::Target;
use bomf_data::tokenize::{EncoderConfig, ModelFamily, TextEncoder};
use bomf_models::bert::BertConfig;
use bomf_models::weights::load_bert_with_config;
use bomf_models::{CpuAutodiffBackend, Task};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

struct Args {
    lr: f64,
    batch: usize,
    max_len: usize,
    seed: u64,
    epochs: usize,
    train: usize,
    val: usize,
    dump_split: Option<PathBuf>,
    /// Group similar lengths into batches (faster) or keep random batches (HF Trainer's default).
    bucketing: bool,
}

fn parse() -> anyhow::Result<Args> {
    let mut a = Args {
        lr: 5e-5,
        batch: 32,
        max_len: 128,
        seed: 0,
        epochs: 1,
        train: 3000,
        val: 1000,
        dump_split: None,
        bucketing: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        let bad = || format!("bad value {value:?} for {flag}");
        match flag.as_str() {
            "--lr" => a.lr = value.parse().with_context(bad)?,
            "--batch" => a.batch = value.parse().with_context(bad)?,
            "--max-len" => a.max_len = value.parse().with_context(bad)?,
            "--seed" => a.seed = value.parse().with_context(bad)?,
            "--epochs" => a.epochs = value.parse().with_context(bad)?,
            "--train" => a.train = value.parse().with_context(bad)?,
            "--val" => a.val = value.parse().with_context(bad)?,
            "--dump-split" => a.dump_split = Some(PathBuf::from(value)),
            "--bucketing" => {
                a.bucketing = match value.as_str() {
                    "megabatch" => true,
                    "none" => false,
                    _ => anyhow::bail!("--bucketing takes megabatch or none"),
                }
            }
            _ => anyhow::bail!("unknown option {flag}"),
        }
    }
    Ok(a)
}

/// Writes one split as JSON lines `{"text": …, "label": <class index>}` for the PyTorch side;
/// the class names, in index order, go to `labels.json` next to it.
fn dump(dataset: &bomf_data::task::Dataset, path: PathBuf) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
    for ex in &dataset.examples {
        let label = match &ex.target {
            Some(Target::Class(c)) => *c,
            other => anyhow::bail!("example {} has target {other:?}, not a class", ex.id),
        };
        let line = serde_json::json!({"text": ex.inputs[0], "label": label});
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}

/// Share of the most frequent class: the accuracy of always predicting it.
fn majority_rate(dataset: &bomf_data::task::Dataset, n_labels: usize) -> anyhow::Result<f64> {
    let mut counts = vec![0usize; n_labels];
    for ex in &dataset.examples {
        match &ex.target {
            Some(Target::Class(c)) if *c < n_labels => counts[*c] += 1,
            other => anyhow::bail!("example {} has target {other:?}, not a class", ex.id),
        }
    }
    let most = counts.iter().copied().max().unwrap_or(0);
    Ok(most as f64 / dataset.len().max(1) as f64)
}

fn main() -> anyhow::Result<()> {
    let args = parse()?;
    let (lr, batch_size, max_len, seed) = (args.lr, args.batch, args.max_len, args.seed);

    let minilm = bomf_data::assets::minilm_dir();
    let dataset = common::rotten_tomatoes()?;
    let labels = dataset.task.labels().to_vec();
    let splits = split_by_rank(&dataset, [args.train, args.val, 1000], 0)?;
    let majority = majority_rate(&splits.validation, labels.len())?;
    println!(
        "task {} labels {labels:?}: train {} validation {} test {}; majority class of the \
         validation split {majority:.4}",
        dataset.task.name,
        splits.train.len(),
        splits.validation.len(),
        splits.test.len()
    );
    if let Some(dir) = &args.dump_split {
        std::fs::create_dir_all(dir)?;
        dump(&splits.train, dir.join("train.jsonl"))?;
        dump(&splits.validation, dir.join("validation.jsonl"))?;
        std::fs::write(dir.join("labels.json"), serde_json::to_string(&labels)?)?;
        println!("split written to {}", dir.display());
    }

    let mut enc_config = EncoderConfig::new(ModelFamily::Bert, max_len);
    enc_config.model_max_length = Some(512);
    let encoder = TextEncoder::from_file(&minilm.join("tokenizer.json"), enc_config)?;
    let train_items = items_for_dataset(&encoder, &splits.train)?;
    let val_items = items_for_dataset(&encoder, &splits.validation)?;
    let batcher = Batcher::new(
        train_items,
        encoder.pad_id(),
        BatchConfig {
            bucketing: if args.bucketing {
                Bucketing::MegaBatch { factor: 50 }
            } else {
                Bucketing::None
            },
            ..BatchConfig::train(batch_size, seed)
        },
    )?;
    let val = EvalSet::new(
        splits.validation.task.clone(),
        val_items,
        encoder.pad_id(),
        64,
    )?;

    let device = Default::default();
    let config = BertConfig::from_file(minilm.join("config.json"))?.with_labels(&labels);
    let (model, report) = load_bert_with_config::<CpuAutodiffBackend>(
        &minilm,
        &config,
        Task::SequenceClassification,
        &device,
    )
    .context("loading MiniLM")?;
    println!("fresh tensors: {:?}", report.freshly_initialised);

    let train_config = TrainConfig {
        learning_rate: lr,
        schedule: ScheduleKind::Constant,
        warmup: Warmup::Ratio(0.1),
        budget: Budget::Epochs(args.epochs),
        max_grad_norm: Some(1.0),
        seed,
        eval_every: Some(50),
        ..TrainConfig::default()
    };
    let start = Instant::now();
    let run = train(
        model,
        &batcher,
        Some(&val),
        &train_config,
        &device,
        |event| {
            println!(
                "[{:>6.1}s] step {}/{}: validation loss {:.4} metrics {:?}",
                start.elapsed().as_secs_f64(),
                event.step,
                event.total_steps,
                event.evaluation.loss,
                event.evaluation.metrics
            );
            Control::Continue
        },
    )?;
    let elapsed = start.elapsed().as_secs_f64();
    for r in run.history.iter().step_by(10) {
        println!(
            "step {:>3} lr {:.2e} loss {:.4} grad norm {:.3}",
            r.step, r.learning_rate, r.loss, r.grad_norm
        );
    }
    let last = run.evaluations.last().map(|(_, e)| e.clone());
    println!(
        "outcome {:?} after {} steps in {elapsed:.0}s ({:.2}s/step); final validation {:?}",
        run.outcome,
        run.steps_done,
        elapsed / run.steps_done.max(1) as f64,
        last
    );
    if let Some(e) = last {
        let line = serde_json::json!({
            "impl": "bomf", "lr": lr, "batch": batch_size, "seed": seed, "bucketing": args.bucketing,
            "steps": run.steps_done, "accuracy": e.metrics.get("accuracy"), "loss": e.loss,
            "majority": majority,
        });
        println!("{line}");
    }
    Ok(())
}
