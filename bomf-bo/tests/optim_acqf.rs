//! `optimize_acqf` on functions whose maxima are known: it must find the global maximum of a
//! multimodal function, be deterministic in its seed, and spread sequential-greedy batches via
//! pending points; anchors (incumbents) let it reach optima on the box's faces.

use bomf_bo::acquisition::{Acquisition, AcquisitionFactory, WithPending};
use bomf_bo::optim::{
    AcqfOptions, Bounds, anchor_candidates, optimize_acqf, optimize_acqf_sequential,
    optimize_acqf_with_anchors,
};
use bomf_bo::{BoError, Result};
use serde_json::Value;

/// −Branin on the unit square (Branin's domain [−5, 10] × [0, 15] rescaled): three global
/// maxima, value −0.397887… (scipy's optimum, read from the L-BFGS-B fixture).
struct NegBranin;

impl Acquisition for NegBranin {
    fn dim(&self) -> usize {
        2
    }
    fn value(&self, x: &[f64]) -> f64 {
        use std::f64::consts::PI;
        let x1 = -5.0 + 15.0 * x[0];
        let x2 = 15.0 * x[1];
        let b = 5.1 / (4.0 * PI * PI);
        let inner = x2 - b * x1 * x1 + 5.0 / PI * x1 - 6.0;
        -(inner * inner + 10.0 * (1.0 - 1.0 / (8.0 * PI)) * x1.cos() + 10.0)
    }
}

