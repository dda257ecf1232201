//! How much padding length-bucketed batching saves on a real dataset.
//!
//! Loads the Rotten Tomatoes review snippets from the assets (`cargo xtask assets`), tokenises
//! every input with the all-MiniLM-L6-v2 tokenizer (max length 128), and counts the token slots
//! a model processes under each padding scheme:
//! - pad every input to 512 (the reference code) or to 128 (the max length used here);
//! - pad to the longest row of randomly shuffled batches;
//! - mega-batch length bucketing (shuffled, sorted within windows of 50 batches);
//! - the whole set sorted by length (evaluation order).
//!
//! Run: `cargo run -p bomf-data --release --example padding [-- --batch-size 32 --seed 0]`

use std::process::ExitCode;

use bomf_data::assets;
use bomf_data::batch::{BatchConfig, Batcher, Bucketing, Item, ItemTarget, PadTo};
use bomf_data::readers::tabular::{ColumnMapping, read_tabular};
use bomf_data::tokenize::{EncoderConfig, ModelFamily, TextEncoder};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn arg(name: &str, default: u64) -> Result<u64, Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => Ok(args
            .get(i + 1)
            .ok_or(format!("{name} needs a value"))?
            .parse()?),
        None => Ok(default),
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let batch_size = arg("--batch-size", 32)? as usize;
    let seed = arg("--seed", 0)?;
    let reviews = assets::rotten_tomatoes_csv();
    let tokenizer = assets::minilm_dir().join("tokenizer.json");
    for path in [&reviews, &tokenizer] {
        if !path.exists() {
            return Err(format!("{} is missing: run `cargo xtask assets`", path.display()).into());
        }
    }

    let started = std::time::Instant::now();
    let dataset = read_tabular(
        &reviews,
        &ColumnMapping::classification(&["text"], "category"),
    )?;
    let encoder = TextEncoder::from_file(&tokenizer, EncoderConfig::new(ModelFamily::Bert, 128))?;
    let (encoded, report) = encoder.encode_examples(&dataset.examples)?;
    let elapsed = started.elapsed();
    let items: Vec<Item> = encoded
        .into_iter()
        .map(|e| Item::new(e, ItemTarget::None))
        .collect();
    let n = items.len();
    let real: usize = items.iter().map(|i| i.ids.len()).sum();
    let longest = items.iter().map(|i| i.ids.len()).max().unwrap_or(0);

    println!(
        "dataset: {} ({n} examples), tokenizer: all-MiniLM-L6-v2, max length 128",
        dataset.task.name
    );
    println!(
        "read + tokenised in {:.2} s; {real} real tokens (mean {:.1}, longest {longest}); {} truncated to 128",
        elapsed.as_secs_f64(),
        real as f64 / n as f64,
        report.truncated
    );
    println!("batch size {batch_size}, seed {seed}\n");

    let pad = encoder.pad_id();
    let stats = |config: BatchConfig| -> Result<usize, bomf_data::DataError> {
        Ok(Batcher::new(items.clone(), pad, config)?
            .padding_stats(0)
            .padded_slots)
    };
    let train = BatchConfig::train(batch_size, seed);
    let rows = [
        ("pad to 512 (reference)", n * 512),
        ("pad to 128 (max length)", n * 128),
        (
            "random batches, pad to longest",
            stats(BatchConfig {
                bucketing: Bucketing::None,
                ..train
            })?,
        ),
        ("length-bucketed (mega-batch 50), shuffled", stats(train)?),
        (
            "sorted by length (evaluation)",
            stats(BatchConfig::eval(batch_size))?,
        ),
        (
            "  same, padded to a multiple of 8",
            stats(BatchConfig {
                pad_to: PadTo::MultipleOf(8),
                ..BatchConfig::eval(batch_size)
            })?,
        ),
    ];
    println!(
        "{:<44} {:>12} {:>10} {:>12} {:>12}",
        "scheme", "token slots", "padding", "saved v 512", "saved v 128"
    );
    for (name, slots) in rows {
        let saved = |base: usize| 100.0 * (1.0 - slots as f64 / base as f64);
        println!(
            "{name:<44} {slots:>12} {:>9.1}% {:>11.1}% {:>11.1}%",
            100.0 * (1.0 - real as f64 / slots as f64),
            saved(n * 512),
            saved(n * 128)
        );
    }
    Ok(())
}
