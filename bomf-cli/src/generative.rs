//! Generative models in the CLI: T5 (seq2seq, an HF folder) and the LLaMA family (causal LM, an
//! HF folder or a llama.cpp `.gguf` file whose embedded tokenizer is used), the latter
//! optionally trained through LoRA adapters.
//!
//! Which code path a model takes is decided by [`family_of`]: a `.gguf` file is LLaMA, a folder
//! is what its `config.json` `model_type` says (`t5`, `llama`); everything else goes the
//! classifier way ([`crate::model`]), with that module's errors. A generative model is opened
//! once as a [`GenerativeModel`] (config, weights, tokenizer, generation settings) and rebuilt
//! from it whenever the pipeline asks for a fresh copy.
//!
//! Tasks: generation (E2E NLG, SAMSum, BIG-bench generative tasks; the model continues the
//! prompt, scored by ROUGE/BLEU on greedy or beam-search generations, `[generation]`),
//! extractive QA (SQuAD v1.1/v2.0: the answer is generated and scored by exact match and F1, see
//! [`span_qa_as_generation`]) and multiple choice (every option scored as a continuation;
//! accuracy). The prompt is bomf-core's [`default_prompt`]: the inputs joined by newlines, then a
//! newline.
//! Multiple-choice training uses the correct option as the target.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use bomf_core::eval::EvalSet;
use bomf_core::generative::{
    LoraLlama, choice_items, default_prompt, generation_items, span_qa_as_generation,
};
use bomf_core::model::GenerationConfig;
use bomf_data::batch::Item;
use bomf_data::spec::{DataFormat, DataSpec};
use bomf_data::task::{Dataset, Target, TaskKind};
use bomf_data::tokenize::{EncoderConfig, ModelFamily, SpecialTokenNames, TextEncoder};
use bomf_models::export::copy_tokenizer_files;
use bomf_models::gguf::GgufFile;
use bomf_models::llama::{export_llama, load_llama_checkpoint};
use bomf_models::lora::{LoraConfig, TargetModules};
use bomf_models::t5::{export_t5, load_t5_checkpoint};
use bomf_models::weights::{Checkpoint, read_checkpoint};
use bomf_models::{
    LlamaConfig, LlamaForCausalLM, LlamaLoraAdapters, T5Config, T5ForConditionalGeneration,
};
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokenizers::Tokenizer;

/// Default input length (tokens) of generative models, capped by the model's position limit.
pub const DEFAULT_GENERATIVE_MAX_LEN: usize = 256;
/// Default length (tokens) of T5 targets (decoder labels), EOS included.
pub const DEFAULT_MAX_TARGET_LEN: usize = 64;
/// Default number of new tokens a generation may add (an E2E reference is ~25 tokens, a SAMSum
/// summary ~30).
pub const DEFAULT_MAX_NEW_TOKENS: usize = 64;

/// The model families the CLI can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// BERT/RoBERTa sequence classifiers (and anything unrecognised, which that path rejects).
    Classifier,
    T5,
    Llama,
}

impl Family {
    pub fn is_generative(self) -> bool {
        self != Family::Classifier
    }
}

/// The family of a model path: `.gguf` files are LLaMA; folders follow their `config.json`
/// `model_type`. Unreadable or unknown configs are left to the classifier path to report.
pub fn family_of(path: &Path) -> Family {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        return Family::Llama;
    }
    let config = path.join("config.json");
    let model_type = std::fs::read_to_string(&config)
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .and_then(|v| {
            v.get("model_type")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
    match model_type.as_deref() {
        Some("t5") => Family::T5,
        Some("llama") => Family::Llama,
        _ => Family::Classifier,
    }
}

/// `[generation]` of a run config: how generations are produced when a generation task is
/// scored (greedy decoding unless `num_beams > 1`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerationSection {
    /// The most tokens a generation may add.
    pub max_new_tokens: usize,
    /// 1: greedy; more: beam search with this many beams.
    pub num_beams: usize,
    /// Beam search ranks hypotheses by `sum of log-probs / length^length_penalty` (HF's 1.0).
    pub length_penalty: f64,
}

