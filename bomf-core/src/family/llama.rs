//! The LLaMA family: causal LMs from an HF folder or a llama.cpp `.gguf` file (whose embedded
//! tokenizer is used), trained on every weight or, with a LoRA config, through adapters
//! ([`LoraKit`], whose model is a [`LoraLlama`]: the adapters are its only parameters). An
//! adapter folder given when opening is merged into the weights (`W + s·B·A`, peft's
//! `merge_and_unload`).

use std::path::{Path, PathBuf};

use bomf_data::batch::Item;
use bomf_data::spec::DataSpec;
use bomf_data::task::Dataset;
use bomf_data::tokenize::{EncoderConfig, ModelFamily, SpecialTokenNames};
use bomf_models::gguf::GgufFile;
use bomf_models::llama::{export_llama, load_llama_checkpoint};
use bomf_models::lora::LoraConfig;
use bomf_models::params::{Coverage, set_tensors};
use bomf_models::weights::Checkpoint;
use bomf_models::{LlamaConfig, LlamaForCausalLM, LlamaLoraAdapters};
use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};

use super::generative::{
    DEFAULT_GENERATIVE_MAX_LEN, GenerativeText, first_id, folder_tokenizer, generation_config,
    generative_spec, parse_tokenizer, text_family_methods, text_kit_methods, token_name,
};
use super::{
    ExportDirs, Family, ModelKit, ModelVisitor, OpenFamily, OpenOptions, PredictJob, Prediction,
    Probe,
};
use crate::error::{CoreError, Result, ResultExt};
use crate::eval::EvalSet;
use crate::generative::LoraLlama;
use crate::model::{InnerModel, ModelRequest};
use crate::trajectory::Trajectory;

/// A LLaMA-family model opened from an HF folder or a `.gguf` file.
pub struct LlamaFamily {
    path: PathBuf,
    config: LlamaConfig,
    text: GenerativeText,
    checkpoint: Checkpoint,
    /// Train these adapters instead of every weight.
    lora: Option<LoraConfig>,
    /// A peft adapter folder merged into the weights.
    adapter: Option<PathBuf>,
}

impl LlamaFamily {
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    pub fn text(&self) -> &GenerativeText {
        &self.text
    }

    /// The model with `weights`, the adapter folder (if any) merged in.
    fn model<B: Backend>(
        &self,
        weights: Checkpoint,
        device: &B::Device,
    ) -> Result<LlamaForCausalLM<B>> {
        let model = load_llama_checkpoint::<B>(&self.config, weights, device)?;
        let Some(adapter) = &self.adapter else {
            return Ok(model);
        };
        let adapters =
            LlamaLoraAdapters::<B>::load(adapter, &self.config, device).context(|| {
                format!(
                    "loading the peft adapter folder {} for this model",
                    adapter.display()
                )
            })?;
        Ok(adapters.merge_into(model)?)
    }

    /// The config, weights and tokenizer JSON of a `.gguf` file.
    fn read_gguf(path: &Path) -> Result<(LlamaConfig, Checkpoint, String)> {
        let file = GgufFile::open(path).context(|| format!("opening {}", path.display()))?;
        let config = file
            .llama_config()
            .context(|| format!("{}: reading the LLaMA config", path.display()))?;
        let checkpoint = file
            .hf_checkpoint(&config)
            .context(|| format!("{}: reading the weights", path.display()))?;
        let tokenizer = file
            .tokenizer_json()
            .context(|| format!("{}: reading the embedded tokenizer", path.display()))?;
        let json = serde_json::to_string(&tokenizer)
            .map_err(|e| CoreError::file(path, format!("the embedded tokenizer: {e}")))?;
        Ok((config, checkpoint, json))
    }

    /// The config, weights (unless opened config-only), tokenizer JSON and source folder of a
    /// model.
    fn read(
        probe: &Probe,
        options: &OpenOptions,
    ) -> Result<(LlamaConfig, Checkpoint, String, Option<PathBuf>)> {
        let path = &probe.path;
        if probe.gguf {
            let (config, checkpoint, json) = Self::read_gguf(path)?;
            return Ok((config, checkpoint, json, None));
        }
        let config_path = path.join("config.json");
        let config = LlamaConfig::from_file(&config_path)
            .context(|| format!("reading {}", config_path.display()))?;
        let json = folder_tokenizer(path)?;
        Ok((config, options.weights(path)?, json, Some(path.clone())))
    }
}

impl Family for LlamaFamily {
    fn describe(&self) -> String {
        "a LLaMA-family model".into()
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn adapts(&self) -> bool {
        true
    }

    text_family_methods!();
}

impl OpenFamily for LlamaFamily {
    const SUPPORTED: &'static str = "the LLaMA family (model_type llama, or a .gguf file)";

    fn claims(probe: &Probe) -> bool {
        probe.gguf || probe.is_one_of(&["llama"])
    }