fn branin_optimum() -> f64 {
    let data: Value =
        serde_json::from_str(include_str!("fixtures/optim/lbfgsb_cases.json")).unwrap();
    data["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "branin_0")
        .unwrap()["scipy_f"]
        .as_f64()
        .unwrap()
}

/// A sum of narrow Gaussian bumps in d dimensions with one clearly highest bump: a typical
/// acquisition landscape (flat almost everywhere, several local maxima).
struct Bumps {
    centres: Vec<Vec<f64>>,
    heights: Vec<f64>,
    width: f64,
    /// Optional pending points that suppress the function near them.
    pending: Vec<Vec<f64>>,
}

impl Bumps {
    fn new(d: usize) -> Self {
        let centres = vec![
            (0..d).map(|i| 0.2 + 0.05 * i as f64).collect(),
            (0..d).map(|i| 0.8 - 0.03 * i as f64).collect(),
            (0..d).map(|i| if i % 2 == 0 { 0.3 } else { 0.7 }).collect(),
        ];
        Self {
            centres,
            heights: vec![1.0, 1.5, 1.2],
            width: 0.15,
            pending: Vec::new(),
        }
    }
}

impl Acquisition for Bumps {
    fn dim(&self) -> usize {
        self.centres[0].len()
    }
    fn value(&self, x: &[f64]) -> f64 {
        let gauss = |c: &[f64], w: f64| {
            let r2: f64 = x.iter().zip(c).map(|(a, b)| (a - b).powi(2)).sum();
            (-r2 / (2.0 * w * w)).exp()
        };
        let mut v: f64 = self
            .centres
            .iter()
            .zip(&self.heights)
            .map(|(c, h)| h * gauss(c, self.width))
            .sum();
        for p in &self.pending {
            v *= 1.0 - gauss(p, 0.1);
        }
        v
    }
}

#[test]
fn finds_global_maximum_of_branin() {
    let result = optimize_acqf(&NegBranin, 1, &Bounds::unit(2), &AcqfOptions::default()).unwrap();
    let best = result.best();
    assert!(
        (best.value + branin_optimum()).abs() < 1e-6,
        "best {} vs -{}",
        best.value,
        branin_optimum()
    );
    assert_eq!(result.candidates.len(), 10);
    for w in result.candidates.windows(2) {
        assert!(w[0].value >= w[1].value);
    }
}

#[test]
fn finds_highest_bump_in_eight_dimensions_and_is_deterministic() {
    let acq = Bumps::new(8);
    let options = AcqfOptions {
        seed: 11,
        ..AcqfOptions::default()
    };
    let a = optimize_acqf(&acq, 1, &Bounds::unit(8), &options).unwrap();
    let b = optimize_acqf(&acq, 1, &Bounds::unit(8), &options).unwrap();
    assert_eq!(a, b, "same seed, same result");
    for (x, c) in a.best().x.iter().zip(&acq.centres[1]) {
        assert!((x - c).abs() < 1e-3, "{:?}", a.best().x);
    }
}

#[test]
fn nonnegative_selection_handles_mostly_zero_acquisitions() {
    // Exactly zero outside a small ball, like qEHVI far from the front.
    struct Ball;
    impl Acquisition for Ball {
        fn dim(&self) -> usize {
            3
        }
        fn value(&self, x: &[f64]) -> f64 {
            let r2: f64 = x.iter().map(|v| (v - 0.6).powi(2)).sum();
            (0.09 - r2).max(0.0)
        }
    }
    let options = AcqfOptions {
        nonnegative: true,
        ..AcqfOptions::default()
    };
    let r = optimize_acqf(&Ball, 1, &Bounds::unit(3), &options).unwrap();
    assert!((r.best().value - 0.09).abs() < 1e-6, "{:?}", r.best());
}

#[test]
fn joint_q_batch_has_q_points_in_bounds() {
    let bounds = Bounds::new(vec![0.1, 0.2], vec![0.6, 0.9]).unwrap();
    struct Sum;
    impl Acquisition for Sum {
        fn dim(&self) -> usize {
            2
        }
        fn value(&self, x: &[f64]) -> f64 {
            // Each of the q points wants to be at the upper corner.
            x.iter().sum()
        }
    }
    let r = optimize_acqf(&Sum, 3, &bounds, &AcqfOptions::default()).unwrap();
    assert_eq!(r.best().x.len(), 6);
    for row in r.best().x.chunks(2) {
        assert!((row[0] - 0.6).abs() < 1e-9 && (row[1] - 0.9).abs() < 1e-9);
    }
}

#[test]
fn sequential_greedy_spreads_the_batch_through_pending_points() {
    let factory = |pending: &[f64]| -> Result<Box<dyn Acquisition>> {
        let mut acq = Bumps::new(2);
        acq.pending = pending.chunks(2).map(|p| p.to_vec()).collect();
        Ok(Box::new(acq))
    };
    let r = optimize_acqf_sequential(&factory, 3, &Bounds::unit(2), &[], &AcqfOptions::default())
        .unwrap();
    assert_eq!(r.x.len(), 6);
    let points: Vec<&[f64]> = r.x.chunks(2).collect();
    // The first point is the highest bump; the next ones move to the other bumps.
    assert!(
        (points[0][0] - 0.8).abs() < 0.02 && (points[0][1] - 0.77).abs() < 0.02,
        "{:?}",
        r.x
    );
    for i in 0..3 {
        for j in 0..i {
            let dist: f64 = points[i]
                .iter()
                .zip(points[j])
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(dist > 0.1, "points {i} and {j} coincide: {:?}", r.x);
        }
    }
    assert!(r.values[0] >= r.values[1] && r.values[1] >= r.values[2]);
}

#[test]
fn bad_arguments_are_errors() {
    let o = AcqfOptions::default();
    assert!(matches!(
        optimize_acqf(&NegBranin, 1, &Bounds::unit(3), &o),
        Err(BoError::DimensionMismatch { .. })
    ));
    assert!(optimize_acqf(&NegBranin, 0, &Bounds::unit(2), &o).is_err());
    let few = AcqfOptions {
        raw_samples: 4,
        ..AcqfOptions::default()
    };
    assert!(optimize_acqf(&NegBranin, 1, &Bounds::unit(2), &few).is_err());
    assert!(Bounds::new(vec![0.0], vec![f64::INFINITY]).is_err());
    let factory = |_: &[f64]| -> Result<Box<dyn Acquisition>> { Ok(Box::new(NegBranin)) };
    assert!(optimize_acqf_sequential(&factory, 1, &Bounds::unit(2), &[0.5], &o).is_err());
}

#[test]
fn a_factory_may_lend_acquisitions_that_borrow_from_it() {
    // The factory owns the "model"; acquisitions borrow it (the shape the GP wiring needs).
    struct Model {
        centre: Vec<f64>,
    }
    struct Borrowing<'a> {
        model: &'a Model,
    }
    impl Acquisition for Borrowing<'_> {
        fn dim(&self) -> usize {
            self.model.centre.len()
        }
        fn value(&self, x: &[f64]) -> f64 {
            -x.iter()
                .zip(&self.model.centre)
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f64>()
        }
    }
    impl AcquisitionFactory for Model {
        fn build(&self, _pending: &[f64]) -> Result<Box<dyn Acquisition + '_>> {
            Ok(Box::new(Borrowing { model: self }))
        }
    }
    let model = Model {
        centre: vec![0.25, 0.75, 0.5],
    };
    let r = optimize_acqf_sequential(&model, 1, &Bounds::unit(3), &[], &AcqfOptions::default())
        .unwrap();
    for (x, c) in r.x.iter().zip(&model.centre) {
        assert!((x - c).abs() < 1e-5);
    }
}