impl Default for GenerationSection {
    fn default() -> Self {
        Self {
            max_new_tokens: DEFAULT_MAX_NEW_TOKENS,
            num_beams: 1,
            length_penalty: 1.0,
        }
    }
}

/// `[model.lora]` of a run config: train LoRA adapters on a frozen LLaMA-family model. The
/// names are peft's (`LoraConfig`), so an `adapter_config.json` reads the same. How the K kept
/// adapters are fused is `[fusion] lora` (`factors`: rank r; `delta`: the exact update, rank K·r,
/// also in `fused-adapter/`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraSection {
    /// Rank of each adapter.
    pub r: usize,
    /// Scale numerator: updates are scaled by `lora_alpha / r` (`/ √r` with rsLoRA).
    pub lora_alpha: f64,
    /// Dropout on the adapter input during training.
    #[serde(default)]
    pub lora_dropout: f64,
    /// Adapted projections (`q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`, `up_proj`,
    /// `down_proj`); peft's default `["q_proj", "v_proj"]` when absent.
    #[serde(default)]
    pub target_modules: Option<Vec<String>>,
    #[serde(default)]
    pub use_rslora: bool,
}

impl LoraSection {
    /// The peft config this section describes (checked by `LoraConfig::validate`).
    pub fn to_lora_config(&self, base_model: &Path) -> Result<LoraConfig> {
        let config = LoraConfig {
            r: self.r,
            lora_alpha: self.lora_alpha,
            lora_dropout: self.lora_dropout,
            target_modules: self.target_modules.clone().map(TargetModules::List),
            use_rslora: self.use_rslora,
            base_model_name_or_path: Some(base_model.display().to_string()),
            ..LoraConfig::default()
        };
        config.validate().context("in [model.lora]")?;
        Ok(config)
    }
}

/// The architecture of a generative model, with its config.
#[derive(Debug, Clone)]
pub enum Arch {
    T5(T5Config),
    Llama(LlamaConfig),
}

/// Sizes the tokenizer and generation use (`None`: the defaults above).
#[derive(Debug, Clone, Copy, Default)]
pub struct GenerativeOptions {
    pub max_len: Option<usize>,
    pub max_target_len: Option<usize>,
    pub max_new_tokens: Option<usize>,
}

/// A generative model opened from disk: everything needed to build fresh copies of it, encode
/// data for it and export what it becomes.
pub struct GenerativeModel {
    pub arch: Arch,
    pub checkpoint: Checkpoint,
    pub encoder: Arc<TextEncoder>,
    pub generation: GenerationConfig,
    /// `tokenizer.json`, written next to every exported model.
    pub tokenizer_json: String,
    /// The HF folder it came from (its other tokenizer files are copied on export); `None` for
    /// a GGUF file.
    pub folder: Option<PathBuf>,
}

/// The token name of `id`, for the encoder's special-token settings.
fn token_name(tokenizer: &Tokenizer, id: Option<i64>) -> Option<String> {
    id.and_then(|i| u32::try_from(i).ok())
        .and_then(|i| tokenizer.id_to_token(i))
}

fn first_id(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n.as_i64(),
        Value::Array(a) => a.first().and_then(Value::as_i64),
        _ => None,
    }
}

/// Opens a T5 or LLaMA folder, or a LLaMA-architecture `.gguf` file.
pub fn open_generative(path: &Path, options: GenerativeOptions) -> Result<GenerativeModel> {
    open(path, options, true)
}

/// Like [`open_generative`] without reading the folder's weights (`checkpoint` stays empty): for
/// a folder that only describes checkpoints stored elsewhere, as `bomf train` writes
/// `RUNDIR/checkpoints/` (config.json, tokenizer.json, one `.safetensors` per checkpoint).
pub fn open_generative_config(path: &Path, options: GenerativeOptions) -> Result<GenerativeModel> {
    open(path, options, false)
}

