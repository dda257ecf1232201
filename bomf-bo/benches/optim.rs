//! Acquisition-optimisation benchmarks: the L-BFGS-B core alone, and the whole
//! `optimize_acqf` recipe (512 raw samples, 10 restarts, maxiter 200) on a cheap analytic
//! acquisition, so the figures measure the optimiser's own overhead, not a GP; and one whole
//! single-objective BO step of the ask/tell optimiser (GP fit + qLogEI, 128 QMC samples,
//! BoTorch's optimisation settings) over K = 10 fusion weights with 30 observations.
//!
//! `cargo bench -p bomf-bo --bench optim`

use std::hint::black_box;

use bomf_bo::acquisition::Acquisition;
use bomf_bo::lbfgsb::minimize;
use bomf_bo::optim::{Bounds, optimize_acqf};
use bomf_bo::{
    AcqfOptions, LbfgsbOptions, Objective, Optimizer, OptimizerSettings, SimplexMap, Space,
};
use criterion::{Criterion, criterion_group, criterion_main};

fn rosenbrock(x: &[f64], g: &mut [f64]) -> f64 {
    g.iter_mut().for_each(|v| *v = 0.0);
    let mut f = 0.0;
    for i in 0..x.len() - 1 {
        let a = x[i + 1] - x[i] * x[i];
        let b = 1.0 - x[i];
        f += 100.0 * a * a + b * b;
        g[i] += -400.0 * x[i] * a - 2.0 * b;
        g[i + 1] += 200.0 * a;
    }
    f
}

/// Three Gaussian bumps in 10-D with an analytic gradient (K = 10 fusion weights).
struct Bumps {
    centres: Vec<Vec<f64>>,
}

impl Acquisition for Bumps {
    fn dim(&self) -> usize {
        10
    }
    fn value(&self, x: &[f64]) -> f64 {
        let mut g = vec![0.0; x.len()];
        self.value_and_grad(x, &mut g)
    }
    fn value_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        grad.iter_mut().for_each(|v| *v = 0.0);
        let mut total = 0.0;
        for (k, c) in self.centres.iter().enumerate() {
            let r2: f64 = x.iter().zip(c).map(|(a, b)| (a - b).powi(2)).sum();
            let v = (1.0 + k as f64 * 0.2) * (-r2 / 0.18).exp();
            total += v;
            for j in 0..x.len() {
                grad[j] += -v * 2.0 * (x[j] - c[j]) / 0.18;
            }
        }
        total
    }
}

fn bench(c: &mut Criterion) {
    let lower = vec![-2.0; 10];
    let upper: Vec<f64> = (0..10)
        .map(|i| if i % 2 == 0 { 0.7 } else { 2.0 })
        .collect();
    c.bench_function("lbfgsb_rosenbrock_10d_bounded", |b| {
        b.iter(|| {
            minimize(
                rosenbrock,
                black_box(&[-1.0; 10]),
                &lower,
                &upper,
                &LbfgsbOptions::default(),
            )
        })
    });

    let acq = Bumps {
        centres: vec![
            vec![0.2; 10],
            vec![0.7; 10],
            (0..10).map(|i| i as f64 / 10.0).collect(),
        ],
    };
    let options = AcqfOptions::default();
    c.bench_function("optimize_acqf_10d_512raw_10restarts", |b| {
        b.iter(|| optimize_acqf(black_box(&acq), 1, &Bounds::unit(10), &options))
    });
}

fn bench_ask(c: &mut Criterion) {
    let k = 10;
    let space = Space::simplex(
        (0..k).map(|i| format!("w{i}")).collect(),
        SimplexMap::Normalize,
    )
    .unwrap();
    let settings = OptimizerSettings {
        n_initial: Some(30),
        ..OptimizerSettings::default()
    };
    let mut opt = Optimizer::new(space, vec![Objective::maximize("score")], settings).unwrap();
    for w in opt.ask(30).unwrap() {
        let y = -w
            .iter()
            .enumerate()
            .map(|(i, v)| (v - 0.02 * i as f64).powi(2))
            .sum::<f64>();
        opt.tell(&w, &[y]).unwrap();
    }
    let mut group = c.benchmark_group("ask");
    group.sample_size(10);
    group.bench_function("qlogei_step_k10_n30", |b| {
        b.iter(|| {
            let mut o = opt.clone();
            o.ask(1).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench, bench_ask);
criterion_main!(benches);
