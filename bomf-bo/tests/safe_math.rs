//! `safe_math` and `sampling::ndtri` against BoTorch / scipy values
//! (fixtures/gp/gen_safe_math.py → fixtures/gp/safe_math.json).

use bomf_bo::safe_math::*;
use bomf_bo::sampling::ndtri;
use serde_json::Value;

fn fixture() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/gp/safe_math.json"
    ))
    .expect("fixture safe_math.json");
    serde_json::from_str(&text).expect("valid JSON")
}

/// A number, or the strings "inf"/"-inf" the generator writes for infinities.
fn num(v: &Value) -> f64 {
    match v {
        Value::String(s) if s == "inf" => f64::INFINITY,
        Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
        _ => v.as_f64().expect("number"),
    }
}

fn nums(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(num).collect()
}

#[track_caller]
fn close(got: f64, want: f64, rtol: f64, what: &str) {
    if want.is_infinite() || got.is_infinite() {
        assert_eq!(got, want, "{what}");
        return;
    }
    let tol = rtol * want.abs().max(1e-300) + 1e-300;
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got:e}, want {want:e}"
    );
}

#[test]
fn log1mexp_and_log1pexp_match_botorch() {
    let f = fixture();
    let c = &f["log1mexp"];
    for ((x, v), g) in nums(&c["x"])
        .into_iter()
        .zip(nums(&c["value"]))
        .zip(nums(&c["grad"]))
    {
        let (got, dg) = log1mexp_grad(x);
        close(got, v, 1e-13, &format!("log1mexp({x})"));
        close(dg, g, 1e-9, &format!("log1mexp'({x})"));
    }
    let c = &f["log1pexp"];
    for (x, v) in nums(&c["x"]).into_iter().zip(nums(&c["value"])) {
        close(log1pexp(x), v, 1e-14, &format!("log1pexp({x})"));
    }
}

#[test]
fn smooth_relus_match_botorch() {
    let f = fixture();
    for c in f["log_fatplus"].as_array().unwrap() {
        let tau = num(&c["tau"]);
        for ((x, v), g) in nums(&c["x"])
            .into_iter()
            .zip(nums(&c["value"]))
            .zip(nums(&c["grad"]))
        {
            let (got, dg) = log_fatplus_grad(x, tau);
            close(got, v, 1e-12, &format!("log_fatplus({x}, {tau})"));
            close(dg, g, 1e-9, &format!("log_fatplus'({x}, {tau})"));
        }
    }
    for c in f["fatplus"].as_array().unwrap() {
        let tau = num(&c["tau"]);
        for (x, v) in nums(&c["x"]).into_iter().zip(nums(&c["value"])) {
            close(fatplus(x, tau), v, 1e-12, &format!("fatplus({x}, {tau})"));
        }
    }
    for c in f["log_softplus"].as_array().unwrap() {
        let tau = num(&c["tau"]);
        for ((x, v), g) in nums(&c["x"])
            .into_iter()
            .zip(nums(&c["value"]))
            .zip(nums(&c["grad"]))
        {
            let (got, dg) = log_softplus_grad(x, tau);
            close(got, v, 1e-12, &format!("log_softplus({x}, {tau})"));
            close(dg, g, 1e-9, &format!("log_softplus'({x}, {tau})"));
        }
    }
}

#[test]
fn reductions_match_botorch() {
    let f = fixture();
    for c in f["reductions"].as_array().unwrap() {
        let x = nums(&c["x"]);
        let mut grad = vec![0.0; x.len()];
        type Red<'a> = Box<dyn Fn(&[f64], &mut [f64]) -> f64 + 'a>;
        let mut cases: Vec<(String, Red)> = vec![
            ("logsumexp".into(), Box::new(logsumexp_grad)),
            ("logmeanexp".into(), Box::new(logmeanexp_grad)),
        ];
        for tau in [1.0, 1e-2] {
            let t = format!("{tau}"); // "1" or "0.01", as the generator names the keys
            cases.push((
                format!("fatmax_tau{t}"),
                Box::new(move |x, g| fatmax_grad(x, tau, FAT_ALPHA, g)),
            ));
            cases.push((
                format!("fatmin_tau{t}"),
                Box::new(move |x, g| fatmin_grad(x, tau, FAT_ALPHA, g)),
            ));
            cases.push((
                format!("smooth_amax_tau{t}"),
                Box::new(move |x, g| smooth_amax_grad(x, tau, g)),
            ));
        }
        for (name, fun) in &cases {
            let want = num(&c[name.as_str()]);
            let got = fun(&x, &mut grad);
            close(got, want, 1e-12, &format!("{name}({x:?})"));
            if let Some(wg) = c[format!("{name}_grad")].as_array() {
                for (i, w) in wg.iter().enumerate() {
                    close(grad[i], num(w), 1e-9, &format!("{name}' [{i}] at {x:?}"));
                }
            }
        }
        // The plain (gradient-free) versions agree with the `_grad` ones.
        let want = num(&c["fatmax_tau1"]);
        close(fatmax(&x, 1.0, FAT_ALPHA), want, 1e-15, "fatmax");
        close(
            fatmin(&x, 1.0, FAT_ALPHA),
            num(&c["fatmin_tau1"]),
            1e-15,
            "fatmin",
        );
        close(
            smooth_amax(&x, 1.0),
            num(&c["smooth_amax_tau1"]),
            1e-15,
            "smooth_amax",
        );
        close(logmeanexp(&x), num(&c["logmeanexp"]), 1e-15, "logmeanexp");
    }
}

