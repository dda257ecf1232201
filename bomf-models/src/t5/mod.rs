//! T5 encoder–decoder (original T5 and T5 v1.1 / Flan-T5 style) mirroring
//! `transformers.T5ForConditionalGeneration`.
//!
//! The module tree follows HF's so that parameter names map one to one
//! (`encoder.block.N.layer.0.SelfAttention.q`, `decoder.block.N.layer.1.EncDecAttention`,
//! `layer.M.DenseReluDense.wi_0`, `layer.M.layer_norm`, `shared`, `lm_head`, see
//! [`crate::params`]). A block's `layer` list is a `Vec` of [`T5SubLayer`]s (self-attention, then
//! cross-attention in the decoder, then feed-forward), as HF's `ModuleList`; the enum's variant
//! names do not appear in parameter names.
//!
//! Numerics follow `transformers` (checked by `tests/t5_parity.rs` against fixtures from
//! `tests/fixtures/gen_t5.py`):
//! - T5LayerNorm is an RMS norm ([`RmsNorm`](crate::layers::RmsNorm)): `weight * x /
//!   sqrt(mean(x²) + eps)`, no bias, no mean;
//! - attention scores are **not** scaled by `1/sqrt(d_kv)` (T5 folds that into its init); a
//!   learned relative position bias is added instead. Only the first block of each stack owns the
//!   bias table (`relative_attention_bias`, `[buckets, heads]`); the other blocks reuse the bias it
//!   computes. Encoder buckets are bidirectional, decoder buckets unidirectional (past only);
//!   cross-attention has no position bias;
//! - feed-forward is `wo(act(wi(x)))` (`feed_forward_proj = "relu"`, T5 v1.0) or
//!   `wo(act(wi_0(x)) * wi_1(x))` (`"gated-gelu"`, T5 v1.1, with the tanh approximation HF calls
//!   `gelu_new`);
//! - with tied embeddings the decoder output is rescaled by `d_model^-0.5` before the shared
//!   embedding matrix projects it to the vocabulary (HF's `scale_decoder_outputs`); an untied
//!   `lm_head` gets no rescaling;
//! - teacher forcing: `decoder_input_ids = shift_right(labels)` (the decoder start token first,
//!   `-100` replaced by the pad id), mean cross-entropy over labels that are not `-100`;
//! - generation ([`crate::generation`]) encodes once, caches the decoder's self-attention
//!   keys/values and the cross-attention keys/values of the encoder output, and follows
//!   `generate()`: greedy or seeded sampling (a row that produced an end-of-sequence id continues
//!   with the pad id until all rows are done), or transformers 5's beam search (length penalty,
//!   `early_stopping` modes).
//!
//! Layout: `config` (config.json, feed-forward kind), `layers` (position buckets, attention,
//! blocks, stacks), `model` (the model's forward passes and loss), `generate` (the step decoder
//! and the [`Generate`](crate::generation::Generate) impl), `io` (loading and export).

mod config;
mod generate;
mod io;
mod layers;
mod model;

pub use config::{FeedForwardKind, T5Activation, T5Config};
pub use generate::T5Decoder;
pub use io::{export_t5, load_t5, load_t5_checkpoint};
pub use layers::{
    T5Attention, T5Block, T5DenseActDense, T5DenseGatedActDense, T5FeedForward,
    T5LayerCrossAttention, T5LayerFF, T5LayerSelfAttention, T5Stack, T5SubLayer,
    relative_position_bucket,
};
pub use model::{IGNORE_INDEX, Seq2SeqInput, Seq2SeqOutput, T5ForConditionalGeneration};
