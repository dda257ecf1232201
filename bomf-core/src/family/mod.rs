//! Model families: [`open`] turns a model path into an [`OpenedModel`] once, and every command
//! and the pipeline then work through it, written once and generic over the model type.
//!
//! A family has two faces:
//! - [`Family`], what does not depend on the backend: how the data is read and encoded for the
//!   model (items to train on, evaluation sets), a classifier's head fitted to the data's labels,
//!   a checkpoint read from disk. [`OpenedModel`] derefs to it.
//! - [`ModelKit`], the models themselves on one backend `B`: fresh ones to train, the opened one
//!   for inference, others loaded from a checkpoint's weights, and their export. Its model type
//!   is a [`TrainableModel`], so a stage bounded by that trait runs every family.
//!
//! [`OpenedModel::visit`] hands a [`ModelVisitor`] the kit of the opened model (for LLaMA with
//! `[model.lora]`, the LoRA kit), so a command's body is one generic `visit` method instead of a
//! match over families. [`ops`] holds the ones every front end needs (evaluate, predict, train a
//! trajectory, fuse checkpoints); the pipeline's are in [`crate::run`].
//!
//! The registry is the `families!` list at the bottom of this file: one line per family, which
//! declares the variant of [`OpenedModel`] and the type behind it ([`OpenFamily`]: which
//! `config.json` `model_type` it claims, how it opens, which kit it hands a visitor). A new
//! sequence classifier implements [`classifier::ClassifierArch`] (its config, loader and export)
//! and [`crate::model::SequenceClassifier`] for its model, and registers
//! `ClassifierFamily<its::Arch>`; everything else (labels, heads, data, predictions, fusion) is
//! [`classifier::ClassifierFamily`]'s.

pub mod bert;
pub mod classifier;
pub mod generative;
pub mod llama;
pub mod mpnet;
pub mod ops;
pub mod t5;

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};

use bomf_data::batch::Item;
use bomf_data::spec::DataSpec;
use bomf_data::task::Dataset;
use bomf_models::lora::LoraConfig;
use bomf_models::weights::{Checkpoint, read_checkpoint, read_safetensors};
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use serde::Serialize;
use serde_json::Value;

use crate::error::{CoreError, Result, ResultExt};
use crate::eval::EvalSet;
use crate::model::{InnerModel, ModelRequest, TrainableModel};
use crate::run_config::GenerationSection;
use crate::trajectory::Trajectory;

use classifier::ClassifierFamily;
pub use ops::PredictJob;

/// How a model is opened: input sizes, generation settings, LoRA.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Maximum input length in tokens (`None`: the family's default, capped by the model's
    /// position limit).
    pub max_len: Option<usize>,
    /// T5: the maximum target length in tokens (`None`: 64). Classifiers refuse it.
    pub max_target_len: Option<usize>,
    /// How generative models generate when scored or asked for predictions.
    pub generation: GenerationSection,
    /// Train LoRA adapters of this config on the frozen model instead of every weight (LLaMA
    /// family only).
    pub lora: Option<LoraConfig>,
    /// A peft adapter folder merged into the weights (LLaMA family only).
    pub adapter: Option<PathBuf>,
    /// Read the configuration only: the weights come from elsewhere (the checkpoints of a
    /// `bomf train` folder, each `.safetensors` file beside its `config.json`), and a classifier
    /// needs no tokenizer.
    pub config_only: bool,
}

impl OpenOptions {
    /// The weights of the model at `path`, or none when it is opened config-only.
    pub fn weights(&self, path: &Path) -> Result<Checkpoint> {
        if self.config_only {
            Ok(Checkpoint::default())
        } else {
            read_weights(path)
        }
    }
}

/// What [`open`] knows about a path before a family opens it.
#[derive(Debug, Clone)]
pub struct Probe {
    pub path: PathBuf,
    /// A llama.cpp `.gguf` file.
    pub gguf: bool,
    /// `config.json`'s `model_type` (`None` for a `.gguf` file).
    pub model_type: Option<String>,
}