    fn open(probe: &Probe, options: &OpenOptions) -> Result<Self> {
        let path = &probe.path;
        let (config, checkpoint, json, folder) = Self::read(probe, options)?;
        let tokenizer = parse_tokenizer(path, &json)?;
        let limit = config.max_position_embeddings;
        let max_len = options
            .max_len
            .unwrap_or(DEFAULT_GENERATIVE_MAX_LEN.min(limit));
        let mut settings = EncoderConfig::new(ModelFamily::Llama, max_len);
        settings.model_max_length = Some(limit);
        settings.model_vocab_size = Some(config.vocab_size);
        let eos = config.eos_token_ids();
        // SmolLM2 names its BOS/EOS `<|im_start|>` / `<|im_end|>`: take the names from the
        // config's ids rather than assuming `<s>` / `</s>`. Padding is EOS (masked anyway).
        settings.special_tokens = SpecialTokenNames {
            start: token_name(&tokenizer, first_id(config.bos_token_id.as_ref())),
            end: token_name(&tokenizer, eos.first().copied()),
            pad: None,
        };
        let generation = generation_config(&options.generation, eos, 0);
        let mut text = GenerativeText::new(path, tokenizer, settings, generation, json, folder)?;
        text.generation.pad_token_id = i64::from(text.encoder.pad_id());
        Ok(Self {
            path: path.clone(),
            config,
            text,
            checkpoint,
            lora: options.lora.clone(),
            adapter: options.adapter.clone(),
        })
    }

    fn accept<B: AutodiffBackend, V: ModelVisitor<B>>(&self, visitor: V) -> V::Output
    where
        Self: ModelKit<B>,
    {
        match &self.lora {
            None => visitor.visit(self),
            Some(lora) => visitor.visit(&LoraKit { llama: self, lora }),
        }
    }
}

impl<B: AutodiffBackend> ModelKit<B> for LlamaFamily {
    type Model = LlamaForCausalLM<B>;

    fn build(&self, request: ModelRequest, device: &B::Device) -> Result<Self::Model> {
        request.reject_lora_rank()?;
        self.model::<B>(self.checkpoint.clone(), device)
    }

    fn inference(&self, device: &B::Device) -> Result<InnerModel<B, Self::Model>> {
        self.model::<B::InnerBackend>(self.checkpoint.clone(), device)
            .context(|| format!("loading {}", self.path.display()))
    }

    fn load(&self, weights: Checkpoint, device: &B::Device) -> Result<InnerModel<B, Self::Model>> {
        Ok(load_llama_checkpoint::<B::InnerBackend>(
            &self.config,
            weights,
            device,
        )?)
    }

    text_kit_methods!(export_llama);
}

/// A LLaMA trained through LoRA adapters of `lora`: its models are [`LoraLlama`]s, whose
/// parameters (what is trained, kept, fused and saved) are the adapters alone.
pub struct LoraKit<'a> {
    pub llama: &'a LlamaFamily,
    pub lora: &'a LoraConfig,
}

impl<B: AutodiffBackend> ModelKit<B> for LoraKit<'_> {
    type Model = LoraLlama<B>;

    /// A frozen LLaMA with fresh adapters, at `request.lora_rank` when given (the same update
    /// scale).
    fn build(&self, request: ModelRequest, device: &B::Device) -> Result<Self::Model> {
        let lora = match request.lora_rank {
            Some(rank) => self.lora.clone().with_rank(rank),
            None => self.lora.clone(),
        };
        let lora = if request.dropout {
            lora
        } else {
            lora.without_dropout()
        };
        let llama = self.llama;
        let adapters = LlamaLoraAdapters::<B>::new(&lora, &llama.config, device)?;
        LoraLlama::new(
            llama.model::<B>(llama.checkpoint.clone(), device)?,
            adapters,
        )
    }

    fn inference(&self, device: &B::Device) -> Result<InnerModel<B, Self::Model>> {
        let model = self.build(ModelRequest::FROZEN, device)?;
        Ok(AutodiffModule::<B>::valid(&model))
    }

    /// The adapters of `weights` (peft names) on the frozen base.
    fn load(&self, weights: Checkpoint, device: &B::Device) -> Result<InnerModel<B, Self::Model>> {
        let template = <Self as ModelKit<B>>::inference(self, device)?;
        Ok(set_tensors(
            template,
            &weights.tensors,
            Coverage::All,
            device,
        )?)
    }

    /// The adapters merged into the base model (a plain LLaMA folder), and the adapters alone in
    /// `out.adapter` (peft's format).
    fn export(&self, model: &InnerModel<B, Self::Model>, out: &ExportDirs) -> Result<()> {
        let llama = self.llama;
        export_llama(&model.merged()?, &llama.config, &out.model, None)?;
        llama.text.write_tokenizer(&out.model)?;
        if let Some(dir) = &out.adapter {
            model
                .adapters
                .save(dir)
                .context(|| format!("writing {}", dir.display()))?;
        }
        Ok(())
    }

    fn predict(
        &self,
        model: &InnerModel<B, Self::Model>,
        job: &PredictJob<'_, B::Device>,
    ) -> Result<Vec<Prediction>> {
        self.llama.text.generate(model, job)
    }

    /// Each kept checkpoint as a peft adapter folder `adapter-<step>/` (the adapters are small),
    /// and the tokenizer.
    fn describe_trajectory(
        &self,
        trajectory: &Trajectory,
        dir: &Path,
        device: &B::Device,
    ) -> Result<()> {
        let template = <Self as ModelKit<B>>::inference(self, device)?;
        for (k, kept) in trajectory.kept.iter().enumerate() {
            let mut one_hot = vec![0.0; trajectory.kept.len()];
            one_hot[k] = 1.0;
            let adapters = trajectory
                .checkpoints
                .fused_model::<B::InnerBackend, _>(template.clone(), &one_hot, device)?
                .adapters;
            let out = dir.join(format!("adapter-{:06}", kept.step));
            adapters
                .save(&out)
                .context(|| format!("writing {}", out.display()))?;
        }
        self.llama.text.write_tokenizer(dir)
    }
}
