//! GP benchmarks at the sizes of BOMF's loops: MAP fit of both presets for n = 10, 30, 60
//! observations in d = 10 (default options: 1 + 4 starts), and the joint posterior over
//! n + 1 points (what qNEHVI's baseline factorisation needs), plus one qLogEI value+gradient.
//! Long histories (`bomf bo suggest` with hundreds to `MAX_EXACT_GP` observations): the fit
//! (starts screened on a subset, blocked linear algebra) and the joint posterior over all
//! training points (qNEHVI's baseline pruning) at n = 300 and 1,000. The whole BO step at
//! n = 100 / 1,000 / 10,000: `cargo run --release -p bomf-bo --example bo_suggest_scaling`.
//!
//! `cargo bench -p bomf-bo --bench gp`

use std::hint::black_box;

use bomf_bo::acquisition::{Acquisition, QLogExpectedImprovement};
use bomf_bo::gp::{FitOptions, GaussianProcess, Preset};
use bomf_bo::sampling::{NormalBaseSamples, sobol_design};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

const D: usize = 10;

/// `n` Sobol points in [0,1]^10 with a smooth, mildly noisy objective.
fn data(n: usize) -> (Vec<f64>, Vec<f64>) {
    let x = sobol_design(n, D, 1).unwrap();
    let y = x
        .chunks_exact(D)
        .enumerate()
        .map(|(i, r)| {
            (3.0 * r[0]).sin()
                + r.iter().map(|v| (v - 0.4).powi(2)).sum::<f64>()
                + 0.01 * ((i * 37 % 11) as f64 - 5.0)
        })
        .collect();
    (x, y)
}

fn bench_fit(c: &mut Criterion) {
    let mut group = c.benchmark_group("gp_fit_d10");
    group.sample_size(10);
    for preset in [Preset::RbfDimScaled, Preset::MaternGamma] {
        for n in [10, 30, 60] {
            let (x, y) = data(n);
            let opts = FitOptions {
                preset,
                ..FitOptions::default()
            };
            group.bench_with_input(BenchmarkId::new(format!("{preset:?}"), n), &n, |b, _| {
                b.iter(|| {
                    GaussianProcess::fit(black_box(&x), black_box(&y), D, None, &opts).unwrap()
                })
            });
        }
    }
    group.finish();
}

fn bench_posterior(c: &mut Criterion) {
    let mut group = c.benchmark_group("gp_joint_posterior_n_plus_1");
    for n in [10, 30, 60] {
        let (x, y) = data(n);
        let gp = GaussianProcess::fit(&x, &y, D, None, &FitOptions::default()).unwrap();
        let mut pts = x.clone();
        pts.extend(std::iter::repeat_n(0.37, D));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| gp.posterior_joint(black_box(&pts)).unwrap())
        });
    }
    group.finish();
}

fn bench_qlogei(c: &mut Criterion) {
    let (x, y) = data(30);
    let gp = GaussianProcess::fit(&x, &y, D, None, &FitOptions::default()).unwrap();
    let best = y.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let acq = QLogExpectedImprovement::new(&gp, best, NormalBaseSamples::new(128, 1, 0).unwrap())
        .unwrap();
    let point = vec![0.37; D];
    let mut grad = vec![0.0; D];
    c.bench_function("qlogei_value_and_grad_n30_q1_128samples", |b| {
        b.iter(|| acq.value_and_grad(black_box(&point), &mut grad))
    });
}

fn bench_large(c: &mut Criterion) {
    let mut group = c.benchmark_group("gp_long_history_d10");
    group.sample_size(10);
    for n in [300, 1000] {
        let (x, y) = data(n);
        let opts = FitOptions::default();
        group.bench_with_input(BenchmarkId::new("fit", n), &n, |b, _| {
            b.iter(|| GaussianProcess::fit(black_box(&x), black_box(&y), D, None, &opts).unwrap())
        });
        let gp = GaussianProcess::fit(&x, &y, D, None, &opts).unwrap();
        group.bench_with_input(
            BenchmarkId::new("joint_posterior_at_train", n),
            &n,
            |b, _| b.iter(|| gp.posterior_joint(black_box(&x)).unwrap()),
        );
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_fit,
    bench_posterior,
    bench_qlogei,
    bench_large
);
criterion_main!(benches);
