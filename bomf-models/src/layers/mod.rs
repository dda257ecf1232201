//! Layers and helpers shared by more than one model family: the RMS norm of LLaMA and T5, the
//! linear layer LoRA can adapt, and the small tensor builders every family needs.

use burn::module::Initializer;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::error::{ModelError, Result};

mod lora;
mod norm;

pub use lora::{AdaptableLinear, LoraLinear, LoraMatrix};
pub use norm::RmsNorm;

/// A Linear layer whose parameters are drawn from `normal(0, std)`: how LLaMA and T5 initialise
/// a fresh model.
pub(crate) fn normal_linear<B: Backend>(
    d_in: usize,
    d_out: usize,
    bias: bool,
    std: f64,
    device: &B::Device,
) -> Linear<B> {
    LinearConfig::new(d_in, d_out)
        .with_bias(bias)
        .with_initializer(Initializer::Normal { mean: 0.0, std })
        .init(device)
}

/// Token rows (all of one length) as a `[rows, len]` tensor.
pub(crate) fn int_tensor<B: Backend>(rows: &[Vec<i64>], device: &B::Device) -> Tensor<B, 2, Int> {
    let shape = [rows.len(), rows.first().map_or(0, Vec::len)];
    let flat: Vec<i64> = rows.iter().flatten().copied().collect();
    Tensor::from_data(TensorData::new(flat, shape), device)
}

/// `rows` as a `[rows.len()]` index tensor (for `select`).
pub(crate) fn index_tensor<B: Backend>(rows: &[usize], device: &B::Device) -> Tensor<B, 1, Int> {
    let index: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
    Tensor::from_data(TensorData::new(index, [rows.len()]), device)
}

/// Checks a batch of token rows and their attention mask: at least one row, every input and
/// mask row of one non-zero length, every id inside the vocabulary. `check_mask_row(i, mask)`
/// adds a family's own checks on mask row `i`. Returns `(rows, length)`.
pub(crate) fn check_token_rows(
    input_ids: &[Vec<i64>],
    attention_mask: &[Vec<i64>],
    vocab: usize,
    mut check_mask_row: impl FnMut(usize, &[i64]) -> Result<()>,
) -> Result<(usize, usize)> {
    let batch = input_ids.len();
    let seq = input_ids.first().map_or(0, Vec::len);
    if batch == 0 || seq == 0 {
        return Err(ModelError::InvalidInput("empty batch".into()));
    }
    if attention_mask.len() != batch {
        return Err(ModelError::InvalidInput(format!(
            "{batch} input rows but {} mask rows",
            attention_mask.len()
        )));
    }
    for (i, (ids, mask)) in input_ids.iter().zip(attention_mask).enumerate() {
        if ids.len() != seq || mask.len() != seq {
            return Err(ModelError::InvalidInput(format!(
                "row {i}: every input and mask row must have length {seq}"
            )));
        }
        check_ids(i, ids, vocab)?;
        check_mask_row(i, mask)?;
    }
    Ok((batch, seq))
}

/// Every id of token row `row` must lie inside the vocabulary.
pub(crate) fn check_ids(row: usize, ids: &[i64], vocab: usize) -> Result<()> {
    match ids.iter().find(|&&t| t < 0 || t as usize >= vocab) {
        Some(bad) => Err(ModelError::InvalidInput(format!(
            "row {row}: token id {bad} outside the vocabulary (size {vocab})"
        ))),
        None => Ok(()),
    }
}
