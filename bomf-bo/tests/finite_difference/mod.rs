//! Checking an acquisition's analytic gradient against central finite differences of its value.
//!
//! Shared by the integration tests (`mod finite_difference;`).

use bomf_bo::acquisition::Acquisition;

/// `value_and_grad` returns `value` and a gradient whose coordinates each match the central
/// difference (step 1e-6) within `rtol` times the largest gradient magnitude.
pub fn check_fd(acq: &dyn Acquisition, x: &[f64], rtol: f64) {
    let mut g = vec![0.0; x.len()];
    let v = acq.value_and_grad(x, &mut g);
    assert!((v - acq.value(x)).abs() <= 1e-12 * v.abs().max(1.0));
    let mut xp = x.to_vec();
    let scale = g.iter().fold(1e-8f64, |a, b| a.max(b.abs()));
    for j in 0..x.len() {
        let h = 1e-6;
        xp[j] = x[j] + h;
        let fp = acq.value(&xp);
        xp[j] = x[j] - h;
        let fm = acq.value(&xp);
        xp[j] = x[j];
        let fd = (fp - fm) / (2.0 * h);
        assert!(
            (fd - g[j]).abs() <= rtol * scale,
            "coordinate {j}: analytic {} vs finite difference {fd}",
            g[j]
        );
    }
}
