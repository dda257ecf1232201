//! Sequence classifiers (and regressors) of any encoder architecture: [`ClassifierFamily`] does
//! what they share — the head fitted to the data's labels, the data encoded and aligned with the
//! model's outputs, predictions, strict loading of fine-tuned checkpoints — and a
//! [`ClassifierArch`] says what differs: the config, the loader and the export.
//!
//! The label set comes from the config's `id2label`; [`align_labels`] puts a dataset's classes in
//! that order so that class `i` of the data is output `i` of the model.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bomf_data::batch::{Item, items_for_dataset};
use bomf_data::spec::with_label_order;
use bomf_data::task::{Dataset, TaskKind};
use bomf_data::tokenize::{EncoderConfig, ModelFamily, TextEncoder};
use bomf_models::bert::ProblemType;
use bomf_models::weights::{Checkpoint, LoadReport};
use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};

use super::{
    ExportDirs, Family, ModelKit, ModelVisitor, OpenFamily, OpenOptions, PredictJob, Prediction,
    Probe, config_dir_of, read_weights,
};
use crate::error::{CoreError, Result, ResultExt};
use crate::eval::EvalSet;
use crate::model::{
    InferenceModel, InnerModel, ModelRequest, SequenceClassifier, TrainableModel, encoder_input,
};

/// Default maximum input length in tokens (capped by the model's position limit).
pub const DEFAULT_MAX_LEN: usize = 128;

/// What one encoder architecture brings to [`ClassifierFamily`].
pub trait ClassifierArch: 'static {
    /// The `config.json` `model_type` values it opens.
    const MODEL_TYPES: &'static [&'static str];
    /// What it is, for messages ("BERT/RoBERTa-family classifier").
    const NAME: &'static str;
    /// What it opens, for the error listing what bomf supports.
    const SUPPORTED: &'static str;
    /// The prefix of the classification head's tensors in HF checkpoints.
    const HEAD_PREFIX: &'static str = "classifier.";

    type Config: Clone;
    /// The model with a sequence-classification head, on any backend.
    type Model<B: Backend>: SequenceClassifier<B> + InferenceModel<B>;

    /// Parses and validates a `config.json`.
    fn read_config(path: &Path) -> bomf_models::Result<Self::Config>;
    /// The label names in output order (`id2label`).
    fn labels(config: &Self::Config) -> Vec<String>;
    /// The config with these labels (a head of that many outputs).
    fn with_labels(config: &Self::Config, labels: &[String]) -> Self::Config;
    /// The config of a one-output regression head.
    fn regression(config: &Self::Config) -> Self::Config;
    /// The config with every dropout rate 0.
    fn without_dropout(config: &Self::Config) -> Self::Config;
    /// The tokenizer settings: special-token layout, position limit, vocabulary size, and
    /// `max_len` (`None`: [`DEFAULT_MAX_LEN`] or the position limit when smaller).
    fn encoder_config(config: &Self::Config, max_len: Option<usize>) -> EncoderConfig;
    /// A classifier of `config` with `weights` assigned; what the weights lacked is in the
    /// report (a head freshly initialised from the backend's RNG).
    fn load<B: Backend>(
        config: &Self::Config,
        weights: Checkpoint,
        device: &B::Device,
    ) -> bomf_models::Result<(Self::Model<B>, LoadReport)>;
    /// Writes `model` as an HF folder, with the tokenizer files of `tokenizer_dir`.
    fn export<B: Backend>(
        model: &Self::Model<B>,
        config: &Self::Config,
        out: &Path,
        tokenizer_dir: &Path,
    ) -> bomf_models::Result<()>;
}

/// Tokenizer settings for a classifier of `family`'s special-token layout with `limit` positions
/// and `vocab_size` tokens: inputs of `max_len` tokens, by default [`DEFAULT_MAX_LEN`] or the
/// position limit when smaller.
pub fn classifier_encoder_config(
    family: ModelFamily,
    limit: usize,
    vocab_size: usize,
    max_len: Option<usize>,
) -> EncoderConfig {
    let mut enc = EncoderConfig::new(family, max_len.unwrap_or(DEFAULT_MAX_LEN.min(limit)));
    enc.model_max_length = Some(limit);
    enc.model_vocab_size = Some(vocab_size);
    enc
}

