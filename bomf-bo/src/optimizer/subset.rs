//! Bounds on what one BO step costs as the history grows.
//!
//! An exact GP on `n` observations holds several `n × n` matrices and each hyperparameter
//! evaluation factorises one (`O(n³)`), so both memory and time grow without bound with the
//! history. Three limits keep every `ask` bounded:
//!
//! - **Exact GP up to [`MAX_EXACT_GP`] observations** (the default of
//!   `OptimizerSettings::max_gp_points`). Beyond, the surrogate is fitted on a subset of that
//!   size chosen around the Pareto front (GP regression's subset-of-data approximation, which
//!   BoTorch and Optuna users apply by hand to long histories): every non-dominated
//!   observation (for one objective, the best ones), then the following non-dominated layers
//!   while they fit in a quarter of the budget, then a seeded uniform sample of the rest
//!   ([`training_subset`]). Unless the front alone exceeds the budget, the front, the
//!   incumbent and the inferred reference point are those of the whole history; the same
//!   history and seed give the same subset.
//! - **A memory ceiling**: `max_gp_points` values whose matrices would need more than
//!   [`GP_MEMORY_LIMIT`] bytes are refused when the optimiser is built
//!   ([`check_gp_points`]), with the largest size that fits.
//! - **At most [`MAX_FAILED_PENDING`] failed points** (the most recent) act as pending points
//!   of the acquisition, each of which joins every posterior it evaluates; all failed points
//!   still reject candidates within `failure_radius`.

use std::fmt;

use super::{Optimizer, STREAM_SUBSET, TrainingData};
use crate::error::{BoError, Result};
use crate::partitioning::is_non_dominated;
use crate::sampling::derive_seed;
use crate::sampling::sample_indices;

/// Default of `OptimizerSettings::max_gp_points`: the most successful observations an exact GP
/// is fitted on; the fit's time grows as `n³` and its memory as `n²`.
pub const MAX_EXACT_GP: usize = 1000;

/// Memory the `n × n` matrices of one BO step may take ([`gp_memory_bytes`]): 4 GiB.
pub const GP_MEMORY_LIMIT: u64 = 4 << 30;

/// The most failed observations passed to the acquisition as pending points (the most recent).
pub const MAX_FAILED_PENDING: usize = 16;

/// Non-dominated layers examined for the elite part of a subset (each takes a sort).
const MAX_LAYERS: usize = 32;

/// Seed stream of the subset's uniform sample.
const SUBSET_SALT: u64 = 0x7375_6273_6574;

/// Bytes of the `n × n` matrices one BO step holds with an exact GP on `n` points and `m`
/// objectives fitted side by side: per objective, the covariance, its factor, the inverse and
/// the blocked kernels' scratch during the fit, then the stored factor and the baseline
/// posterior of qNEHVI's pruning, at most 8 matrices of `n²` values of 8 bytes.
pub fn gp_memory_bytes(n: usize, m: usize) -> u64 {
    let n2 = (n as u64).saturating_mul(n as u64);
    n2.saturating_mul(8 * 8).saturating_mul(m.max(1) as u64)
}

/// The largest `n` whose [`gp_memory_bytes`] is within [`GP_MEMORY_LIMIT`].
pub fn max_gp_points_within_limit(m: usize) -> usize {
    let per_point2 = gp_memory_bytes(1, m).max(1);
    let mut n = ((GP_MEMORY_LIMIT / per_point2) as f64).sqrt() as usize;
    while gp_memory_bytes(n + 1, m) <= GP_MEMORY_LIMIT {
        n += 1;
    }
    while n > 0 && gp_memory_bytes(n, m) > GP_MEMORY_LIMIT {
        n -= 1;
    }
    n
}

/// Refuses a `max_gp_points` whose exact GP would not fit in [`GP_MEMORY_LIMIT`].
pub fn check_gp_points(max_gp_points: usize, m: usize) -> Result<()> {
    if max_gp_points < 2 {
        return Err(BoError::InvalidInput(format!(
            "max_gp_points must be at least 2, got {max_gp_points}"
        )));
    }
    let bytes = gp_memory_bytes(max_gp_points, m);
    if bytes > GP_MEMORY_LIMIT {
        let fits = max_gp_points_within_limit(m);
        return Err(BoError::InvalidInput(format!(
            "an exact GP on {max_gp_points} observations ({m} objective(s)) needs about \
             {:.1} GiB for its n x n matrices, over the {:.0} GiB limit: use max_gp_points \
             <= {fits} (the default, {MAX_EXACT_GP}, fits a subset of a longer history)",
            bytes as f64 / f64::from(1u32 << 30),
            GP_MEMORY_LIMIT as f64 / f64::from(1u32 << 30),
        )));
    }
    Ok(())
}