#[test]
fn pairwise_log_ops_match_botorch() {
    let f = fixture();
    for c in f["pairs"].as_array().unwrap() {
        let (a, b) = (num(&c["log_a"]), num(&c["log_b"]));
        let (v, ga, gb) = logdiffexp_grad(a, b);
        close(
            v,
            num(&c["logdiffexp"]),
            1e-13,
            &format!("logdiffexp({a}, {b})"),
        );
        close(ga, num(&c["grad_a"]), 1e-9, "logdiffexp d/da");
        close(gb, num(&c["grad_b"]), 1e-9, "logdiffexp d/db");
        close(logplusexp(a, b), num(&c["logplusexp"]), 1e-14, "logplusexp");
    }
}

#[test]
fn normal_functions_match_scipy() {
    let f = fixture();
    let c = &f["erfcx"];
    for (x, v) in nums(&c["x"]).into_iter().zip(nums(&c["value"])) {
        close(erfcx(x), v, 2e-14, &format!("erfcx({x})"));
    }
    let c = &f["norm_cdf"];
    for (x, v) in nums(&c["x"]).into_iter().zip(nums(&c["value"])) {
        close(norm_cdf(x), v, 5e-14, &format!("Phi({x})"));
    }
    let c = &f["ndtri"];
    for (p, v) in nums(&c["p"]).into_iter().zip(nums(&c["value"])) {
        close(ndtri(p), v, 1e-14, &format!("ndtri({p})"));
    }
}

#[test]
fn ndtri_edge_cases() {
    assert_eq!(ndtri(0.0), f64::NEG_INFINITY);
    assert_eq!(ndtri(1.0), f64::INFINITY);
    assert!(ndtri(-0.1).is_nan() && ndtri(1.5).is_nan() && ndtri(f64::NAN).is_nan());
    assert_eq!(ndtri(0.5), 0.0);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn fatmax_bounds_the_max(xs in prop::collection::vec(-1e3f64..1e3, 1..8), tau in 1e-3f64..2.0) {
            let m = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let v = fatmax(&xs, tau, FAT_ALPHA);
            // At least the max, and at most max + τ·ln n (every pareto term is ≤ 1).
            prop_assert!(v >= m - 1e-9 && v <= m + tau * (xs.len() as f64).ln() + 1e-9);
            let s = smooth_amax(&xs, tau);
            prop_assert!(s >= m - 1e-9 && s <= m + tau * (xs.len() as f64).ln() + 1e-9);
        }

        #[test]
        fn fatmax_gradient_sums_to_one(xs in prop::collection::vec(-10f64..10.0, 1..6)) {
            let mut g = vec![0.0; xs.len()];
            fatmax_grad(&xs, 0.7, FAT_ALPHA, &mut g);
            prop_assert!((g.iter().sum::<f64>() - 1.0).abs() < 1e-10);
        }

        #[test]
        fn log_fatplus_is_increasing_and_above_relu(a in -1e2f64..1e2, b in -1e2f64..1e2) {
            let (lo, hi) = if a < b { (a, b) } else { (b, a) };
            prop_assume!(hi - lo > 1e-9);
            prop_assert!(log_fatplus(lo, 1.0) <= log_fatplus(hi, 1.0));
            prop_assert!(fatplus(hi, 1.0) >= hi.max(0.0));
        }

        #[test]
        // Above x ≈ 5, 1 − Φ(x) is below a few ulp of 1 and the inverse loses digits.
        fn ndtri_inverts_norm_cdf(x in -30.0f64..5.0) {
            let p = norm_cdf(x);
            prop_assert!((ndtri(p) - x).abs() < 1e-9 * (1.0 + x.abs()));
        }
    }
}
