//! Writes a fused MPNet classifier as a Hugging Face folder, plus the logits Rust computes for
//! it, so that `transformers` can be shown to load the folder unchanged and agree:
//!
//! ```text
//! cargo run -p bomf-models --example mpnet_export_roundtrip -- /tmp/fused-mpnet
//! python bomf-models/tests/fixtures/gen_mpnet.py --check-export /tmp/fused-mpnet
//! ```

use std::path::PathBuf;

use bomf_models::mpnet::{self, MpnetConfig};
use bomf_models::{CpuBackend, EncoderInput, params};
use serde_json::json;

type B = CpuBackend;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: mpnet_export_roundtrip OUT_DIR")?,
    );
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mpnet");
    let device = Default::default();

    // Two "fine-tuned" models of one architecture: the classifier fixture, and the base encoder
    // with a fresh head. Fuse them as the BO loop would, θ = 0.6 θ_a + 0.4 θ_b.
    let (a, config, _) =
        mpnet::load_mpnet_for_sequence_classification::<B>(fixtures.join("mpnet_seqcls"), &device)?;
    let (b, _) = mpnet::load_mpnet_for_sequence_classification_with_config::<B>(
        fixtures.join("mpnet_base"),
        &config,
        &device,
    )?;
    let fused = params::weighted_sum(&[a, b], &[0.6, 0.4])?;
    let config: MpnetConfig = config.with_labels(&["negative", "neutral", "positive"]);
    mpnet::export_mpnet(&fused, &config, &out_dir, None)?;

    // `<s> … </s>` rows, the second right-padded with MPNet's padding id 1.
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
