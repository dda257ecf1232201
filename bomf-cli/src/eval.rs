//! `bomf eval`: the loss and every metric of a fine-tuned model on one split, as JSON: a
//! classifier folder on classification/regression data, or a T5/LLaMA folder (or LLaMA `.gguf`)
//! on generation data (ROUGE/BLEU of greedy generations) or multiple-choice data (accuracy).
//!
//! The data comes from a [`DataSpec`] (a TOML file), a BIG-bench task folder of your own, or a
//! single labelled file; [`DataArgs`] turns the flags into a spec so every command reads data
//! the same way.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use bomf_core::family::{OpenOptions, open};
use bomf_core::run_config::{DEFAULT_MAX_NEW_TOKENS, GenerationSection};
use bomf_data::readers::tabular::TabularFormat;
use bomf_data::spec::{DataFormat, DataSpec, SplitName, SplitSpec};
use clap::Args;

use crate::device::{DeviceSpec, with_backend};

/// Where the data comes from: exactly one of `--data`, `--bigbench`, `--file`.
#[derive(Debug, Args)]
#[group(required = true, multiple = false, id = "source")]
pub struct DataSource {
    /// A data spec (TOML): the spec itself or a run config's `[data]` table. Relative paths in
    /// it are relative to the file.
    #[arg(long, value_name = "SPEC.toml", group = "source")]
    pub data: Option<PathBuf>,
    /// A BIG-bench task of your own: its folder or its `task.json`. Split 80/10/10 by hash rank
    /// unless `--counts` is given.
    #[arg(long, value_name = "DIR|task.json", group = "source")]
    pub bigbench: Option<PathBuf>,
    /// One labelled JSONL/CSV/TSV file, scored as a whole (the format comes from the extension).
    #[arg(long, value_name = "FILE", group = "source")]
    pub file: Option<PathBuf>,
}

/// Options that shape the data of `--bigbench` and `--file`.
#[derive(Debug, Args)]
pub struct DataOptions {
    /// `--bigbench`: exact train,validation,test counts (by hash rank) instead of 80/10/10.
    #[arg(long, value_name = "T,V,E", value_delimiter = ',')]
    pub counts: Option<Vec<usize>>,
    /// `--bigbench`: the seed of the split (changing it reshuffles which examples go where).
    #[arg(long, default_value_t = 0)]
    pub split_seed: u64,
    /// `--file`: the input column (repeat for a text pair).
    #[arg(long = "text-field", value_name = "NAME", default_value = "text")]
    pub text_fields: Vec<String>,
    /// `--file`: the label column.
    #[arg(long, value_name = "NAME", default_value = "label")]
    pub label_field: String,
}

impl DataSource {
    /// The data spec these flags describe.
    pub fn to_spec(&self, options: &DataOptions) -> Result<DataSpec> {
        if let Some(path) = &self.data {
            return DataSpec::from_file(path)
                .with_context(|| format!("reading the data spec {}", path.display()));
        }
        if let Some(task) = &self.bigbench {
            let split = match &options.counts {
                Some(c) if c.len() == 3 => SplitSpec::ByRank {
                    train: c[0],
                    validation: c[1],
                    test: c[2],
                    seed: options.split_seed,
                },
                Some(c) => bail!("--counts takes three numbers (train,validation,test), got {c:?}"),
                None => SplitSpec::Fractions {
                    train: 0.8,
                    validation: 0.1,
                    test: 0.1,
                    seed: options.split_seed,
                },
            };
            let mut spec = DataSpec::new(DataFormat::Bigbench, split);
            spec.path = Some(task.clone());
            return Ok(spec);
        }
        if let Some(file) = &self.file {
            let format = match TabularFormat::from_path(file)? {
                TabularFormat::Jsonl => DataFormat::Jsonl,
                TabularFormat::Csv => DataFormat::Csv,
                TabularFormat::Tsv => DataFormat::Tsv,
            };
            // The whole file is the split being scored, whichever is asked for.
            let mut spec = DataSpec::new(
                format,
                SplitSpec::Files {
                    train: Some(file.clone()),
                    validation: Some(file.clone()),
                    test: Some(file.clone()),
                },
            );
            spec.text_fields = Some(options.text_fields.clone());
            spec.label_field = Some(options.label_field.clone());
            return Ok(spec);
        }
        bail!("give the data with --data SPEC.toml, --bigbench DIR or --file FILE")
    }
}

