//! The BOMF engine: fine-tuning, evaluation and fusion of checkpoints, generic over the burn
//! backend (`Flex` on the CPU, a GPU backend behind `cuda`).
//!
//! Map of the crate (first slice: the encoder family, sequence classification/regression):
//! - [`model`]: what a trainable model must offer ([`model::TaskModel`]: a loss and logits for a
//!   padded batch), implemented for `bomf_models::BertWithHead`.
//! - [`schedule`]: learning-rate schedules with warmup (constant, linear, cosine), HF's formulas.
//! - [`optim`]: AdamW over parameters by Hugging Face name, with the usual no-decay group (biases
//!   and LayerNorm weights) and clipping by global gradient norm.
//! - [`train`]: the training loop (accumulation, evaluation every N steps with a callback,
//!   layer freezing for the stage-1 proxy, divergence as a typed outcome).
//! - [`eval`]: one pass over a split → mean loss and every metric of the task.
//! - [`fusion`]: θ(w) = Σ_k w_k θ_k over K checkpoints held in memory as flat f32, with a
//!   streaming multi-threaded CPU kernel, and loading θ(w) back into a model.

pub mod error;
pub mod eval;
pub mod fusion;
pub mod model;
pub mod optim;
pub mod schedule;
pub mod train;

pub use error::{CoreError, Result};