/// The [`ClassifierArch`] config methods of an architecture whose `bomf_models` config has the
/// encoder configs' common API (`from_file`, `id2label`, `with_labels`, `with_num_labels`,
/// `without_dropout`). Expanded inside each such `impl ClassifierArch`.
macro_rules! config_methods {
    () => {
        fn read_config(path: &Path) -> bomf_models::Result<Self::Config> {
            <Self::Config>::from_file(path)
        }

        fn labels(config: &Self::Config) -> Vec<String> {
            config.id2label.values().cloned().collect()
        }

        fn with_labels(config: &Self::Config, labels: &[String]) -> Self::Config {
            config.clone().with_labels(labels)
        }

        fn regression(config: &Self::Config) -> Self::Config {
            config.clone().with_num_labels(1)
        }

        fn without_dropout(config: &Self::Config) -> Self::Config {
            config.clone().without_dropout()
        }
    };
}
pub(crate) use config_methods;

/// A sequence classifier opened from an HF folder.
pub struct ClassifierFamily<A: ClassifierArch> {
    path: PathBuf,
    config: A::Config,
    /// `None` when opened config-only from a folder without a tokenizer.
    encoder: Option<Arc<TextEncoder>>,
    checkpoint: Checkpoint,
    /// Fitted to a task ([`Family::fit_task`]): a model built to train may get a fresh head.
    fitted: bool,
}

impl<A: ClassifierArch> ClassifierFamily<A> {
    /// The config (labelled for the data once fitted).
    pub fn config(&self) -> &A::Config {
        &self.config
    }

    /// The model's label names in output order.
    pub fn labels(&self) -> Vec<String> {
        A::labels(&self.config)
    }

    fn encoder(&self) -> Result<&TextEncoder> {
        self.encoder
            .as_deref()
            .ok_or_else(|| no_tokenizer(&self.path))
    }

    /// A classifier with `weights` on `device`; without its head it is an error unless the
    /// model was fitted to a task (then the head is drawn fresh).
    fn classifier<B: Backend>(
        &self,
        config: &A::Config,
        weights: Checkpoint,
        require_head: bool,
        device: &B::Device,
    ) -> Result<A::Model<B>> {
        let (model, report) = A::load::<B>(config, weights, device)?;
        if require_head && !report.freshly_initialised.is_empty() {
            return Err(CoreError::InvalidInput(format!(
                "the checkpoint lacks tensor(s) {}: it is not a fine-tuned sequence classifier \
                 (fine-tune one with `bomf train`)",
                report.freshly_initialised.join(", ")
            )));
        }
        Ok(model)
    }
}

fn no_tokenizer(dir: &Path) -> CoreError {
    CoreError::file(
        dir,
        "has no tokenizer.json (needed to turn text into token ids): copy the tokenizer.json of \
         the model it was fine-tuned from into it",
    )
}

impl<A: ClassifierArch> Family for ClassifierFamily<A> {
    fn describe(&self) -> String {
        format!("a {}", A::NAME)
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn fit_task(&mut self, train: &Dataset) -> Result<Option<String>> {
        let current = self.labels();
        let (config, keep_head) = labelled::<A>(&self.config, &current, &train.task.kind)?;
        self.config = config;
        self.fitted = true;
        if keep_head {
            return Ok(None);
        }
        let tensors = &mut self.checkpoint.tensors;
        let head_len = tensors.len();
        tensors.retain(|name, _| !name.starts_with(A::HEAD_PREFIX));
        Ok((tensors.len() < head_len).then(|| {
            format!(
                "the model's head has labels {current:?}, the data {:?}: training a fresh head",
                A::labels(&self.config)
            )
        }))
    }

    fn train_items(&self, dataset: &Dataset) -> Result<Vec<Item>> {
        Ok(items_for_dataset(self.encoder()?, dataset)?)
    }

    fn eval_set(&self, dataset: &Dataset, batch_size: usize) -> Result<EvalSet> {
        let dataset = align_labels(dataset.clone(), &self.labels())?;
        if let Some(unlabelled) = dataset.examples.iter().find(|e| e.target.is_none()) {
            return Err(CoreError::InvalidInput(format!(
                "example {} of {} has no label: evaluation needs labelled data",
                unlabelled.id, dataset.task.name
            )));
        }
        let encoder = self.encoder()?;
        let items = items_for_dataset(encoder, &dataset)?;
        EvalSet::new(dataset.task.clone(), items, encoder.pad_id(), batch_size)
    }

    fn pad_id(&self) -> Result<u32> {
        Ok(self.encoder()?.pad_id())
    }

    /// A checkpoint folder with its own config must order its classes as this model does: the
    /// same architecture with another `id2label` would average the rows of different classes.
    fn read_checkpoint(&self, path: &Path) -> Result<Checkpoint> {
        let own_dir = config_dir_of(path);
        if own_dir != self.path && own_dir.join("config.json").is_file() {
            let own = A::labels(&A::read_config(&own_dir.join("config.json"))?);
            let expected = self.labels();
            if own != expected {
                return Err(CoreError::InvalidInput(format!(
                    "its id2label orders the classes {own:?}, the config of {} orders them \
                     {expected:?}: fusing would average the rows of different classes; export \
                     the checkpoints with one label order",
                    self.path.display()
                )));
            }
        }
        read_weights(path)
    }
}

impl<A: ClassifierArch> OpenFamily for ClassifierFamily<A> {
    const SUPPORTED: &'static str = A::SUPPORTED;

