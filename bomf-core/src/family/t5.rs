//! T5 (v1.0 and v1.1): seq2seq generation from an HF folder.

use std::path::{Path, PathBuf};

use bomf_data::batch::Item;
use bomf_data::spec::DataSpec;
use bomf_data::task::Dataset;
use bomf_data::tokenize::{EncoderConfig, ModelFamily, SpecialTokenNames};
use bomf_models::t5::{export_t5, load_t5_checkpoint};
use bomf_models::weights::Checkpoint;
use bomf_models::{T5Config, T5ForConditionalGeneration};
use burn::tensor::backend::AutodiffBackend;

use super::generative::{
    DEFAULT_GENERATIVE_MAX_LEN, DEFAULT_MAX_TARGET_LEN, GenerativeText, folder_tokenizer,
    generation_config, generative_spec, parse_tokenizer, text_family_methods, text_kit_methods,
    token_name,
};
use super::{
    ExportDirs, Family, ModelKit, ModelVisitor, OpenFamily, OpenOptions, PredictJob, Prediction,
    Probe,
};
use crate::error::{Result, ResultExt};
use crate::eval::EvalSet;
use crate::model::{InnerModel, ModelRequest};

/// A T5 opened from an HF folder.
pub struct T5Family {
    path: PathBuf,
    config: T5Config,
    text: GenerativeText,
    checkpoint: Checkpoint,
}

impl T5Family {
    pub fn config(&self) -> &T5Config {
        &self.config
    }

    pub fn text(&self) -> &GenerativeText {
        &self.text
    }

    fn model<B: burn::tensor::backend::Backend>(
        &self,
        weights: Checkpoint,
        dropout: bool,
        device: &B::Device,
    ) -> Result<T5ForConditionalGeneration<B>> {
        let config = if dropout {
            self.config.clone()
        } else {
            self.config.clone().without_dropout()
        };
        Ok(load_t5_checkpoint::<B>(&config, weights, device)?)
    }
}

impl Family for T5Family {
    fn describe(&self) -> String {
        "a T5 model".into()
    }

    fn path(&self) -> &Path {
        &self.path
    }

    text_family_methods!();
}

impl OpenFamily for T5Family {
    const SUPPORTED: &'static str = "T5 (model_type t5)";

    fn claims(probe: &Probe) -> bool {
        !probe.gguf && probe.is_one_of(&["t5"])
    }

    fn open(probe: &Probe, options: &OpenOptions) -> Result<Self> {
        let path = &probe.path;
        let config_path = path.join("config.json");
        let config = T5Config::from_file(&config_path)
            .context(|| format!("reading {}", config_path.display()))?;
        let json = folder_tokenizer(path)?;
        let tokenizer = parse_tokenizer(path, &json)?;
        let max_len = options.max_len.unwrap_or(DEFAULT_GENERATIVE_MAX_LEN);
        let mut settings = EncoderConfig::new(ModelFamily::T5, max_len);
        settings.max_target_length = Some(options.max_target_len.unwrap_or(DEFAULT_MAX_TARGET_LEN));
        settings.model_vocab_size = Some(config.vocab_size);
        let eos = config.eos_token_ids();
        settings.special_tokens = SpecialTokenNames {
            start: None,
            end: token_name(&tokenizer, eos.first().copied()),
            pad: token_name(&tokenizer, config.pad_token_id),
        };
        let pad = config.pad_token_id.unwrap_or(0);
        let generation = generation_config(&options.generation, eos, pad);
        let text = GenerativeText::new(
            path,
            tokenizer,
            settings,
            generation,
            json,
            Some(path.clone()),
        )?;
        Ok(Self {
            path: path.clone(),
            config,
            text,
            checkpoint: options.weights(path)?,
        })
    }

    fn accept<B: AutodiffBackend, V: ModelVisitor<B>>(&self, visitor: V) -> V::Output
    where
        Self: ModelKit<B>,
    {
        visitor.visit(self)
    }
}

impl<B: AutodiffBackend> ModelKit<B> for T5Family {
    type Model = T5ForConditionalGeneration<B>;

    fn build(&self, request: ModelRequest, device: &B::Device) -> Result<Self::Model> {
        request.reject_lora_rank()?;
        self.model::<B>(self.checkpoint.clone(), request.dropout, device)
    }

    fn inference(&self, device: &B::Device) -> Result<InnerModel<B, Self::Model>> {
        <Self as ModelKit<B>>::load(self, self.checkpoint.clone(), device)
            .context(|| format!("loading {}", self.path.display()))
    }

    fn load(&self, weights: Checkpoint, device: &B::Device) -> Result<InnerModel<B, Self::Model>> {
        self.model::<B::InnerBackend>(weights, false, device)
    }

    text_kit_methods!(export_t5);
}
