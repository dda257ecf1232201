//! Writes a fused classifier (RoBERTa or MPNet) as a Hugging Face folder, plus the logits Rust
//! computes for it, so that `transformers` can be shown to load the folder unchanged and agree:
//!
//! ```text
//! cargo run -p bomf-models --example export_roundtrip -- roberta /tmp/fused
//! python bomf-models/tests/fixtures/gen_encoder.py --check-export /tmp/fused
//! cargo run -p bomf-models --example export_roundtrip -- mpnet /tmp/fused-mpnet
//! python bomf-models/tests/fixtures/gen_mpnet.py --check-export /tmp/fused-mpnet
//! ```
//!
//! Each architecture fuses two "fine-tuned" models of its fixtures, the classifier and the base
//! encoder with a fresh head, as the BO loop would: θ = 0.6 θ_a + 0.4 θ_b.

use std::error::Error;
use std::path::{Path, PathBuf};

use bomf_models::bert::Task;
use bomf_models::mpnet;
use bomf_models::{CpuBackend, EncoderInput, export, params, weights};
use burn::tensor::Tensor;
use serde_json::json;

type B = CpuBackend;

const USAGE: &str = "usage: export_roundtrip roberta|mpnet OUT_DIR";
/// Labels the fused classifier is exported with.
const LABELS: [&str; 3] = ["negative", "neutral", "positive"];
/// Weights of the two models in the fusion.
const FUSION_WEIGHTS: [f64; 2] = [0.6, 0.4];

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(arch), Some(out_dir)) = (args.next(), args.next()) else {
        return Err(USAGE.into());
    };
    let out_dir = PathBuf::from(out_dir);
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    match arch.as_str() {
        "roberta" => export_roberta(&fixtures.join("encoder"), &out_dir),
        "mpnet" => export_mpnet(&fixtures.join("mpnet"), &out_dir),
        _ => Err(USAGE.into()),
    }
}

fn export_roberta(fixtures: &Path, out_dir: &Path) -> Result<(), Box<dyn Error>> {
    let device = Default::default();
    let task = Task::SequenceClassification;
    let (a, config, _) = weights::load_bert::<B>(fixtures.join("roberta_seqcls"), task, &device)?;
    let (b, _) =
        weights::load_bert_with_config::<B>(fixtures.join("roberta_base"), &config, task, &device)?;
    let fused = params::weighted_sum(&[a, b], &FUSION_WEIGHTS)?;
    export::export_bert(&fused, &config.with_labels(&LABELS), out_dir, None)?;
    write_rust_outputs(out_dir, |input| fused.sequence_logits(input))
}

fn export_mpnet(fixtures: &Path, out_dir: &Path) -> Result<(), Box<dyn Error>> {
    let device = Default::default();
    let (a, config, _) =
        mpnet::load_mpnet_for_sequence_classification::<B>(fixtures.join("mpnet_seqcls"), &device)?;
    let (b, _) = mpnet::load_mpnet_for_sequence_classification_with_config::<B>(
        fixtures.join("mpnet_base"),
        &config,
        &device,
    )?;
    let fused = params::weighted_sum(&[a, b], &FUSION_WEIGHTS)?;
    mpnet::export_mpnet(&fused, &config.with_labels(&LABELS), out_dir, None)?;
    write_rust_outputs(out_dir, |input| fused.sequence_logits(input))
}

/// Runs `logits_of` on two `<s> … </s>` rows (the second right-padded with padding id 1) and
/// writes the inputs and the logits to `out_dir/rust_outputs.json`.
fn write_rust_outputs(
    out_dir: &Path,
    logits_of: impl FnOnce(&EncoderInput<B>) -> bomf_models::Result<Tensor<B, 2>>,
) -> Result<(), Box<dyn Error>> {
    let device = Default::default();
    let (ids, mask) = (
        vec![0i64, 17, 42, 9, 88, 2, 0, 5, 61, 2, 1, 1],
        vec![1i64, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0],
    );
    let input = EncoderInput::<B>::from_rows(&ids, &mask, None, 2, 6, &device)?;
    let data: Vec<f32> = logits_of(&input)?
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| format!("{e:?}"))?;
    let outputs = json!({
        "inputs": {
            "input_ids": ids.chunks(6).collect::<Vec<_>>(),
            "attention_mask": mask.chunks(6).collect::<Vec<_>>(),
        },
        "logits": {"shape": [2, 3], "data": data},
    });
    std::fs::write(
        out_dir.join("rust_outputs.json"),
        serde_json::to_string_pretty(&outputs)?,
    )?;
    println!("wrote {}", out_dir.display());
    Ok(())
}
