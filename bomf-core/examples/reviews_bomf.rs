//! BOMF against every baseline on real data: MiniLM (all-MiniLM-L6-v2) with a fresh 2-class head
//! on the Rotten Tomatoes review snippets (fresh or rotten), on the CPU.
//!
//! ```text
//! cargo run -p bomf-core --release --example reviews_bomf -- --seed 0 [--out DIR] [options]
//! ```
//! Options (defaults in brackets): `--train` [3000], `--val` [400], `--test` [1000] snippets
//! (a fixed hash-rank split, the same for every seed); `--lr` [5e-5], `--batch` [32],
//! `--epochs` [2] (the most stage 2 may train), `--every` [10] steps between evaluations,
//! `--k` [8] checkpoints, `--budget` [K + 5K − 1] fusion evaluations, `--single-bo` (also run
//! loss-only and metric-only BO), `--max-len` [128]. The report (`report-seed<S>.json`) and a
//! Markdown table go to `--out` [target/reviews-bomf].

#[path = "common/reviews.rs"]
mod common;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use bomf_core::eval::EvalSet;
use bomf_core::fusion_bo::FusionBoConfig;
use bomf_core::pipeline::{BaselinesConfig, BomfConfig, ModelRequest, PipelineData, run_bomf};
use bomf_core::schedule::{ScheduleKind, Warmup};
use bomf_core::train::{Budget, TrainConfig};
use bomf_core::trajectory::{KeepRule, TrajectoryConfig};
use bomf_data::batch::items_for_dataset;
use bomf_data::split::split_by_rank;
use bomf_data::task::Dataset;
use bomf_data::tokenize::{EncoderConfig, ModelFamily, TextEncoder};
use bomf_models::bert::BertConfig;
use bomf_models::weights::load_bert_with_config;
use bomf_models::{CpuAutodiffBackend as AB, Task};
use burn::tensor::backend::Backend;

struct Args {
    seed: u64,
    out: PathBuf,
    train: usize,
    val: usize,
    test: usize,
    lr: f64,
    batch: usize,
    epochs: usize,
    every: usize,
    k: usize,
    budget: Option<usize>,
    single_bo: bool,
    max_len: usize,
}

