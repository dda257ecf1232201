//! What the generative families (T5, LLaMA) share: the tokenizer and generation settings of an
//! opened model ([`GenerativeText`]), the items they train on, their evaluation sets and their
//! predictions.
//!
//! Tasks: generation (the model continues the prompt, scored by ROUGE/BLEU on greedy or
//! beam-search generations), extractive QA (SQuAD: the answer is generated and scored by exact
//! match and F1, see [`span_qa_as_generation`]) and multiple choice (every option scored as a
//! continuation; accuracy; training uses the correct option as the target). The prompt is
//! [`default_prompt`]: the inputs joined by newlines, then a newline.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bomf_data::batch::Item;
use bomf_data::spec::{DataFormat, DataSpec};
use bomf_data::task::{Dataset, Example, Target, TaskKind};
use bomf_data::tokenize::{EncoderConfig, TextEncoder};
use bomf_models::export::copy_tokenizer_files;
use burn::tensor::backend::Backend;
use serde_json::Value;
use tokenizers::Tokenizer;

use super::{PredictJob, Prediction};
use crate::error::{CoreError, Result, ResultExt};
use crate::eval::EvalSet;
use crate::generative::{
    choice_items, decode_generation, default_prompt, generation_items, span_qa_as_generation,
};
use crate::model::{GenerationConfig, TaskModel};
use crate::run_config::GenerationSection;

/// Default input length (tokens) of generative models, capped by the model's position limit.
pub const DEFAULT_GENERATIVE_MAX_LEN: usize = 256;
/// Default length (tokens) of T5 targets (decoder labels), EOS included.
pub const DEFAULT_MAX_TARGET_LEN: usize = 64;

/// The text side of an opened generative model: its tokenizer as configured for the family, how
/// it generates, and where its tokenizer files come from on export.
pub struct GenerativeText {
    pub encoder: Arc<TextEncoder>,
    pub generation: GenerationConfig,
    /// `tokenizer.json`, written next to every exported model.
    pub tokenizer_json: String,
    /// The HF folder it came from (its other tokenizer files are copied on export); `None` for
    /// a GGUF file.
    pub folder: Option<PathBuf>,
}

/// The `tokenizer.json` of an HF folder, with an error that says how to supply one.
pub fn folder_tokenizer(folder: &Path) -> Result<String> {
    let path = folder.join("tokenizer.json");
    std::fs::read_to_string(&path).map_err(|e| {
        CoreError::file(
            &path,
            format!(
                "{e} (needed to turn text into token ids): copy the tokenizer.json of the model \
                 it was fine-tuned from into the folder"
            ),
        )
    })
}

/// The parsed tokenizer of `json` (`path` names the model in the error).
pub fn parse_tokenizer(path: &Path, json: &str) -> Result<Tokenizer> {
    Tokenizer::from_bytes(json.as_bytes())
        .map_err(|e| CoreError::file(path, format!("invalid tokenizer: {e}")))
}

/// The token name of `id`, for the encoder's special-token settings.
pub fn token_name(tokenizer: &Tokenizer, id: Option<i64>) -> Option<String> {
    id.and_then(|i| u32::try_from(i).ok())
        .and_then(|i| tokenizer.id_to_token(i))
}

/// The first id of a config value that is one id or a list of them.
pub fn first_id(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n.as_i64(),
        Value::Array(a) => a.first().and_then(Value::as_i64),
        _ => None,
    }
}

/// Generation settings from a run's `[generation]` section and the model's special ids.
pub fn generation_config(
    settings: &GenerationSection,
    eos_token_ids: Vec<i64>,
    pad_token_id: i64,
) -> GenerationConfig {
    GenerationConfig {
        max_new_tokens: settings.max_new_tokens,
        eos_token_ids,
        pad_token_id,
        num_beams: settings.num_beams,
        length_penalty: settings.length_penalty,
    }
}

/// Loads a data spec for a generative model: BIG-bench multiple-choice tasks stay multiple
/// choice (not turned into classification) unless the spec says otherwise.
pub fn generative_spec(mut spec: DataSpec) -> DataSpec {
    if spec.format == DataFormat::Bigbench && spec.as_classification.is_none() {
        spec.as_classification = Some(false);
    }
    spec
}

fn unsupported_task(dataset: &Dataset) -> CoreError {
    CoreError::Unsupported(format!(
        "a generative model needs a generation, extractive QA or multiple-choice task, not {} \
         ({:?}); use a BERT/RoBERTa model for classification",
        dataset.task.name, dataset.task.kind
    ))
}

