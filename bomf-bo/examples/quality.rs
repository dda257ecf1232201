//! Optimisation quality on BoTorch's standard multi-objective test problems, to compare with
//! BoTorch's own qNEHVI loop (`benches/quality/botorch_quality.py`, same problems, budget and
//! initial design size; `benches/quality/tabulate.py` puts both side by side).
//!
//! Each run: `2(d + 1)` Sobol points, then `steps` qNEHVI steps of `Optimizer::ask(1)` with the
//! default settings (128 QMC samples, 10 restarts from 512 raw samples). After every
//! evaluation it records the dominated hypervolume (minimisation frame, the problem's
//! reference point) and at the end `log10(max_hv - hv)`, the "log hypervolume difference" of
//! BoTorch's tutorials (lower is better).
//!
//! The problems are BoTorch's definitions (`botorch/test_functions/multi_objective.py`, all
//! minimised; see the reference notes §1.11 for `ref_point` and `max_hv`).
//!
//! Output: one JSON line per (problem, seed).
//!
//! ```text
//! cargo run --release -p bomf-bo --example quality -- \
//!     [--problems branincurrin,zdt1,zdt2,dtlz2_m2,dtlz2_m3] [--seeds 10] [--steps 20] \
//!     [--first-seed 0] [--anchors true|false]
//! ```
//!
//! `--anchors false` turns off the raw candidates around the incumbents
//! (`AcqfOptions::anchor_incumbents`), i.e. BoTorch's plain `optimize_acqf` recipe (ablation).
//!
//! With `BOMF_QUALITY_TRACE=1` set, every evaluated point is also written to stderr as a
//! `TRACE {json}` line (for diagnosis, e.g. replaying one step in BoTorch on the same data).
//!
//! `-- --check-points` instead prints every problem's values at a few fixed points, which
//! `benches/quality/check_problems.py` compares with BoTorch's own test functions.

use std::f64::consts::PI;

use bomf_bo::{
    AcquisitionKind, Objective, Optimizer, OptimizerSettings, Param, Space, hypervolume,
};

/// One benchmark problem: a minimised vector function on `[0, 1]^d`.
#[derive(Debug, Clone, Copy)]
enum Problem {
    BraninCurrin,
    Zdt1,
    Zdt2,
    Dtlz2M2,
    Dtlz2M3,
}

const ALL: [Problem; 5] = [
    Problem::BraninCurrin,
    Problem::Zdt1,
    Problem::Zdt2,
    Problem::Dtlz2M2,
    Problem::Dtlz2M3,
];

impl Problem {
    fn name(self) -> &'static str {
        match self {
            Self::BraninCurrin => "branincurrin",
            Self::Zdt1 => "zdt1",
            Self::Zdt2 => "zdt2",
            Self::Dtlz2M2 => "dtlz2_m2",
            Self::Dtlz2M3 => "dtlz2_m3",
        }
    }

    fn dim(self) -> usize {
        match self {
            Self::BraninCurrin => 2,
            _ => 6,
        }
    }

    fn n_objectives(self) -> usize {
        match self {
            Self::Dtlz2M3 => 3,
            _ => 2,
        }
    }

    fn ref_point(self) -> Vec<f64> {
        match self {
            Self::BraninCurrin => vec![18.0, 6.0],
            Self::Zdt1 | Self::Zdt2 => vec![11.0, 11.0],
            Self::Dtlz2M2 => vec![1.1; 2],
            Self::Dtlz2M3 => vec![1.1; 3],
        }
    }

    /// BoTorch's `_max_hv` (ZDT, BraninCurrin) or its closed form (DTLZ2:
    /// `1.1^m − π^{m/2} / Γ(m/2 + 1) / 2^m`).
    fn max_hv(self) -> f64 {
        match self {
            Self::BraninCurrin => 59.36011874867746,
            Self::Zdt1 => 120.0 + 2.0 / 3.0,
            Self::Zdt2 => 120.0 + 1.0 / 3.0,
            // Γ(2) = 1: π / 4.
            Self::Dtlz2M2 => 1.1f64.powi(2) - PI / 4.0,
            // Γ(5/2) = 3√π / 4: π^{3/2} / (3√π / 4) / 8 = π / 6.
            Self::Dtlz2M3 => 1.1f64.powi(3) - PI / 6.0,
        }
    }

    fn eval(self, x: &[f64]) -> Vec<f64> {
        match self {
            Self::BraninCurrin => branin_currin(x),
            Self::Zdt1 => {
                let (f1, g) = zdt_head(x);
                vec![f1, g * (1.0 - (f1 / g).sqrt())]
            }
            Self::Zdt2 => {
                let (f1, g) = zdt_head(x);
                vec![f1, g * (1.0 - (f1 / g).powi(2))]
            }
            Self::Dtlz2M2 => dtlz2(x, 2),
            Self::Dtlz2M3 => dtlz2(x, 3),
        }
    }
}

fn branin_currin(x: &[f64]) -> Vec<f64> {
    let (u, v) = (15.0 * x[0] - 5.0, 15.0 * x[1]);
    let branin = (v - 5.1 / (4.0 * PI * PI) * u * u + 5.0 / PI * u - 6.0).powi(2)
        + 10.0 * (1.0 - 1.0 / (8.0 * PI)) * u.cos()
        + 10.0;
    let (a, b) = (x[0], x[1]);
    let currin = (1.0 - (-1.0 / (2.0 * b)).exp())
        * (2300.0 * a.powi(3) + 1900.0 * a * a + 2092.0 * a + 60.0)
        / (100.0 * a.powi(3) + 500.0 * a * a + 4.0 * a + 20.0);
    vec![branin, currin]
}