impl Probe {
    /// Reads what is needed to pick a family; a folder without a readable `config.json` is an
    /// error that says what a model folder holds.
    pub fn of(path: &Path) -> Result<Self> {
        let gguf = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
        if gguf {
            if !path.is_file() {
                return Err(CoreError::file(path, "no such GGUF file"));
            }
            return Ok(Self {
                path: path.to_path_buf(),
                gguf,
                model_type: None,
            });
        }
        let config = path.join("config.json");
        if !config.is_file() {
            return Err(CoreError::file(
                path,
                "has no config.json: expected a Hugging Face model folder (config.json, \
                 model.safetensors, tokenizer.json)",
            ));
        }
        let text = std::fs::read_to_string(&config).map_err(|e| CoreError::file(&config, e))?;
        let value: Value = serde_json::from_str(&text).map_err(|e| CoreError::file(&config, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            gguf,
            model_type: value
                .get("model_type")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }

    /// Whether `config.json` names one of `model_types`.
    pub fn is_one_of(&self, model_types: &[&str]) -> bool {
        self.model_type
            .as_deref()
            .is_some_and(|t| model_types.contains(&t))
    }
}

/// Opens the model at `path` (an HF folder, or a `.gguf` file) as the family its
/// `config.json` `model_type` names.
pub fn open(path: &Path, options: &OpenOptions) -> Result<OpenedModel> {
    let probe = Probe::of(path)?;
    let Some(model) = OpenedModel::open_registered(&probe, options)? else {
        let found = probe.model_type.as_deref().unwrap_or("(none)");
        return Err(CoreError::Unsupported(format!(
            "{}: config.json model_type `{found}` is not a model bomf supports; it supports {}",
            path.display(),
            OpenedModel::SUPPORTED.join("; ")
        )));
    };
    if !model.adapts() && (options.lora.is_some() || options.adapter.is_some()) {
        return Err(CoreError::Unsupported(format!(
            "LoRA adapters apply to LLaMA-family models only, and {} is {}: bomf's LoRA layers \
             are written for the LLaMA family only",
            path.display(),
            model.describe()
        )));
    }
    Ok(model)
}

/// What every family offers without a backend: the data side of a model. [`OpenedModel`]
/// derefs to it.
pub trait Family {
    /// What the model is, for messages: "a T5 model".
    fn describe(&self) -> String;

    /// The folder (or `.gguf` file) it was opened from.
    fn path(&self) -> &Path;

    /// Whether LoRA adapters apply to it (trained, or merged from an adapter folder).
    fn adapts(&self) -> bool {
        false
    }

    /// The data spec as this family reads it (generative models keep BIG-bench multiple-choice
    /// tasks multiple choice).
    fn data_spec(&self, spec: DataSpec) -> DataSpec {
        spec
    }

    /// Fits the model to the task of its training data before it is trained: a classifier's
    /// head gets the data's labels (and starts fresh when they are not the head's). Returns a
    /// warning when a trained head is replaced.
    fn fit_task(&mut self, train: &Dataset) -> Result<Option<String>>;

    /// The items to train on.
    fn train_items(&self, dataset: &Dataset) -> Result<Vec<Item>>;

    /// A split ready for evaluation with the task's metrics (a classifier's classes in the
    /// order of its outputs).
    fn eval_set(&self, dataset: &Dataset, batch_size: usize) -> Result<EvalSet>;

    /// The padding id of the tokenizer.
    fn pad_id(&self) -> Result<u32>;

    /// The weights of one checkpoint of this model (an HF folder or a `.safetensors` file),
    /// checked as far as they can be before loading.
    fn read_checkpoint(&self, path: &Path) -> Result<Checkpoint> {
        read_weights(path)
    }
}

/// The folders an export writes: the model as an HF folder, and for a LoRA model the adapters
/// alone in peft's format (when `adapter` is given).
#[derive(Debug, Clone)]
pub struct ExportDirs {
    pub model: PathBuf,
    pub adapter: Option<PathBuf>,
}

impl ExportDirs {
    /// The model folder only.
    pub fn model(dir: &Path) -> Self {
        Self {
            model: dir.to_path_buf(),
            adapter: None,
        }
    }
}

/// One output per input row of [`ModelKit::predict`]; serialised as `bomf predict` writes it
/// (keys in alphabetical order).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Prediction {
    /// A classifier: the name of the largest logit, the logits and their softmax.
    Class {
        label: String,
        logits: Vec<f32>,
        probabilities: Vec<f64>,
    },
    /// A regression model: its logits and the single one, the score.
    Score { logits: Vec<f32>, score: f32 },
    /// A generative model: the continuation of the prompt.
    Text { generated_text: String },
}

/// A family's models on the autodiff backend `B` (and, through `valid()`, on its inference
/// backend).
pub trait ModelKit<B: AutodiffBackend> {
    /// The model a run trains: a classifier with its head, a T5, a LLaMA, a LLaMA with LoRA
    /// adapters.
    type Model: TrainableModel<B>;