fn open(path: &Path, options: GenerativeOptions, with_weights: bool) -> Result<GenerativeModel> {
    let family = family_of(path);
    let (arch, checkpoint, tokenizer_json, folder) = if family == Family::Llama && path.is_file() {
        let file = GgufFile::open(path).with_context(|| format!("opening {}", path.display()))?;
        let config = file
            .llama_config()
            .with_context(|| format!("{}: reading the LLaMA config", path.display()))?;
        let checkpoint = file
            .hf_checkpoint(&config)
            .with_context(|| format!("{}: reading the weights", path.display()))?;
        let tokenizer = file
            .tokenizer_json()
            .with_context(|| format!("{}: reading the embedded tokenizer", path.display()))?;
        (
            Arch::Llama(config),
            checkpoint,
            serde_json::to_string(&tokenizer)?,
            None,
        )
    } else {
        let config_path = path.join("config.json");
        let arch = match family {
            Family::T5 => Arch::T5(
                T5Config::from_file(&config_path)
                    .with_context(|| format!("reading {}", config_path.display()))?,
            ),
            Family::Llama => Arch::Llama(
                LlamaConfig::from_file(&config_path)
                    .with_context(|| format!("reading {}", config_path.display()))?,
            ),
            Family::Classifier => bail!(
                "{} is not a T5 or LLaMA model (config.json model_type)",
                path.display()
            ),
        };
        let tokenizer_path = path.join("tokenizer.json");
        let tokenizer = std::fs::read_to_string(&tokenizer_path).with_context(|| {
            format!(
                "reading {} (needed to turn text into token ids): copy the tokenizer.json of \
                 the model it was fine-tuned from into the folder",
                tokenizer_path.display()
            )
        })?;
        let checkpoint = if with_weights {
            read_checkpoint(path).with_context(|| format!("reading {}", path.display()))?
        } else {
            Checkpoint::default()
        };
        (arch, checkpoint, tokenizer, Some(path.to_path_buf()))
    };
    let tokenizer = Tokenizer::from_bytes(tokenizer_json.as_bytes())
        .map_err(|e| anyhow::anyhow!("{}: invalid tokenizer: {e}", path.display()))?;
    let (encoder_config, generation) = match &arch {
        Arch::T5(c) => {
            let mut enc = EncoderConfig::new(
                ModelFamily::T5,
                options.max_len.unwrap_or(DEFAULT_GENERATIVE_MAX_LEN),
            );
            enc.max_target_length = Some(options.max_target_len.unwrap_or(DEFAULT_MAX_TARGET_LEN));
            enc.model_vocab_size = Some(c.vocab_size);
            let eos = c.eos_token_ids();
            enc.special_tokens = SpecialTokenNames {
                start: None,
                end: token_name(&tokenizer, eos.first().copied()),
                pad: token_name(&tokenizer, c.pad_token_id),
            };
            let generation = GenerationConfig {
                max_new_tokens: options.max_new_tokens.unwrap_or(DEFAULT_MAX_NEW_TOKENS),
                eos_token_ids: eos,
                pad_token_id: c.pad_token_id.unwrap_or(0),
                ..GenerationConfig::default()
            };
            (enc, generation)
        }
        Arch::Llama(c) => {
            let limit = c.max_position_embeddings;
            let mut enc = EncoderConfig::new(
                ModelFamily::Llama,
                options
                    .max_len
                    .unwrap_or(DEFAULT_GENERATIVE_MAX_LEN.min(limit)),
            );
            enc.model_max_length = Some(limit);
            enc.model_vocab_size = Some(c.vocab_size);
            let eos = c.eos_token_ids();
            // SmolLM2 names its BOS/EOS `<|im_start|>` / `<|im_end|>`: take the names from the
            // config's ids rather than assuming `<s>` / `</s>`. Padding is EOS (masked anyway).
            enc.special_tokens = SpecialTokenNames {
                start: token_name(&tokenizer, first_id(c.bos_token_id.as_ref())),
                end: token_name(&tokenizer, eos.first().copied()),
                pad: None,
            };
            let generation = GenerationConfig {
                max_new_tokens: options.max_new_tokens.unwrap_or(DEFAULT_MAX_NEW_TOKENS),
                eos_token_ids: eos,
                pad_token_id: 0, // set to the encoder's pad id below
                ..GenerationConfig::default()
            };
            (enc, generation)
        }
    };
    let encoder = TextEncoder::new(tokenizer, encoder_config)
        .with_context(|| format!("configuring the tokenizer of {}", path.display()))?;
    let mut generation = generation;
    if matches!(arch, Arch::Llama(_)) {
        generation.pad_token_id = i64::from(encoder.pad_id());
    }
    Ok(GenerativeModel {
        arch,
        checkpoint,
        encoder: Arc::new(encoder),
        generation,
        tokenizer_json,
        folder,
    })
}

