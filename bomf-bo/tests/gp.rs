//! The GP against GPyTorch/BoTorch (fixtures/gp/gen_gp.py → fixtures/gp/gp.json): marginal
//! likelihoods and posteriors at fixed hyperparameters, MAP fits of both presets.

mod fixtures;
mod tolerance;

use bomf_bo::BoError;
use bomf_bo::gp::{FitOptions, GaussianProcess, Kernel, KernelKind, NoiseSpec, Preset};
use fixtures::{nums, rows};
use serde_json::Value;
use tolerance::{close, close_all};

fn fixture() -> Value {
    fixtures::load("gp/gp.json")
}

fn preset(name: &str) -> Preset {
    match name {
        "MaternGamma" => Preset::MaternGamma,
        "RbfDimScaled" => Preset::RbfDimScaled,
        other => panic!("unknown preset {other}"),
    }
}

fn kind(p: Preset) -> KernelKind {
    match p {
        Preset::MaternGamma => KernelKind::Matern52,
        Preset::RbfDimScaled => KernelKind::Rbf,
    }
}

struct Data {
    name: String,
    d: usize,
    x: Vec<f64>,
    y: Vec<f64>,
    yvar: Option<Vec<f64>>,
    bounds: Vec<(f64, f64)>,
    x_test: Vec<f64>,
}

fn data(ds: &Value) -> Data {
    Data {
        name: ds["name"].as_str().unwrap().to_string(),
        d: ds["d"].as_u64().unwrap() as usize,
        x: nums(&ds["x"]),
        y: nums(&ds["y"]),
        yvar: ds["yvar"].as_array().map(|_| nums(&ds["yvar"])),
        bounds: rows(&ds["bounds"]).iter().map(|b| (b[0], b[1])).collect(),
        x_test: nums(&ds["x_test"]),
    }
}

fn gp_at(dat: &Data, p: Preset, h: &Value) -> GaussianProcess {
    let kernel = Kernel {
        kind: kind(p),
        lengthscales: nums(&h["lengthscales"]),
        outputscale: h["outputscale"].as_f64().unwrap(),
    };
    GaussianProcess::with_hyperparameters(
        &dat.x,
        &dat.y,
        dat.d,
        Some(&dat.bounds),
        kernel,
        &nums(&h["noise"]),
        h["mean"].as_f64().unwrap(),
    )
    .unwrap()
}

/// Runs `check(data set, preset, case, label)` on every case of `section` ("fixed" or
/// "fitted") of every data set of the fixture.
fn for_each_case(section: &str, check: impl Fn(&Data, Preset, &Value, &str)) {
    let f = fixture();
    for ds in f["datasets"].as_array().unwrap() {
        let dat = data(ds);
        for case in ds[section].as_array().unwrap() {
            let p = preset(case["preset"].as_str().unwrap());
            check(&dat, p, case, &format!("{} {:?}", dat.name, p));
        }
    }
}

#[test]
fn likelihood_and_posterior_match_gpytorch_at_fixed_hyperparameters() {
    for_each_case("fixed", |dat, p, case, what| {
        let gp = gp_at(dat, p, &case["hyper"]);
        let ll = case["log_likelihood"].as_f64().unwrap();
        close(
            gp.log_marginal_likelihood(),
            ll,
            1e-10,
            0.0,
            &format!("{what} log likelihood"),
        );
        let map = case["map_objective"].as_f64().unwrap();
        close(
            gp.map_objective(p),
            map,
            1e-10,
            0.0,
            &format!("{what} MAP objective"),
        );
        let (mean, var) = gp.predict(&dat.x_test).unwrap();
        close_all(
            &mean,
            &nums(&case["post_mean"]),
            1e-9,
            1e-9,
            &format!("{what} mean"),
        );
        close_all(
            &var,
            &nums(&case["post_var"]),
            1e-8,
            1e-10,
            &format!("{what} variance"),
        );
        let joint = gp.posterior_joint(&dat.x_test).unwrap();
        close_all(
            &joint.mean,
            &mean,
            1e-14,
            1e-14,
            &format!("{what} joint mean"),
        );
        close_all(
            &joint.cov,
            &nums(&case["post_cov"]),
            1e-8,
            1e-10,
            &format!("{what} covariance"),
        );
        let pp = gp.predict_with_grad(&dat.x_test[..dat.d]).unwrap();
        close_all(
            &[pp.mean, pp.variance],
            &[mean[0], var[0]],
            1e-12,
            1e-14,
            &format!("{what} point"),
        );
        close_all(
            &pp.mean_grad,
            &nums(&case["grad_mean_x0"]),
            1e-7,
            1e-9,
            &format!("{what} d mean/dx"),
        );
        close_all(
            &pp.variance_grad,
            &nums(&case["grad_var_x0"]),
            1e-7,
            1e-9,
            &format!("{what} d var/dx"),
        );
    });
}