    fn claims(probe: &Probe) -> bool {
        !probe.gguf && probe.is_one_of(A::MODEL_TYPES)
    }

    fn open(probe: &Probe, options: &OpenOptions) -> Result<Self> {
        let path = &probe.path;
        if options.max_target_len.is_some() {
            return Err(CoreError::Unsupported(format!(
                "max_target_len sets the target length of T5 models, and {} is a {}",
                path.display(),
                A::NAME
            )));
        }
        let config_path = path.join("config.json");
        let config =
            A::read_config(&config_path).context(|| format!("in {}", config_path.display()))?;
        let tokenizer = path.join("tokenizer.json");
        let encoder = if options.config_only && !tokenizer.is_file() {
            None
        } else if !tokenizer.is_file() {
            return Err(no_tokenizer(path));
        } else {
            let settings = A::encoder_config(&config, options.max_len);
            let encoder = TextEncoder::from_file(&tokenizer, settings)
                .context(|| format!("loading {}", tokenizer.display()))?;
            Some(Arc::new(encoder))
        };
        Ok(Self {
            path: path.clone(),
            config,
            encoder,
            checkpoint: options.weights(path)?,
            fitted: false,
        })
    }

    fn accept<B: AutodiffBackend, V: ModelVisitor<B>>(&self, visitor: V) -> V::Output
    where
        Self: ModelKit<B>,
    {
        visitor.visit(self)
    }
}

impl<A, B> ModelKit<B> for ClassifierFamily<A>
where
    A: ClassifierArch,
    B: AutodiffBackend,
    A::Model<B>: TrainableModel<B> + AutodiffModule<B, InnerModule = A::Model<B::InnerBackend>>,
{
    type Model = A::Model<B>;

    fn build(&self, request: ModelRequest, device: &B::Device) -> Result<Self::Model> {
        request.reject_lora_rank()?;
        let config = if request.dropout {
            self.config.clone()
        } else {
            A::without_dropout(&self.config)
        };
        self.classifier::<B>(&config, self.checkpoint.clone(), !self.fitted, device)
            .context(|| format!("loading {}", self.path.display()))
    }

    fn inference(&self, device: &B::Device) -> Result<InnerModel<B, Self::Model>> {
        <Self as ModelKit<B>>::load(self, self.checkpoint.clone(), device)
            .context(|| format!("loading {}", self.path.display()))
    }

    fn load(&self, weights: Checkpoint, device: &B::Device) -> Result<InnerModel<B, Self::Model>> {
        let config = A::without_dropout(&self.config);
        self.classifier::<B::InnerBackend>(&config, weights, true, device)
    }

    fn export(&self, model: &InnerModel<B, Self::Model>, out: &ExportDirs) -> Result<()> {
        Ok(A::export(model, &self.config, &out.model, &self.path)?)
    }

    fn predict(
        &self,
        model: &InnerModel<B, Self::Model>,
        job: &PredictJob<'_, B::Device>,
    ) -> Result<Vec<Prediction>> {
        classify(model, self.encoder()?, &self.labels(), job)
    }
}

/// The labels or scores of the job's rows by `model`, in row order.
fn classify<B: Backend, M: SequenceClassifier<B>>(
    model: &M,
    encoder: &TextEncoder,
    labels: &[String],
    job: &PredictJob<'_, B::Device>,
) -> Result<Vec<Prediction>> {
    let regression = model.problem_type() == ProblemType::Regression;
    let batcher = job.batcher(encoder.pad_id(), |_, texts| encoder.encode(texts))?;
    let mut logits_by_row: Vec<Option<Vec<f32>>> = vec![None; job.rows.len()];
    for batch in batcher.epoch(0) {
        let logits = model.sequence_logits(&encoder_input(&batch, job.device)?)?;
        let [n, width] = logits.dims();
        let flat = logits
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| CoreError::TensorData(format!("{e:?}")))?;
        for r in 0..n {
            logits_by_row[batch.example_indices[r]] =
                Some(flat[r * width..(r + 1) * width].to_vec());
        }
    }
    logits_by_row
        .into_iter()
        .enumerate()
        .map(|(i, logits)| {
            let logits = logits.ok_or_else(|| {
                CoreError::InvalidInput(format!("row {} got no prediction", i + 1))
            })?;
            Ok(if regression {
                Prediction::Score {
                    score: logits.first().copied().unwrap_or(f32::NAN),
                    logits,
                }
            } else {
                let probabilities = softmax(&logits);
                let best = probabilities.iter().enumerate().fold(0, |best, (j, &p)| {
                    if p > probabilities[best] { j } else { best }
                });
                Prediction::Class {
                    label: labels
                        .get(best)
                        .cloned()
                        .unwrap_or_else(|| best.to_string()),
                    probabilities,
                    logits,
                }
            })
        })
        .collect()
}