/// Loads a data spec for a generative model: BIG-bench multiple-choice tasks stay multiple
/// choice (not turned into classification) unless the spec says otherwise.
pub fn generative_spec(mut spec: DataSpec) -> DataSpec {
    if spec.format == DataFormat::Bigbench && spec.as_classification.is_none() {
        spec.as_classification = Some(false);
    }
    spec
}

impl GenerativeModel {
    /// A fresh T5 from the weights (`dropout = false`: dropout rate 0).
    pub fn t5<B: Backend>(
        &self,
        dropout: bool,
        device: &B::Device,
    ) -> Result<T5ForConditionalGeneration<B>> {
        self.t5_with(self.checkpoint.clone(), dropout, device)
    }

    /// A T5 of this config with other weights (strict: every tensor, the same shapes).
    pub fn t5_with<B: Backend>(
        &self,
        checkpoint: Checkpoint,
        dropout: bool,
        device: &B::Device,
    ) -> Result<T5ForConditionalGeneration<B>> {
        let Arch::T5(config) = &self.arch else {
            bail!("not a T5 model");
        };
        let config = if dropout {
            config.clone()
        } else {
            config.clone().without_dropout()
        };
        Ok(load_t5_checkpoint::<B>(&config, checkpoint, device)?)
    }

    /// A fresh LLaMA from the weights.
    pub fn llama<B: Backend>(&self, device: &B::Device) -> Result<LlamaForCausalLM<B>> {
        self.llama_with(self.checkpoint.clone(), device)
    }

    /// A LLaMA of this config with other weights (strict: every tensor, the same shapes).
    pub fn llama_with<B: Backend>(
        &self,
        checkpoint: Checkpoint,
        device: &B::Device,
    ) -> Result<LlamaForCausalLM<B>> {
        let Arch::Llama(config) = &self.arch else {
            bail!("not a LLaMA model");
        };
        Ok(load_llama_checkpoint::<B>(config, checkpoint, device)?)
    }

    /// The LLaMA with a peft adapter folder merged into its weights (`W + s·B·A`, what peft's
    /// `merge_and_unload` gives): the adapted model for evaluation and generation.
    pub fn llama_with_adapter<B: Backend>(
        &self,
        adapter_dir: &Path,
        device: &B::Device,
    ) -> Result<LlamaForCausalLM<B>> {
        let Arch::Llama(config) = &self.arch else {
            bail!(
                "--adapter {}: LoRA adapters apply to LLaMA-family models only (this one is T5)",
                adapter_dir.display()
            );
        };
        let adapters =
            LlamaLoraAdapters::<B>::load(adapter_dir, config, device).with_context(|| {
                format!(
                    "loading the peft adapter folder {} for this model",
                    adapter_dir.display()
                )
            })?;
        Ok(adapters.merge_into(self.llama(device)?)?)
    }

    /// A frozen LLaMA with fresh adapters (drawn from the backend's RNG: seed it first).
    pub fn lora<B: Backend>(
        &self,
        lora: &LoraConfig,
        dropout: bool,
        device: &B::Device,
    ) -> Result<LoraLlama<B>> {
        let Arch::Llama(config) = &self.arch else {
            bail!("LoRA is supported for the LLaMA family only");
        };
        let lora = if dropout {
            lora.clone()
        } else {
            lora.clone().without_dropout()
        };
        let adapters = LlamaLoraAdapters::<B>::new(&lora, config, device)?;
        Ok(LoraLlama::new(self.llama(device)?, adapters)?)
    }