/// What a BO step fits its GP on when the history is longer than `max_gp_points`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpSubset {
    /// Successful observations in the history.
    pub observations: usize,
    /// Observations the GP is fitted on (`max_gp_points`).
    pub used: usize,
}

impl fmt::Display for GpSubset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} successful observations exceed the exact-GP limit of {}: the GP is fitted on \
             {} of them, every Pareto-optimal one (the best ones for one objective) and the \
             next non-dominated layers, plus a seeded sample of the rest",
            self.observations, self.used, self.used
        )
    }
}

impl Optimizer {
    /// What the next BO step fits its GP on: [`Self::training_data`] when it has at most
    /// `settings.max_gp_points` observations, else a subset chosen around the Pareto front
    /// (seeded by the run's seed).
    pub fn surrogate_data(&self) -> Result<TrainingData> {
        let all = self.training_data()?;
        if all.n <= self.settings.max_gp_points {
            return Ok(all);
        }
        let seed = derive_seed(self.settings.seed, STREAM_SUBSET);
        let keep = training_subset(&all.y, all.m, self.settings.max_gp_points, seed)?;
        let (d, m) = (all.d, all.m);
        Ok(TrainingData {
            x: keep
                .iter()
                .flat_map(|&i| all.x[i * d..(i + 1) * d].to_vec())
                .collect(),
            y: keep
                .iter()
                .flat_map(|&i| all.y[i * m..(i + 1) * m].to_vec())
                .collect(),
            n: keep.len(),
            ..all
        })
    }

    /// `Some` when the next BO step will fit its GP on fewer successful observations than
    /// the history holds (see [`Self::surrogate_data`]); its `Display` says so in a sentence.
    pub fn gp_subset(&self) -> Option<GpSubset> {
        let observations = self.n_successful();
        let bo_step = observations >= self.n_initial();
        (bo_step && observations > self.settings.max_gp_points).then_some(GpSubset {
            observations,
            used: self.settings.max_gp_points,
        })
    }
}