/// A smooth q-batch utility: each point's score, minus a repulsion between batch members
/// (what a joint posterior does for EI-like acquisitions).
struct Repulsive;

impl Acquisition for Repulsive {
    fn dim(&self) -> usize {
        2
    }
    fn value(&self, x: &[f64]) -> f64 {
        let score = |p: &[f64]| {
            (-((p[0] - 0.3).powi(2) + (p[1] - 0.6).powi(2)) / 0.02).exp()
                + 0.8 * (-((p[0] - 0.8).powi(2) + (p[1] - 0.2).powi(2)) / 0.02).exp()
        };
        let points: Vec<&[f64]> = x.chunks(2).collect();
        let mut v: f64 = points.iter().map(|p| score(p)).sum();
        for i in 0..points.len() {
            for j in 0..i {
                let r2 =
                    (points[i][0] - points[j][0]).powi(2) + (points[i][1] - points[j][1]).powi(2);
                v -= (-r2 / 0.01).exp();
            }
        }
        v
    }
}

#[test]
fn pending_points_join_the_batch() {
    let pending = [0.3, 0.6];
    let wrapped = WithPending::new(Box::new(Repulsive), &pending).unwrap();
    let x = [0.35, 0.55];
    assert_eq!(wrapped.value(&x), Repulsive.value(&[0.35, 0.55, 0.3, 0.6]));
    // The gradient is the candidate block of the joint gradient.
    let mut g = [0.0; 2];
    wrapped.value_and_grad(&x, &mut g);
    let mut joint = [0.0; 4];
    Repulsive.value_and_grad(&[0.35, 0.55, 0.3, 0.6], &mut joint);
    assert_eq!(g, [joint[0], joint[1]]);
    // With the best mode pending, the next point goes to the other mode.
    let factory = |pending: &[f64]| -> Result<Box<dyn Acquisition>> {
        Ok(Box::new(WithPending::new(Box::new(Repulsive), pending)?))
    };
    let r = optimize_acqf_sequential(&factory, 2, &Bounds::unit(2), &[], &AcqfOptions::default())
        .unwrap();
    assert!(
        (r.x[0] - 0.3).abs() < 1e-2 && (r.x[1] - 0.6).abs() < 1e-2,
        "{:?}",
        r.x
    );
    assert!(
        (r.x[2] - 0.8).abs() < 1e-2 && (r.x[3] - 0.2).abs() < 1e-2,
        "{:?}",
        r.x
    );
    assert!(WithPending::new(Box::new(Repulsive), &[0.1]).is_err());
}

/// A narrow peak at the corner `(1, 0, …, 0)` of the unit cube over a weak broad hump in the
/// middle: the shape of qNEHVI on ZDT once the front's interior is covered (the extreme point
/// of the Pareto set is a corner; see `optimize_acqf_with_anchors`).
struct CornerPeak {
    d: usize,
}

