//! Data layer of BOMF: what a task is, how its examples are read and split, how they are
//! tokenised and batched, and how predictions are scored over a whole dataset.
//!
//! Map:
//! - [`task`]: the [`task::Task`] description (problem kind, input columns, label set, metrics).
//! - [`readers`]: one reader per file format (GLUE TSV, SQuAD JSON, SAMSum, E2E, MCQA, BIG-bench, generic JSONL/CSV).
//! - [`spec`]: [`spec::DataSpec`], one description (TOML or CLI flags) of a dataset and its splits.
//! - [`split`]: deterministic train/validation/test splits by stable hash.
//! - [`tokenize`]: `tokenizer.json` based encoding of single and paired inputs and seq2seq targets.
//! - [`batch`]: length-bucketed dynamic padding with deterministic shuffling.
//! - [`metrics`]: dataset-level metrics, each checked against an independent Python reference.
//! - [`assets`]: where `cargo xtask assets` put the real weights and data.

pub mod assets;
pub mod batch;
pub mod error;
pub mod metrics;
pub mod readers;
pub mod spec;
pub mod split;
pub mod task;
pub mod tokenize;

pub use error::{DataError, Result};
