//! The built-in surrogate: one GP per objective and the acquisition over them
//! ([`fit_surrogate_and_build_acquisition`]).

use rayon::prelude::*;

use super::{AcquisitionKind, AcquisitionRequest, TrainingData};
use crate::acquisition::{
    Acquisition, AcquisitionFactory, HviEstimator, NehviOptions, QEhviFactory,
    QLogExpectedImprovement, QNehviFactory, WithPending,
};
use crate::error::{BoError, Result};
use crate::gp::{FitOptions, GaussianProcess};
use crate::partitioning::{infer_reference_point, pareto_front};
use crate::sampling::NormalBaseSamples;
use crate::sampling::derive_seed;

/// Fit one GP per objective to `data` (preset `request.gp_preset`) and build the requested
/// acquisition over them, with `request.mc_samples` fixed QMC base samples. This is the single
/// place where [`crate::gp`] and [`crate::acquisition`] plug into the ask/tell loop.
///
/// - **qLogEI** (wired): one GP fitted by MAP on the unit-cube inputs, `best_f` = the best
///   observed value (as BOMF's HPBO stage), pending points appended to the batch
///   ([`WithPending`]), base samples seeded per BO step (column `j` of the base samples does not
///   depend on how many pending points there are).
/// - **qEHVI / qNEHVI / qLogNEHVI**: one independent GP per objective (BoTorch's
///   `ModelListGP`), the reference point from `data.ref_point` or, when none was given,
///   BoTorch's `infer_reference_point` on the observed front. qNEHVI prunes the baseline
///   (every observed input) once per step; pending points join its baseline, as BoTorch's
///   `cache_pending=True`. qEHVI partitions the observed front once and scores pending points
///   jointly with the candidate.
///
/// [`super::Optimizer::ask_with`] runs the BO branch with any other [`super::SurrogateBuilder`].
pub fn fit_surrogate_and_build_acquisition<'a>(
    data: &'a TrainingData,
    request: &AcquisitionRequest,
) -> Result<Box<dyn AcquisitionFactory + 'a>> {
    match request.kind {
        AcquisitionKind::QLogEi => {
            BoError::check_dim("qLogEI objectives", 1, data.m)?;
            let options = FitOptions {
                preset: request.gp_preset,
                seed: request.seed,
                ..FitOptions::default()
            };
            let gp = GaussianProcess::fit(&data.x, &data.y, data.d, None, &options)?;
            let best_f = data.y.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            Ok(Box::new(QLogEiFactory {
                gp,
                best_f,
                mc_samples: request.mc_samples,
                seed: derive_seed(request.seed, 1),
            }))
        }
        kind @ (AcquisitionKind::QEhvi | AcquisitionKind::QNehvi | AcquisitionKind::QLogNehvi) => {
            if data.m < 2 {
                return Err(BoError::DimensionMismatch {
                    what: format!("{kind:?} objectives (at least)"),
                    expected: 2,
                    got: data.m,
                });
            }
            let gps = fit_per_objective(data, request)?;
            let ref_point = match &data.ref_point {
                Some(r) => r.clone(),
                None => {
                    let front = pareto_front(&data.y, data.m)?;
                    infer_reference_point(&front, data.m, None, 0.1)?
                }
            };
            let seed = derive_seed(request.seed, 1);
            if kind == AcquisitionKind::QEhvi {
                return Ok(Box::new(QEhviFactory::new(
                    gps,
                    &data.y,
                    &ref_point,
                    request.mc_samples,
                    seed,
                    HviEstimator::Exact,
                )?));
            }
            let base = if kind == AcquisitionKind::QLogNehvi {
                NehviOptions::log()
            } else {
                NehviOptions::default()
            };
            let options = NehviOptions {
                mc_samples: request.mc_samples,
                seed,
                ..base
            };
            Ok(Box::new(QNehviFactory::new(
                gps, &data.x, &ref_point, options,
            )?))
        }
    }
}

/// One GP per objective on the shared inputs, each with its own hyperparameters (BoTorch's
/// `ModelListGP` of `SingleTaskGP`s, as BOMF uses for fusion).
fn fit_per_objective(
    data: &TrainingData,
    request: &AcquisitionRequest,
) -> Result<Vec<GaussianProcess>> {
    // In parallel: with each fit's restarts also in parallel, rayon balances all of them over
    // the cores (fitting one GP after the other leaves a core idle at each fit's tail).
    (0..data.m)
        .into_par_iter()
        .map(|j| {
            let y: Vec<f64> = (0..data.n).map(|i| data.y[i * data.m + j]).collect();
            let options = FitOptions {
                preset: request.gp_preset,
                seed: derive_seed(request.seed, 100 + j as u64),
                ..FitOptions::default()
            };
            GaussianProcess::fit(&data.x, &y, data.d, None, &options)
        })
        .collect()
}

/// qLogEI over one fitted GP; each `build` appends the pending points to the batch.
struct QLogEiFactory {
    gp: GaussianProcess,
    best_f: f64,
    mc_samples: usize,
    seed: u64,
}

impl AcquisitionFactory for QLogEiFactory {
    fn build(&self, pending: &[f64]) -> Result<Box<dyn Acquisition + '_>> {
        let n_pending = pending.len() / self.gp.d.max(1);
        let base = NormalBaseSamples::new(self.mc_samples, 1 + n_pending, self.seed)?;
        let acq = QLogExpectedImprovement::new(&self.gp, self.best_f, base)?;
        Ok(Box::new(WithPending::new(Box::new(acq), pending)?))
    }
}