    /// A fresh model from the opened weights, as `request` asks (dropout, a LoRA rank). A new
    /// classification head and LoRA's `A` matrices are drawn from the backend's RNG: seed it
    /// first.
    fn build(&self, request: ModelRequest, device: &B::Device) -> Result<Self::Model>;

    /// The opened model for inference: a classifier must have its trained head; an adapter
    /// folder is merged in.
    fn inference(&self, device: &B::Device) -> Result<InnerModel<B, Self::Model>>;

    /// A model of the opened configuration with other weights, loaded strictly (every tensor,
    /// the same shapes): one checkpoint to fuse.
    fn load(&self, weights: Checkpoint, device: &B::Device) -> Result<InnerModel<B, Self::Model>>;

    /// Writes `model` as an HF folder with the tokenizer (and a LoRA model's adapters alone).
    fn export(&self, model: &InnerModel<B, Self::Model>, out: &ExportDirs) -> Result<()>;

    /// One output per row of the job's input texts.
    fn predict(
        &self,
        model: &InnerModel<B, Self::Model>,
        job: &PredictJob<'_, B::Device>,
    ) -> Result<Vec<Prediction>>;

    /// Writes the files that make a trajectory's checkpoint files loadable into `dir`: the
    /// `config.json` and tokenizer of an export, without its weights (each checkpoint file holds
    /// those).
    fn describe_trajectory(
        &self,
        trajectory: &Trajectory,
        dir: &Path,
        device: &B::Device,
    ) -> Result<()> {
        let _ = trajectory;
        let template = self.build(ModelRequest::FROZEN, device)?.valid();
        write_description(dir, |scratch| {
            self.export(&template, &ExportDirs::model(scratch))
        })
    }
}

/// A command's body, generic over the model type: [`OpenedModel::visit`] calls it with the
/// opened model's kit.
pub trait ModelVisitor<B: AutodiffBackend> {
    type Output;
    fn visit<K: ModelKit<B>>(self, kit: &K) -> Self::Output;
}

/// A family type as the registry sees it: which models it opens, and the kit it hands a
/// visitor.
pub trait OpenFamily: Family + Sized {
    /// What it opens, for the error listing what bomf supports.
    const SUPPORTED: &'static str;

    /// Whether it opens the model `probe` describes.
    fn claims(probe: &Probe) -> bool;

    fn open(probe: &Probe, options: &OpenOptions) -> Result<Self>;

