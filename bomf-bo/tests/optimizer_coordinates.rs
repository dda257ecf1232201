//! The surrogate and the acquisition live in one coordinate system.
//!
//! Told points reach the GP as `to_unit(w)`, the canonical representative of the weights `w`
//! (for [`SimplexMap::Normalize`], `x = w / max_i w_i`, so `max_i x_i = 1`). The acquisition
//! must be maximised over those same coordinates, and the proposal must be the canonical point
//! whose acquisition value was maximised, not the canonical image of a raw point of the cube
//! where the GP was queried off the set it was fitted on.

use std::sync::Mutex;

use bomf_bo::acquisition::{Acquisition, AcquisitionFactory};
use bomf_bo::surrogate::{
    AcquisitionRequest, BuiltinSurrogate, SurrogateBuilder, TrainingData,
    fit_surrogate_and_build_acquisition,
};
use bomf_bo::{Objective, Optimizer, OptimizerSettings, Result, SimplexMap, Space};

const MAPS: [SimplexMap; 2] = [SimplexMap::Normalize, SimplexMap::StickBreaking];

fn simplex(k: usize, map: SimplexMap) -> Space {
    Space::simplex((0..k).map(|i| format!("w{i}")).collect(), map).unwrap()
}

/// `−10‖w − w*‖²` with its maximum at a genuine mixture.
fn fusion_score(w: &[f64]) -> f64 {
    let target = [0.6, 0.3, 0.1];
    -10.0
        * w.iter()
            .zip(target)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
}

/// Every weight vector of the 3-simplex on the grid of step `1/n`.
fn simplex_grid(n: usize) -> Vec<[f64; 3]> {
    let mut out = Vec::new();
    for i in 0..=n {
        for j in 0..=n - i {
            let (a, b) = (i as f64 / n as f64, j as f64 / n as f64);
            out.push([a, b, (1.0 - a - b).max(0.0)]);
        }
    }
    out
}

/// The built-in surrogate, remembering what it was fitted to and with which request, so the
/// test can rebuild exactly the acquisition that `ask` maximised.
#[derive(Default)]
struct Recording {
    seen: Mutex<Option<(TrainingData, AcquisitionRequest)>>,
}

impl SurrogateBuilder for Recording {
    fn build<'a>(
        &'a self,
        data: &'a TrainingData,
        request: &AcquisitionRequest,
    ) -> Result<Box<dyn AcquisitionFactory + 'a>> {
        *self.seen.lock().unwrap() = Some((data.clone(), request.clone()));
        fit_surrogate_and_build_acquisition(data, request)
    }
}

/// A simplex run with qLogEI after the Sobol design and two BO steps.
fn fitted_run(map: SimplexMap, seed: u64) -> Optimizer {
    let settings = OptimizerSettings {
        seed,
        ..OptimizerSettings::default()
    };
    let mut opt = Optimizer::new(
        simplex(3, map),
        vec![Objective::maximize("score")],
        settings,
    )
    .expect("optimizer");
    for _ in 0..opt.n_initial() + 2 {
        let w = opt.ask_with(1, &BuiltinSurrogate).unwrap().remove(0);
        opt.tell(&w, &[fusion_score(&w)]).unwrap();
    }
    opt
}

#[test]
fn the_proposal_maximises_the_fitted_acquisition_over_the_simplex() {
    for map in MAPS {
        for seed in [0, 1] {
            let mut opt = fitted_run(map, seed);
            let recording = Recording::default();
            let proposal = opt.ask_with(1, &recording).unwrap().remove(0);
            let (data, request) = recording.seen.lock().unwrap().take().expect("a BO step");
            // The same fitted model and base samples; nothing was pending at the ask.
            let factory = fit_surrogate_and_build_acquisition(&data, &request).unwrap();
            let acq = factory.build(&[]).unwrap();
            let space = opt.space();
            let at_proposal = acq.value(&space.to_unit(&proposal).unwrap());
            let (best_w, best) = simplex_grid(200)
                .into_iter()
                .map(|w| (w, acq.value(&space.to_unit(&w).unwrap())))
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap();
            let tol = 1e-6 * (1.0 + best.abs());
            assert!(
                at_proposal >= best - tol,
                "{map:?} seed {seed}: acquisition {at_proposal} at the proposal {proposal:?}, \
                 but {best} at the weights {best_w:?}"
            );
        }
    }
}

