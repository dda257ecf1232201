//! The losses `transformers` applies in its task heads, written out so their reductions match
//! PyTorch's exactly (mean over the non-ignored rows).

use burn::tensor::activation;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

/// Mean cross-entropy of `logits` `[n, classes]` against integer `labels` `[n]`, like
/// `torch.nn.CrossEntropyLoss(ignore_index=...)`: rows whose label equals `ignore_index` are left
/// out of both the sum and the count.
pub fn cross_entropy<B: Backend>(
    logits: Tensor<B, 2>,
    labels: Tensor<B, 1, Int>,
    ignore_index: Option<i64>,
) -> Tensor<B, 1> {
    let [n, classes] = logits.dims();
    let log_probs = activation::log_softmax(logits, 1);
    match ignore_index {
        None => {
            let picked = log_probs.gather(1, labels.reshape([n, 1]));
            picked.mean().neg()
        }
        Some(ignored) => {
            let keep = labels.clone().not_equal_elem(ignored);
            // Point ignored rows at class 0 so the gather stays in range; their weight is 0.
            let safe = labels
                .mask_fill(keep.clone().bool_not(), 0)
                .clamp(0, classes as i64 - 1);
            let picked = log_probs.gather(1, safe.reshape([n, 1])).reshape([n]);
            let weight = keep.float();
            let count = weight.clone().sum();
            (picked * weight).sum().div(count).neg()
        }
    }
}

/// Mean squared error (`torch.nn.MSELoss()`).
pub fn mse<B: Backend>(predictions: Tensor<B, 1>, targets: Tensor<B, 1>) -> Tensor<B, 1> {
    (predictions - targets).square().mean()
}

/// Mean binary cross-entropy with logits (`torch.nn.BCEWithLogitsLoss()`), numerically stable
/// form `max(x, 0) - x·y + log(1 + exp(-|x|))`.
pub fn binary_cross_entropy_with_logits<B: Backend>(
    logits: Tensor<B, 2>,
    targets: Tensor<B, 2>,
) -> Tensor<B, 1> {
    let positive_part = logits.clone().clamp_min(0.0);
    let log_term = logits.clone().abs().neg().exp().log1p();
    (positive_part - logits * targets + log_term).mean()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CpuBackend as B;
    use burn::tensor::TensorData;

    fn scalar(t: Tensor<B, 1>) -> f32 {
        t.into_data().convert::<f32>().into_vec::<f32>().unwrap()[0]
    }

    #[test]
    fn cross_entropy_ignores_rows_and_averages_the_rest() {
        let d = Default::default();
        let logits = Tensor::<B, 2>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 0.5, -1.0, 3.0, 0.0], [3, 2]),
            &d,
        );
        let labels = Tensor::<B, 1, Int>::from_data(TensorData::new(vec![1i64, 2, 0], [3]), &d);
        let got = scalar(cross_entropy(logits, labels, Some(2)));
        // Rows 0 and 2 only: -log softmax([1,2])[1] and -log softmax([3,0])[0].
        let lse = |a: f32, b: f32| (a.exp() + b.exp()).ln();
        let want = ((lse(1.0, 2.0) - 2.0) + (lse(3.0, 0.0) - 3.0)) / 2.0;
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }

    #[test]
    fn bce_with_logits_is_stable_and_correct() {
        let d = Default::default();
        let x = vec![-50.0f32, -1.0, 0.0, 2.0, 60.0, 0.5];
        let y = vec![0.0f32, 1.0, 1.0, 0.0, 1.0, 0.0];
        let want: f32 = x
            .iter()
            .zip(&y)
            .map(|(&x, &y)| {
                let x = x as f64;
                let y = y as f64;
                (x.max(0.0) - x * y + (1.0 + (-x.abs()).exp()).ln()) as f32
            })
            .sum::<f32>()
            / 6.0;
        let got = scalar(binary_cross_entropy_with_logits(
            Tensor::<B, 2>::from_data(TensorData::new(x, [2, 3]), &d),
            Tensor::<B, 2>::from_data(TensorData::new(y, [2, 3]), &d),
        ));
        assert!(
            got.is_finite() && (got - want).abs() < 1e-5,
            "{got} vs {want}"
        );
    }
}