    /// Items to train on: generation targets (the first reference), extractive QA's first gold
    /// answer, or the correct option of each multiple-choice question.
    pub fn train_items(&self, dataset: &Dataset) -> Result<Vec<Item>> {
        match &dataset.task.kind {
            TaskKind::Generation => {
                Ok(generation_items(&self.encoder, dataset, default_prompt)?.items)
            }
            TaskKind::SpanQa { .. } => {
                let as_generation = span_qa_as_generation(dataset)?;
                Ok(generation_items(&self.encoder, &as_generation, default_prompt)?.items)
            }
            TaskKind::MultipleChoice => {
                let mut as_generation = dataset.clone();
                as_generation.task.kind = TaskKind::Generation;
                for example in &mut as_generation.examples {
                    let answer = example
                        .correct_choice()
                        .and_then(|a| example.options.get(a).cloned())
                        .with_context(|| {
                            format!(
                                "example {} of {} has no correct option",
                                example.id, dataset.task.name
                            )
                        })?;
                    example.target = Some(Target::Text(vec![answer]));
                }
                Ok(generation_items(&self.encoder, &as_generation, default_prompt)?.items)
            }
            other => bail!(
                "a generative model needs a generation, extractive QA or multiple-choice task, not \
                 {} ({other:?}); use a BERT/RoBERTa model for classification",
                dataset.task.name
            ),
        }
    }

    /// A split ready for evaluation: generation and extractive QA (loss + the task's metrics and
    /// ROUGE/BLEU of greedy generations) or multiple choice (loss over every option + accuracy).
    pub fn eval_set(&self, dataset: &Dataset, batch_size: usize) -> Result<EvalSet> {
        Ok(match &dataset.task.kind {
            TaskKind::Generation | TaskKind::SpanQa { .. } => {
                let span_qa;
                let dataset = if matches!(dataset.task.kind, TaskKind::SpanQa { .. }) {
                    span_qa = span_qa_as_generation(dataset)?;
                    &span_qa
                } else {
                    dataset
                };
                let g = generation_items(&self.encoder, dataset, default_prompt)?;
                EvalSet::generative(
                    dataset.task.clone(),
                    g.items,
                    g.references,
                    self.encoder.clone(),
                    self.generation.clone(),
                    batch_size,
                )?
            }
            TaskKind::MultipleChoice => {
                let c = choice_items(&self.encoder, dataset, default_prompt)?;
                EvalSet::multiple_choice(
                    dataset.task.clone(),
                    c.items,
                    c.item_examples,
                    c.answers,
                    self.encoder.pad_id(),
                    batch_size,
                )?
            }
            other => bail!(
                "a generative model needs a generation, extractive QA or multiple-choice task, not \
                 {} ({other:?}); use a BERT/RoBERTa model for classification",
                dataset.task.name
            ),
        })
    }

    /// Writes the tokenizer next to an exported model: the source folder's tokenizer files, or
    /// the GGUF's embedded tokenizer as `tokenizer.json`.
    pub fn write_tokenizer(&self, out_dir: &Path) -> Result<()> {
        match &self.folder {
            Some(folder) => {
                copy_tokenizer_files(folder, out_dir)?;
            }
            None => {
                let path = out_dir.join("tokenizer.json");
                std::fs::write(&path, &self.tokenizer_json)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        Ok(())
    }

    /// Exports a T5 as an HF folder with the tokenizer.
    pub fn export_t5<B: Backend>(
        &self,
        model: &T5ForConditionalGeneration<B>,
        out_dir: &Path,
    ) -> Result<()> {
        let Arch::T5(config) = &self.arch else {
            bail!("not a T5 model");
        };
        export_t5(model, config, out_dir, None)?;
        self.write_tokenizer(out_dir)
    }

    /// Exports a LLaMA (or a LoRA model merged into one) as an HF folder with the tokenizer.
    pub fn export_llama<B: Backend>(
        &self,
        model: &LlamaForCausalLM<B>,
        out_dir: &Path,
    ) -> Result<()> {
        let Arch::Llama(config) = &self.arch else {
            bail!("not a LLaMA model");
        };
        export_llama(model, config, out_dir, None)?;
        self.write_tokenizer(out_dir)
    }
}
