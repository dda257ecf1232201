//! Anchor timing of one qNEHVI step at BOMF's sizes, for the side-by-side comparison with
//! BoTorch (`benches/anchor.py` runs the same step; `cargo xtask bench bo` tabulates both).
//!
//! The step is what `Optimizer::ask(1)` does after `n` observations: fit one GP per objective
//! (MAP, BoTorch's default priors), prune the baseline, build qNEHVI with 128 QMC samples and
//! maximise it with 10 restarts chosen from 512 raw samples, L-BFGS-B with at most 200
//! iterations. Inputs: `K = 10` in `[0, 1]^10`, two objectives, `n = 10 / 30 / 60`.
//!
//! The data is a fixed formula that `anchor.py` evaluates identically: point `i` is the
//! additive recurrence `x_ij = frac((i + 1) · frac(√p_j))` over the first ten primes `p_j`,
//! and the (maximised) objectives are `-Σ (x - 0.3)²` and `-Σ (x - 0.7)²`, reference point
//! `[-3, -3]`.
//!
//! Output: one JSON line per size, `{"name": "qnehvi_step_k10_n30", "seconds": <median>}`.
//!
//! `cargo run --release -p bomf-bo --example bo_anchor [-- --reps 5]` (default reps:
//! `$BOMF_BENCH_REPS`, else 5; `cargo xtask bench` passes the variable to both sides).

use std::time::Instant;

use bomf_bo::{AcquisitionKind, Objective, Optimizer, OptimizerSettings, Param, Space};

/// Input dimension (BOMF's fusion weights for ten checkpoints).
const K: usize = 10;
const PRIMES: [f64; K] = [2.0, 3.0, 5.0, 7.0, 11.0, 13.0, 17.0, 19.0, 23.0, 29.0];
const SIZES: [usize; 3] = [10, 30, 60];
const REF_POINT: [f64; 2] = [-3.0, -3.0];

/// Point `i` of the shared design (see the module doc).
fn design_point(i: usize) -> Vec<f64> {
    PRIMES
        .iter()
        .map(|p| {
            let alpha = p.sqrt().fract();
            ((i + 1) as f64 * alpha).fract()
        })
        .collect()
}

/// The two maximised objectives of the shared problem.
fn objectives(x: &[f64]) -> [f64; 2] {
    let f1 = -x.iter().map(|v| (v - 0.3).powi(2)).sum::<f64>();
    let f2 = -x.iter().map(|v| (v - 0.7).powi(2)).sum::<f64>();
    [f1, f2]
}

/// An optimiser that has seen the first `n` design points and whose next `ask` is a BO step.
fn optimizer_after(n: usize, seed: u64) -> Result<Optimizer, Box<dyn std::error::Error>> {
    let params = (0..K)
        .map(|j| Param::new(format!("x{j}"), 0.0, 1.0))
        .collect();
    let settings = OptimizerSettings {
        acquisition: Some(AcquisitionKind::QNehvi),
        n_initial: Some(n),
        seed,
        mc_samples: 128,
        ..OptimizerSettings::default()
    };
    let objectives_spec = vec![Objective::maximize("f1"), Objective::maximize("f2")];
    let mut opt = Optimizer::new(Space::new_box(params)?, objectives_spec, settings)?
        .with_ref_point(REF_POINT.to_vec())?;
    for i in 0..n {
        let x = design_point(i);
        opt.tell(&x, &objectives(&x))?;
    }
    Ok(opt)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut reps = std::env::var("BOMF_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&r: &usize| r > 0)
        .unwrap_or(5);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--reps" => {
                reps = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&r| r > 0)
                    .ok_or("--reps needs a positive integer")?;
            }
            other => return Err(format!("unknown argument {other:?} (expected --reps N)").into()),
        }
    }
    for n in SIZES {
        let mut times = Vec::with_capacity(reps);
        for rep in 0..reps {
            let mut opt = optimizer_after(n, rep as u64)?;
            let started = Instant::now();
            let x = opt.ask(1)?;
            times.push(started.elapsed().as_secs_f64());
            std::hint::black_box(x);
        }
        println!(
            "{}",
            serde_json::json!({"name": format!("qnehvi_step_k{K}_n{n}"), "seconds": median(times)})
        );
    }
    Ok(())
}