/// Softmax in f64 with the maximum subtracted (no overflow for large logits).
pub fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits
        .iter()
        .map(|&x| x as f64)
        .fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = logits.iter().map(|&x| (x as f64 - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// Whether the label names are `transformers`' placeholders (`LABEL_0`, `LABEL_1`, ...).
fn placeholder_labels(labels: &[String]) -> bool {
    labels
        .iter()
        .enumerate()
        .all(|(i, l)| *l == format!("LABEL_{i}"))
}

/// The config for training data of `kind`: the model's, with the data's labels; and whether the
/// model's own head can be kept (same labels in the same order, or placeholder names of the same
/// count).
fn labelled<A: ClassifierArch>(
    config: &A::Config,
    current: &[String],
    kind: &TaskKind,
) -> Result<(A::Config, bool)> {
    match kind {
        TaskKind::Classification { labels } if labels.len() < 2 => {
            Err(CoreError::InvalidInput(format!(
                "the training data has a single class {labels:?}: a classifier needs at least two \
                 (check label_field, a `keep` filter or the split; for real-valued targets set \
                 `regression = true`)"
            )))
        }
        TaskKind::Classification { labels } => {
            let keep =
                labels == current || (placeholder_labels(current) && labels.len() == current.len());
            Ok((A::with_labels(config, labels), keep))
        }
        TaskKind::Regression => Ok((A::regression(config), current.len() == 1)),
        other => Err(not_a_classification(other)),
    }
}

fn not_a_classification(kind: &TaskKind) -> CoreError {
    CoreError::Unsupported(format!(
        "a sequence classifier cannot score {kind:?}: use a classification or regression \
         dataset, or a T5 or LLaMA-family model for generation, extractive QA and multiple choice"
    ))
}

/// Puts the dataset's classes in the model's output order (`model` its label names).
/// Placeholder model labels (`LABEL_i`) accept the dataset's order when the counts agree; named
/// labels must be the same set. Regression data needs a one-output model.
pub fn align_labels(dataset: Dataset, model: &[String]) -> Result<Dataset> {
    match &dataset.task.kind {
        TaskKind::Classification { labels } => {
            if labels == model || (placeholder_labels(model) && labels.len() == model.len()) {
                return Ok(dataset);
            }
            let mut a = labels.clone();
            let mut b = model.to_vec();
            a.sort();
            b.sort();
            if a != b {
                return Err(CoreError::InvalidInput(format!(
                    "the model's labels {model:?} (config.json id2label) are not the data's \
                     labels {labels:?}"
                )));
            }
            Ok(with_label_order(dataset, model)?)
        }
        TaskKind::Regression if model.len() == 1 => Ok(dataset),
        TaskKind::Regression => Err(CoreError::InvalidInput(format!(
            "the data is a regression task but the model has {} outputs {model:?}",
            model.len()
        ))),
        TaskKind::SpanQa { .. } => Err(CoreError::Unsupported(format!(
            "a sequence classifier cannot answer {} (extractive QA): bomf answers SQuAD by \
             generation, with a T5 or LLaMA-family model (see configs/squad-t5.toml)",
            dataset.task.name
        ))),
        other => Err(not_a_classification(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::softmax;

    #[test]
    fn softmax_is_stable_and_sums_to_one() {
        let p = softmax(&[1000.0, 1000.0]);
        assert!((p[0] - 0.5).abs() < 1e-12 && (p[1] - 0.5).abs() < 1e-12);
        let p = softmax(&[0.0, (2.0f32).ln()]);
        assert!((p[1] - 2.0 / 3.0).abs() < 1e-6, "{p:?}");
    }
}
