//! Classification metrics over class indices, with scikit-learn's semantics.
//!
//! Labels are `usize` class indices in `0..num_classes`; `num_classes` is only used to reject
//! out-of-range labels early (a mapping bug upstream), not to change the result: like sklearn's
//! default (`labels=None`), macro F1 averages over the classes that occur in the truth or the
//! predictions, so a class absent from both does not drag the mean down.
//!
//! Zero division: when a class never occurs in either input its F1 is 0/0. sklearn then warns
//! (`UndefinedMetricWarning`) and returns `zero_division="warn"` → 0.0; we return 0.0 too, and
//! log nothing (the value is documented here). This only happens for [`f1_binary`] with a positive
//! label absent from both inputs: in [`f1_macro`] every averaged class occurs somewhere.

use super::{MetricError, MetricResult, check_pair_lengths};

/// Validates the two label slices and returns the confusion matrix `c[truth][predicted]`.
fn confusion(
    metric: &'static str,
    truth: &[usize],
    predicted: &[usize],
    num_classes: usize,
) -> MetricResult<Vec<Vec<u64>>> {
    check_pair_lengths(metric, "truth", truth.len(), "predicted", predicted.len())?;
    for (what, labels) in [("truth", truth), ("predicted", predicted)] {
        if let Some((index, &label)) = labels.iter().enumerate().find(|(_, l)| **l >= num_classes) {
            return Err(MetricError::LabelOutOfRange {
                metric,
                what,
                index,
                label,
                num_classes,
            });
        }
    }
    let mut matrix = vec![vec![0u64; num_classes]; num_classes];
    for (&t, &p) in truth.iter().zip(predicted) {
        matrix[t][p] += 1;
    }
    Ok(matrix)
}

/// F1 of class `c` from the confusion matrix: `2·tp / (2·tp + fp + fn)`, 0 when undefined.
fn class_f1(matrix: &[Vec<u64>], c: usize) -> f64 {
    let tp = matrix[c][c];
    let false_neg: u64 = matrix[c].iter().sum::<u64>() - tp;
    let false_pos: u64 = matrix.iter().map(|row| row[c]).sum::<u64>() - tp;
    let denominator = 2 * tp + false_pos + false_neg;
    if denominator == 0 {
        0.0
    } else {
        (2 * tp) as f64 / denominator as f64
    }
}

/// Fraction of examples whose predicted class equals the true class (sklearn `accuracy_score`).
pub fn accuracy(truth: &[usize], predicted: &[usize], num_classes: usize) -> MetricResult<f64> {
    let matrix = confusion("accuracy", truth, predicted, num_classes)?;
    let correct: u64 = (0..num_classes).map(|c| matrix[c][c]).sum();
    Ok(correct as f64 / truth.len() as f64)
}

/// F1 of the class `positive` against all others.
///
/// With two classes this is sklearn's `f1_score(average="binary", pos_label=positive)`; with more
/// it is the one-vs-rest F1 of that class (`f1_score(labels=[positive], average="macro")`).
/// Returns 0.0 when `positive` occurs in neither input (sklearn's zero-division default).
pub fn f1_binary(
    truth: &[usize],
    predicted: &[usize],
    num_classes: usize,
    positive: usize,
) -> MetricResult<f64> {
    let metric = "f1";
    if positive >= num_classes {
        return Err(MetricError::InvalidArgument {
            metric,
            message: format!("positive label {positive} is not below num_classes = {num_classes}"),
        });
    }
    let matrix = confusion(metric, truth, predicted, num_classes)?;
    Ok(class_f1(&matrix, positive))
}

/// Unweighted mean of per-class F1 over the classes present in `truth` or `predicted`
/// (sklearn `f1_score(average="macro")`).
pub fn f1_macro(truth: &[usize], predicted: &[usize], num_classes: usize) -> MetricResult<f64> {
    let matrix = confusion("f1_macro", truth, predicted, num_classes)?;
    let present: Vec<usize> = (0..num_classes)
        .filter(|&c| matrix[c].iter().any(|&n| n > 0) || matrix.iter().any(|row| row[c] > 0))
        .collect();
    // Non-empty input guarantees at least one present class.
    let sum: f64 = present.iter().map(|&c| class_f1(&matrix, c)).sum();
    Ok(sum / present.len() as f64)
}

/// Matthews correlation coefficient for any number of classes (sklearn `matthews_corrcoef`):
///
/// `(c·s − Σ_k p_k·t_k) / sqrt((s² − Σ_k p_k²)·(s² − Σ_k t_k²))`, with `c` correct predictions,
/// `s` examples, `t_k`/`p_k` the true/predicted counts of class `k`. When the denominator is 0
/// (one input is constant) sklearn returns 0.0, and so do we.
pub fn matthews_corrcoef(
    truth: &[usize],
    predicted: &[usize],
    num_classes: usize,
) -> MetricResult<f64> {
    let matrix = confusion("mcc", truth, predicted, num_classes)?;
    let true_counts: Vec<f64> = matrix
        .iter()
        .map(|row| row.iter().sum::<u64>() as f64)
        .collect();
    let pred_counts: Vec<f64> = (0..num_classes)
        .map(|c| matrix.iter().map(|row| row[c]).sum::<u64>() as f64)
        .collect();
    let correct: f64 = (0..num_classes).map(|c| matrix[c][c] as f64).sum();
    let samples = truth.len() as f64;
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let cov_true_pred = correct * samples - dot(&true_counts, &pred_counts);
    let cov_pred_pred = samples * samples - dot(&pred_counts, &pred_counts);
    let cov_true_true = samples * samples - dot(&true_counts, &true_counts);
    let denominator = cov_pred_pred * cov_true_true;
    if denominator == 0.0 {
        return Ok(0.0);
    }
    Ok(cov_true_pred / denominator.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_checked_binary_case() {
        // tp = 2, fp = 1, fn = 1 → F1 = 4 / 6
        let truth = [1, 1, 1, 0, 0];
        let pred = [1, 1, 0, 1, 0];
        assert_eq!(accuracy(&truth, &pred, 2).unwrap(), 0.6);
        assert!((f1_binary(&truth, &pred, 2, 1).unwrap() - 4.0 / 6.0).abs() < 1e-15);
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(matches!(
            accuracy(&[0, 1], &[0], 2),
            Err(MetricError::LengthMismatch { .. })
        ));
        assert!(matches!(
            accuracy(&[], &[], 2),
            Err(MetricError::Empty { .. })
        ));
        let err = f1_macro(&[0, 3], &[0, 1], 3).unwrap_err();
        assert_eq!(
            err,
            MetricError::LabelOutOfRange {
                metric: "f1_macro",
                what: "truth",
                index: 1,
                label: 3,
                num_classes: 3
            }
        );
        assert!(err.to_string().contains("truth[1] = 3"));
        assert!(matches!(
            f1_binary(&[0], &[0], 2, 2),
            Err(MetricError::InvalidArgument { .. })
        ));
    }
}
