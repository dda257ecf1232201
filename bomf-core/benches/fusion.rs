//! Fusion bandwidth: θ(w) for K = 10 MiniLM-sized checkpoints (22.7M parameters each) against a
//! plain `memcpy` of the same number of bytes.
//!
//! Traffic of one fusion: K inputs read + 1 output written = 11 × 22.7M × 4 B ≈ 1.0 GB. The
//! memcpy baseline copies a buffer of half that size (read + write = the same 1.0 GB of
//! traffic). Criterion's throughput lines give GB/s for both; the fusion's fraction of memcpy
//! bandwidth is their ratio.

use std::hint::black_box;

use bomf_core::fusion::weighted_sum_into;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rayon::prelude::*;

/// MiniLM-L6-H384 (embeddings 11.9M, 6 layers × 1.77M, pooler) + a 4-class head.
const PARAMS: usize = 22_712_452;
const K: usize = 10;

fn fusion(c: &mut Criterion) {
    let inputs: Vec<Vec<f32>> = (0..K)
        .map(|k| (0..PARAMS).map(|i| ((i + k) % 97) as f32 * 0.01).collect())
        .collect();
    let refs: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
    let weights: Vec<f32> = (0..K).map(|k| 1.0 / (k + 1) as f32).collect();
    let mut out = vec![0.0f32; PARAMS];
    let traffic = ((K + 1) * PARAMS * 4) as u64;

    let mut group = c.benchmark_group("fusion");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(traffic));
    group.bench_function("weighted_sum_k10_minilm", |b| {
        b.iter(|| weighted_sum_into(black_box(&mut out), black_box(&refs), &weights).unwrap())
    });

    // memcpy of the same traffic: read traffic/2 bytes, write traffic/2 bytes.
    let n = (K + 1) * PARAMS / 2;
    let src = vec![1.0f32; n];
    let mut dst = vec![0.0f32; n];
    group.bench_function("memcpy_same_traffic", |b| {
        b.iter(|| dst.copy_from_slice(black_box(&src)))
    });
    group.bench_function("memcpy_same_traffic_parallel", |b| {
        b.iter(|| {
            dst.par_chunks_mut(1 << 16)
                .zip(src.par_chunks(1 << 16))
                .for_each(|(d, s)| d.copy_from_slice(black_box(s)))
        })
    });
    group.finish();
}

criterion_group!(benches, fusion);
criterion_main!(benches);
