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
use bomf_core::generative::{decode_generation, default_prompt};
use bomf_core::model::encoder_input;
use bomf_core::rundir::write_atomic;
use bomf_data::batch::{BatchConfig, Batcher, Item, ItemTarget};
use bomf_data::task::Example;
use bomf_models::bert::ProblemType;
use bomf_models::{
    BeamSearchConfig, CausalLmInput, LlamaForCausalLM, Seq2SeqInput, T5ForConditionalGeneration,
};
use burn::tensor::backend::Backend;
use clap::Args;
use serde_json::{Value, json};

use crate::device::{DeviceSpec, Inference, with_backend};
use crate::generative::{Arch, GenerativeModel, GenerativeOptions, family_of, open_generative};
use crate::model::{model_labels, open_classifier};

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
    /// Examples per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Maximum input length in tokens; longer inputs are truncated.
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Generative models: the most tokens a generation may add.
    #[arg(long, default_value_t = crate::generative::DEFAULT_MAX_NEW_TOKENS)]
    pub max_new_tokens: usize,
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

pub fn run(args: PredictArgs) -> Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    if args.text_fields.is_empty() || args.text_fields.len() > 2 {
        bail!("--text-field must be given once (single text) or twice (a pair)");
    }
    refuse_overwriting_the_input(&args.input, &args.out)?;
    let rows = read_inputs(&args.input, &args.text_fields)?;
    if family_of(&args.model).is_generative() {
        return predict_generative(&args, &rows);
    }
    if let Some(adapter) = &args.adapter {
        bail!(
            "--adapter {}: LoRA adapters apply to LLaMA-family models, and {} is a classifier",
            adapter.display(),
            args.model.display()
        );
    }
    with_backend!(args.device, |B, device| {
        predict_classifier::<Inference<B>>(&args, &rows, &device)
    })
}

/// `bomf predict` for a classifier, on `device`.
fn predict_classifier<B: Backend>(
    args: &PredictArgs,
    rows: &[Vec<String>],
    device: &B::Device,
) -> Result<()> {
    let loaded = open_classifier::<B>(&args.model, args.max_len, device)?;
    let labels = model_labels(&loaded.config);
    let regression = loaded.model.problem_type() == ProblemType::Regression;

    let mut items = Vec::with_capacity(rows.len());
    for (i, texts) in rows.iter().enumerate() {
        let encoded = loaded
            .encoder
            .encode(texts)
            .with_context(|| format!("{}:{}: tokenising", args.input.display(), i + 1))?;
        items.push(Item::new(encoded, ItemTarget::None));
    }
    let batcher = Batcher::new(
        items,
        loaded.encoder.pad_id(),
        BatchConfig::eval(args.batch_size),
    )?;
    let mut logits_by_row: Vec<Option<Vec<f32>>> = vec![None; rows.len()];
    for batch in batcher.epoch(0) {
        let input = encoder_input(&batch, device)?;
        let logits = loaded.model.sequence_logits(&input)?;
        let [n, width] = logits.dims();
        let flat = logits
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("reading logits: {e:?}"))?;
        for r in 0..n {
            logits_by_row[batch.example_indices[r]] =
                Some(flat[r * width..(r + 1) * width].to_vec());
        }
    }

    let mut out = Vec::new();
    for (i, logits) in logits_by_row.into_iter().enumerate() {
        let logits = logits.with_context(|| format!("line {} got no prediction", i + 1))?;
        let record = if regression {
            json!({"score": logits.first().copied().unwrap_or(f32::NAN), "logits": logits})
        } else {
            let probabilities = softmax(&logits);
            let best = probabilities.iter().enumerate().fold(0, |best, (j, &p)| {
                if p > probabilities[best] { j } else { best }
            });
            json!({
                "label": labels.get(best).cloned().unwrap_or_else(|| best.to_string()),
                "probabilities": probabilities,
                "logits": logits,
            })
        };
        serde_json::to_writer(&mut out, &record)?;
        out.push(b'\n');
    }
    write_atomic(&args.out, &out).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("wrote {} predictions to {}", rows.len(), args.out.display());
    Ok(())
}

/// A loaded generative model, for decoding.
enum Generator<B: Backend> {
    T5(Box<T5ForConditionalGeneration<B>>),
    Llama(Box<LlamaForCausalLM<B>>),
}

