//! Hypervolume, box decompositions and hypervolume-improvement kernels at the sizes qNEHVI
//! meets: fronts of n = 10, 30, 60 points in m = 2 and 3 (every point non-dominated, the worst
//! case), and one acquisition evaluation's worth of HVI kernels (128 MC samples, q = 1, ~20
//! cells). Run: `cargo bench -p bomf-bo --bench partitioning`.

use std::hint::black_box;

use bomf_bo::acquisition::{LogHviParams, hvi, hvi_with_grad, log_hvi, log_hvi_with_grad};
use bomf_bo::partitioning::{hypervolume, nondominated_cells};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, criterion_group, criterion_main};

/// Deterministic uniform numbers in [0, 1) (PCG-style LCG), so runs are comparable.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `n` mutually non-dominated points on the positive unit sphere in `m` dimensions.
fn sphere_front(n: usize, m: usize, seed: u64) -> Vec<f64> {
    let mut rng = Lcg(seed);
    let mut out = Vec::with_capacity(n * m);
    for _ in 0..n {
        let v: Vec<f64> = (0..m).map(|_| rng.next() + 1e-3).collect();
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        out.extend(v.iter().map(|x| x / norm));
    }
    out
}

fn bench_partitioning(c: &mut Criterion) {
    let mut group = c.benchmark_group("partitioning");
    for m in [2usize, 3] {
        let r = vec![0.0; m];
        for n in [10usize, 30, 60] {
            let front = sphere_front(n, m, 7 + n as u64);
            group.bench_with_input(
                BenchmarkId::new(format!("hypervolume_m{m}"), n),
                &front,
                |b, f| b.iter(|| hypervolume(black_box(f), m, &r).unwrap()),
            );
            group.bench_with_input(
                BenchmarkId::new(format!("nondominated_cells_m{m}"), n),
                &front,
                |b, f| b.iter(|| nondominated_cells(black_box(f), m, &r).unwrap()),
            );
        }
    }
    group.finish();
}

/// Times `kernel(y, g)` summed over the consecutive batches `y` of `width` values in `samples`
/// (`g`: a gradient buffer of `width`).
fn bench_sum_over_samples(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: BenchmarkId,
    samples: &[f64],
    width: usize,
    mut kernel: impl FnMut(&[f64], &mut [f64]) -> f64,
) {
    group.bench_function(id, |b| {
        let mut g = vec![0.0; width];
        b.iter(|| {
            samples
                .chunks_exact(width)
                .map(|y| kernel(black_box(y), &mut g))
                .sum::<f64>()
        })
    });
}

fn bench_hvi(c: &mut Criterion) {
    let mut group = c.benchmark_group("hvi_128_samples");
    // 19 Pareto points in 2-D → 20 non-dominated cells.
    for (m, n_front) in [(2usize, 19usize), (3, 6)] {
        let front = sphere_front(n_front, m, 11);
        let cells = nondominated_cells(&front, m, &vec![0.0; m]).unwrap();
        let mut rng = Lcg(3);
        let samples: Vec<f64> = (0..128 * m).map(|_| 0.2 + 0.9 * rng.next()).collect();
        let label = format!("m{m}_cells{}", cells.len());
        let params = LogHviParams::QLOGNEHVI;
        let id = |name: &str| BenchmarkId::new(name, &label);
        bench_sum_over_samples(&mut group, id("hvi_q1"), &samples, m, |y, _| {
            hvi(&cells, y).unwrap()
        });
        bench_sum_over_samples(&mut group, id("hvi_with_grad_q1"), &samples, m, |y, g| {
            hvi_with_grad(&cells, y, g).unwrap()
        });
        bench_sum_over_samples(&mut group, id("log_hvi_q1"), &samples, m, |y, _| {
            log_hvi(&cells, y, &params).unwrap()
        });
        bench_sum_over_samples(
            &mut group,
            id("log_hvi_with_grad_q1"),
            &samples,
            m,
            |y, g| log_hvi_with_grad(&cells, y, &params, g).unwrap(),
        );
        // q = 2: 64 pairs.
        bench_sum_over_samples(&mut group, id("hvi_q2"), &samples, 2 * m, |y, _| {
            hvi(&cells, y).unwrap()
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(1));
    targets = bench_partitioning, bench_hvi
}
criterion_main!(benches);
