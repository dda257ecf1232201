//! Starting points for the local searches: BoTorch's `gen_batch_initial_conditions`.
//!
//! Many cheap evaluations of the acquisition on a space-filling design locate its promising
//! regions; a few of them are then chosen as restarts by Boltzmann sampling on the values. The
//! randomness keeps the restarts diverse (pure top-k would put them all on one mode) while the
//! argmax is always kept so the best raw point is never lost.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Choose `n` indices with probability proportional to `exp(η·z)`, `z` the standardised
/// values (BoTorch's `initialize_q_batch`), without replacement, always including the argmax.
///
/// Non-finite values count as "never choose unless needed": they get zero weight and are
/// only drawn (at random) when fewer than `n` values are finite. If every finite value is equal,
/// the choice is uniformly random (BoTorch warns `BadInitialCandidatesWarning` there).
/// Returns `min(n, values.len())` distinct indices, the argmax (if any value is finite) among
/// them. Deterministic in `seed`.
pub fn boltzmann_select(values: &[f64], n: usize, eta: f64, seed: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let finite: Vec<usize> = (0..values.len())
        .filter(|&i| values[i].is_finite())
        .collect();
    if finite.is_empty() {
        return random_subset(values.len(), n, &mut rng);
    }
    let count = finite.len() as f64;
    let mean = finite.iter().map(|&i| values[i]).sum::<f64>() / count;
    // Sample standard deviation (torch's `std` is unbiased).
    let var = finite
        .iter()
        .map(|&i| (values[i] - mean).powi(2))
        .sum::<f64>()
        / (count - 1.0).max(1.0);
    let std = var.sqrt();
    if std.is_nan() || std <= 0.0 || !std.is_finite() {
        let mut chosen = random_subset(values.len(), n, &mut rng);
        ensure_argmax(&mut chosen, values);
        return chosen;
    }
    // exp(η z) can overflow for extreme z: halve η·z until it does not (as BoTorch does).
    let mut scale = eta;
    let weights = loop {
        let w: Vec<f64> = values
            .iter()
            .map(|&v| {
                if v.is_finite() {
                    (scale * (v - mean) / std).exp()
                } else {
                    0.0
                }
            })
            .collect();
        if w.iter().all(|t| t.is_finite()) {
            break w;
        }
        scale *= 0.5;
    };
    let mut chosen = weighted_without_replacement(&weights, n, &mut rng);
    ensure_argmax(&mut chosen, values);
    chosen
}

/// The non-negative variant for acquisitions such as qEHVI that are exactly zero over much of
/// the space (BoTorch's `initialize_q_batch_nonneg`): only values `≥ α·max` compete (α lowered
/// by ×0.1 until at least `n` do), weighted by `exp(η·(v/max − 1))`. If no value is positive
/// the choice is uniformly random. Always includes the argmax when it is positive.
pub fn boltzmann_select_nonnegative(
    values: &[f64],
    n: usize,
    eta: f64,
    alpha: f64,
    seed: u64,
) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = n.min(values.len());
    let max = values
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(f64::NEG_INFINITY, f64::max);
    if max.is_nan() || max <= 0.0 {
        return random_subset(values.len(), n, &mut rng);
    }
    let positive: Vec<usize> = (0..values.len())
        .filter(|&i| values[i].is_finite() && values[i] > 0.0)
        .collect();
    if positive.len() < n {
        // Every positive point, then random others to fill the quota.
        let mut chosen = positive.clone();
        let rest: Vec<usize> = (0..values.len())
            .filter(|i| !positive.contains(i))
            .collect();
        for j in random_subset(rest.len(), n - chosen.len(), &mut rng) {
            chosen.push(rest[j]);
        }
        return chosen;
    }
    let mut threshold = alpha;
    let competing = loop {
        let c: Vec<usize> = positive
            .iter()
            .copied()
            .filter(|&i| values[i] >= threshold * max)
            .collect();
        if c.len() >= n {
            break c;
        }
        threshold *= 0.1;
    };
    let weights: Vec<f64> = competing
        .iter()
        .map(|&i| (eta * (values[i] / max - 1.0)).exp())
        .collect();
    let mut chosen: Vec<usize> = weighted_without_replacement(&weights, n, &mut rng)
        .into_iter()
        .map(|j| competing[j])
        .collect();
    ensure_argmax(&mut chosen, values);
    chosen
}

