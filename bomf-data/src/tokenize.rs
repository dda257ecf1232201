//! Tokenisation with a `tokenizer.json` (HF `tokenizers` 0.23), as each model family expects.
//!
//! [`TextEncoder`] wraps a [`Tokenizer`] and fixes the three things that silently break
//! fine-tuning when left to whatever the file says:
//! - **special tokens**: the post-processor is set from the [`ModelFamily`]
//!   (BERT `[CLS] a [SEP] b [SEP]` with token types 0/1; RoBERTa `<s> a </s></s> b </s>`;
//!   T5 `a </s>`; LLaMA `<s> a`). T5 and LLaMA take a single prompt (format pairs into one
//!   text), so a pair input is an error for them;
//! - **truncation**: inputs longer than `max_length` are cut with the configured
//!   [`Truncation`] strategy and counted; [`TextEncoder::encode_examples`] logs one
//!   `tracing::warn!` with the count. With [`Truncation::Disabled`] a long input is an error;
//! - **padding** is never done here: [`crate::batch`] pads each batch to its own longest row.
//!
//! Targets: [`TextEncoder::encode_target`] gives seq2seq decoder labels (padding in a batch
//! becomes [`IGNORE_INDEX`]); [`TextEncoder::encode_causal`] concatenates prompt and target
//! for decoder-only models with the prompt positions masked to [`IGNORE_INDEX`].

use std::path::Path;

use serde::{Deserialize, Serialize};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::{DataError, Result};
use crate::task::Example;

/// Label value the loss ignores (PyTorch's and burn's cross-entropy convention).
pub const IGNORE_INDEX: i64 = -100;

/// The model family, which fixes the special-token template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelFamily {
    Bert,
    Roberta,
    T5,
    Llama,
}

/// How to shorten inputs longer than `max_length` (names as in HF `tokenizers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Truncation {
    /// Remove tokens from the longer of the two texts first (single texts: cut the end).
    LongestFirst,
    /// Only cut the first text of a pair (e.g. keep a hypothesis whole).
    OnlyFirst,
    /// Only cut the second text of a pair (e.g. keep the question, cut the context).
    OnlySecond,
    /// Never cut: an input longer than `max_length` is a [`DataError::TooLong`].
    Disabled,
}

/// Names of the special tokens a family uses; `None` fields fall back to the family default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpecialTokenNames {
    /// `[CLS]` / `<s>` (BERT, RoBERTa, LLaMA BOS).
    pub start: Option<String>,
    /// `[SEP]` / `</s>` (BERT, RoBERTa, T5 and LLaMA EOS).
    pub end: Option<String>,
    /// Padding token.
    pub pad: Option<String>,
}

/// How to encode inputs for one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderConfig {
    pub family: ModelFamily,
    /// Maximum input length in tokens, special tokens included.
    pub max_length: usize,
    pub truncation: Truncation,
    /// Maximum length of seq2seq targets (decoder labels), EOS included.
    #[serde(default)]
    pub max_target_length: Option<usize>,
    /// The model's position limit (`max_position_embeddings`); `max_length` may not exceed it.
    #[serde(default)]
    pub model_max_length: Option<usize>,
    /// The model's embedding rows (`vocab_size` of its config); checked against the tokenizer.
    #[serde(default)]
    pub model_vocab_size: Option<usize>,
    #[serde(default)]
    pub special_tokens: SpecialTokenNames,
}

impl EncoderConfig {
    /// A config with the family's defaults and longest-first truncation.
    pub fn new(family: ModelFamily, max_length: usize) -> Self {
        Self {
            family,
            max_length,
            truncation: Truncation::LongestFirst,
            max_target_length: None,
            model_max_length: None,
            model_vocab_size: None,
            special_tokens: SpecialTokenNames::default(),
        }
    }
}

/// One encoded input, before padding (its attention mask is all ones).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encoded {
    pub ids: Vec<u32>,
    /// Segment ids (0 for the first text, 1 for the second in BERT pairs; all 0 otherwise).
    pub type_ids: Vec<u32>,
    /// Whether tokens were cut to fit `max_length`.
    pub truncated: bool,
}