/// Rows padded to the longest: on the right for T5's encoder, on the left for a decoder-only
/// prompt (so every row continues from the last column).
fn pad_rows(rows: Vec<Vec<i64>>, pad: i64, left: bool) -> (Vec<Vec<i64>>, Vec<Vec<i64>>) {
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    rows.into_iter()
        .map(|row| {
            let n = width - row.len();
            let fill = std::iter::repeat_n(pad, n);
            let zeros = std::iter::repeat_n(0, n);
            let ones = std::iter::repeat_n(1, row.len());
            if left {
                (fill.chain(row).collect(), zeros.chain(ones).collect())
            } else {
                (
                    row.into_iter().chain(fill).collect(),
                    ones.chain(zeros).collect(),
                )
            }
        })
        .unzip()
}

/// `bomf predict` for a T5 or LLaMA model: one `{"generated_text"}` line per input line.
fn predict_generative(args: &PredictArgs, rows: &[Vec<String>]) -> Result<()> {
    if args.max_new_tokens == 0 || args.num_beams == 0 {
        bail!("--max-new-tokens and --num-beams must be at least 1");
    }
    let model: GenerativeModel = open_generative(
        &args.model,
        GenerativeOptions {
            max_len: args.max_len,
            max_target_len: None,
            max_new_tokens: Some(args.max_new_tokens),
        },
    )?;
    with_backend!(args.device, |B, device| {
        generate_on::<Inference<B>>(args, rows, &model, &device)
    })
}

/// The generations of `rows` on `device`, written to `--out`.
fn generate_on<B: Backend>(
    args: &PredictArgs,
    rows: &[Vec<String>],
    model: &GenerativeModel,
    device: &B::Device,
) -> Result<()> {
    let generator = match (&model.arch, &args.adapter) {
        (_, Some(adapter)) => {
            Generator::Llama(Box::new(model.llama_with_adapter::<B>(adapter, device)?))
        }
        (Arch::T5(_), None) => Generator::T5(Box::new(model.t5::<B>(false, device)?)),
        (Arch::Llama(_), None) => Generator::Llama(Box::new(model.llama::<B>(device)?)),
    };
    let config = &model.generation;
    let beam = BeamSearchConfig::new(args.num_beams, args.max_new_tokens);
    let mut out = Vec::new();
    for (chunk_index, chunk) in rows.chunks(args.batch_size).enumerate() {
        let mut ids = Vec::with_capacity(chunk.len());
        for (j, texts) in chunk.iter().enumerate() {
            let line = chunk_index * args.batch_size + j + 1;
            let example = Example {
                id: line.to_string(),
                inputs: texts.clone(),
                options: Vec::new(),
                target: None,
            };
            let encoded = model
                .encoder
                .encode(&[default_prompt(&example)])
                .with_context(|| format!("{}:{line}: tokenising", args.input.display()))?;
            ids.push(encoded.ids.iter().map(|&t| i64::from(t)).collect());
        }
        let generated = match &generator {
            Generator::T5(m) => {
                let (input_ids, attention_mask) = pad_rows(ids, config.pad_token_id, false);
                let input = Seq2SeqInput {
                    input_ids,
                    attention_mask,
                };
                if args.num_beams > 1 {
                    m.generate_beam(&input, &beam, &config.eos_token_ids)?
                } else {
                    m.generate_greedy(
                        &input,
                        config.max_new_tokens,
                        &config.eos_token_ids,
                        config.pad_token_id,
                    )?
                }
            }
            Generator::Llama(m) => {
                let (input_ids, attention_mask) = pad_rows(ids, config.pad_token_id, true);
                let input = CausalLmInput {
                    input_ids,
                    attention_mask,
                };
                if args.num_beams > 1 {
                    m.generate_beam(&input, &beam, &config.eos_token_ids, config.pad_token_id)?
                } else {
                    m.generate_greedy(
                        &input,
                        config.max_new_tokens,
                        &config.eos_token_ids,
                        config.pad_token_id,
                    )?
                }
            }
        };
        for tokens in &generated {
            let text = decode_generation(&model.encoder, tokens, config)?;
            serde_json::to_writer(&mut out, &json!({ "generated_text": text }))?;
            out.push(b'\n');
        }
    }
    write_atomic(&args.out, &out).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("wrote {} generations to {}", rows.len(), args.out.display());
    Ok(())
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
