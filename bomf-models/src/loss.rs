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
            let safe = labels.mask_fill(keep.clone().bool_not(), 0).clamp(0, classes as i64 - 1);
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
pub fn binary_cross_entropy_with_logits<B: Backend>(logits: Tensor<B, 2>, targets: Tensor<B, 2>) -> Tensor<B, 1> {
    let positive_part = logits.clone().clamp_min(0.0);
    let log_term = logits.clone().abs().neg().exp().log1p();
    (positive_part - logits * targets + log_term).mean()
}