/// Prompt + target of a decoder-only model: `ids` is the full sequence, `labels` equals `ids`
/// on target positions and [`IGNORE_INDEX`] on the prompt (the model shifts them itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CausalEncoded {
    pub ids: Vec<u32>,
    pub labels: Vec<i64>,
    pub truncated: bool,
}

/// How many inputs an encoding pass had to truncate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TruncationReport {
    pub truncated: usize,
    pub total: usize,
}

/// Resolved special-token ids.
#[derive(Debug, Clone, Copy)]
struct SpecialIds {
    start: Option<u32>,
    end: Option<u32>,
    pad: u32,
}

/// A `tokenizer.json` tokenizer configured for one model family (see the module docs).
#[derive(Debug, Clone)]
pub struct TextEncoder {
    config: EncoderConfig,
    /// Template + truncation to `max_length` for single texts.
    single: Tokenizer,
    /// Template + the configured truncation strategy for pairs.
    pair: Tokenizer,
    /// Template (single) + truncation to `max_target_length` for seq2seq targets.
    target: Tokenizer,
    /// No template, no truncation: raw pieces for causal-LM concatenation and length checks.
    raw: Tokenizer,
    specials: SpecialIds,
    /// Special tokens the template adds to a single text / a pair.
    added_single: usize,
    added_pair: usize,
}

fn tok_err(context: &str, e: impl std::fmt::Display) -> DataError {
    DataError::Tokenizer {
        context: context.to_string(),
        message: e.to_string(),
    }
}

