//! Multi-objective ask/tell end to end: qNEHVI (and its siblings) through the built-in
//! surrogate must beat a space-filling design of the same size.

use bomf_bo::optim::AcqfOptions;
use bomf_bo::optimizer::{AcquisitionKind, Optimizer, OptimizerSettings};
use bomf_bo::partitioning::hypervolume;
use bomf_bo::space::{Objective, Param, Space};

/// BoTorch's BraninCurrin (both objectives minimised), on [0, 1]².
fn branin_currin(x: &[f64]) -> [f64; 2] {
    let (u, v) = (15.0 * x[0] - 5.0, 15.0 * x[1]);
    let pi = std::f64::consts::PI;
    let branin = (v - 5.1 / (4.0 * pi * pi) * u * u + 5.0 / pi * u - 6.0).powi(2)
        + 10.0 * (1.0 - 1.0 / (8.0 * pi)) * u.cos()
        + 10.0;
    let (a, b) = (x[0], x[1]);
    let currin = (1.0 - (-1.0 / (2.0 * b)).exp())
        * (2300.0 * a.powi(3) + 1900.0 * a * a + 2092.0 * a + 60.0)
        / (100.0 * a.powi(3) + 500.0 * a * a + 4.0 * a + 20.0);
    [branin, currin]
}

/// Hypervolume of minimised outcomes w.r.t. BoTorch's reference point [18, 6].
fn hv_min(ys: &[[f64; 2]]) -> f64 {
    let flat: Vec<f64> = ys.iter().flat_map(|y| [-y[0], -y[1]]).collect();
    hypervolume(&flat, 2, &[-18.0, -6.0]).unwrap()
}

fn run(kind: Option<AcquisitionKind>, n_initial: usize, budget: usize, seed: u64) -> f64 {
    let space =
        Space::new_box(vec![Param::new("x0", 0.0, 1.0), Param::new("x1", 0.0, 1.0)]).unwrap();
    let settings = OptimizerSettings {
        acquisition: kind,
        n_initial: Some(n_initial),
        seed,
        mc_samples: 64,
        acqf: AcqfOptions {
            num_restarts: 4,
            raw_samples: 128,
            ..AcqfOptions::default()
        },
        ..OptimizerSettings::default()
    };
    let objectives = vec![Objective::minimize("branin"), Objective::minimize("currin")];
    let mut opt = Optimizer::new(space, objectives, settings)
        .unwrap()
        .with_ref_point(vec![18.0, 6.0])
        .unwrap();
    let mut ys = Vec::new();
    for _ in 0..budget {
        let x = opt.ask(1).unwrap().remove(0);
        let y = branin_currin(&x);
        opt.tell(&x, &y).unwrap();
        ys.push(y);
    }
    hv_min(&ys)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn qnehvi_beats_a_sobol_design_on_branin_currin() {
    let seeds = [0, 1, 2];
    let bo = median(seeds.iter().map(|&s| run(None, 6, 14, s)).collect());
    let sobol = median(seeds.iter().map(|&s| run(None, 14, 14, s)).collect());
    // BoTorch's max_hv for this problem is 59.36.
    assert!(bo > sobol, "qNEHVI {bo} vs Sobol {sobol}");
    assert!(bo < 59.37, "{bo} exceeds the known maximum");
}

#[test]
fn every_multi_objective_kind_proposes_new_points() {
    for kind in [
        AcquisitionKind::QEhvi,
        AcquisitionKind::QNehvi,
        AcquisitionKind::QLogNehvi,
    ] {
        let hv = run(Some(kind), 5, 8, 4);
        assert!(hv.is_finite() && hv > 0.0, "{kind:?}: {hv}");
    }
}
