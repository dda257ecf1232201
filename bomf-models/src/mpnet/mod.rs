//! MPNet (`transformers`' `MPNetModel` / `MPNetForSequenceClassification`; e.g.
//! sentence-transformers' all-mpnet-base-v2): RoBERTa-base geometry with a learned
//! relative-position bias in every attention layer.
//!
//! The module tree mirrors Hugging Face's, so parameter names map one to one
//! (`embeddings.word_embeddings`, `encoder.layer.N.attention.attn.{q,k,v,o}`,
//! `encoder.layer.N.attention.LayerNorm`, `encoder.relative_attention_bias`, `pooler.dense`,
//! `classifier.{dense,out_proj}`); the renames are `layer_norm` ↔ `LayerNorm` and the root field
//! `base` ↔ `mpnet` ([`crate::params`] adds burn's `gamma`/`beta` ↔ `weight`/`bias`).
//!
//! Numerics follow `transformers` (checked by `tests/mpnet_parity.rs` against fixtures from
//! `tests/fixtures/gen_mpnet.py`):
//! - embeddings are words + positions (no token types), LayerNorm, dropout. Position ids are
//!   RoBERTa's, with the padding index fixed at 1 whatever `pad_token_id` says (as in
//!   `MPNetEmbeddings`): pads sit at position 1, the k-th real token at `1 + k`;
//! - attention scores are `q·kᵀ/√d + bias[bucket(j − i)]`, the bias table `[buckets, heads]`
//!   shared by every layer and read by plain index positions (padding does not shift it).
//!   Buckets are T5's bidirectional ones with 32 buckets and maximum distance 128, always: HF
//!   calls `compute_position_bias` with its default `num_buckets=32`;
//! - padded keys are masked; every query row still gets an output, as in HF;
//! - post-LN layers: `LayerNorm(x + Dropout(o(attention)))`, then
//!   `LayerNorm(h + Dropout(Dense(act(Dense(h)))))`;
//! - the classifier reads `<s>`: `out_proj(Dropout(tanh(dense(Dropout(x)))))`, dropout
//!   `hidden_dropout_prob` (there is no `classifier_dropout`); its model has no pooler.
//!
//! Layout: `config` (config.json), `model` (embeddings, attention, layers, [`MpnetModel`]),
//! `heads` ([`MpnetForSequenceClassification`]), `io` (loading and export).

use burn::tensor::backend::Backend;

use crate::params::{HfNamed, HfPart};

mod config;
mod heads;
mod io;
mod model;

pub use config::{MpnetConfig, PADDING_IDX, POSITION_BUCKETS, POSITION_MAX_DISTANCE};
pub use heads::{MpnetClassificationHead, MpnetForSequenceClassification};
pub use io::{
    export_mpnet, export_mpnet_model, load_mpnet, load_mpnet_checkpoint,
    load_mpnet_for_sequence_classification, load_mpnet_for_sequence_classification_with_config,
    load_mpnet_with_config,
};
pub use model::{
    MpnetAttention, MpnetEmbeddings, MpnetEncoder, MpnetIntermediate, MpnetLayer, MpnetModel,
    MpnetOutput, MpnetOutputs, MpnetPooler, MpnetSelfAttention, position_bucket,
};

/// MPNet's HF spelling that differs from our field names.
fn mpnet_hf_part(field: &str) -> HfPart {
    match field {
        "layer_norm" => HfPart::Rename("LayerNorm"),
        _ => HfPart::Keep,
    }
}

impl<B: Backend> HfNamed<B> for MpnetForSequenceClassification<B> {
    fn hf_base_prefix(&self) -> &str {
        Self::HF_BASE_PREFIX
    }

    fn hf_part(field: &str, _container: &str) -> HfPart {
        mpnet_hf_part(field)
    }
}

impl<B: Backend> HfNamed<B> for MpnetModel<B> {
    fn hf_base_prefix(&self) -> &str {
        ""
    }

    fn hf_part(field: &str, _container: &str) -> HfPart {
        mpnet_hf_part(field)
    }
}
