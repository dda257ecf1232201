//! Writes a fused RoBERTa classifier as a Hugging Face folder, plus the logits Rust computes for
//! it, so that `transformers` can be shown to load the folder unchanged and agree:
//!
//! ```text
//! cargo run -p bomf-models --example export_roundtrip -- /tmp/fused
//! python bomf-models/tests/fixtures/gen_encoder.py --check-export /tmp/fused
//! ```

use std::path::PathBuf;

use bomf_models::bert::Task;
use bomf_models::{BertConfig, CpuBackend, EncoderInput, export, params, weights};
use serde_json::json;

type B = CpuBackend;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: export_roundtrip OUT_DIR")?,
    );
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/encoder");
    let device = Default::default();

    // Two "fine-tuned" models of one architecture: the classifier fixture, and the base encoder
    // with a fresh head. Fuse them as the BO loop would, θ = 0.6 θ_a + 0.4 θ_b.
    let (a, config, _) = weights::load_bert::<B>(
        fixtures.join("roberta_seqcls"),
        Task::SequenceClassification,
        &device,
    )?;
    let (b, _) = weights::load_bert_with_config::<B>(
        fixtures.join("roberta_base"),
        &config,
        Task::SequenceClassification,
        &device,
    )?;
    let fused = params::weighted_sum(&[a, b], &[0.6, 0.4])?;
    let config: BertConfig = config.with_labels(&["negative", "neutral", "positive"]);
    export::export_bert(&fused, &config, &out_dir, None)?;

    let (ids, mask) = (
        vec![0i64, 17, 42, 9, 88, 2, 0, 5, 61, 2, 1, 1],
        vec![1i64, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0],
    );
    let input = EncoderInput::<B>::from_rows(&ids, &mask, None, 2, 6, &device)?;
    let logits = fused.sequence_logits(&input)?;
    let data: Vec<f32> = logits
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