/// Successive weighted draws without replacement (what `torch.multinomial(w, n)` does). Indices
/// with zero weight are drawn uniformly only once every positive-weight index is taken.
fn weighted_without_replacement(weights: &[f64], n: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let n = n.min(weights.len());
    let mut remaining: Vec<f64> = weights.to_vec();
    let mut chosen = Vec::with_capacity(n);
    while chosen.len() < n {
        let total: f64 = remaining.iter().sum();
        if total.is_nan() || total <= 0.0 {
            let rest: Vec<usize> = (0..weights.len()).filter(|i| !chosen.contains(i)).collect();
            for j in random_subset(rest.len(), n - chosen.len(), rng) {
                chosen.push(rest[j]);
            }
            break;
        }
        let mut target = rng.random::<f64>() * total;
        let mut pick = None;
        for (i, &w) in remaining.iter().enumerate() {
            if w > 0.0 {
                pick = Some(i);
                if target < w {
                    break;
                }
                target -= w;
            }
        }
        // `pick` is the last positive weight when rounding left `target` past the end.
        let Some(i) = pick else { break };
        chosen.push(i);
        remaining[i] = 0.0;
    }
    chosen
}

/// `n` distinct indices from `0..len`, uniformly (partial Fisher–Yates).
fn random_subset(len: usize, n: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut all: Vec<usize> = (0..len).collect();
    let n = n.min(len);
    for i in 0..n {
        let j = rng.random_range(i..len);
        all.swap(i, j);
    }
    all.truncate(n);
    all
}

/// Replace the last choice by the argmax of the finite values when it is missing.
fn ensure_argmax(chosen: &mut [usize], values: &[f64]) {
    let argmax = (0..values.len())
        .filter(|&i| values[i].is_finite())
        .max_by(|&a, &b| values[a].total_cmp(&values[b]).then(b.cmp(&a)));
    if let Some(best) = argmax
        && !chosen.contains(&best)
        && let Some(last) = chosen.last_mut()
    {
        *last = best;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_is_distinct_includes_argmax_and_is_seeded() {
        let values: Vec<f64> = (0..100).map(|i| ((i * 37) % 101) as f64).collect();
        let a = boltzmann_select(&values, 10, 1.0, 3);
        let b = boltzmann_select(&values, 10, 1.0, 3);
        assert_eq!(a, b);
        assert_eq!(a.len(), 10);
        let mut sorted = a.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 10);
        let argmax = (0..100)
            .max_by(|&i, &j| values[i].total_cmp(&values[j]))
            .unwrap();
        assert!(a.contains(&argmax));
    }

    #[test]
    fn all_equal_values_fall_back_to_random() {
        let values = vec![1.0; 50];
        let a = boltzmann_select(&values, 5, 1.0, 1);
        assert_eq!(a.len(), 5);
        let c = boltzmann_select(&values, 5, 1.0, 2);
        assert_ne!(a, c);
    }

    #[test]
    fn non_finite_values_are_chosen_last() {
        let mut values = vec![f64::NAN; 20];
        values[4] = 1.0;
        values[7] = 2.0;
        let chosen = boltzmann_select(&values, 3, 1.0, 0);
        assert!(chosen.contains(&4) && chosen.contains(&7));
        assert_eq!(chosen.len(), 3);
    }

    #[test]
    fn nonnegative_variant_ignores_tiny_values() {
        // 20 values at the max scale, 80 below 1e-4 · max: only the first 20 may be drawn.
        let values: Vec<f64> = (0..100)
            .map(|i| if i < 20 { 1.0 + i as f64 } else { 1e-7 })
            .collect();
        for seed in 0..20 {
            let chosen = boltzmann_select_nonnegative(&values, 10, 1.0, 1e-4, seed);
            assert!(chosen.iter().all(|&i| i < 20), "{chosen:?}");
            assert!(chosen.contains(&19));
        }
        let zeros = vec![0.0; 30];
        assert_eq!(
            boltzmann_select_nonnegative(&zeros, 4, 1.0, 1e-4, 0).len(),
            4
        );
    }

    #[test]
    fn boltzmann_prefers_high_values() {
        // Over many seeds, the top decile must be over-represented relative to uniform.
        let values: Vec<f64> = (0..200).map(|i| i as f64).collect();
        let mut top = 0;
        let mut total = 0;
        for seed in 0..50 {
            for i in boltzmann_select(&values, 10, 1.0, seed) {
                total += 1;
                if i >= 180 {
                    top += 1;
                }
            }
        }
        assert!(top as f64 / total as f64 > 0.2, "{top}/{total}");
    }
}
