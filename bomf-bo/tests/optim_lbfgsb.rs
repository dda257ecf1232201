//! Our L-BFGS-B against scipy's on bounded test problems.
//!
//! The cases and scipy's optima come from `fixtures/optim/gen_optim.py` (rerun it to regenerate
//! `lbfgsb_cases.json`). From the same starting point we must reach the same optimum value, or a
//! better one, within a small tolerance, and stay inside the box.

mod fixtures;

use bomf_bo::lbfgsb::{LbfgsbOptions, minimize};
use fixtures::{nums, rows};
use serde_json::Value;

fn rosenbrock(x: &[f64], g: &mut [f64]) -> f64 {
    let n = x.len();
    g.iter_mut().for_each(|v| *v = 0.0);
    let mut f = 0.0;
    for i in 0..n - 1 {
        let a = x[i + 1] - x[i] * x[i];
        let b = 1.0 - x[i];
        f += 100.0 * a * a + b * b;
        g[i] += -400.0 * x[i] * a - 2.0 * b;
        g[i + 1] += 200.0 * a;
    }
    f
}

fn branin(x: &[f64], g: &mut [f64]) -> f64 {
    use std::f64::consts::PI;
    let (a, b, c) = (1.0, 5.1 / (4.0 * PI * PI), 5.0 / PI);
    let (r, s, t) = (6.0, 10.0, 1.0 / (8.0 * PI));
    let inner = x[1] - b * x[0] * x[0] + c * x[0] - r;
    g[0] = 2.0 * a * inner * (-2.0 * b * x[0] + c) - s * (1.0 - t) * x[0].sin();
    g[1] = 2.0 * a * inner;
    a * inner * inner + s * (1.0 - t) * x[0].cos() + s
}

struct Quadratic {
    a: Vec<Vec<f64>>,
    c: Vec<f64>,
}

impl Quadratic {
    /// The fixture's quadratic (`quadratic_a`, `quadratic_c`).
    fn from_fixture(data: &Value) -> Self {
        Self {
            a: rows(&data["quadratic_a"]),
            c: nums(&data["quadratic_c"]),
        }
    }

    fn eval(&self, x: &[f64], g: &mut [f64]) -> f64 {
        let r: Vec<f64> = x.iter().zip(&self.c).map(|(a, b)| a - b).collect();
        let mut f = 0.0;
        for i in 0..r.len() {
            g[i] = self.a[i].iter().zip(&r).map(|(a, b)| a * b).sum();
            f += 0.5 * r[i] * g[i];
        }
        f
    }
}

#[test]
fn lbfgsb_matches_scipy_optima() {
    let data = fixtures::load("optim/lbfgsb_cases.json");
    let quad = Quadratic::from_fixture(&data);
    let cases = data["cases"].as_array().unwrap();
    assert!(cases.len() >= 15);
    let mut report = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let lower = nums(&case["lower"]);
        let upper = nums(&case["upper"]);
        let x0 = nums(&case["x0"]);
        let scipy_f = case["scipy_f"].as_f64().unwrap();
        let options = LbfgsbOptions::default();
        let result = match case["function"].as_str().unwrap() {
            "rosenbrock" => minimize(rosenbrock, &x0, &lower, &upper, &options),
            "branin" => minimize(branin, &x0, &lower, &upper, &options),
            "quadratic" => minimize(|x, g| quad.eval(x, g), &x0, &lower, &upper, &options),
            other => panic!("unknown function {other}"),
        }
        .unwrap();
        for (i, v) in result.x.iter().enumerate() {
            assert!(
                *v >= lower[i] && *v <= upper[i],
                "{name}: x[{i}] = {v} leaves the box"
            );
        }
        // Same optimum value (absolute for values near zero, relative otherwise), or better.
        let tolerance = 1e-6 + 1e-6 * scipy_f.abs();
        report.push(format!(
            "{name}: ours {:.10} ({} it, {:?}) scipy {scipy_f:.10} ({} it)",
            result.f, result.iterations, result.termination, case["scipy_nit"]
        ));
        assert!(
            result.f <= scipy_f + tolerance,
            "{name}: f = {} but scipy reached {scipy_f}\n{}",
            result.f,
            report.join("\n")
        );
    }
    println!("{}", report.join("\n"));
}

#[test]
fn lbfgsb_lands_on_scipy_point_when_optimum_is_unique() {
    // The quadratic is strictly convex, so the box optimum is unique: the points must agree.
    let data = fixtures::load("optim/lbfgsb_cases.json");
    let quad = Quadratic::from_fixture(&data);
    for case in data["cases"].as_array().unwrap() {
        if case["function"] != "quadratic" {
            continue;
        }
        let r = minimize(
            |x, g| quad.eval(x, g),
            &nums(&case["x0"]),
            &nums(&case["lower"]),
            &nums(&case["upper"]),
            &LbfgsbOptions::default(),
        )
        .unwrap();
        for (ours, theirs) in r.x.iter().zip(nums(&case["scipy_x"])) {
            assert!((ours - theirs).abs() < 1e-4, "{ours} vs {theirs}");
        }
    }
}

mod properties {
    use bomf_bo::lbfgsb::{LbfgsbOptions, minimize, projected_grad_norm};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// On a strictly convex quadratic every KKT point is the global box optimum, so a small
        /// projected gradient at the end certifies the answer; it must also beat any feasible
        /// probe point.
        #[test]
        fn convex_quadratic_reaches_kkt_point(
            b in proptest::collection::vec(-1.0f64..1.0, 36),
            centre in proptest::collection::vec(-2.0f64..3.0, 6),
            width in proptest::collection::vec(0.1f64..2.0, 6),
            start in proptest::collection::vec(0.0f64..1.0, 6),
            probe in proptest::collection::vec(0.0f64..1.0, 6),
        ) {
            let d = 6;
            // A = BᵀB + 0.1 I is symmetric positive definite.
            let mut a = vec![0.0; d * d];
            for i in 0..d {
                for j in 0..d {
                    a[i * d + j] = (0..d).map(|k| b[k * d + i] * b[k * d + j]).sum::<f64>()
                        + if i == j { 0.1 } else { 0.0 };
                }
            }
            let f = |x: &[f64], g: &mut [f64]| {
                let mut v = 0.0;
                for i in 0..d {
                    g[i] = (0..d).map(|j| a[i * d + j] * (x[j] - centre[j])).sum();
                    v += 0.5 * (x[i] - centre[i]) * g[i];
                }
                v
            };
            let lower: Vec<f64> = (0..d).map(|i| -0.5 * width[i]).collect();
            let upper: Vec<f64> = (0..d).map(|i| 0.5 * width[i]).collect();
            let x0: Vec<f64> = (0..d).map(|i| lower[i] + start[i] * width[i]).collect();
            let options = LbfgsbOptions { pgtol: 1e-8, ftol: 0.0, ..LbfgsbOptions::default() };
            let r = minimize(f, &x0, &lower, &upper, &options).unwrap();
            let mut g = vec![0.0; d];
            let fx = f(&r.x, &mut g);
            prop_assert!(projected_grad_norm(&r.x, &g, &lower, &upper) < 1e-6, "{r:?}");
            let p: Vec<f64> = (0..d).map(|i| lower[i] + probe[i] * width[i]).collect();
            let mut gp = vec![0.0; d];
            prop_assert!(fx <= f(&p, &mut gp) + 1e-9);
        }
    }
}
