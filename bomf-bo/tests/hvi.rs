//! Hypervolume-improvement kernels against BoTorch's published qEHVI values, pymoo/moocore
//! hypervolume differences (`tests/fixtures/hv/gen_hv.py`), and properties: HVI equals the
//! hypervolume gain, analytic gradients equal finite differences, and the log kernel tracks
//! `ln(HVI)` where improvements are large relative to its temperatures.

mod botorch_qehvi;
mod fixtures;

use bomf_bo::acquisition::{LogHviParams, MAX_Q, hvi, hvi_with_grad, log_hvi, log_hvi_with_grad};
use bomf_bo::partitioning::{Cells, hypervolume, nondominated_cells};
use fixtures::nums;
use proptest::prelude::*;
use serde_json::Value;

/// A fixture's list of points (rows of numbers), flattened row-major.
fn flat(v: &Value) -> Vec<f64> {
    fixtures::rows(v).concat()
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1.0)
}

// ---------------------------------------------------------------------------------------------
// BoTorch's values: test/acquisition/multi_objective/test_monte_carlo.py
// (TestQExpectedHypervolumeImprovement.test_q_expected_hypervolume_improvement), one MC sample.
// ---------------------------------------------------------------------------------------------

#[test]
fn botorch_qehvi_golden_values() {
    let cells = botorch_qehvi::cells();
    for (ys, want) in botorch_qehvi::GOLDEN {
        let v = hvi(&cells, ys).unwrap();
        assert!(close(v, want, 1e-12), "{ys:?}: {v} vs {want}");
        let mut g = vec![0.0; ys.len()];
        assert_eq!(hvi_with_grad(&cells, ys, &mut g).unwrap(), v);
        // The log kernel tracks it (smoothing error ≤ a few τ_max per side).
        if want > 0.0 {
            let lv = log_hvi(&cells, ys, &LogHviParams::QLOGNEHVI).unwrap();
            assert!(
                (lv - want.ln()).abs() < 0.01,
                "{ys:?}: log {lv} vs {}",
                want.ln()
            );
        }
    }
    // [6.5, 4.5] improves the strip (5, 6.5] × (3.5, 4.5]: gradient (1, 1.5).
    let mut g = [0.0; 2];
    hvi_with_grad(&cells, &[6.5, 4.5], &mut g).unwrap();
    assert!(close(g[0], 1.0, 1e-12) && close(g[1], 1.5, 1e-12), "{g:?}");
}

#[test]
fn zero_improvement_still_has_finite_log_and_gradient() {
    let cells = botorch_qehvi::cells();
    let mut g = [0.0; 2];
    let lv = log_hvi_with_grad(&cells, &[4.0, 4.0], &LogHviParams::QLOGEHVI, &mut g).unwrap();
    assert!(lv.is_finite() && lv < -10.0, "{lv}");
    assert!(g.iter().all(|x| x.is_finite() && *x > 0.0), "{g:?}");
}

#[test]
fn empty_cells_and_errors() {
    let cells = Cells::new(2);
    assert_eq!(hvi(&cells, &[1.0, 1.0]).unwrap(), 0.0);
    let mut g = [7.0; 2];
    let lv = log_hvi_with_grad(&cells, &[1.0, 1.0], &LogHviParams::default(), &mut g).unwrap();
    assert_eq!(lv, f64::NEG_INFINITY);
    assert_eq!(g, [0.0, 0.0]);

    let cells = botorch_qehvi::cells();
    assert!(hvi(&cells, &[1.0, 2.0, 3.0]).is_err());
    assert!(hvi(&cells, &[]).is_err());
    assert!(hvi(&cells, &[f64::NAN, 1.0]).is_err());
    assert!(hvi(&cells, &vec![1.0; 2 * (MAX_Q + 1)]).is_err());
    assert!(hvi_with_grad(&cells, &[1.0, 1.0], &mut [0.0; 3]).is_err());
}

// ---------------------------------------------------------------------------------------------
// Fixtures: HVI = HV(front ∪ Y) − HV(front) from pymoo/moocore, m = 2..4, q = 1..3.
// ---------------------------------------------------------------------------------------------

#[test]
fn fixture_hvi_equals_hypervolume_gain() {
    let doc = fixtures::load("hv/hv_cases.json");
    let mut checked = 0;
    for case in doc["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let m = case["m"].as_u64().unwrap() as usize;
        let r = nums(&case["ref"]);
        let cells = nondominated_cells(&flat(&case["points"]), m, &r).unwrap();
        for entry in case["hvi"].as_array().unwrap() {
            let ys = flat(&entry["ys"]);
            let want = entry["hvi"].as_f64().unwrap();
            let got = hvi(&cells, &ys).unwrap();
            assert!(
                close(got, want, 1e-9),
                "{name} q={}: {got} vs {want}",
                ys.len() / m
            );
            checked += 1;
        }
    }
    assert!(checked >= 200, "{checked}");
}