/// ZDT's first objective and `g = 1 + 9 / (d − 1) · Σ_{i ≥ 1} x_i`.
fn zdt_head(x: &[f64]) -> (f64, f64) {
    let d = x.len();
    let g = 1.0 + 9.0 / (d - 1) as f64 * x[1..].iter().sum::<f64>();
    (x[0], g)
}

/// DTLZ2 with `m` objectives: the last `k = d − m + 1` inputs set the distance to the unit
/// sphere, the first `m − 1` the position on it.
fn dtlz2(x: &[f64], m: usize) -> Vec<f64> {
    let k = x.len() - m + 1;
    let g: f64 = x[x.len() - k..].iter().map(|v| (v - 0.5).powi(2)).sum();
    (0..m)
        .map(|i| {
            let idx = m - 1 - i;
            let mut f = 1.0 + g;
            for v in &x[..idx] {
                f *= (v * PI / 2.0).cos();
            }
            if i > 0 {
                f *= (x[idx] * PI / 2.0).sin();
            }
            f
        })
        .collect()
}

/// Hypervolume of minimised outcomes (negated to the crate's maximisation frame).
fn hv_min(ys: &[Vec<f64>], ref_point: &[f64]) -> Result<f64, Box<dyn std::error::Error>> {
    let flat: Vec<f64> = ys.iter().flat_map(|y| y.iter().map(|v| -v)).collect();
    let neg_ref: Vec<f64> = ref_point.iter().map(|v| -v).collect();
    Ok(hypervolume(&flat, ref_point.len(), &neg_ref)?)
}

fn run(
    problem: Problem,
    seed: u64,
    steps: usize,
    anchors: bool,
) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let d = problem.dim();
    let n_initial = 2 * (d + 1);
    let params = (0..d)
        .map(|j| Param::new(format!("x{j}"), 0.0, 1.0))
        .collect();
    let objectives = (0..problem.n_objectives())
        .map(|j| Objective::minimize(format!("f{j}")))
        .collect();
    let mut settings = OptimizerSettings {
        acquisition: Some(AcquisitionKind::QNehvi),
        n_initial: Some(n_initial),
        seed,
        ..OptimizerSettings::default()
    };
    settings.acqf.anchor_incumbents = anchors;
    let mut opt = Optimizer::new(Space::new_box(params)?, objectives, settings)?
        .with_ref_point(problem.ref_point())?;
    let started = std::time::Instant::now();
    let mut ys = Vec::new();
    let mut hvs = Vec::new();
    // `BOMF_QUALITY_TRACE=1`: every evaluated point and its values on stderr (diagnosis).
    let trace = std::env::var_os("BOMF_QUALITY_TRACE").is_some();
    for i in 0..n_initial + steps {
        let x = opt.ask(1)?.remove(0);
        let y = problem.eval(&x);
        if trace {
            let line = serde_json::json!({
                "problem": problem.name(), "seed": seed, "i": i, "x": x, "f": y
            });
            eprintln!("TRACE {line}");
        }
        opt.tell(&x, &y)?;
        ys.push(y);
        hvs.push(hv_min(&ys, &problem.ref_point())?);
    }
    let hv = hvs.last().copied().unwrap_or(0.0);
    Ok(serde_json::json!({
        "impl": "bomf",
        "problem": problem.name(),
        "seed": seed,
        "n_initial": n_initial,
        "steps": steps,
        "max_hv": problem.max_hv(),
        "hv": hvs,
        "log_hv_diff": (problem.max_hv() - hv).max(1e-12).log10(),
        "seconds": started.elapsed().as_secs_f64(),
    }))
}

/// Fixed check points: `x_ij = frac((i + 1) · frac(√p_j))` over the first primes.
fn check_points(problem: Problem) -> serde_json::Value {
    const PRIMES: [f64; 6] = [2.0, 3.0, 5.0, 7.0, 11.0, 13.0];
    let rows: Vec<serde_json::Value> = (0..4)
        .map(|i| {
            let x: Vec<f64> = PRIMES[..problem.dim()]
                .iter()
                .map(|p| ((i + 1) as f64 * p.sqrt().fract()).fract())
                .collect();
            serde_json::json!({"x": x, "f": problem.eval(&x)})
        })
        .collect();
    serde_json::json!({"problem": problem.name(), "points": rows, "max_hv": problem.max_hv()})
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().nth(1).as_deref() == Some("--check-points") {
        for problem in ALL {
            println!("{}", check_points(problem));
        }
        return Ok(());
    }
    let mut problems = ALL.to_vec();
    let mut seeds = 10u64;
    let mut steps = 20usize;
    let mut first_seed = 0u64;
    let mut anchors = true;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--problems" => {
                problems = value
                    .split(',')
                    .map(|name| {
                        ALL.iter()
                            .copied()
                            .find(|p| p.name() == name)
                            .ok_or_else(|| format!("unknown problem {name:?}"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--seeds" => seeds = value.parse().map_err(|e| format!("--seeds: {e}"))?,
            "--steps" => steps = value.parse().map_err(|e| format!("--steps: {e}"))?,
            "--first-seed" => {
                first_seed = value.parse().map_err(|e| format!("--first-seed: {e}"))?
            }
            "--anchors" => anchors = value.parse().map_err(|e| format!("--anchors: {e}"))?,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    for problem in problems {
        for seed in first_seed..first_seed + seeds {
            println!("{}", run(problem, seed, steps, anchors)?);
        }
    }
    Ok(())
}