impl TextEncoder {
    /// Loads `tokenizer.json` and configures it.
    pub fn from_file(path: &Path, config: EncoderConfig) -> Result<Self> {
        if !path.is_file() {
            return Err(DataError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            ));
        }
        let tokenizer =
            Tokenizer::from_file(path).map_err(|e| tok_err(&format!("{}", path.display()), e))?;
        Self::new(tokenizer, config)
    }

    /// Configures an already-built tokenizer (e.g. one assembled from a GGUF vocabulary).
    pub fn new(tokenizer: Tokenizer, config: EncoderConfig) -> Result<Self> {
        if let Some(model_max) = config.model_max_length
            && config.max_length > model_max
        {
            return Err(DataError::InvalidConfig(format!(
                "max_length {} exceeds the model's maximum of {model_max} positions",
                config.max_length
            )));
        }
        let vocab = tokenizer.get_vocab_size(true);
        if let Some(model_vocab) = config.model_vocab_size {
            // Fewer tokenizer ids than embedding rows is normal (T5 pads its embedding to 32128);
            // more would index past the table.
            if vocab > model_vocab {
                return Err(DataError::VocabMismatch {
                    tokenizer_vocab: vocab,
                    model_vocab,
                });
            }
        }

        let family_name = format!("{:?}", config.family);
        let lookup = |name: &str| -> Result<u32> {
            tokenizer
                .token_to_id(name)
                .ok_or_else(|| DataError::MissingSpecialToken {
                    token: name.to_string(),
                    family: family_name.clone(),
                })
        };
        let names = &config.special_tokens;
        let pick = |given: &Option<String>, default: &str| {
            given.clone().unwrap_or_else(|| default.to_string())
        };
        let (start, end, pad) = match config.family {
            ModelFamily::Bert => (
                Some(pick(&names.start, "[CLS]")),
                Some(pick(&names.end, "[SEP]")),
                pick(&names.pad, "[PAD]"),
            ),
            ModelFamily::Roberta => (
                Some(pick(&names.start, "<s>")),
                Some(pick(&names.end, "</s>")),
                pick(&names.pad, "<pad>"),
            ),
            ModelFamily::T5 => (
                None,
                Some(pick(&names.end, "</s>")),
                pick(&names.pad, "<pad>"),
            ),
            // LLaMA has no pad token; padding positions are masked anyway, so EOS serves.
            ModelFamily::Llama => {
                let end = pick(&names.end, "</s>");
                (
                    Some(pick(&names.start, "<s>")),
                    Some(end.clone()),
                    names.pad.clone().unwrap_or(end),
                )
            }
        };
        let specials = SpecialIds {
            start: start.as_deref().map(lookup).transpose()?,
            end: end.as_deref().map(lookup).transpose()?,
            pad: lookup(&pad)?,
        };

        let template = build_template(config.family, start.as_deref(), end.as_deref(), &specials)?;
        let added_single = template.added_single;
        let added_pair = template.added_pair;
        if config.max_length <= added_pair.max(added_single) {
            return Err(DataError::InvalidConfig(format!(
                "max_length {} leaves no room for text after {} special tokens",
                config.max_length,
                added_pair.max(added_single)
            )));
        }

        let mut base = tokenizer;
        base.with_padding(None);
        base.with_truncation(None)
            .map_err(|e| tok_err("disabling truncation", e))?;
        let raw = base.clone();
        base.with_post_processor(Some(template.processor));

        let truncation = |max_length: usize, strategy: TruncationStrategy| TruncationParams {
            direction: TruncationDirection::Right,
            max_length,
            strategy,
            stride: 0,
        };
        let mut single = base.clone();
        let mut pair = base.clone();
        let mut target = base;
        if config.truncation != Truncation::Disabled {
            single
                .with_truncation(Some(truncation(
                    config.max_length,
                    TruncationStrategy::LongestFirst,
                )))
                .map_err(|e| tok_err("setting truncation", e))?;
            let strategy = match config.truncation {
                Truncation::OnlyFirst => TruncationStrategy::OnlyFirst,
                Truncation::OnlySecond => TruncationStrategy::OnlySecond,
                _ => TruncationStrategy::LongestFirst,
            };
            pair.with_truncation(Some(truncation(config.max_length, strategy)))
                .map_err(|e| tok_err("setting truncation", e))?;
        }
        if let Some(max_target) = config.max_target_length {
            if max_target <= added_single {
                return Err(DataError::InvalidConfig(format!(
                    "max_target_length {max_target} leaves no room for text"
                )));
            }
            target
                .with_truncation(Some(truncation(
                    max_target,
                    TruncationStrategy::LongestFirst,
                )))
                .map_err(|e| tok_err("setting truncation", e))?;
        }
        Ok(Self {
            config,
            single,
            pair,
            target,
            raw,
            specials,
            added_single,
            added_pair,
        })
    }

    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    /// Id used to pad input rows.
    pub fn pad_id(&self) -> u32 {
        self.specials.pad
    }

    /// Number of ids the tokenizer can produce (added tokens included).
    pub fn vocab_size(&self) -> usize {
        self.raw.get_vocab_size(true)
    }

    /// Special tokens added to a single text and to a pair.
    pub fn added_tokens(&self) -> (usize, usize) {
        (self.added_single, self.added_pair)
    }

    /// The underlying tokenizer (template set, no truncation), e.g. for decoding generations.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.raw
    }

    /// Encodes one or two texts with the family's special tokens and truncation.
    pub fn encode(&self, inputs: &[String]) -> Result<Encoded> {
        self.encode_named(inputs, "input")
    }

    fn encode_named(&self, inputs: &[String], name: &str) -> Result<Encoded> {
        let encoding = match inputs {
            [a] => self.single.encode(a.as_str(), true),
            [a, b] => {
                if matches!(self.config.family, ModelFamily::T5 | ModelFamily::Llama) {
                    return Err(DataError::Unsupported(format!(
                        "{:?} models take one prompt; format the pair of {name} into a single text",
                        self.config.family
                    )));
                }
                self.pair.encode((a.as_str(), b.as_str()), true)
            }
            _ => {
                return Err(DataError::Unsupported(format!(
                    "{name} has {} texts; expected 1 or 2",
                    inputs.len()
                )));
            }
        }
        .map_err(|e| tok_err(&format!("encoding {name}"), e))?;
        let truncated = !encoding.get_overflowing().is_empty();
        if self.config.truncation == Truncation::Disabled && encoding.len() > self.config.max_length
        {
            return Err(DataError::TooLong {
                example: name.to_string(),
                length: encoding.len(),
                max_length: self.config.max_length,
            });
        }
        Ok(Encoded {
            ids: encoding.get_ids().to_vec(),
            type_ids: encoding.get_type_ids().to_vec(),
            truncated,
        })
    }

    /// Encodes the inputs of every example, logging one warning with the number truncated.
    pub fn encode_examples(
        &self,
        examples: &[Example],
    ) -> Result<(Vec<Encoded>, TruncationReport)> {
        let out = match self.encode_uniform_in_parallel(examples) {
            Some(encoded) => encoded,
            // Mixed single/pair inputs, or an input the tokenizer rejects: go one by one so the
            // error names the example.
            None => examples
                .iter()
                .map(|ex| self.encode_named(&ex.inputs, &format!("example {}", ex.id)))
                .collect::<Result<Vec<_>>>()?,
        };
        let report = TruncationReport {
            truncated: out.iter().filter(|e| e.truncated).count(),
            total: examples.len(),
        };
        if report.truncated > 0 {
            tracing::warn!(
                truncated = report.truncated,
                total = report.total,
                max_length = self.config.max_length,
                strategy = ?self.config.truncation,
                "truncated {} of {} inputs to {} tokens",
                report.truncated,
                report.total,
                self.config.max_length
            );
        }
        Ok((out, report))
    }

    /// Encodes examples that all have one text (or all two) with the tokenizer's parallel
    /// batch encoder. `None` when the inputs are mixed or any input fails (the caller then
    /// encodes one by one to report which), or when an input is too long with truncation off.
    fn encode_uniform_in_parallel(&self, examples: &[Example]) -> Option<Vec<Encoded>> {
        let n_texts = examples.first()?.inputs.len();
        if !examples.iter().all(|e| e.inputs.len() == n_texts) {
            return None;
        }
        let encodings = match n_texts {
            1 => {
                let inputs: Vec<&str> = examples.iter().map(|e| e.inputs[0].as_str()).collect();
                self.single.encode_batch(inputs, true).ok()?
            }
            2 if matches!(self.config.family, ModelFamily::Bert | ModelFamily::Roberta) => {
                let inputs: Vec<(&str, &str)> = examples
                    .iter()
                    .map(|e| (e.inputs[0].as_str(), e.inputs[1].as_str()))
                    .collect();
                self.pair.encode_batch(inputs, true).ok()?
            }
            _ => return None,
        };
        let too_long = |len: usize| {
            self.config.truncation == Truncation::Disabled && len > self.config.max_length
        };
        if encodings.iter().any(|e| too_long(e.len())) {
            return None;
        }
        Some(
            encodings
                .iter()
                .map(|e| Encoded {
                    ids: e.get_ids().to_vec(),
                    type_ids: e.get_type_ids().to_vec(),
                    truncated: !e.get_overflowing().is_empty(),
                })
                .collect(),
        )
    }

    /// Seq2seq decoder labels of a target text (family template, e.g. T5 appends `</s>`), cut to
    /// `max_target_length`. Returns the labels and whether they were truncated; batching pads
    /// them with [`IGNORE_INDEX`].
    pub fn encode_target(&self, text: &str) -> Result<(Vec<i64>, bool)> {
        if self.config.max_target_length.is_none() {
            return Err(DataError::InvalidConfig(
                "encoding targets needs max_target_length".into(),
            ));
        }
        let encoding = self
            .target
            .encode(text, true)
            .map_err(|e| tok_err("encoding a target", e))?;
        let truncated = !encoding.get_overflowing().is_empty();
        Ok((
            encoding.get_ids().iter().map(|&i| i64::from(i)).collect(),
            truncated,
        ))
    }

    /// Decoder-only training sequence `[<s>] prompt target [</s>]` with the prompt (and BOS)
    /// labelled [`IGNORE_INDEX`]. When it exceeds `max_length`, prompt tokens are dropped from
    /// the *start* (the end of a prompt is what the target follows); if the target alone does
    /// not fit, its end is cut too. Errors with [`Truncation::Disabled`].
    pub fn encode_causal(&self, prompt: &str, target: &str) -> Result<CausalEncoded> {
        let raw = |text: &str| -> Result<Vec<u32>> {
            Ok(self
                .raw
                .encode(text, false)
                .map_err(|e| tok_err("encoding a prompt", e))?
                .get_ids()
                .to_vec())
        };
        let mut prompt_ids = raw(prompt)?;
        let mut target_ids = raw(target)?;
        let bos: Vec<u32> = self.specials.start.into_iter().collect();
        let mut eos: Vec<u32> = self.specials.end.into_iter().collect();
        let max = self.config.max_length;
        let total = bos.len() + prompt_ids.len() + target_ids.len() + eos.len();
        let truncated = total > max;
        if truncated {
            if self.config.truncation == Truncation::Disabled {
                return Err(DataError::TooLong {
                    example: "prompt + target".into(),
                    length: total,
                    max_length: max,
                });
            }
            let room_for_prompt = max.saturating_sub(bos.len() + target_ids.len() + eos.len());
            let drop = prompt_ids.len().saturating_sub(room_for_prompt);
            prompt_ids.drain(..drop);
            let room_for_target = max.saturating_sub(bos.len() + prompt_ids.len());
            if target_ids.len() + eos.len() > room_for_target {
                eos.clear();
                target_ids.truncate(room_for_target);
            }
        }
        let mut ids = Vec::with_capacity(max);
        ids.extend(&bos);
        ids.extend(&prompt_ids);
        let prompt_len = ids.len();
        ids.extend(&target_ids);
        ids.extend(&eos);
        let labels = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| {
                if i < prompt_len {
                    IGNORE_INDEX
                } else {
                    i64::from(id)
                }
            })
            .collect();
        Ok(CausalEncoded {
            ids,
            labels,
            truncated,
        })
    }
}