impl CornerPeak {
    fn corner(&self) -> Vec<f64> {
        (0..self.d)
            .map(|i| if i == 0 { 1.0 } else { 0.0 })
            .collect()
    }
}

impl Acquisition for CornerPeak {
    fn dim(&self) -> usize {
        self.d
    }
    fn value(&self, x: &[f64]) -> f64 {
        let sq = |c: &dyn Fn(usize) -> f64| -> f64 {
            x.iter().enumerate().map(|(i, v)| (v - c(i)).powi(2)).sum()
        };
        let peak = (-sq(&|i| if i == 0 { 1.0 } else { 0.0 }) / (2.0 * 0.05 * 0.05)).exp();
        let hump = 0.1 * (-sq(&|_| 0.5) / (2.0 * 0.3 * 0.3)).exp();
        peak + hump
    }
}

#[test]
fn anchor_candidates_push_coordinates_to_the_bounds_and_stay_in_the_box() {
    let bounds = Bounds::unit(3);
    let anchor = [0.8, 0.0, 0.5];
    let out = anchor_candidates(&anchor, &bounds, 1000, 7);
    // Pushes: x0 → 0 and 1, x1 → 1 (it is already at 0), x2 → 0 and 1; then 4 perturbations.
    assert_eq!(out.len(), (5 + 4) * 3);
    let rows: Vec<&[f64]> = out.chunks(3).collect();
    let pushes: [[f64; 3]; 5] = [
        [0.0, 0.0, 0.5],
        [1.0, 0.0, 0.5],
        [0.8, 1.0, 0.5],
        [0.8, 0.0, 0.0],
        [0.8, 0.0, 1.0],
    ];
    for (row, want) in rows.iter().zip(&pushes) {
        assert_eq!(*row, want.as_slice());
    }
    assert!(out.iter().all(|v| (0.0..=1.0).contains(v)));
    // Clamping keeps a coordinate that sits on a bound on it about half of the time.
    assert!(rows[5..].iter().any(|r| r[1] == 0.0));
    assert!(rows[5..].iter().all(|r| r != &anchor.as_slice()));
    // Deterministic in the seed; the budget limits how many anchors are used.
    assert_eq!(out, anchor_candidates(&anchor, &bounds, 1000, 7));
    let three = [0.8, 0.4, 0.5, 0.1, 0.2, 0.3, 0.9, 0.9, 0.9];
    assert_eq!(
        anchor_candidates(&three, &bounds, 2 * 10, 7).len(),
        2 * 10 * 3
    );
    assert!(anchor_candidates(&three, &bounds, 9, 7).is_empty());
}

#[test]
fn anchors_reach_a_corner_optimum_next_to_an_incumbent() {
    let acq = CornerPeak { d: 6 };
    let bounds = Bounds::unit(6);
    let options = AcqfOptions {
        seed: 3,
        ..AcqfOptions::default()
    };
    // Plain Sobol raw samples miss the corner peak: the search ends on the broad hump.
    let plain = optimize_acqf(&acq, 1, &bounds, &options).unwrap();
    assert!(plain.best().value < 0.5, "{:?}", plain.best());
    // An incumbent on the edge next to the corner leads the search there.
    let incumbent = [0.8, 0.0, 0.0, 0.0, 0.0, 0.0];
    let anchored = optimize_acqf_with_anchors(&acq, 1, &bounds, &options, &incumbent).unwrap();
    let best = anchored.best();
    assert!(best.value > 0.999, "{best:?}");
    for (got, want) in best.x.iter().zip(acq.corner()) {
        assert!((got - want).abs() < 1e-6, "{:?}", best.x);
    }
    // Anchors must have the candidates' width and lie in the box.
    assert!(optimize_acqf_with_anchors(&acq, 1, &bounds, &options, &[0.5; 5]).is_err());
    let outside = [1.5, 0.0, 0.0, 0.0, 0.0, 0.0];
    assert!(optimize_acqf_with_anchors(&acq, 1, &bounds, &options, &outside).is_err());
}