/// Indices (ascending) of the rows of `y` (`n × m`, every objective maximised, all finite)
/// that a GP limited to `cap` points is fitted on: all of them when `n ≤ cap`; otherwise the
/// non-dominated layers in order while they fit in `cap / 4` (the first layer always, sampled
/// down to `cap` if it alone is larger), then a uniform sample of the others, seeded by
/// `seed`.
pub fn training_subset(y: &[f64], m: usize, cap: usize, seed: u64) -> Result<Vec<usize>> {
    let n = y.len() / m.max(1);
    if n <= cap {
        return Ok((0..n).collect());
    }
    let elite = elite_points(y, m, cap, seed)?;
    let mut taken = vec![false; n];
    elite.iter().for_each(|&i| taken[i] = true);
    let rest: Vec<usize> = (0..n).filter(|&i| !taken[i]).collect();
    let fill = sample_indices(rest.len(), cap - elite.len(), seed ^ SUBSET_SALT);
    let mut out: Vec<usize> = elite
        .into_iter()
        .chain(fill.iter().map(|&k| rest[k]))
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// The elite part of [`training_subset`]: the best rows for one objective, non-dominated
/// layers for several.
fn elite_points(y: &[f64], m: usize, cap: usize, seed: u64) -> Result<Vec<usize>> {
    let n = y.len() / m;
    let quota = (cap / 4).max(1);
    if m == 1 {
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| y[b].total_cmp(&y[a]).then(a.cmp(&b)));
        order.truncate(quota);
        return Ok(order);
    }
    let mut elite: Vec<usize> = Vec::new();
    let mut remaining: Vec<usize> = (0..n).collect();
    for _ in 0..MAX_LAYERS {
        let ys: Vec<f64> = remaining
            .iter()
            .flat_map(|&i| y[i * m..(i + 1) * m].iter().copied())
            .collect();
        let mask = is_non_dominated(&ys, m, false)?;
        let layer: Vec<usize> = remaining
            .iter()
            .zip(&mask)
            .filter_map(|(&i, &keep)| keep.then_some(i))
            .collect();
        if elite.is_empty() && layer.len() > cap {
            // A front larger than the budget: a seeded sample of it.
            let pick = sample_indices(layer.len(), cap, seed ^ SUBSET_SALT ^ 1);
            return Ok(pick.into_iter().map(|k| layer[k]).collect());
        }
        if !elite.is_empty() && elite.len() + layer.len() > quota {
            break;
        }
        elite.extend_from_slice(&layer);
        let done: std::collections::HashSet<usize> = layer.into_iter().collect();
        remaining.retain(|i| !done.contains(i));
        if elite.len() >= quota || remaining.is_empty() {
            break;
        }
    }
    Ok(elite)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::sobol_design;
    use crate::space::{Objective, Param, Space};
    use crate::{OptimizerSettings, is_non_dominated};

    #[test]
    fn memory_estimate_and_limit_agree() {
        for m in 1..5 {
            let fits = max_gp_points_within_limit(m);
            assert!(gp_memory_bytes(fits, m) <= GP_MEMORY_LIMIT);
            assert!(gp_memory_bytes(fits + 1, m) > GP_MEMORY_LIMIT);
            assert!(check_gp_points(fits, m).is_ok());
            assert!(check_gp_points(fits + 1, m).is_err());
            assert!(check_gp_points(MAX_EXACT_GP, m).is_ok());
        }
    }

    /// `n` points of two conflicting objectives (maximised) with a little structure-free noise.
    fn two_objectives(n: usize) -> Vec<f64> {
        let x = sobol_design(n, 3, 11).unwrap();
        x.chunks_exact(3)
            .flat_map(|p| {
                let wiggle = (p[2] * 37.0).sin() * 0.05;
                [p[0] + wiggle, 1.0 - p[0] * p[0] - p[1] * 0.3 - wiggle]
            })
            .collect()
    }

    #[test]
    fn training_subset_keeps_every_pareto_point_and_is_deterministic() {
        let (n, cap) = (3000, 500);
        let y = two_objectives(n);
        let subset = training_subset(&y, 2, cap, 7).unwrap();
        assert_eq!(subset.len(), cap);
        assert!(
            subset.windows(2).all(|w| w[0] < w[1]),
            "ascending, distinct"
        );
        let front = is_non_dominated(&y, 2, false).unwrap();
        for (i, on_front) in front.iter().enumerate() {
            if *on_front {
                assert!(subset.binary_search(&i).is_ok(), "Pareto point {i} dropped");
            }
        }
        assert_eq!(subset, training_subset(&y, 2, cap, 7).unwrap());
        let other = training_subset(&y, 2, cap, 8).unwrap();
        assert_ne!(subset, other, "the sample of the rest follows the seed");
        // A history within the budget is used whole.
        assert_eq!(
            training_subset(&y[..2 * cap], 2, cap, 7).unwrap().len(),
            cap
        );
    }

    #[test]
    fn single_objective_subset_keeps_the_best_and_a_front_too_large_is_sampled() {
        let y: Vec<f64> = (0..2000).map(|i| ((i * 7919) % 2000) as f64).collect();
        let subset = training_subset(&y, 1, 400, 1).unwrap();
        assert_eq!(subset.len(), 400);
        // The best quarter of the budget (the 100 largest values) is always kept.
        for (i, v) in y.iter().enumerate() {
            if *v >= 1900.0 {
                assert!(subset.binary_search(&i).is_ok(), "best point {i} dropped");
            }
        }
        // Every point non-dominated: the front alone is over budget and is sampled down.
        let front: Vec<f64> = (0..1000)
            .flat_map(|i| [i as f64, 1000.0 - i as f64])
            .collect();
        assert_eq!(training_subset(&front, 2, 300, 1).unwrap().len(), 300);
    }

    #[test]
    fn an_exact_gp_too_large_for_memory_is_refused_with_the_size_that_fits() {
        let space =
            Space::new_box(vec![Param::new("a", 0.0, 1.0), Param::new("b", 0.0, 1.0)]).unwrap();
        let objectives = vec![Objective::maximize("f"), Objective::maximize("g")];
        let fits = max_gp_points_within_limit(2);
        assert!(fits > MAX_EXACT_GP && gp_memory_bytes(fits, 2) <= GP_MEMORY_LIMIT);
        let absurd = OptimizerSettings {
            max_gp_points: 1_000_000,
            ..OptimizerSettings::default()
        };
        let err = Optimizer::new(space.clone(), objectives.clone(), absurd).unwrap_err();
        let BoError::InvalidInput(msg) = err else {
            panic!("expected InvalidInput, got {err:?}");
        };
        assert!(msg.contains("1000000 observations"), "{msg}");
        assert!(msg.contains(&format!("max_gp_points <= {fits}")), "{msg}");
        let largest = OptimizerSettings {
            max_gp_points: fits,
            ..OptimizerSettings::default()
        };
        assert!(Optimizer::new(space, objectives, largest).is_ok());
    }
}