#[test]
fn map_fit_reaches_at_least_botorchs_optimum() {
    for_each_case("fitted", |dat, p, case, what| {
        let theirs = case["map_objective"].as_f64().unwrap();
        // Our objective evaluated at BoTorch's optimum is BoTorch's value...
        let at_theirs = gp_at(dat, p, &case["hyper"]);
        close(
            at_theirs.map_objective(p),
            theirs,
            1e-9,
            0.0,
            &format!("{what} objective at BoTorch's fit"),
        );
        // ...and our own fit does at least as well (both are local optimisations).
        let noise = match &dat.yvar {
            Some(v) => NoiseSpec::Fixed(v.clone()),
            None => NoiseSpec::Learned,
        };
        let opts = FitOptions {
            preset: p,
            noise,
            ..FitOptions::default()
        };
        let gp = GaussianProcess::fit(&dat.x, &dat.y, dat.d, Some(&dat.bounds), &opts).unwrap();
        let ours = gp.fit_report().unwrap().map_objective;
        close(
            gp.map_objective(p),
            ours,
            1e-10,
            0.0,
            &format!("{what} reported objective"),
        );
        eprintln!("{what}: ours {ours:.6} BoTorch {theirs:.6}");
        assert!(
            ours >= theirs - 1e-5,
            "{what}: our MAP objective {ours} < BoTorch's {theirs}"
        );
    });
}

#[test]
fn fit_is_deterministic_and_state_round_trips() {
    let f = fixture();
    let dat = data(&f["datasets"][0]);
    let opts = FitOptions {
        preset: Preset::MaternGamma,
        seed: 5,
        ..FitOptions::default()
    };
    let a = GaussianProcess::fit(&dat.x, &dat.y, dat.d, Some(&dat.bounds), &opts).unwrap();
    let b = GaussianProcess::fit(&dat.x, &dat.y, dat.d, Some(&dat.bounds), &opts).unwrap();
    assert_eq!(a.hyperparameters(), b.hyperparameters());
    let json = serde_json::to_string(&a).unwrap();
    let c: GaussianProcess = serde_json::from_str(&json).unwrap();
    assert_eq!(
        a.predict(&dat.x_test).unwrap(),
        c.predict(&dat.x_test).unwrap()
    );
}

#[test]
fn bad_training_data_is_a_clear_error() {
    let x = [0.1, 0.2, 0.3, 0.4];
    let err =
        GaussianProcess::fit(&x, &[1.0, f64::NAN], 2, None, &FitOptions::default()).unwrap_err();
    assert!(
        matches!(err, BoError::InvalidInput(ref m) if m.contains("output 1")),
        "{err}"
    );
    let err = GaussianProcess::fit(&x, &[1.0], 2, None, &FitOptions::default()).unwrap_err();
    assert!(matches!(err, BoError::DimensionMismatch { .. }), "{err}");
    let err = GaussianProcess::fit(
        &x,
        &[1.0, 2.0],
        2,
        Some(&[(0.0, 1.0), (1.0, 1.0)]),
        &FitOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(err, BoError::InvalidInput(ref m) if m.contains("dimension 1")),
        "{err}"
    );
    let gp = GaussianProcess::fit(&x, &[1.0, 2.0], 2, None, &FitOptions::default()).unwrap();
    assert!(gp.predict(&[0.5]).is_err());
    // Constant outputs: std below 1e-8 is replaced by 1 and the fit still works.
    let gp = GaussianProcess::fit(&x, &[3.0, 3.0], 2, None, &FitOptions::default()).unwrap();
    let (m, _) = gp.predict(&[0.5, 0.5]).unwrap();
    assert!((m[0] - 3.0).abs() < 1e-6);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// On random data: the fit succeeds, variances lie in [0, prior variance], the joint
        /// covariance is symmetric with a diagonal equal to the pointwise variances, and the
        /// posterior interpolates (nearly noise-free) observations.
        #[test]
        fn posterior_is_consistent(
            seed in 0u64..1000,
            n in 3usize..12,
            ys in prop::collection::vec(-5.0f64..5.0, 12),
        ) {
            let d = 2;
            let x = bomf_bo::sampling::sobol_design(n, d, seed).unwrap();
            let y = &ys[..n];
            let opts = FitOptions { noise: NoiseSpec::Fixed(vec![1e-10]), n_prior_starts: 1, seed, ..FitOptions::default() };
            let gp = GaussianProcess::fit(&x, y, d, None, &opts).unwrap();
            let test = bomf_bo::sampling::sobol_design(5, d, seed + 1).unwrap();
            let (_, var) = gp.predict(&test).unwrap();
            let (_, y_std) = gp.output_scaling();
            let prior = gp.hyperparameters().kernel.outputscale * y_std * y_std;
            for v in &var {
                prop_assert!(*v >= 0.0 && *v <= prior * (1.0 + 1e-9));
            }
            let joint = gp.posterior_joint(&test).unwrap();
            for (a, va) in var.iter().enumerate() {
                prop_assert!((joint.cov[a * 5 + a] - va).abs() <= 1e-9 * prior);
                for b in 0..5 {
                    prop_assert!((joint.cov[a * 5 + b] - joint.cov[b * 5 + a]).abs() <= 1e-12 * prior);
                }
            }
            let (mean_train, _) = gp.predict(&x).unwrap();
            let spread = y.iter().map(|v| v.abs()).fold(1.0, f64::max);
            for (m, t) in mean_train.iter().zip(y) {
                prop_assert!((m - t).abs() < 1e-3 * spread, "mean {m} vs observation {t}");
            }
        }
    }
}