struct Template {
    processor: TemplateProcessing,
    added_single: usize,
    added_pair: usize,
}

/// The family's special-token template, built from token names and their ids.
fn build_template(
    family: ModelFamily,
    start: Option<&str>,
    end: Option<&str>,
    ids: &SpecialIds,
) -> Result<Template> {
    let mut tokens: Vec<(String, u32)> = Vec::new();
    if let (Some(name), Some(id)) = (start, ids.start) {
        tokens.push((name.to_string(), id));
    }
    if let (Some(name), Some(id)) = (end, ids.end)
        && !tokens.iter().any(|(n, _)| n == name)
    {
        tokens.push((name.to_string(), id));
    }
    let s = start.unwrap_or_default();
    let e = end.unwrap_or_default();
    let (single, pair, added_single, added_pair) = match family {
        ModelFamily::Bert => (
            format!("{s}:0 $A:0 {e}:0"),
            format!("{s}:0 $A:0 {e}:0 $B:1 {e}:1"),
            2,
            3,
        ),
        ModelFamily::Roberta => (
            format!("{s}:0 $A:0 {e}:0"),
            format!("{s}:0 $A:0 {e}:0 {e}:0 $B:0 {e}:0"),
            2,
            4,
        ),
        // Pairs are rejected before encoding for these two; the pair template is never used.
        ModelFamily::T5 => (
            format!("$A:0 {e}:0"),
            format!("$A:0 {e}:0 $B:0 {e}:0"),
            1,
            2,
        ),
        ModelFamily::Llama => (format!("{s}:0 $A:0"), format!("{s}:0 $A:0 $B:0"), 1, 1),
    };
    let processor = TemplateProcessing::builder()
        .try_single(single.as_str())
        .map_err(|e| tok_err("building the template", e))?
        .try_pair(pair.as_str())
        .map_err(|e| tok_err("building the template", e))?
        .special_tokens(tokens)
        .build()
        .map_err(|e| tok_err("building the template", e))?;
    Ok(Template {
        processor,
        added_single,
        added_pair,
    })
}

/// Reads `vocab_size` from a model's `config.json`, for [`EncoderConfig::model_vocab_size`].
pub fn model_vocab_size(config_json: &Path) -> Result<usize> {
    let value: serde_json::Value = crate::readers::parse_json_document(config_json)?;
    value
        .get("vocab_size")
        .and_then(|v| v.as_u64())
        .map(|v| v as usize)
        .ok_or_else(|| DataError::MissingColumn {
            at: crate::error::Location::file(config_json),
            column: "vocab_size".into(),
        })
}
