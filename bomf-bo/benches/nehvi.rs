//! qNEHVI / qLogNEHVI benchmarks at BOMF's sizes: d = 10 inputs, 2 objectives, 128 QMC
//! samples, n = 10 / 30 / 60 baseline points, one candidate (sequential greedy). Measures the
//! construction (pruning with 2048 samples, cached factors, per-sample boxes) and one
//! value + analytic gradient evaluation (what each L-BFGS-B step costs).
//!
//! `cargo bench -p bomf-bo --bench nehvi`

use std::hint::black_box;

use bomf_bo::acquisition::{Acquisition, NehviOptions, QNoisyExpectedHypervolumeImprovement};
use bomf_bo::gp::{GaussianProcess, Kernel, KernelKind};
use bomf_bo::sampling::sobol_design;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

const D: usize = 10;

/// Two conflicting smooth objectives observed at `n` Sobol points, with fixed hyperparameters.
fn problem(n: usize) -> (Vec<f64>, Vec<GaussianProcess>) {
    let x = sobol_design(n, D, 1).unwrap();
    let f1: Vec<f64> = x
        .chunks_exact(D)
        .map(|r| -r.iter().map(|v| (v - 0.3).powi(2)).sum::<f64>())
        .collect();
    let f2: Vec<f64> = x
        .chunks_exact(D)
        .map(|r| -r.iter().map(|v| (v - 0.7).powi(2)).sum::<f64>())
        .collect();
    let gp = |y: &[f64]| {
        let kernel = Kernel {
            kind: KernelKind::Matern52,
            lengthscales: vec![0.8; D],
            outputscale: 1.0,
        };
        GaussianProcess::with_hyperparameters(&x, y, D, None, kernel, &[1e-3], 0.0).unwrap()
    };
    let gps = vec![gp(&f1), gp(&f2)];
    (x, gps)
}

fn bench_nehvi(c: &mut Criterion) {
    let mut group = c.benchmark_group("qnehvi_d10_m2_128");
    group.sample_size(10);
    for n in [10, 30, 60] {
        let (x, gps) = problem(n);
        let r = [-3.0, -3.0];
        let cand = vec![0.45; D];
        for (name, options) in [
            ("qnehvi", NehviOptions::default()),
            ("qlognehvi", NehviOptions::log()),
        ] {
            group.bench_with_input(BenchmarkId::new(format!("{name}_build"), n), &n, |b, _| {
                b.iter(|| {
                    QNoisyExpectedHypervolumeImprovement::new(
                        &gps,
                        black_box(&x),
                        &r,
                        &[],
                        &options,
                    )
                    .unwrap()
                })
            });
            let acq =
                QNoisyExpectedHypervolumeImprovement::new(&gps, &x, &r, &[], &options).unwrap();
            let mut grad = vec![0.0; D];
            group.bench_with_input(
                BenchmarkId::new(format!("{name}_value_grad"), n),
                &n,
                |b, _| b.iter(|| acq.value_and_grad(black_box(&cand), &mut grad)),
            );
            group.bench_with_input(BenchmarkId::new(format!("{name}_value"), n), &n, |b, _| {
                b.iter(|| acq.value(black_box(&cand)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_nehvi);
criterion_main!(benches);
