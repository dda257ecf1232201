//! What keeps a BO step bounded as the history grows: the GP training subset seen by the
//! surrogate, the cap on failed points used as pending points, the screened hyperparameter
//! search, and the blocked linear algebra of large GPs checked against the small-matrix code
//! paths. (The subset rule and the memory refusal are tested in `src/optimizer/subset.rs`.)

use std::sync::Mutex;

use bomf_bo::acquisition::{Acquisition, AcquisitionFactory};
use bomf_bo::gp::{FitOptions, GaussianProcess, Kernel, KernelKind};
use bomf_bo::sampling::sobol_design;
use bomf_bo::surrogate::{AcquisitionRequest, SurrogateBuilder, TrainingData};
use bomf_bo::{MAX_FAILED_PENDING, Objective, Optimizer, OptimizerSettings, Param, Result, Space};

/// Records what the BO step hands the surrogate; its acquisition is a bowl around the centre.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<(usize, usize)>>,
}

struct Centre;

impl Acquisition for Centre {
    fn dim(&self) -> usize {
        2
    }
    fn value(&self, x: &[f64]) -> f64 {
        -x.iter().map(|v| (v - 0.5).powi(2)).sum::<f64>()
    }
    fn value_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        for (g, v) in grad.iter_mut().zip(x) {
            *g = -2.0 * (v - 0.5);
        }
        self.value(x)
    }
}

struct RecordingFactory<'a> {
    recorder: &'a Recorder,
    n: usize,
}

impl AcquisitionFactory for RecordingFactory<'_> {
    fn build(&self, pending: &[f64]) -> Result<Box<dyn Acquisition + '_>> {
        self.recorder
            .seen
            .lock()
            .unwrap()
            .push((self.n, pending.len() / 2));
        Ok(Box::new(Centre))
    }
}

impl SurrogateBuilder for Recorder {
    fn build<'a>(
        &'a self,
        data: &'a TrainingData,
        _request: &AcquisitionRequest,
    ) -> Result<Box<dyn AcquisitionFactory + 'a>> {
        Ok(Box::new(RecordingFactory {
            recorder: self,
            n: data.n,
        }))
    }
}

#[test]
fn the_surrogate_sees_at_most_max_gp_points_and_the_latest_failures() {
    let space = Space::new_box(vec![Param::new("a", 0.0, 1.0), Param::new("b", 0.0, 1.0)]).unwrap();
    let settings = OptimizerSettings {
        max_gp_points: 100,
        n_initial: Some(5),
        ..OptimizerSettings::default()
    };
    let objectives = vec![Objective::maximize("f"), Objective::minimize("g")];
    let mut opt = Optimizer::new(space, objectives, settings).unwrap();
    let xs = sobol_design(400, 2, 3).unwrap();
    for (i, x) in xs.chunks_exact(2).enumerate() {
        let y = if i % 10 == 9 {
            [f64::NAN, f64::NAN]
        } else {
            [x[0] - x[1] * x[1], x[0] * x[0] + x[1]]
        };
        opt.tell(x, &y).unwrap();
    }
    assert_eq!(opt.n_successful(), 360);
    let note = opt.gp_subset().expect("the history is over the limit");
    assert_eq!((note.observations, note.used), (360, 100));
    assert!(note.to_string().contains("exact-GP limit of 100"), "{note}");
    let data = opt.surrogate_data().unwrap();
    assert_eq!(data.n, 100);
    let recorder = Recorder::default();
    opt.ask_with(1, &recorder).unwrap();
    let seen = recorder.seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    for (n, pending) in seen {
        assert_eq!(n, 100, "GP training points");
        // 40 failures, of which only the latest MAX_FAILED_PENDING shape the acquisition.
        assert_eq!(pending, MAX_FAILED_PENDING);
    }
}

/// Inputs and a smooth noisy response for GP checks.
fn gp_data(n: usize, d: usize) -> (Vec<f64>, Vec<f64>) {
    let x = sobol_design(n, d, 5).unwrap();
    let y = x
        .chunks_exact(d)
        .map(|p| (3.0 * p[0]).sin() + p[1] * p[1] + 0.01 * (p[0] * 911.0).sin())
        .collect();
    (x, y)
}

#[test]
fn a_large_fit_screens_its_starts_on_a_subset_and_finds_the_full_search_optimum() {
    let (x, y) = gp_data(320, 3);
    let screened = GaussianProcess::fit(&x, &y, 3, None, &FitOptions::default()).unwrap();
    let report = screened.fit_report().cloned().unwrap();
    assert_eq!(
        report.screened_on,
        Some(FitOptions::default().screen_points)
    );
    assert_eq!(report.starts, 5);
    let full_opts = FitOptions {
        screen_points: 10_000,
        ..FitOptions::default()
    };
    let full = GaussianProcess::fit(&x, &y, 3, None, &full_opts).unwrap();
    assert_eq!(full.fit_report().cloned().unwrap().screened_on, None);
    let (a, b) = (
        report.map_objective,
        full.fit_report().unwrap().map_objective,
    );
    assert!(a >= b - 1e-6, "screened MAP {a} vs full search {b}");
}

#[test]
fn large_posterior_paths_agree_with_each_other() {
    // 300 training and 300 query points: the blocked factorisation, solves and the
    // transposed joint posterior, checked against the pointwise formulas.
    let (x, y) = gp_data(300, 3);
    let kernel = Kernel {
        kind: KernelKind::Matern52,
        lengthscales: vec![0.4, 0.5, 0.6],
        outputscale: 1.3,
    };
    let gp = GaussianProcess::with_hyperparameters(&x, &y, 3, None, kernel, &[1e-3], 0.1).unwrap();
    let xq = sobol_design(300, 3, 9).unwrap();
    let joint = gp.posterior_joint(&xq).unwrap();
    let (mean, var) = gp.predict(&xq).unwrap();
    for j in 0..300 {
        assert!((joint.mean[j] - mean[j]).abs() < 1e-9, "mean {j}");
        assert!(
            (joint.cov[j * 300 + j] - var[j]).abs() < 1e-9,
            "variance {j}"
        );
        assert!((joint.cov[j * 300 + 7] - joint.cov[7 * 300 + j]).abs() < 1e-12);
        let point = &xq[j * 3..(j + 1) * 3];
        let p = gp.predict_with_grad(point).unwrap();
        assert!((p.mean - mean[j]).abs() < 1e-9 && (p.variance - var[j]).abs() < 1e-9);
    }
    // Interpolation: the posterior mean at a training point is close to its value.
    let (at_train, _) = gp.predict(&x[..3]).unwrap();
    assert!(
        (at_train[0] - y[0]).abs() < 0.05,
        "{} vs {}",
        at_train[0],
        y[0]
    );
}