fn parse() -> anyhow::Result<Args> {
    let mut a = Args {
        seed: 0,
        out: PathBuf::from("target/reviews-bomf"),
        train: 3000,
        val: 400,
        test: 1000,
        lr: 5e-5,
        batch: 32,
        epochs: 2,
        every: 10,
        k: 8,
        budget: None,
        single_bo: false,
        max_len: 128,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--single-bo" {
            a.single_bo = true;
            continue;
        }
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        let bad = || format!("bad value {value:?} for {flag}");
        match flag.as_str() {
            "--seed" => a.seed = value.parse().with_context(bad)?,
            "--out" => a.out = PathBuf::from(&value),
            "--train" => a.train = value.parse().with_context(bad)?,
            "--val" => a.val = value.parse().with_context(bad)?,
            "--test" => a.test = value.parse().with_context(bad)?,
            "--lr" => a.lr = value.parse().with_context(bad)?,
            "--batch" => a.batch = value.parse().with_context(bad)?,
            "--epochs" => a.epochs = value.parse().with_context(bad)?,
            "--every" => a.every = value.parse().with_context(bad)?,
            "--k" => a.k = value.parse().with_context(bad)?,
            "--budget" => a.budget = Some(value.parse().with_context(bad)?),
            "--max-len" => a.max_len = value.parse().with_context(bad)?,
            _ => bail!("unknown option {flag}"),
        }
    }
    Ok(a)
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = parse()?;
    let minilm = bomf_data::assets::minilm_dir();
    let dataset = common::rotten_tomatoes()?;
    let labels = dataset.task.labels().to_vec();
    // One split for every seed: seeds vary training and BO, not the data.
    let splits = split_by_rank(&dataset, [args.train, args.val, args.test], 0)?;

    let mut enc_config = EncoderConfig::new(ModelFamily::Bert, args.max_len);
    enc_config.model_max_length = Some(512);
    let encoder = TextEncoder::from_file(&minilm.join("tokenizer.json"), enc_config)?;
    let train_items = items_for_dataset(&encoder, &splits.train)?;
    let eval_set = |split: &Dataset| -> anyhow::Result<EvalSet> {
        let items = items_for_dataset(&encoder, split)?;
        Ok(EvalSet::new(
            split.task.clone(),
            items,
            encoder.pad_id(),
            64,
        )?)
    };
    let (validation, test) = (eval_set(&splits.validation)?, eval_set(&splits.test)?);

    let device = Default::default();
    let model_config = BertConfig::from_file(minilm.join("config.json"))?.with_labels(&labels);
    let seed = args.seed;
    let make_model = |request: ModelRequest| {
        request.reject_lora_rank()?;
        let config = if request.dropout {
            model_config.clone()
        } else {
            model_config.clone().without_dropout()
        };
        // The new head's initialisation is drawn from the backend RNG: seed it per run.
        AB::seed(&device, 1000 + seed);
        let (model, _) =
            load_bert_with_config::<AB>(&minilm, &config, Task::SequenceClassification, &device)?;
        Ok(model)
    };

    let steps_per_epoch = args.train.div_ceil(args.batch);
    let config = BomfConfig {
        train: TrainConfig {
            learning_rate: args.lr,
            schedule: ScheduleKind::Constant,
            warmup: Warmup::Ratio(0.1 / args.epochs as f64),
            budget: Budget::Steps(steps_per_epoch * args.epochs),
            max_grad_norm: Some(1.0),
            seed,
            ..TrainConfig::default()
        },
        batch_size: args.batch,
        hpbo: None,
        trajectory: TrajectoryConfig {
            rule: KeepRule::default(),
            k: args.k,
            every: args.every,
            patience: 5,
        },
        fusion: FusionBoConfig {
            budget: args.budget,
            seed,
            ..FusionBoConfig::default()
        },
        baselines: BaselinesConfig {
            loss_only_bo: args.single_bo,
            metric_only_bo: args.single_bo,
            ..BaselinesConfig::default()
        },
    };
    let started = Instant::now();
    let report = run_bomf::<AB, _>(
        &make_model,
        PipelineData {
            train_items: &train_items,
            pad_id: encoder.pad_id(),
            validation: &validation,
            test: &test,
        },
        &config,
        &device,
    )?;
    let wall = started.elapsed().as_secs_f64();

    let mut table = format!(
        "rotten tomatoes reviews seed {seed}: train {} / validation {} / test {}, K = {}, s* = {:?}, kept steps {:?}, \
         {} fusion evaluations, wall {wall:.0} s (stage 2 {:.0} s, stage 3 {:.0} s of which \
         evaluation {:.0} s, fusion {:.1} s; baselines {:.0} s)\n\n\
         | method | val accuracy | val loss | test accuracy | test loss | seconds |\n|---|---|---|---|---|---|\n",
        args.train,
        args.val,
        args.test,
        report.kept.len(),
        report.best_step,
        report.kept.iter().map(|c| c.step).collect::<Vec<_>>(),
        report.fusion_records.len(),
        report.times.trajectory,
        report.times.fusion_bo,
        report.times.fusion_eval,
        report.times.fusion_fuse,
        report.times.baselines,
    );
    for m in &report.methods {
        table += &format!(
            "| {} | {:.4} | {:.4} | {:.4} | {:.4} | {:.0} |\n",
            m.method,
            m.validation
                .metrics
                .get("accuracy")
                .copied()
                .unwrap_or(f64::NAN),
            m.validation.loss,
            m.test.metrics.get("accuracy").copied().unwrap_or(f64::NAN),
            m.test.loss,
            m.seconds
        );
    }
    println!("{table}");
    std::fs::create_dir_all(&args.out)?;
    let json = args.out.join(format!("report-seed{seed}.json"));
    std::fs::write(&json, serde_json::to_string_pretty(&report)?)?;
    std::fs::write(args.out.join(format!("table-seed{seed}.md")), &table)?;
    println!("report: {}", json.display());
    Ok(())
}
