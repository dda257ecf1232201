//! LLaMA-style decoder (LLaMA 2/3, SmolLM2, ...) mirroring `transformers.LlamaForCausalLM`.
//!
//! The module tree follows HF's so that parameter names map one to one (`model.layers.N.self_attn.
//! q_proj`, `mlp.gate_proj`, `input_layernorm`, `model.norm`, `lm_head`; the root field `base` is
//! HF's `model` prefix, see [`crate::params`]).
//!
//! Numerics follow `transformers` (checked by `tests/llama_parity.rs` against fixtures from
//! `tests/fixtures/gen_llama.py`):
//! - RMSNorm: `weight * x / sqrt(mean(x²) + eps)`;
//! - RoPE with HF's `rotate_half` convention (the two halves of a head are the rotated pairs, not
//!   interleaved elements), optional `linear` or `llama3` frequency scaling;
//! - grouped-query attention: query head `h` reads key/value head `h / (heads / kv_heads)`;
//! - the causal mask is combined with the padding mask on keys; positions are `0..seq` in a plain
//!   forward and `cumsum(mask) - 1` during generation, as `generate` computes them;
//! - causal-LM loss: logits at `t` predict label `t + 1`, labels `-100` are ignored;
//! - generation ([`crate::generation`]): greedy, seeded sampling, and beam search reproducing
//!   `generate(num_beams=…)` token for token (checked by `tests/llama_lora.rs` against
//!   `tests/fixtures/gen_llama_lora.py`).
//!
//! Every projection is an [`AdaptableLinear`](crate::layers::AdaptableLinear): plain, or with a
//! LoRA adapter attached by [`crate::lora::LlamaLoraAdapters::attach`]. The model's entry points
//! run whatever it holds; [`LlamaForCausalLM::merged`] folds the adapters into the weights.
//!
//! Layout: `config` (config.json, RoPE), `model` (layers and forward passes), `generate` (the
//! step decoder and the [`Generate`](crate::generation::Generate) impl), `io` (loading and export).

mod config;
mod generate;
mod io;
mod model;

pub use config::{LlamaConfig, RopeScaling};
pub use generate::LlamaDecoder;
pub use io::{export_llama, load_llama, load_llama_checkpoint};
pub(crate) use model::projection_field;
pub use model::{
    CausalLmInput, KvCache, LlamaAttention, LlamaDecoderLayer, LlamaForCausalLM, LlamaMlp,
    LlamaModel, Projection,
};
