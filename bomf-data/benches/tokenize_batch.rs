//! Throughput of tokenisation and batching.
//!
//! Uses the real MiniLM tokenizer and Rotten Tomatoes review snippets when the assets are
//! installed, otherwise the tiny committed WordPiece fixture and synthetic sentences, so the
//! bench always runs. Run: `cargo bench -p bomf-data --bench tokenize_batch`.

use std::hint::black_box;
use std::path::Path;

use bomf_data::assets;
use bomf_data::batch::{BatchConfig, Batcher, Item, ItemTarget};
use bomf_data::readers::tabular::{ColumnMapping, read_tabular};
use bomf_data::task::Example;
use bomf_data::tokenize::{EncoderConfig, ModelFamily, TextEncoder};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const N: usize = 2000;

fn inputs() -> (TextEncoder, Vec<Example>) {
    let config = EncoderConfig::new(ModelFamily::Bert, 128);
    let tokenizer = assets::minilm_dir().join("tokenizer.json");
    let reviews = ColumnMapping::classification(&["text"], "category");
    if tokenizer.is_file()
        && let Ok(dataset) = read_tabular(&assets::rotten_tomatoes_csv(), &reviews)
        && let Ok(encoder) = TextEncoder::from_file(&tokenizer, config.clone())
    {
        return (encoder, dataset.examples.into_iter().take(N).collect());
    }
    eprintln!("assets missing: benchmarking the WordPiece fixture on synthetic sentences");
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer/wordpiece.json");
    let encoder =
        TextEncoder::from_file(&fixture, config).expect("the committed fixture tokenizer loads");
    let examples = (0..N)
        .map(|i| Example {
            id: i.to_string(),
            inputs: vec!["the quick brown fox jumps over the lazy dog ".repeat(1 + i % 9)],
            options: vec![],
            target: None,
        })
        .collect();
    (encoder, examples)
}

fn bench(c: &mut Criterion) {
    let (encoder, examples) = inputs();
    let mut group = c.benchmark_group("reviews_2000");
    group.throughput(Throughput::Elements(examples.len() as u64));
    group.sample_size(10);
    group.bench_function("tokenize", |b| {
        b.iter(|| black_box(encoder.encode_examples(black_box(&examples)).unwrap()))
    });
    let (encoded, _) = encoder.encode_examples(&examples).unwrap();
    let items: Vec<Item> = encoded
        .into_iter()
        .map(|e| Item::new(e, ItemTarget::Class(0)))
        .collect();
    group.bench_function("bucket_and_pad", |b| {
        b.iter(|| {
            let batcher = Batcher::new(
                black_box(items.clone()),
                encoder.pad_id(),
                BatchConfig::train(32, 0),
            )
            .unwrap();
            black_box(batcher.epoch(0))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