/// The [`super::Family`] methods every generative family answers from its [`GenerativeText`]
/// field `text`: the data read as generation, no head to fit, training items, evaluation sets and
/// the padding id. Expanded inside each family's `impl Family`.
macro_rules! text_family_methods {
    () => {
        fn data_spec(&self, spec: DataSpec) -> DataSpec {
            generative_spec(spec)
        }

        fn fit_task(&mut self, _train: &Dataset) -> Result<Option<String>> {
            Ok(None)
        }

        fn train_items(&self, dataset: &Dataset) -> Result<Vec<Item>> {
            self.text.train_items(dataset)
        }

        fn eval_set(&self, dataset: &Dataset, batch_size: usize) -> Result<EvalSet> {
            self.text.eval_set(dataset, batch_size)
        }

        fn pad_id(&self) -> Result<u32> {
            Ok(self.text.encoder.pad_id())
        }
    };
}
pub(crate) use text_family_methods;

/// The [`super::ModelKit`] methods every generative family answers from its `config` and its
/// [`GenerativeText`] field `text`: the export (an HF folder written by `$export`, then the
/// tokenizer) and predictions (the generated continuations). Expanded inside each family's
/// `impl ModelKit`.
macro_rules! text_kit_methods {
    ($export:path) => {
        fn export(&self, model: &InnerModel<B, Self::Model>, out: &ExportDirs) -> Result<()> {
            $export(model, &self.config, &out.model, None)?;
            self.text.write_tokenizer(&out.model)
        }

        fn predict(
            &self,
            model: &InnerModel<B, Self::Model>,
            job: &PredictJob<'_, B::Device>,
        ) -> Result<Vec<Prediction>> {
            self.text.generate(model, job)
        }
    };
}
pub(crate) use text_kit_methods;

impl GenerativeText {
    /// The text side of a model whose tokenizer is `tokenizer` (parsed from `tokenizer_json`),
    /// configured by `settings`.
    pub fn new(
        path: &Path,
        tokenizer: Tokenizer,
        settings: EncoderConfig,
        generation: GenerationConfig,
        tokenizer_json: String,
        folder: Option<PathBuf>,
    ) -> Result<Self> {
        let encoder = TextEncoder::new(tokenizer, settings)
            .context(|| format!("configuring the tokenizer of {}", path.display()))?;
        Ok(Self {
            encoder: Arc::new(encoder),
            generation,
            tokenizer_json,
            folder,
        })
    }

    /// Items to train on: generation targets (the first reference), extractive QA's first gold
    /// answer, or the correct option of each multiple-choice question.
    pub fn train_items(&self, dataset: &Dataset) -> Result<Vec<Item>> {
        let encoder = &self.encoder;
        match &dataset.task.kind {
            TaskKind::Generation => Ok(generation_items(encoder, dataset, default_prompt)?.items),
            TaskKind::SpanQa { .. } => {
                let as_generation = span_qa_as_generation(dataset)?;
                Ok(generation_items(encoder, &as_generation, default_prompt)?.items)
            }
            TaskKind::MultipleChoice => {
                let mut as_generation = dataset.clone();
                as_generation.task.kind = TaskKind::Generation;
                for example in &mut as_generation.examples {
                    let answer = example
                        .correct_choice()
                        .and_then(|a| example.options.get(a).cloned())
                        .ok_or_else(|| {
                            CoreError::InvalidInput(format!(
                                "example {} of {} has no correct option",
                                example.id, dataset.task.name
                            ))
                        })?;
                    example.target = Some(Target::Text(vec![answer]));
                }
                Ok(generation_items(encoder, &as_generation, default_prompt)?.items)
            }
            _ => Err(unsupported_task(dataset)),
        }
    }

    /// A split ready for evaluation: generation and extractive QA (loss + the task's metrics and
    /// ROUGE/BLEU of the generations) or multiple choice (loss over every option + accuracy).
    pub fn eval_set(&self, dataset: &Dataset, batch_size: usize) -> Result<EvalSet> {
        match &dataset.task.kind {
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
                )
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
                )
            }
            _ => Err(unsupported_task(dataset)),
        }
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
                    .map_err(|e| CoreError::file(&path, e))?;
            }
        }
        Ok(())
    }

    /// The continuation of each row's prompt ([`default_prompt`] of its text fields), greedy or
    /// by beam search as the generation settings say, `batch_size` rows at a time in row order.
    pub fn generate<B: Backend, M: TaskModel<B>>(
        &self,
        model: &M,
        job: &PredictJob<'_, B::Device>,
    ) -> Result<Vec<Prediction>> {
        let batcher = job.batcher(self.encoder.pad_id(), |i, texts| {
            let example = Example {
                id: (i + 1).to_string(),
                inputs: texts.to_vec(),
                options: Vec::new(),
                target: None,
            };
            self.encoder.encode(&[default_prompt(&example)])
        })?;
        let order: Vec<usize> = (0..job.rows.len()).collect();
        let mut out = Vec::with_capacity(job.rows.len());
        for chunk in order.chunks(job.batch_size.max(1)) {
            let batch = batcher.collate(chunk)?;
            for tokens in model.generate_batch(&batch, &self.generation, job.device)? {
                let generated_text = decode_generation(&self.encoder, &tokens, &self.generation)?;
                out.push(Prediction::Text { generated_text });
            }
        }
        Ok(out)
    }
}