/// Log-HVI against a vectorised numpy transcription of BoTorch's `_compute_log_qehvi`
/// (subset index lists per size, odd/even slots), on closed-form 2-D cells and arbitrary 3-D
/// boxes with infinite sides, fat and softplus smoothing, three temperature settings.
#[test]
fn fixture_log_hvi_matches_botorch_transcription() {
    let doc = fixtures::load("hv/log_hvi_cases.json");
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 100);
    for (idx, c) in cases.iter().enumerate() {
        let m = c["m"].as_u64().unwrap() as usize;
        let cells = Cells::from_bounds(m, flat(&c["lower"]), flat(&c["upper"])).unwrap();
        let ys = flat(&c["ys"]);
        let params = LogHviParams {
            tau_relu: c["tau_relu"].as_f64().unwrap(),
            tau_max: c["tau_max"].as_f64().unwrap(),
            fat: c["fat"].as_bool().unwrap(),
        };
        let want = c["log_hvi"].as_f64().unwrap();
        let got = log_hvi(&cells, &ys, &params).unwrap();
        assert!(
            close(got, want, 1e-9),
            "case {idx}: {got} vs {want} ({params:?})"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Properties.
// ---------------------------------------------------------------------------------------------

fn rows(
    m: usize,
    n: std::ops::RangeInclusive<usize>,
    lo: f64,
    hi: f64,
) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(prop::collection::vec(lo..hi, m), n)
        .prop_map(|r| r.into_iter().flatten().collect())
}

fn case(max_q: usize) -> impl Strategy<Value = (usize, Vec<f64>, Vec<f64>)> {
    (2usize..5).prop_flat_map(move |m| {
        (
            Just(m),
            rows(m, 0..=8, 0.0, 3.0),
            rows(m, 1..=max_q, 0.5, 3.5),
        )
    })
}

fn central_difference(f: impl Fn(&[f64]) -> f64, x: &[f64], h: f64) -> Vec<f64> {
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|j| {
            xp[j] = x[j] + h;
            let fp = f(&xp);
            xp[j] = x[j] - h;
            let fm = f(&xp);
            xp[j] = x[j];
            (fp - fm) / (2.0 * h)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn hvi_is_the_hypervolume_gain((m, front, ys) in case(4)) {
        let r = vec![0.25; m];
        let cells = nondominated_cells(&front, m, &r).unwrap();
        let all: Vec<f64> = front.iter().chain(&ys).copied().collect();
        let want = hypervolume(&all, m, &r).unwrap() - hypervolume(&front, m, &r).unwrap();
        let got = hvi(&cells, &ys).unwrap();
        prop_assert!(close(got, want, 1e-9), "hvi {} vs gain {}", got, want);
    }

    #[test]
    fn hvi_gradient_matches_finite_differences((m, front, ys) in case(3)) {
        let cells = nondominated_cells(&front, m, &vec![0.0; m]).unwrap();
        let mut g = vec![0.0; ys.len()];
        hvi_with_grad(&cells, &ys, &mut g).unwrap();
        let fd = central_difference(|y| hvi(&cells, y).unwrap(), &ys, 1e-7);
        for (a, b) in g.iter().zip(&fd) {
            // piecewise polynomial: exact away from kinks, which random points avoid
            prop_assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "grad {:?} vs fd {:?}", g, fd);
        }
    }

    #[test]
    fn log_hvi_tracks_log_of_large_improvements((m, front, ys) in case(3)) {
        let cells = nondominated_cells(&front, m, &vec![0.0; m]).unwrap();
        let exact = hvi(&cells, &ys).unwrap();
        // Only meaningful where the improvement dwarfs the temperatures.
        prop_assume!(exact > 1e-2);
        let params = LogHviParams { tau_relu: 1e-6, tau_max: 1e-4, fat: true };
        let lv = log_hvi(&cells, &ys, &params).unwrap();
        let q = (ys.len() / m) as f64;
        // each smooth min can move a log side by at most τ_max·ln(count)
        let bound = 2.0 * m as f64 * q * 1e-4 / exact.min(1.0) + 1e-6;
        prop_assert!((lv - exact.ln()).abs() <= bound, "log {} vs ln {} (bound {})", lv, exact.ln(), bound);
        let soft = LogHviParams { fat: false, ..params };
        let lv_soft = log_hvi(&cells, &ys, &soft).unwrap();
        prop_assert!((lv_soft - exact.ln()).abs() <= bound, "softplus log {} vs ln {}", lv_soft, exact.ln());
    }

    #[test]
    fn log_hvi_gradient_matches_finite_differences((m, front, ys) in case(3), fat in any::<bool>()) {
        let cells = nondominated_cells(&front, m, &vec![0.0; m]).unwrap();
        // Large temperatures keep the function smooth at the finite-difference scale.
        let params = LogHviParams { tau_relu: 1e-2, tau_max: 1e-1, fat };
        let mut g = vec![0.0; ys.len()];
        let v = log_hvi_with_grad(&cells, &ys, &params, &mut g).unwrap();
        prop_assert_eq!(v, log_hvi(&cells, &ys, &params).unwrap());
        let fd = central_difference(|y| log_hvi(&cells, y, &params).unwrap(), &ys, 1e-6);
        for (a, b) in g.iter().zip(&fd) {
            prop_assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "grad {:?} vs fd {:?}", g, fd);
        }
    }
}
