//! The cached-baseline low-rank update qNEHVI uses, and the input gradients of the joint
//! posterior, against the plain joint posterior (fixture: tests/fixtures/gp/gp.json).

use serde_json::Value;

use super::{CachedBaseline, FitOptions, GaussianProcess, Preset};
use crate::fixtures::{load, nums, rows};
use crate::tolerance::close_all;

struct Data {
    d: usize,
    x: Vec<f64>,
    y: Vec<f64>,
    bounds: Vec<(f64, f64)>,
    x_test: Vec<f64>,
}

fn data(ds: &Value) -> Data {
    Data {
        d: ds["d"].as_u64().unwrap() as usize,
        x: nums(&ds["x"]),
        y: nums(&ds["y"]),
        bounds: rows(&ds["bounds"]).iter().map(|b| (b[0], b[1])).collect(),
        x_test: nums(&ds["x_test"]),
    }
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
fn cached_baseline_update_reproduces_the_joint_covariance() {
    let f = load("gp/gp.json");
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
fn joint_posterior_and_low_rank_gradients_match_finite_differences() {
    let f = load("gp/gp.json");
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
            let dxb = fd(|x| cached.extend(&gp, x).unwrap().l_xb, &x, dir);
            let dxx = fd(|x| cached.extend(&gp, x).unwrap().l_xx, &x, dir);
            // (what, analytic, finite difference)
            let checks: [(&str, &[f64], &[f64]); 5] = [
                ("d mean", &jp.mean_grad[dir..=dir], &dm[j..=j]),
                (
                    "d cov row",
                    &jp.cov_row_grad[dir * q..(dir + 1) * q],
                    &dc[j * q..(j + 1) * q],
                ),
                (
                    "d l_xb",
                    &lg.l_xb_row_grad[dir * nb..(dir + 1) * nb],
                    &dxb[j * nb..(j + 1) * nb],
                ),
                (
                    "d l_xx",
                    &lg.l_xx_grad[dir * q * q..(dir + 1) * q * q],
                    &dxx,
                ),
                ("block d mean", &lg.mean_grad[dir..=dir], &dm[j..=j]),
            ];
            for (name, analytic, numeric) in checks {
                close_all(analytic, numeric, 1e-5, 1e-7, &format!("{what} {name}"));
            }
        }
    }
}
