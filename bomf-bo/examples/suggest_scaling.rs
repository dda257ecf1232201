//! Time of one BO step (`Optimizer::ask(1)`, what `bomf bo suggest` runs after replaying its
//! history) against the length of the history: n = 100, 1,000 and 10,000 observations, one
//! objective (qLogEI) and two (qNEHVI), in a 6-dimensional box, 1% failed evaluations.
//! Beyond `MAX_EXACT_GP` observations the GP is fitted on a subset, which the output marks.
//!
//! Output: one JSON line per case, `{"name": "suggest_m2_n1000", "seconds": ..,
//! "gp_points": ..}` (median of `--reps`, default 1).
//!
//! `cargo run --release -p bomf-bo --example bo_suggest_scaling [-- --reps 3] [-- --sizes 100,1000]`

use std::time::Instant;

use bomf_bo::sampling::sobol_design;
use bomf_bo::{Objective, Optimizer, OptimizerSettings, Param, Space};

const D: usize = 6;
const DEFAULT_SIZES: [usize; 3] = [100, 1000, 10_000];

/// An optimiser that has been told `n` evaluations of a smooth problem with `m` objectives
/// (every 97th a failure); its next `ask` is a BO step.
fn optimizer_after(n: usize, m: usize) -> Result<Optimizer, Box<dyn std::error::Error>> {
    let params = (0..D)
        .map(|j| Param::new(format!("x{j}"), 0.0, 1.0))
        .collect();
    let objectives = match m {
        1 => vec![Objective::maximize("acc")],
        _ => vec![Objective::maximize("acc"), Objective::minimize("loss")],
    };
    let mut opt = Optimizer::new(
        Space::new_box(params)?,
        objectives,
        OptimizerSettings::default(),
    )?;
    let xs = sobol_design(n, D, 42)?;
    for (i, x) in xs.chunks_exact(D).enumerate() {
        let acc = 1.0 - x.iter().map(|v| (v - 0.3).powi(2)).sum::<f64>() / D as f64
            + 0.01 * (x[0] * 977.0).sin();
        let loss =
            x.iter().map(|v| (v - 0.7).powi(2)).sum::<f64>() / D as f64 + 0.1 * (3.0 * x[1]).sin();
        let y = if i % 97 == 96 {
            vec![f64::NAN; m]
        } else {
            [acc, loss][..m].to_vec()
        };
        opt.tell(x, &y)?;
    }
    Ok(opt)
}

fn parse_args() -> Result<(usize, Vec<usize>), Box<dyn std::error::Error>> {
    let (mut reps, mut sizes) = (1, DEFAULT_SIZES.to_vec());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or(format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--reps" => reps = value.parse::<usize>()?.max(1),
            "--sizes" => sizes = value.split(',').map(str::parse).collect::<Result<_, _>>()?,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    Ok((reps, sizes))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (reps, sizes) = parse_args()?;
    for m in [1, 2] {
        for &n in &sizes {
            let mut times = Vec::with_capacity(reps);
            let mut gp_points = 0;
            for _ in 0..reps {
                let mut opt = optimizer_after(n, m)?;
                gp_points = opt.gp_subset().map_or(opt.n_successful(), |s| s.used);
                let started = Instant::now();
                std::hint::black_box(opt.ask(1)?);
                times.push(started.elapsed().as_secs_f64());
            }
            times.sort_by(f64::total_cmp);
            println!(
                "{}",
                serde_json::json!({
                    "name": format!("suggest_m{m}_n{n}"),
                    "seconds": times[times.len() / 2],
                    "gp_points": gp_points,
                })
            );
        }
    }
    Ok(())
}
