//! The ask/tell optimiser: initial design, bookkeeping, failures, directions, serialisation,
//! and the BO branch driven by a cheap analytic surrogate (the GP wiring is tested where it
//! lands).

use bomf_bo::acquisition::{Acquisition, AcquisitionFactory};
use bomf_bo::surrogate::{AcquisitionRequest, SurrogateBuilder, TrainingData};
use bomf_bo::{
    AcquisitionKind, BoError, MAX_ASK, Objective, Optimizer, OptimizerSettings, Param, Result,
    SimplexMap, Space, SpaceConfig,
};

fn box_space() -> Space {
    Space::new_box(vec![
        Param::new("lr", 1e-6, 1e-3).log_scale(),
        Param::new("bs", 4.0, 64.0).integer(),
    ])
    .unwrap()
}

fn settings(seed: u64) -> OptimizerSettings {
    OptimizerSettings {
        seed,
        n_initial: Some(4),
        ..OptimizerSettings::default()
    }
}

/// An optimiser over [`box_space`] maximising one objective, "acc", with [`settings`]`(seed)`.
fn optimizer(seed: u64) -> Optimizer {
    Optimizer::new(
        box_space(),
        vec![Objective::maximize("acc")],
        settings(seed),
    )
    .unwrap()
}

/// [`optimizer`] once its four initial design points have been evaluated with [`objective`].
fn optimizer_past_design(seed: u64) -> Optimizer {
    let mut opt = optimizer(seed);
    for x in opt.ask(4).unwrap() {
        opt.tell(&x, &[objective(&x)]).unwrap();
    }
    opt
}

fn objective(x: &[f64]) -> f64 {
    // Best at lr = 1e-4, bs = 16.
    -(x[0].log10() + 4.0).powi(2) - ((x[1] - 16.0) / 16.0).powi(2)
}

/// A stand-in surrogate: its acquisition peaks at the best observed point shifted by
/// `offset` (clamped to the cube) and is suppressed around pending points.
struct TowardsBest {
    offset: f64,
}

struct TowardsBestFactory {
    target: Vec<f64>,
}

struct Bowl {
    target: Vec<f64>,
    pending: Vec<Vec<f64>>,
}

impl Acquisition for Bowl {
    fn dim(&self) -> usize {
        self.target.len()
    }
    fn value(&self, x: &[f64]) -> f64 {
        let r2: f64 = x
            .iter()
            .zip(&self.target)
            .map(|(a, b)| (a - b).powi(2))
            .sum();
        let mut v = -r2;
        for p in &self.pending {
            let q2: f64 = x.iter().zip(p).map(|(a, b)| (a - b).powi(2)).sum();
            v -= (-q2 / 0.005).exp();
        }
        v
    }
}

impl AcquisitionFactory for TowardsBestFactory {
    fn build(&self, pending: &[f64]) -> Result<Box<dyn Acquisition + '_>> {
        let d = self.target.len();
        Ok(Box::new(Bowl {
            target: self.target.clone(),
            pending: pending.chunks(d).map(|p| p.to_vec()).collect(),
        }))
    }
}

impl SurrogateBuilder for TowardsBest {
    fn build<'a>(
        &'a self,
        data: &'a TrainingData,
        request: &AcquisitionRequest,
    ) -> Result<Box<dyn AcquisitionFactory + 'a>> {
        assert_eq!(request.kind, AcquisitionKind::QLogEi);
        let best = (0..data.n)
            .max_by(|&a, &b| data.y[a * data.m].total_cmp(&data.y[b * data.m]))
            .unwrap();
        let target = data.x[best * data.d..(best + 1) * data.d]
            .iter()
            .map(|v| (v + self.offset).clamp(0.0, 1.0))
            .collect();
        Ok(Box::new(TowardsBestFactory { target }))
    }
}

#[test]
fn initial_design_is_sobol_in_user_space_and_seeded() {
    let mut a = optimizer(1);
    let xs = a.ask(4).unwrap();
    assert_eq!(xs.len(), 4);
    for x in &xs {
        a.space().check_point(x).unwrap();
        assert_eq!(x[1].fract(), 0.0);
    }
    assert_eq!(a.pending().len(), 4);
    let mut b = optimizer(1);
    assert_eq!(b.ask(4).unwrap(), xs, "same seed, same design");
    let mut c = optimizer(2);
    assert_ne!(c.ask(4).unwrap(), xs);
    // The design spreads out: the two halves of each axis are both used.
    let low_lr = xs.iter().filter(|x| x[0] < 10f64.powf(-4.5)).count();
    assert!((1..=3).contains(&low_lr), "{xs:?}");
}

