//! How long the dataset-level metrics take on evaluation sets of realistic size.
//!
//! Run with `cargo bench -p bomf-data --bench metrics`. Inputs are synthetic but sized like the
//! paper's validation sets (10k classification labels, 2k generated texts).

use std::hint::black_box;

use bomf_data::metrics::{self, RougeScorer, SquadV2Options};
use criterion::{Criterion, criterion_group, criterion_main};

/// A tiny deterministic generator (no RNG dependency needed for a benchmark).
fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *state >> 33
}

const WORDS: &[&str] = &[
    "the",
    "cat",
    "sat",
    "on",
    "mat",
    "police",
    "reported",
    "that",
    "a",
    "man",
    "was",
    "seen",
    "running",
    "near",
    "station",
    "yesterday",
    "evening",
    "and",
    "officers",
    "arrived",
    "quickly",
    "prices",
    "rose",
    "3.5%",
    "in",
    "first",
    "quarter",
    "Amanda",
    "baked",
    "cookies",
    "for",
    "Jerry",
];

fn text(state: &mut u64, len: usize) -> String {
    (0..len)
        .map(|_| WORDS[(lcg(state) as usize) % WORDS.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

fn bench_metrics(c: &mut Criterion) {
    let mut state = 7u64;
    let truth: Vec<usize> = (0..10_000)
        .map(|_| (lcg(&mut state) % 3) as usize)
        .collect();
    let pred: Vec<usize> = truth
        .iter()
        .map(|&t| {
            if lcg(&mut state).is_multiple_of(4) {
                (t + 1) % 3
            } else {
                t
            }
        })
        .collect();
    let x: Vec<f64> = (0..10_000)
        .map(|_| (lcg(&mut state) % 1000) as f64 / 200.0)
        .collect();
    let y: Vec<f64> = x
        .iter()
        .map(|v| v + (lcg(&mut state) % 100) as f64 / 100.0)
        .collect();
    let hyps: Vec<String> = (0..2_000).map(|_| text(&mut state, 25)).collect();
    let refs: Vec<Vec<String>> = (0..2_000).map(|_| vec![text(&mut state, 25)]).collect();
    let answers: Vec<String> = (0..2_000).map(|_| text(&mut state, 3)).collect();

    c.bench_function("f1_macro+mcc 10k labels", |b| {
        b.iter(|| {
            let f1 = metrics::f1_macro(black_box(&truth), black_box(&pred), 3).unwrap();
            let mcc = metrics::matthews_corrcoef(&truth, &pred, 3).unwrap();
            (f1, mcc)
        })
    });
    c.bench_function("spearman 10k", |b| {
        b.iter(|| metrics::spearman(black_box(&x), black_box(&y)).unwrap())
    });
    c.bench_function("squad_v2 2k", |b| {
        b.iter(|| {
            metrics::squad_v2(black_box(&answers), &refs, &SquadV2Options::default()).unwrap()
        })
    });
    c.bench_function("rouge 2k x 25 tokens", |b| {
        b.iter(|| metrics::rouge(black_box(&hyps), &refs).unwrap())
    });
    c.bench_function("rouge stemmed 2k x 25 tokens", |b| {
        let scorer = RougeScorer { use_stemmer: true };
        b.iter(|| scorer.corpus(black_box(&hyps), &refs).unwrap())
    });
    c.bench_function("bleu 2k x 25 tokens", |b| {
        b.iter(|| metrics::corpus_bleu(black_box(&hyps), &refs).unwrap())
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench_metrics
}
criterion_main!(benches);
