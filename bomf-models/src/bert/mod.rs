//! BERT and RoBERTa encoders (one implementation, selected by `model_type` in config.json) with the
//! task heads `transformers` defines for them.
//!
//! The module tree mirrors Hugging Face's so that every parameter has an obvious HF name; the few
//! renames are BERT's own and live here ([`HfNamed::hf_part`]): `self_attn` ↔ `self` (a Rust
//! keyword), `layer_norm` ↔ `LayerNorm`, and the root field `base` ↔ `bert`/`roberta`
//! ([`crate::params`] adds burn's `gamma`/`beta` ↔ `weight`/`bias`).
//!
//! Numerics follow `transformers` exactly (checked by `tests/bert_parity.rs` against fixtures
//! generated with `tests/fixtures/gen_encoder.py`):
//! - RoBERTa's position ids come from the input ids: `cumsum(ids != pad) * (ids != pad) + pad`,
//!   so padding tokens sit at position `pad_token_id` and real tokens start at `pad_token_id + 1`.
//! - post-LN layers: `LayerNorm(x + Dropout(Dense(sublayer(x))))`.
//! - the attention mask removes padded *keys* (every query row still gets an output, as in HF).
//! - heads: BERT classifies the pooled output (`pooler.dense` + tanh on `[CLS]`), RoBERTa classifies
//!   `<s>` through its own `dense → tanh → out_proj` head; multiple choice uses the pooler for both;
//!   span QA uses neither.
//!
//! Layout: `config` (config.json and the [`Task`]), `encoder` (embeddings, layers, pooler,
//! [`BertModel`]), `heads` (the task heads and [`BertWithHead`]). Loading and export are
//! [`crate::weights::load_bert`] and [`crate::export::export_bert`].

use burn::tensor::backend::Backend;

use crate::params::{HfNamed, HfPart};

mod config;
mod encoder;
mod heads;

pub use config::{BertConfig, EncoderFlavor, HiddenAct, ProblemType, Task};
pub use encoder::{
    BertAttention, BertEmbeddings, BertEncoder, BertIntermediate, BertLayer, BertModel, BertOutput,
    BertPooler, BertResidualOutput, BertSelfAttention, EncoderInput, FirstTokenOutput,
};
/// Initialisers and the padding-row detach, shared with the MPNet encoder.
pub(crate) use encoder::{hf_embedding, hf_layer_norm, hf_linear, no_grad_where};
pub use heads::{
    BertWithHead, Classifier, RobertaClassificationHead, SequenceClassifier, SpanLogits,
};

/// BERT's HF spellings that differ from our field names.
fn bert_hf_part(field: &str) -> HfPart {
    match field {
        "self_attn" => HfPart::Rename("self"),
        "layer_norm" => HfPart::Rename("LayerNorm"),
        _ => HfPart::Keep,
    }
}

impl<B: Backend> HfNamed<B> for BertWithHead<B> {
    fn hf_base_prefix(&self) -> &str {
        BertWithHead::hf_base_prefix(self)
    }

    fn hf_part(field: &str, _container: &str) -> HfPart {
        bert_hf_part(field)
    }
}

impl<B: Backend> HfNamed<B> for BertModel<B> {
    fn hf_base_prefix(&self) -> &str {
        ""
    }

    fn hf_part(field: &str, _container: &str) -> HfPart {
        bert_hf_part(field)
    }
}
