//! The BOMF engine: fine-tuning, evaluation and fusion of checkpoints, generic over the burn
//! backend (`Flex` on the CPU, a GPU backend behind `cuda`).
//!
//! Map of the crate (first slice: the encoder family, sequence classification/regression):
//! - [`model`]: what a trainable model must offer ([`model::TaskModel`]: a loss and logits for a
//!   padded batch), implemented for `bomf_models::BertWithHead`.
//! - [`generative`]: T5, LLaMA and LLaMA + LoRA ([`generative::LoraLlama`]: one module whose
//!   parameters are the adapters only) as task models, and items for generation and
//!   multiple-choice datasets.
//! - [`schedule`]: learning-rate schedules with warmup (constant, linear, cosine), HF's formulas.
//! - [`optim`]: AdamW over parameters by Hugging Face name, with the usual no-decay group (biases
//!   and LayerNorm weights) and clipping by global gradient norm.
//! - [`train`]: the training loop (accumulation, evaluation every N steps with a callback,
//!   layer freezing for the stage-1 proxy, divergence as a typed outcome).
//! - [`eval`]: one pass over a split → mean loss and every metric of the task.
//! - [`fusion`]: θ(w) = Σ_k w_k θ_k over K checkpoints held as flat f32, with a streaming
//!   multi-threaded CPU kernel, and loading θ(w) back into a model.
//! - [`spill`]: checkpoints in memory within a budget, memory-mapped files beyond it.
//! - [`hpbo`]: stage 1, qLogEI over learning rate and batch size on a frozen-layer proxy.
//! - [`trajectory`]: stage 2, one fine-tune keeping K checkpoints around the best step; saved
//!   to and loaded from a folder with a manifest.
//! - [`fusion_bo`]: stage 3, qNEHVI over simplex fusion weights (metric up, loss down,
//!   normalised by the checkpoints' own range) and the rules that pick the final model.
//! - [`merge`]: θ(w) for checkpoints of any architecture, streamed tensor by tensor over their
//!   safetensors files (no model code): HF folders, shards, Trainer `checkpoint-*` folders.
//! - [`search`]: `bomf search`, stage 3 alone on such checkpoints, scored by an external
//!   command, evaluations in parallel.
//! - [`baselines`]: best/last checkpoint, SWA, greedy soup, learned soup.
//! - [`pipeline`]: the stages and baselines end to end, one test evaluation per method.
//! - [`overrides`]: `--set key.path=value` overrides of a TOML config before it is deserialised.
//! - [`rundir`]: a run directory that survives `kill -9`: a lock, atomic writes, an append-only
//!   JSON-lines log that repairs a torn last line, and the standard file layout.
//! - [`family`]: every supported model family behind one [`family::open`]: an
//!   [`family::OpenedModel`] whose data side every front end shares, and whose models a
//!   [`family::ModelVisitor`] gets on any backend, generic over the model type (evaluate,
//!   predict, train, fuse in [`family::ops`]).
//! - [`run_config`]: the run configuration (`configs/*.toml`) and the settings it stands for;
//!   [`run`]: a run from it on any family, in a run directory; [`run_report`]: the report and
//!   table of a finished run; [`device`]: `cpu` or `cuda:N`.
//! - [`report`]: `report.md` (final table, chosen weights) and SVG plots (Pareto front, hypervolume
//!   per BO step, learning curve) from plain structs.

pub mod baselines;
pub mod device;
pub mod error;
pub mod eval;
pub mod family;
pub mod fusion;
pub mod fusion_bo;
pub mod generative;
pub mod hpbo;
pub mod merge;
pub mod model;
pub mod optim;
pub mod overrides;
pub mod pipeline;
pub mod report;
pub mod run;
pub mod run_config;
pub mod run_report;
pub mod rundir;
pub mod schedule;
pub mod search;
pub mod spill;
pub mod train;
pub mod trajectory;

pub use error::{CoreError, Result};
