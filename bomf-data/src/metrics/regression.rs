//! Correlation metrics for regression tasks (STS-B), with `scipy.stats` semantics.
//!
//! Undefined cases are errors, not NaN: scipy returns NaN with a `ConstantInputWarning` when an
//! input is constant and raises for fewer than two points; a NaN score would silently poison a
//! Bayesian-optimisation objective, so we return [`MetricError::ConstantInput`] /
//! [`MetricError::TooFewExamples`] instead. NaN or infinite inputs are rejected the same way.

use super::{MetricError, MetricResult, check_pair_lengths};

fn check_inputs(metric: &'static str, x: &[f64], y: &[f64]) -> MetricResult<()> {
    check_pair_lengths(metric, "truth", x.len(), "predicted", y.len())?;
    for (what, values) in [("truth", x), ("predicted", y)] {
        if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(MetricError::NotFinite {
                metric,
                what,
                index,
                value,
            });
        }
    }
    if x.len() < 2 {
        return Err(MetricError::TooFewExamples {
            metric,
            needed: 2,
            got: x.len(),
        });
    }
    for (what, values) in [("truth", x), ("predicted", y)] {
        // Exact equality, as scipy tests it (`(x == x[0]).all()`).
        if values.iter().all(|&v| v == values[0]) {
            return Err(MetricError::ConstantInput { metric, what });
        }
    }
    Ok(())
}

/// Centres `values` and scales them to unit Euclidean norm.
///
/// Dividing by the largest deviation first (as scipy does) keeps the squares from overflowing
/// for huge inputs and from underflowing for tiny ones.
fn centred_unit(values: &[f64]) -> Vec<f64> {
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let centred: Vec<f64> = values.iter().map(|v| v - mean).collect();
    let largest = centred.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let norm = largest
        * centred
            .iter()
            .map(|v| (v / largest).powi(2))
            .sum::<f64>()
            .sqrt();
    centred.iter().map(|v| v / norm).collect()
}

/// Pearson correlation of two unvalidated-but-checked inputs.
fn pearson_unchecked(x: &[f64], y: &[f64]) -> f64 {
    let (xs, ys) = (centred_unit(x), centred_unit(y));
    let r: f64 = xs.iter().zip(&ys).map(|(a, b)| a * b).sum();
    r.clamp(-1.0, 1.0)
}

/// Pearson's correlation coefficient (`scipy.stats.pearsonr(...).statistic`).
pub fn pearson(x: &[f64], y: &[f64]) -> MetricResult<f64> {
    check_inputs("pearson", x, y)?;
    if x.len() == 2 {
        // scipy returns exactly ±1 for two points; so do we (no rounding noise).
        let sign = |a: f64, b: f64| (b - a).signum();
        return Ok(sign(x[0], x[1]) * sign(y[0], y[1]));
    }
    Ok(pearson_unchecked(x, y))
}

/// Spearman's rank correlation (`scipy.stats.spearmanr(...).statistic`): Pearson's coefficient
/// of the ranks, ties getting the average of the ranks they span.
pub fn spearman(x: &[f64], y: &[f64]) -> MetricResult<f64> {
    check_inputs("spearman", x, y)?;
    Ok(pearson_unchecked(&average_ranks(x), &average_ranks(y)))
}

/// 1-based ranks with ties averaged (`scipy.stats.rankdata(method="average")`).
pub fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // positions start..end (0-based) hold ranks start+1..=end; their mean:
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    ranks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_average_ties() {
        assert_eq!(
            average_ranks(&[3.0, 1.0, 3.0, 2.0]),
            vec![3.5, 1.0, 3.5, 2.0]
        );
    }

    #[test]
    fn degenerate_inputs_are_errors() {
        assert!(matches!(
            pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]),
            Err(MetricError::ConstantInput { what: "truth", .. })
        ));
        assert!(matches!(
            spearman(&[1.0, 2.0, 3.0], &[5.0, 5.0, 5.0]),
            Err(MetricError::ConstantInput {
                what: "predicted",
                ..
            })
        ));
        assert!(matches!(
            pearson(&[1.0], &[1.0]),
            Err(MetricError::TooFewExamples { .. })
        ));
        assert!(matches!(
            pearson(&[1.0, f64::NAN], &[1.0, 2.0]),
            Err(MetricError::NotFinite { index: 1, .. })
        ));
        assert!(matches!(
            spearman(&[1.0, 2.0], &[1.0, f64::INFINITY]),
            Err(MetricError::NotFinite { .. })
        ));
    }
}