/// An analytic acquisition `−‖x − t‖²` in the surrogate's input space that records every
/// candidate it is evaluated at.
struct RecordingBowl {
    target: Vec<f64>,
    evaluations: Mutex<Vec<(Vec<f64>, f64)>>,
}

struct BowlFactory<'a>(&'a RecordingBowl);

struct Bowl<'a>(&'a RecordingBowl);

impl Acquisition for Bowl<'_> {
    fn dim(&self) -> usize {
        self.0.target.len()
    }

    fn value(&self, x: &[f64]) -> f64 {
        let mut g = vec![0.0; x.len()];
        self.value_and_grad(x, &mut g)
    }

    fn value_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        let mut v = 0.0;
        for ((g, a), b) in grad.iter_mut().zip(x).zip(&self.0.target) {
            v -= (a - b).powi(2);
            *g = -2.0 * (a - b);
        }
        self.0.evaluations.lock().unwrap().push((x.to_vec(), v));
        v
    }
}

impl AcquisitionFactory for BowlFactory<'_> {
    fn build(&self, _pending: &[f64]) -> Result<Box<dyn Acquisition + '_>> {
        Ok(Box::new(Bowl(self.0)))
    }
}

impl SurrogateBuilder for RecordingBowl {
    fn build<'a>(
        &'a self,
        _data: &'a TrainingData,
        _request: &AcquisitionRequest,
    ) -> Result<Box<dyn AcquisitionFactory + 'a>> {
        Ok(Box::new(BowlFactory(self)))
    }
}

fn sup_distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f64::max)
}

#[test]
fn the_acquisition_is_maximised_in_the_coordinates_the_surrogate_is_fitted_in() {
    for map in MAPS {
        let space = simplex(3, map);
        let settings = OptimizerSettings {
            seed: 7,
            ..OptimizerSettings::default()
        };
        let mut opt = Optimizer::new(space, vec![Objective::maximize("score")], settings).unwrap();
        for _ in 0..opt.n_initial() {
            let w = opt.ask(1).unwrap().remove(0);
            opt.tell(&w, &[fusion_score(&w)]).unwrap();
        }
        // A peak off the normalisation map's canonical set `max_i x_i = 1` (for stick
        // breaking, inside the cube, where the map is one-to-one).
        let target = match map {
            SimplexMap::Normalize => vec![0.5, 0.2, 0.3],
            SimplexMap::StickBreaking => vec![0.5, 0.2],
        };
        let bowl = RecordingBowl {
            target,
            evaluations: Mutex::new(Vec::new()),
        };
        let proposal = opt.ask_with(1, &bowl).unwrap().remove(0);
        let evaluations = bowl.evaluations.into_inner().unwrap();
        assert!(!evaluations.is_empty());
        // 1. The acquisition was only ever queried at points the surrogate can be trained on.
        for (x, _) in &evaluations {
            let canonical = opt.space().canonical_unit(x).unwrap();
            assert!(
                sup_distance(&canonical, x) <= 1e-12,
                "{map:?}: the acquisition was evaluated at {x:?}, whose canonical point (the \
                 one the GP would be trained on) is {canonical:?}"
            );
        }
        // 2. Told back, the proposal is stored at a point where the acquisition was evaluated,
        //    and the best one.
        opt.tell(&proposal, &[fusion_score(&proposal)]).unwrap();
        let data = opt.training_data().unwrap();
        let stored = &data.x[(data.n - 1) * data.d..];
        let (nearest, value) = evaluations
            .iter()
            .min_by(|a, b| sup_distance(&a.0, stored).total_cmp(&sup_distance(&b.0, stored)))
            .unwrap();
        assert!(
            sup_distance(nearest, stored) <= 1e-12,
            "{map:?}: stored at {stored:?}; nearest evaluated point {nearest:?}"
        );
        let best = evaluations
            .iter()
            .map(|e| e.1)
            .fold(f64::NEG_INFINITY, f64::max);
        assert!(
            *value >= best - 1e-9,
            "{map:?}: acquisition {value} at the proposal, {best} at the best evaluated point"
        );
    }
}
