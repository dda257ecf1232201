//! Layers and helpers shared by more than one model family: the RMS norm of LLaMA and T5, the
//! linear layer LoRA can adapt, and the small tensor builders every family needs.

use burn::module::Initializer;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

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