/// How `bomf eval` and `bomf predict` run the model: examples per pass, input length and the
/// length of generations.
#[derive(Debug, Args)]
pub struct InferenceArgs {
    /// Examples per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Maximum input length in tokens; longer inputs are truncated (default: 128 for a
    /// classifier, 256 for a generative model, or the model's limit when smaller).
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Generative models: the most tokens a generation may add.
    #[arg(long, default_value_t = DEFAULT_MAX_NEW_TOKENS)]
    pub max_new_tokens: usize,
}

impl InferenceArgs {
    /// An error for a batch size of 0.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            bail!("--batch-size must be at least 1");
        }
        Ok(())
    }

    /// The generation settings of `--max-new-tokens`, the rest at their defaults.
    pub fn generation(&self) -> GenerationSection {
        GenerationSection {
            max_new_tokens: self.max_new_tokens,
            ..GenerationSection::default()
        }
    }
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    bomf eval --model runs/mrpc/fused --data configs/data/mrpc.toml --split test\n  \
    bomf eval --model my-model --bigbench bigbench/multiemo/all_sentence_en --counts 3000,400,1000 --split validation\n  \
    bomf eval --model my-model --file held_out.jsonl --text-field review --label-field stars\n\n\
    bomf eval --model runs/e2e/fused --data configs/e2e-smollm2-lora.toml --split test\n  \
    bomf eval --model smollm2.gguf --adapter runs/e2e/fused-adapter --data e2e.toml --split test\n\n\
    Prints one JSON object on stdout: {\"loss\": 0.41, \"metrics\": {\"accuracy\": 0.87, ...}, \"num_examples\": 408}.\n\
    The loss is the mean cross-entropy (MSE for regression) over examples; metrics are computed\n\
    over the whole split. The model's id2label decides which output is which class.\n\
    Generative models (T5, LLaMA; config.json model_type, or a .gguf file): the loss is the mean\n\
    token cross-entropy of the targets (the first reference; every option for multiple choice),\n\
    generation metrics come from greedy generations of at most --max-new-tokens tokens.")]
pub struct EvalArgs {
    /// A fine-tuned Hugging Face folder (config.json, model.safetensors, tokenizer.json), e.g.
    /// the output of `bomf fuse`.
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// A peft LoRA adapter folder (adapter_config.json + adapter_model.safetensors) to apply to
    /// --model, a LLaMA-family base (e.g. a run's fused-adapter/, or one saved by peft).
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,
    #[command(flatten)]
    pub source: DataSource,
    #[command(flatten)]
    pub options: DataOptions,
    /// Which split to score: train, validation or test.
    #[arg(long, default_value = "validation")]
    pub split: SplitName,
    #[command(flatten)]
    pub inference: InferenceArgs,
    /// T5: maximum target length in tokens (default 64).
    #[arg(long)]
    pub max_target_len: Option<usize>,
    /// `cpu` or `cuda:N` (a build with `--features cuda`).
    #[arg(long, value_name = "cpu|cuda:N", default_value = "cpu")]
    pub device: DeviceSpec,
}

/// An error opening a model with `--adapter`, naming the flag.
pub fn adapter_context(err: bomf_core::CoreError, adapter: &Option<PathBuf>) -> anyhow::Error {
    match adapter {
        Some(adapter) => {
            anyhow::Error::from(err).context(format!("--adapter {}", adapter.display()))
        }
        None => err.into(),
    }
}

pub fn run(args: EvalArgs) -> Result<()> {
    args.inference.validate()?;
    let spec = args.source.to_spec(&args.options)?;
    let options = OpenOptions {
        max_len: args.inference.max_len,
        max_target_len: args.max_target_len,
        generation: args.inference.generation(),
        adapter: args.adapter.clone(),
        ..OpenOptions::default()
    };
    let model = open(&args.model, &options).map_err(|e| adapter_context(e, &args.adapter))?;
    let dataset = model
        .data_spec(spec)
        .load_split(args.split)
        .with_context(|| format!("loading the {} split", args.split))?;
    let set = model
        .eval_set(&dataset, args.inference.batch_size)
        .with_context(|| format!("the {} split", args.split))?;
    let evaluation = with_backend!(args.device, |B, device| {
        Ok(model.evaluate::<B>(&set, &device)?)
    })?;
    println!("{}", serde_json::to_string(&evaluation)?);
    Ok(())
}