#[test]
fn an_ask_too_large_to_hold_is_refused_before_allocating() {
    let mut a = optimizer(1);
    for n in [MAX_ASK + 1, 1_000_000_000_000, usize::MAX] {
        let err = a.ask(n).unwrap_err();
        assert!(matches!(err, BoError::InvalidInput(_)), "{err}");
        assert!(err.to_string().contains(&MAX_ASK.to_string()), "{err}");
    }
    // Nothing became pending, and an ask within the limit still works.
    assert!(a.pending().is_empty());
    assert_eq!(a.ask(MAX_ASK).unwrap().len(), MAX_ASK);
}

#[test]
fn settings_are_checked_when_the_optimizer_is_made() {
    let make = |settings: OptimizerSettings| {
        Optimizer::new(box_space(), vec![Objective::maximize("acc")], settings)
            .unwrap_err()
            .to_string()
    };
    let mut bad = settings(0);
    bad.acqf.num_restarts = 0;
    assert!(make(bad).contains("1 <= num_restarts <= raw_samples"));
    let mut bad = settings(0);
    bad.acqf.raw_samples = bad.acqf.num_restarts - 1;
    assert!(make(bad).contains("1 <= num_restarts <= raw_samples"));
    let bad = OptimizerSettings {
        failure_radius: -1.0,
        ..settings(0)
    };
    assert!(make(bad).contains("failure_radius"));
    let bad = OptimizerSettings {
        n_initial: Some(0),
        ..settings(0)
    };
    assert!(make(bad).contains("n_initial"));
}

#[test]
fn stateless_use_skips_design_points_already_in_the_history() {
    // The CLI rebuilds the optimiser from HISTORY.jsonl on every call.
    let mut first = optimizer(3);
    let design = first.ask(3).unwrap();
    let mut replay = optimizer(3);
    for x in &design[..2] {
        replay.tell(x, &[objective(x)]).unwrap();
    }
    let next = replay.ask(1).unwrap();
    assert_eq!(next[0], design[2]);
}

#[test]
fn tell_validates_points_and_values() {
    let mut opt = optimizer(0);
    let e = opt.tell(&[1e-2, 8.0], &[0.5]).unwrap_err().to_string();
    assert!(e.contains("'lr'") && e.contains("outside"), "{e}");
    assert!(matches!(
        opt.tell(&[1e-4, 8.0], &[0.5, 1.0]),
        Err(BoError::DimensionMismatch { .. })
    ));
    assert!(opt.tell(&[1e-4, 8.5], &[0.5]).is_err());
    assert!(opt.observations().is_empty());
    // Wrong acquisition for the number of objectives.
    let bad = OptimizerSettings {
        acquisition: Some(AcquisitionKind::QNehvi),
        ..OptimizerSettings::default()
    };
    assert!(Optimizer::new(box_space(), vec![Objective::maximize("acc")], bad).is_err());
}

#[test]
fn min_goals_are_negated_and_failures_kept_out_of_the_training_data() {
    let config = SpaceConfig::from_json(
        r#"{"params": [{"name": "x", "low": 0, "high": 2}],
            "objectives": [{"name": "acc", "goal": "max"}, {"name": "loss", "goal": "min"}],
            "ref_point": [0.1, 3.0]}"#,
    )
    .unwrap();
    let mut opt = Optimizer::from_config(&config, OptimizerSettings::default()).unwrap();
    assert_eq!(opt.acquisition_kind(), AcquisitionKind::QNehvi);
    opt.tell(&[0.5], &[0.8, 1.5]).unwrap();
    opt.tell(&[1.0], &[f64::NAN, 1.0]).unwrap();
    opt.tell(&[1.5], &[0.6, f64::INFINITY]).unwrap();
    opt.tell(&[2.0], &[0.9, 2.5]).unwrap();
    assert_eq!(opt.n_failed(), 2);
    assert_eq!(opt.n_successful(), 2);
    let data = opt.training_data().unwrap();
    assert_eq!((data.n, data.d, data.m), (2, 1, 2));
    assert_eq!(data.x, vec![0.25, 1.0]);
    assert_eq!(data.y, vec![0.8, -1.5, 0.9, -2.5]);
    assert_eq!(data.ref_point, Some(vec![0.1, -3.0]));
    // Both successful points are Pareto-optimal (0.9 > 0.8 but loss 2.5 > 1.5).
    assert_eq!(opt.pareto_indices(), vec![0, 3]);
}

#[test]
fn failures_in_the_initial_phase_are_replaced_by_new_design_points() {
    let mut opt = optimizer(4);
    let xs = opt.ask(4).unwrap();
    for (i, x) in xs.iter().enumerate() {
        let y = if i < 2 { f64::NAN } else { objective(x) };
        opt.tell(x, &[y]).unwrap();
    }
    assert!(opt.pending().is_empty());
    // Two successes of four: two more design points, none equal to an earlier one.
    let more = opt.ask(2).unwrap();
    for m in &more {
        assert!(!xs.contains(m));
    }
}

