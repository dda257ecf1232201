//! qEHVI / qLogEHVI: BoTorch's golden values for the MC estimator over given samples, and
//! analytic gradients against finite differences.

mod botorch_qehvi;
mod finite_difference;

use bomf_bo::acquisition::{
    Acquisition, HviEstimator, LogHviParams, QExpectedHypervolumeImprovement, mc_hvi_estimate,
};
use bomf_bo::gp::{GaussianProcess, Kernel, KernelKind};
use bomf_bo::sampling::NormalBaseSamples;
use finite_difference::check_fd;

#[test]
fn qehvi_matches_botorch_golden_values_on_fixed_samples() {
    let cells = botorch_qehvi::cells();
    for (ys, expected) in botorch_qehvi::GOLDEN {
        let q = ys.len() / 2;
        let v = mc_hvi_estimate(&cells, ys, q, &HviEstimator::Exact).unwrap();
        assert!((v - expected).abs() < 1e-12, "{ys:?}: {v} vs {expected}");
        // Two identical samples average to the same value.
        let twice = [ys, ys].concat();
        let v2 = mc_hvi_estimate(&cells, &twice, q, &HviEstimator::Exact).unwrap();
        assert!((v2 - expected).abs() < 1e-12);
    }
    // Mean over samples: (1.5 + 0) / 2.
    let v = mc_hvi_estimate(&cells, &[6.5, 4.5, 0.0, 1.0], 1, &HviEstimator::Exact).unwrap();
    assert!((v - 0.75).abs() < 1e-12);
}

#[test]
fn qlogehvi_estimate_tracks_log_of_exact_value() {
    let cells = botorch_qehvi::cells();
    let log = HviEstimator::Log(LogHviParams::QLOGEHVI);
    let ys = [6.5, 4.5, 9.0, 2.0, 7.0, 5.0];
    let v = mc_hvi_estimate(&cells, &ys, 3, &log).unwrap();
    // Smoothing with tau_max = 1e-2 moves the value by a few percent at most.
    assert!((v - 3.5f64.ln()).abs() < 0.05, "{v} vs {}", 3.5f64.ln());
    // A dominated point has a tiny but finite log value.
    let v0 = mc_hvi_estimate(&cells, &[0.0, 1.0], 1, &log).unwrap();
    assert!(v0.is_finite() && v0 < -5.0, "{v0}");
    assert!(mc_hvi_estimate(&cells, &[1.0, 2.0, 3.0], 1, &log).is_err());
}

/// Two independent GPs on a small 2-d data set.
fn two_gps() -> (Vec<GaussianProcess>, Vec<f64>) {
    let x: [f64; 12] = [0.1, 0.2, 0.4, 0.9, 0.8, 0.5, 0.3, 0.6, 0.95, 0.05, 0.6, 0.3];
    let n = x.len() / 2;
    let mut ys = vec![0.0; n * 2];
    let mut y1 = Vec::new();
    let mut y2 = Vec::new();
    for (i, p) in x.chunks_exact(2).enumerate() {
        let a = (3.0 * p[0]).sin() + p[1];
        let b = (2.0 * p[1]).cos() - p[0] * p[0];
        ys[i * 2] = a;
        ys[i * 2 + 1] = b;
        y1.push(a);
        y2.push(b);
    }
    let gp = |y: &[f64], ls: [f64; 2], s: f64| {
        let kernel = Kernel {
            kind: KernelKind::Rbf,
            lengthscales: ls.to_vec(),
            outputscale: s,
        };
        GaussianProcess::with_hyperparameters(&x, y, 2, None, kernel, &[1e-2], 0.0).unwrap()
    };
    (
        vec![gp(&y1, [0.4, 0.6], 1.3), gp(&y2, [0.7, 0.35], 0.9)],
        ys,
    )
}

#[test]
fn qehvi_gradients_match_finite_differences() {
    let (gps, ys) = two_gps();
    let r = [0.0, -1.0];
    let base = NormalBaseSamples::new(32, 2 * 2, 3).unwrap();
    let exact = QExpectedHypervolumeImprovement::new(&gps, &ys, &r, base.clone()).unwrap();
    let log = QExpectedHypervolumeImprovement::new(&gps, &ys, &r, base)
        .unwrap()
        .with_estimator(HviEstimator::Log(LogHviParams::QLOGEHVI));
    for x in [&[0.35, 0.75][..], &[0.2, 0.85, 0.7, 0.4][..]] {
        assert!(exact.value(x) > 0.0);
        check_fd(&exact, x, 1e-4);
        check_fd(&log, x, 1e-4);
    }
    // Batches larger than the base samples allow are rejected, not truncated.
    assert!(exact.value(&[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]).is_nan());
    assert!(exact.evaluate(&[0.1, 0.2, 0.3], None).is_err());
}
