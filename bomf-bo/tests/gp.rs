//! The GP against GPyTorch/BoTorch (fixtures/gp/gen_gp.py → fixtures/gp/gp.json): marginal
//! likelihoods and posteriors at fixed hyperparameters, MAP fits of both presets.

use bomf_bo::BoError;
use bomf_bo::gp::{
    CachedBaseline, FitOptions, GaussianProcess, Kernel, KernelKind, NoiseSpec, Preset,
};
use serde_json::Value;

fn fixture() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/gp/gp.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn nums(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
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
        bounds: ds["bounds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| (b[0].as_f64().unwrap(), b[1].as_f64().unwrap()))
            .collect(),
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

#[track_caller]
fn close_all(got: &[f64], want: &[f64], rtol: f64, atol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= atol + rtol * w.abs(),
            "{what}[{i}]: got {g:e}, want {w:e}"
        );
    }
}

#[test]
fn likelihood_and_posterior_match_gpytorch_at_fixed_hyperparameters() {
    let f = fixture();
    for ds in f["datasets"].as_array().unwrap() {
        let dat = data(ds);
        for case in ds["fixed"].as_array().unwrap() {
            let p = preset(case["preset"].as_str().unwrap());
            let what = format!("{} {:?}", dat.name, p);
            let gp = gp_at(&dat, p, &case["hyper"]);
            let ll = case["log_likelihood"].as_f64().unwrap();
            close_all(
                &[gp.log_marginal_likelihood()],
                &[ll],
                1e-10,
                0.0,
                &format!("{what} log likelihood"),
            );
            let map = case["map_objective"].as_f64().unwrap();
            close_all(
                &[gp.map_objective(p)],
                &[map],
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
        }
    }
}

#[test]
fn map_fit_reaches_at_least_botorchs_optimum() {
    let f = fixture();
    for ds in f["datasets"].as_array().unwrap() {
        let dat = data(ds);
        for case in ds["fitted"].as_array().unwrap() {
            let p = preset(case["preset"].as_str().unwrap());
            let what = format!("{} {:?}", dat.name, p);
            let theirs = case["map_objective"].as_f64().unwrap();
            // Our objective evaluated at BoTorch's optimum is BoTorch's value...
            let at_theirs = gp_at(&dat, p, &case["hyper"]);
            close_all(
                &[at_theirs.map_objective(p)],
                &[theirs],
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
            let ours = gp.report.as_ref().unwrap().map_objective;
            close_all(
                &[gp.map_objective(p)],
                &[ours],
                1e-10,
                0.0,
                &format!("{what} reported objective"),
            );
            eprintln!("{what}: ours {ours:.6} BoTorch {theirs:.6}");
            assert!(
                ours >= theirs - 1e-5,
                "{what}: our MAP objective {ours} < BoTorch's {theirs}"
            );
        }
    }
}

#[test]
fn cached_baseline_update_reproduces_the_joint_covariance() {
    let f = fixture();
    let dat = data(&f["datasets"][1]);
    let gp = GaussianProcess::fit(
        &dat.x,
        &dat.y,
        dat.d,
        Some(&dat.bounds),
        &FitOptions::default(),
    )
    .unwrap();
    let d = dat.d;
    let baseline = &dat.x[..10 * d];
    let new = &dat.x_test[..3 * d];
    let (nb, q) = (10, 3);
    let cached = CachedBaseline::new(&gp, baseline).unwrap();
    let block = cached.extend(&gp, new).unwrap();
    let mut all = baseline.to_vec();
    all.extend_from_slice(new);
    let joint = gp.posterior_joint(&all).unwrap();
    let m = nb + q;
    // Assemble the full root [[L_bb, 0], [L_xb, L_xx]] and compare L Lᵀ with the joint covariance.
    let mut root = vec![0.0; m * m];
    for i in 0..nb {
        for j in 0..nb {
            root[i * m + j] = cached.chol[i * nb + j];
        }
    }
    for a in 0..q {
        for b in 0..nb {
            root[(nb + a) * m + b] = block.l_xb[a * nb + b];
        }
        for c in 0..q {
            root[(nb + a) * m + nb + c] = block.l_xx[a * q + c];
        }
    }
    let scale = joint.cov.iter().map(|v| v.abs()).fold(0.0, f64::max);
    for i in 0..m {
        for j in 0..m {
            let s: f64 = (0..m).map(|k| root[i * m + k] * root[j * m + k]).sum();
            // The baseline factor may carry jitter (training points have tiny posterior variance).
            assert!(
                (s - joint.cov[i * m + j]).abs() < 1e-6 * scale,
                "({i},{j}): {s} vs {}",
                joint.cov[i * m + j]
            );
        }
    }
    close_all(
        &block.mean,
        &joint.mean[nb..],
        1e-12,
        1e-12,
        "new-point means",
    );
    // A sample with zero noise is the mean.
    let mut out = vec![0.0; q];
    block.sample(&vec![0.0; nb], &[0.0; 3], &mut out);
    close_all(&out, &block.mean, 0.0, 0.0, "zero-noise sample");
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
    assert_eq!(a.hyper, b.hyper);
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

/// Central finite difference of `f` (a vector function) along coordinate `dir` of `x`.
fn fd(f: impl Fn(&[f64]) -> Vec<f64>, x: &[f64], dir: usize) -> Vec<f64> {
    let h = 1e-6;
    let mut xp = x.to_vec();
    xp[dir] += h;
    let mut xm = x.to_vec();
    xm[dir] -= h;
    f(&xp)
        .iter()
        .zip(f(&xm))
        .map(|(a, b)| (a - b) / (2.0 * h))
        .collect()
}

#[test]
fn joint_posterior_and_low_rank_gradients_match_finite_differences() {
    let f = fixture();
    let dat = data(&f["datasets"][2]); // non-unit bounds: exercises the input scaling
    let opts = FitOptions {
        preset: Preset::MaternGamma,
        ..FitOptions::default()
    };
    let gp = GaussianProcess::fit(&dat.x, &dat.y, dat.d, Some(&dat.bounds), &opts).unwrap();
    let (d, q, nb) = (dat.d, 3, 8);
    let x = dat.x_test[..q * d].to_vec();
    let jp = gp.posterior_joint_with_grad(&x).unwrap();
    let cached = CachedBaseline::new(&gp, &dat.x[..nb * d]).unwrap();
    let lg = cached.extend_with_grad(&gp, &x).unwrap();
    for j in 0..q {
        for k in 0..d {
            let dir = j * d + k;
            let what = format!("point {j} coordinate {k}");
            let dm = fd(|x| gp.posterior_joint(x).unwrap().mean, &x, dir);
            let dc = fd(|x| gp.posterior_joint(x).unwrap().cov, &x, dir);
            close_all(
                &[jp.mean_grad[dir]],
                &[dm[j]],
                1e-5,
                1e-7,
                &format!("{what} d mean"),
            );
            close_all(
                &jp.cov_row_grad[dir * q..(dir + 1) * q],
                &dc[j * q..(j + 1) * q],
                1e-5,
                1e-7,
                &format!("{what} d cov row"),
            );
            let dxb = fd(|x| cached.extend(&gp, x).unwrap().l_xb, &x, dir);
            let dxx = fd(|x| cached.extend(&gp, x).unwrap().l_xx, &x, dir);
            close_all(
                &lg.l_xb_row_grad[dir * nb..(dir + 1) * nb],
                &dxb[j * nb..(j + 1) * nb],
                1e-5,
                1e-7,
                &format!("{what} d l_xb"),
            );
            close_all(
                &lg.l_xx_grad[dir * q * q..(dir + 1) * q * q],
                &dxx,
                1e-5,
                1e-7,
                &format!("{what} d l_xx"),
            );
            close_all(
                &[lg.mean_grad[dir]],
                &[dm[j]],
                1e-5,
                1e-7,
                &format!("{what} block d mean"),
            );
        }
    }
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
            let prior = gp.hyper.kernel.outputscale * gp.y_std * gp.y_std;
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
