//! LogEI and qLogEI against BoTorch (fixtures/gp/gen_gp.py → fixtures/gp/logei.json), with
//! the same GP hyperparameters and the same MC base samples on both sides.

mod fixtures;
mod tolerance;

use bomf_bo::acquisition::{Acquisition, LogExpectedImprovement, QLogExpectedImprovement};
use bomf_bo::gp::{GaussianProcess, Kernel, KernelKind};
use bomf_bo::sampling::NormalBaseSamples;
use fixtures::{nums, rows};
use serde_json::Value;
use tolerance::{close, close_all};

fn load(name: &str) -> Value {
    fixtures::load(&format!("gp/{name}"))
}

/// The GP of a logei.json case: data from gp.json, hyperparameters from the case.
fn case_gp(case: &Value, gp_fixture: &Value) -> GaussianProcess {
    let ds = gp_fixture["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == case["dataset"])
        .unwrap();
    let d = ds["d"].as_u64().unwrap() as usize;
    let bounds: Vec<(f64, f64)> = rows(&ds["bounds"]).iter().map(|b| (b[0], b[1])).collect();
    let h = &case["hyper"];
    let kind = if case["preset"] == "MaternGamma" {
        KernelKind::Matern52
    } else {
        KernelKind::Rbf
    };
    let kernel = Kernel {
        kind,
        lengthscales: nums(&h["lengthscales"]),
        outputscale: h["outputscale"].as_f64().unwrap(),
    };
    GaussianProcess::with_hyperparameters(
        &nums(&ds["x"]),
        &nums(&ds["y"]),
        d,
        Some(&bounds),
        kernel,
        &nums(&h["noise"]),
        h["mean"].as_f64().unwrap(),
    )
    .unwrap()
}

#[test]
fn analytic_log_ei_matches_botorch() {
    let (fx, gpf) = (load("logei.json"), load("gp.json"));
    for case in fx["cases"].as_array().unwrap() {
        let gp = case_gp(case, &gpf);
        let d = gp.dim();
        for a in case["analytic"].as_array().unwrap() {
            let acq = LogExpectedImprovement::new(&gp, a["best_f"].as_f64().unwrap()).unwrap();
            let (x, vals, grads) = (nums(&a["x"]), nums(&a["value"]), nums(&a["grad"]));
            for (i, pt) in x.chunks_exact(d).enumerate() {
                let mut g = vec![0.0; d];
                let v = acq.value_and_grad(pt, &mut g);
                let what = format!("{} best_f={} point {i}", case["dataset"], a["best_f"]);
                close(v, vals[i], 1e-9, 1e-9, &format!("{what} value"));
                let want = &grads[i * d..(i + 1) * d];
                close_all(&g, want, 1e-6, 1e-9, &format!("{what} grad"));
            }
        }
    }
}

#[test]
fn q_log_ei_matches_botorch_with_shared_base_samples() {
    let (fx, gpf) = (load("logei.json"), load("gp.json"));
    for case in fx["cases"].as_array().unwrap() {
        let gp = case_gp(case, &gpf);
        for c in case["q_log_ei"].as_array().unwrap() {
            let q = c["q"].as_u64().unwrap() as usize;
            let n = c["n_samples"].as_u64().unwrap() as usize;
            let base = NormalBaseSamples::from_values(n, q, nums(&c["base_samples"])).unwrap();
            let acq =
                QLogExpectedImprovement::new(&gp, c["best_f"].as_f64().unwrap(), base).unwrap();
            let x = nums(&c["x"]);
            let mut g = vec![0.0; x.len()];
            let v = acq.value_and_grad(&x, &mut g);
            let what = format!("{} q={q} best_f={}", case["dataset"], c["best_f"]);
            close(
                v,
                c["value"].as_f64().unwrap(),
                1e-8,
                1e-8,
                &format!("{what} value"),
            );
            close(
                acq.value(&x),
                v,
                0.0,
                0.0,
                &format!("{what} value without gradient"),
            );
            close_all(&g, &nums(&c["grad"]), 1e-5, 1e-7, &format!("{what} grad"));
        }
    }
}

#[test]
fn q_log_ei_gradient_matches_finite_differences_with_sobol_samples() {
    let gp = case_gp(&load("logei.json")["cases"][1], &load("gp.json"));
    let base = NormalBaseSamples::new(128, 4, 3).unwrap();
    let (y_mean, y_std) = gp.output_scaling();
    let best = gp
        .train_outputs()
        .iter()
        .fold(f64::NEG_INFINITY, |a, &b| a.max(b))
        * y_std
        + y_mean;
    let acq = QLogExpectedImprovement::new(&gp, best, base).unwrap();
    let x: Vec<f64> = (0..4 * gp.dim())
        .map(|i| ((i * 7919) % 97) as f64 / 97.0)
        .collect();
    let mut g = vec![0.0; x.len()];
    acq.value_and_grad(&x, &mut g);
    for j in 0..x.len() {
        let h = 1e-6;
        let mut xp = x.clone();
        xp[j] += h;
        let mut xm = x.clone();
        xm[j] -= h;
        let fd = (acq.value(&xp) - acq.value(&xm)) / (2.0 * h);
        close(g[j], fd, 1e-4, 1e-6, &format!("coordinate {j}"));
    }
}

#[test]
fn malformed_batches_give_nan_not_panics() {
    let gp = case_gp(&load("logei.json")["cases"][0], &load("gp.json"));
    let base = NormalBaseSamples::new(16, 2, 0).unwrap();
    let acq = QLogExpectedImprovement::new(&gp, 0.0, base).unwrap();
    assert!(acq.value(&[0.5]).is_nan());
    assert!(acq.value(&[0.5; 6]).is_nan()); // q = 3 > 2 base columns
    assert!(acq.evaluate(&[0.5; 6], None).is_err());
    assert!(
        QLogExpectedImprovement::new(&gp, f64::NAN, NormalBaseSamples::new(4, 1, 0).unwrap())
            .is_err()
    );
}
