//! `bomf predict`: per-example outputs of a classifier folder for a JSONL file, one output line
//! per input line, in input order.
//!
//! Classifiers write `{"label", "probabilities", "logits"}` (probabilities are the softmax of
//! the logits; `label` is the `id2label` name of the largest logit); regression models write
//! `{"score", "logits"}`. Generative models (T5, LLaMA; a folder or a LLaMA `.gguf`) write
//! `{"generated_text"}`: the continuation of the prompt (the text fields joined by newlines, then
//! a newline, as in training), greedy or by beam search (`--num-beams`). Every input line must
//! be a JSON object holding the text field(s); a line that is not is an error naming the file
//! and line, and nothing is written.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bomf_core::family::{OpenOptions, Prediction, open};
use bomf_core::run_config::GenerationSection;
use bomf_core::rundir::write_atomic;
use clap::Args;
use serde_json::Value;

use crate::device::{DeviceSpec, with_backend};
use crate::eval::{InferenceArgs, adapter_context};

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    bomf predict --model runs/sst2/fused --input reviews.jsonl --out predictions.jsonl\n  \
    bomf predict --model my-nli-model --input pairs.jsonl --out out.jsonl --text-field premise --text-field hypothesis\n  \
    bomf predict --model smollm2.gguf --adapter runs/e2e/fused-adapter --input mrs.jsonl --out out.jsonl\n\n\
    Input: one JSON object per line, e.g. {\"text\": \"a gripping film\"} (other fields are ignored).\n\
    Output: one line per input line, e.g.\n  \
    {\"label\": \"positive\", \"probabilities\": [0.08, 0.92], \"logits\": [-1.2, 1.24]}\n\
    or, for a generative model (T5, LLaMA),\n  \
    {\"generated_text\": \"Alpha serves Thai food in the riverside.\"}")]
pub struct PredictArgs {
    /// A fine-tuned Hugging Face folder (config.json, model.safetensors, tokenizer.json).
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// A peft LoRA adapter folder (adapter_config.json + adapter_model.safetensors) to apply to
    /// --model, a LLaMA-family base.
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,
    /// JSONL input, one object per line.
    #[arg(long, value_name = "FILE.jsonl")]
    pub input: PathBuf,
    /// JSONL output (overwritten).
    #[arg(long, value_name = "FILE.jsonl")]
    pub out: PathBuf,
    /// The field holding the text; repeat it for a text pair (in the model's input order). With
    /// the one field `text`, a line that also has `text_pair` is a sentence pair, line by line
    /// (the input convention of transformers' pipelines).
    #[arg(long = "text-field", value_name = "NAME", default_value = "text")]
    pub text_fields: Vec<String>,
    #[command(flatten)]
    pub inference: InferenceArgs,
    /// Generative models: beam search with this many beams (1: greedy decoding).
    #[arg(long, default_value_t = 1)]
    pub num_beams: usize,
    /// `cpu` or `cuda:N` (a build with `--features cuda`).
    #[arg(long, value_name = "cpu|cuda:N", default_value = "cpu")]
    pub device: DeviceSpec,
}

/// The field that makes a `text` line a sentence pair (transformers' pipeline convention).
const TEXT_PAIR: &str = "text_pair";

/// The texts of every line of a JSONL file, or an error naming the first bad line.
fn read_inputs(path: &Path, fields: &[String]) -> Result<Vec<Vec<String>>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let pipeline_pairs = fields == ["text"];
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let at = format!("{}:{}", path.display(), i + 1);
        if line.trim().is_empty() {
            bail!("{at}: empty line (each line must be one JSON object, so outputs stay aligned)");
        }
        let value: Value =
            serde_json::from_str(line).with_context(|| format!("{at}: invalid JSON"))?;
        let Value::Object(obj) = value else {
            bail!("{at}: expected a JSON object, found {value}");
        };
        let mut texts = Vec::with_capacity(fields.len() + 1);
        let pair = pipeline_pairs && obj.contains_key(TEXT_PAIR);
        let pair_field = [TEXT_PAIR.to_string()];
        let fields = fields
            .iter()
            .chain(pair.then_some(&pair_field).into_iter().flatten());
        for field in fields {
            match obj.get(field) {
                Some(Value::String(s)) => texts.push(s.clone()),
                Some(other) => bail!("{at}: field `{field}` should be text, found {other}"),
                None => bail!("{at}: missing field `{field}` (choose it with --text-field)"),
            }
        }
        rows.push(texts);
    }
    if rows.is_empty() {
        bail!("{} has no lines to predict", path.display());
    }
    Ok(rows)
}

/// `--out` naming the `--input` file (by another path or a hard link too) would replace the
/// inputs with the predictions.
fn refuse_overwriting_the_input(input: &Path, out: &Path) -> Result<()> {
    let (Ok(a), Ok(b)) = (std::fs::metadata(input), std::fs::metadata(out)) else {
        return Ok(()); // `--out` does not exist yet (or the input is missing: said when read)
    };
    #[cfg(unix)]
    let same = {
        use std::os::unix::fs::MetadataExt;
        (a.dev(), a.ino()) == (b.dev(), b.ino())
    };
    #[cfg(not(unix))]
    let same = {
        let _ = (a, b);
        std::fs::canonicalize(input).ok() == std::fs::canonicalize(out).ok()
    };
    if same {
        bail!(
            "--out {} is the input file {}: the predictions would replace the inputs; write them \
             to another file",
            out.display(),
            input.display()
        );
    }
    Ok(())
}

pub fn run(args: PredictArgs) -> Result<()> {
    args.inference.validate()?;
    if args.text_fields.is_empty() || args.text_fields.len() > 2 {
        bail!("--text-field must be given once (single text) or twice (a pair)");
    }
    if args.inference.max_new_tokens == 0 || args.num_beams == 0 {
        bail!("--max-new-tokens and --num-beams must be at least 1");
    }
    refuse_overwriting_the_input(&args.input, &args.out)?;
    let rows = read_inputs(&args.input, &args.text_fields)?;
    let options = OpenOptions {
        max_len: args.inference.max_len,
        generation: GenerationSection {
            num_beams: args.num_beams,
            ..args.inference.generation()
        },
        adapter: args.adapter.clone(),
        ..OpenOptions::default()
    };
    let model = open(&args.model, &options).map_err(|e| adapter_context(e, &args.adapter))?;
    let predictions = with_backend!(args.device, |B, device| {
        Ok(model
            .predict::<B>(&rows, args.inference.batch_size, &device)
            .with_context(|| format!("predicting for {}", args.input.display()))?)
    })?;
    let mut out = Vec::new();
    for prediction in &predictions {
        serde_json::to_writer(&mut out, prediction)?;
        out.push(b'\n');
    }
    write_atomic(&args.out, &out).with_context(|| format!("writing {}", args.out.display()))?;
    let what = match predictions.first() {
        Some(Prediction::Text { .. }) => "generations",
        _ => "predictions",
    };
    eprintln!("wrote {} {what} to {}", rows.len(), args.out.display());
    Ok(())
}