#[test]
fn bo_branch_follows_the_surrogate_and_spreads_batches() {
    let mut opt = optimizer_past_design(5);
    let surrogate = TowardsBest { offset: 0.1 };
    let data = opt.training_data().unwrap();
    let best = opt.best().unwrap().x.clone();
    let batch = opt.ask_with(3, &surrogate).unwrap();
    assert_eq!(batch.len(), 3);
    // The first candidate is the surrogate's target (rounded for the integer axis).
    let best_unit = opt.space().to_unit(&best).unwrap();
    let target: Vec<f64> = best_unit
        .iter()
        .map(|v| (v + 0.1).clamp(0.0, 1.0))
        .collect();
    let expected = opt.space().from_unit(&target).unwrap();
    assert!(
        (batch[0][0] / expected[0] - 1.0).abs() < 1e-3,
        "{batch:?} vs {expected:?}"
    );
    assert!((batch[0][1] - expected[1]).abs() <= 1.0);
    // Pending points push the rest of the batch elsewhere; no duplicates.
    for i in 0..3 {
        for j in 0..i {
            assert_ne!(batch[i], batch[j]);
        }
    }
    assert_eq!(opt.pending().len(), 3);
    assert_eq!(data.n, 4);
}

#[test]
fn a_failed_candidate_is_not_proposed_again() {
    let mut opt = optimizer_past_design(6);
    // Offset 0: the surrogate wants the best observed point itself, which is a duplicate, so
    // the optimiser must pick something else.
    let surrogate = TowardsBest { offset: 0.0 };
    let first = opt.ask_with(1, &surrogate).unwrap().remove(0);
    assert!(!opt.observations().iter().any(|o| o.x == first));
    opt.tell(&first, &[f64::NAN]).unwrap();
    let second = opt.ask_with(1, &surrogate).unwrap().remove(0);
    let a = opt.space().to_unit(&first).unwrap();
    let b = opt.space().to_unit(&second).unwrap();
    let dist = a
        .iter()
        .zip(&b)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f64::max);
    assert!(
        dist > opt.settings().failure_radius,
        "{first:?} proposed again as {second:?}"
    );
}

#[test]
fn state_round_trips_and_a_resumed_run_continues_identically() {
    let run = |stop_at: Option<usize>| -> Vec<Vec<f64>> {
        let surrogate = TowardsBest { offset: 0.05 };
        let mut opt = optimizer(7);
        let mut proposals = Vec::new();
        for round in 0..8 {
            if stop_at == Some(round) {
                let json = opt.to_json().unwrap();
                let restored = Optimizer::from_json(&json).unwrap();
                // (NaN != NaN, so compare the serialised forms.)
                assert_eq!(restored.to_json().unwrap(), json);
                opt = restored;
            }
            let x = opt.ask_with(1, &surrogate).unwrap().remove(0);
            // Every third evaluation fails, to exercise the NaN serialisation.
            let y = if round % 3 == 2 {
                f64::NAN
            } else {
                objective(&x)
            };
            opt.tell(&x, &[y]).unwrap();
            proposals.push(x);
        }
        proposals
    };
    let straight = run(None);
    assert_eq!(run(Some(3)), straight);
    assert_eq!(run(Some(6)), straight);
}

#[test]
fn non_finite_values_survive_json() {
    let mut opt = Optimizer::new(
        box_space(),
        vec![Objective::maximize("a"), Objective::minimize("b")],
        OptimizerSettings::default(),
    )
    .unwrap();
    opt.tell(&[1e-4, 8.0], &[f64::NAN, f64::INFINITY]).unwrap();
    opt.tell(&[1e-5, 9.0], &[f64::NEG_INFINITY, 1.0]).unwrap();
    let json = opt.to_json().unwrap();
    assert!(json.contains("\"nan\"") && json.contains("\"-inf\""));
    let back = Optimizer::from_json(&json).unwrap();
    let y0 = &back.observations()[0].y;
    assert!(y0[0].is_nan() && y0[1] == f64::INFINITY);
    assert_eq!(back.observations()[1].y[0], f64::NEG_INFINITY);
    // Hand-edited state is validated.
    let broken = json.replace("\"version\": 1", "\"version\": 99");
    assert!(Optimizer::from_json(&broken).is_err());
    assert!(Optimizer::from_json("{").is_err());
}

#[test]
fn simplex_runs_propose_weights_on_the_simplex() {
    for map in [SimplexMap::Normalize, SimplexMap::StickBreaking] {
        let space = Space::simplex((0..5).map(|i| format!("w{i}")).collect(), map).unwrap();
        let mut opt = Optimizer::new(
            space,
            vec![Objective::maximize("acc"), Objective::minimize("loss")],
            OptimizerSettings::default(),
        )
        .unwrap();
        let xs = opt.ask(6).unwrap();
        assert_eq!(opt.n_initial(), (opt.space().unit_dim() + 1).max(5));
        for w in &xs {
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            assert!(w.iter().all(|v| *v >= 0.0));
            opt.tell(w, &[w[0], w[1]]).unwrap();
        }
        assert_eq!(opt.training_data().unwrap().d, opt.space().unit_dim());
    }
}