    /// Calls `visitor` with this model's kit.
    fn accept<B: AutodiffBackend, V: ModelVisitor<B>>(&self, visitor: V) -> V::Output
    where
        Self: ModelKit<B>;
}

/// Reads the weights of a checkpoint given as a model folder or a single `.safetensors` file.
pub fn read_weights(path: &Path) -> Result<Checkpoint> {
    if path.is_dir() {
        read_checkpoint(path).context(|| format!("reading {}", path.display()))
    } else if path.is_file() {
        read_safetensors(path).context(|| format!("reading {}", path.display()))
    } else {
        Err(CoreError::file(
            path,
            "no such model folder or weights file",
        ))
    }
}

/// The folder whose `config.json` (and tokenizer) describe a checkpoint: the folder itself, or
/// the folder holding a `.safetensors` file (as in a run's `checkpoints/`).
pub fn config_dir_of(checkpoint: &Path) -> PathBuf {
    if checkpoint.is_dir() {
        checkpoint.to_path_buf()
    } else {
        checkpoint
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }
}

/// Writes what `export` writes into `dir`, except the weights files: through a scratch folder
/// whose `.safetensors` / `.bin` files are dropped.
pub fn write_description(dir: &Path, export: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let scratch = dir.join(".export");
    export(&scratch)?;
    let entries = std::fs::read_dir(&scratch).map_err(|e| CoreError::file(&scratch, e))?;
    for entry in entries {
        let path = entry.map_err(|e| CoreError::file(&scratch, e))?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if let Some(name) = name
            && !name.ends_with(".safetensors")
            && !name.ends_with(".bin")
        {
            let to = dir.join(&name);
            std::fs::rename(&path, &to).map_err(|e| CoreError::file(&to, e))?;
        }
    }
    std::fs::remove_dir_all(&scratch).map_err(|e| CoreError::file(&scratch, e))
}

/// Declares [`OpenedModel`] with one variant per registered family, and the dispatch over them.
macro_rules! families {
    ($($(#[$doc:meta])* $variant:ident($family:ty),)+) => {
        /// A model opened from disk ([`open`]): one variant per registered family (boxed: the
        /// families differ in size). Derefs to [`Family`]; [`OpenedModel::visit`] runs a
        /// [`ModelVisitor`] on its kit.
        pub enum OpenedModel {
            $($(#[$doc])* $variant(Box<$family>),)+
        }

        impl OpenedModel {
            /// What each family opens, for the error naming what is supported.
            const SUPPORTED: &[&str] = &[$(<$family as OpenFamily>::SUPPORTED),+];

            /// The first family (in registry order) that claims `probe`, opened.
            fn open_registered(probe: &Probe, options: &OpenOptions) -> Result<Option<Self>> {
                $(if <$family as OpenFamily>::claims(probe) {
                    let family = <$family as OpenFamily>::open(probe, options)?;
                    return Ok(Some(Self::$variant(Box::new(family))));
                })+
                Ok(None)
            }

            /// Runs `visitor` with the opened model's kit on backend `B`.
            pub fn visit<B: AutodiffBackend, V: ModelVisitor<B>>(&self, visitor: V) -> V::Output {
                match self {
                    $(Self::$variant(family) => family.accept(visitor),)+
                }
            }
        }

        impl Deref for OpenedModel {
            type Target = dyn Family;
            fn deref(&self) -> &Self::Target {
                match self {
                    $(Self::$variant(family) => &**family,)+
                }
            }
        }

        impl DerefMut for OpenedModel {
            fn deref_mut(&mut self) -> &mut Self::Target {
                match self {
                    $(Self::$variant(family) => &mut **family,)+
                }
            }
        }
    };
}

// The registry: one line per family, tried in this order.
families! {
    /// BERT, RoBERTa, XLM-RoBERTa and CamemBERT sequence classifiers.
    Bert(ClassifierFamily<bert::Bert>),
    /// MPNet sequence classifiers.
    Mpnet(ClassifierFamily<mpnet::Mpnet>),
    /// T5 v1.0/v1.1, seq2seq generation.
    T5(t5::T5Family),
    /// The LLaMA family (HF folders and `.gguf` files), optionally through LoRA adapters.
    Llama(llama::LlamaFamily),
}
