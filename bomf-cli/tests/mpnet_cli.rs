//! MPNet through the CLI: `bomf run` (the three stages, fusion exported as an MPNet folder) and
//! `bomf train` → `bomf fuse` → `bomf eval` on a tiny random MPNet classifier. Its parity with
//! `transformers` is bomf-models' `mpnet_parity` test; this one shows the family registered.

use std::path::{Path, PathBuf};

use bomf_models::CpuBackend;
use bomf_models::mpnet::{self, MpnetConfig, MpnetForSequenceClassification};
use bomf_tests::cli::config::{RunConfig, by_rank_data, jsonl_spec};
use bomf_tests::cli::{fuse_then_eval, json, manifest_files, succeed, train_args};

bomf_tests::bomf_cli!();

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny")
}

/// A random tiny MPNet classifier (the geometry of bomf-models' MPNet fixture) with the tiny
/// RoBERTa tokenizer, whose `<s> … </s>` layout is MPNet's, and the tiny data's labels.
fn tiny_mpnet(dir: &Path) -> PathBuf {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../bomf-models/tests/fixtures/mpnet/mpnet_seqcls/config.json");
    let mut config = MpnetConfig::from_file(fixture).unwrap();
    let tokenizer = json(&tiny().join("roberta/tokenizer.json"));
    config.vocab_size = tokenizer["model"]["vocab"].as_object().unwrap().len();
    let config = config.with_labels(&["neg", "pos"]);
    let device = Default::default();
    let model = MpnetForSequenceClassification::<CpuBackend>::new(&config, &device).unwrap();
    let out = dir.join("mpnet");
    mpnet::export_mpnet(&model, &config, &out, Some(&tiny().join("roberta"))).unwrap();
    out
}

#[test]
fn bomf_run_fuses_an_mpnet_trajectory_and_exports_an_mpnet_folder() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_mpnet(dir.path());
    let config = RunConfig {
        seed: 3,
        model: &model,
        model_extra: "",
        data: &by_rank_data(&tiny().join("train.jsonl")),
        learning_rate: 0.01,
        batch_size: 8,
        fusion: "budget = 6\n",
        baselines: "",
        extra: "",
    }
    .write(dir.path());
    let stdout = succeed(&bomf(
        &["run", config.to_str().unwrap(), "--out", "run"],
        dir.path(),
    ));
    assert!(stdout.contains("BOMF (posterior mean)"), "{stdout}");
    let run = dir.path().join("run");
    let results = json(&run.join("results.json"));
    let methods = results["methods"].as_array().unwrap();
    assert!(
        methods
            .iter()
            .all(|m| m["test"]["loss"].as_f64().is_some_and(f64::is_finite)),
        "{results}"
    );
    let fused = json(&run.join("fused/config.json"));
    assert_eq!(fused["model_type"], "mpnet");
    assert_eq!(fused["architectures"][0], "MPNetForSequenceClassification");
    assert!(run.join("fused/tokenizer.json").is_file());
}

#[test]
fn bomf_train_keeps_mpnet_checkpoints_that_fuse_and_evaluate() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_mpnet(dir.path());
    let spec = dir.path().join("data.toml");
    let files = [
        ("train", tiny().join("train.jsonl")),
        ("validation", tiny().join("eval.jsonl")),
    ];
    let files: Vec<(&str, &Path)> = files.iter().map(|(n, p)| (*n, p.as_path())).collect();
    std::fs::write(&spec, jsonl_spec(&files)).unwrap();
    let flags = [
        "--batch-size",
        "8",
        "--epochs",
        "2",
        "--every",
        "4",
        "--k",
        "3",
        "--lr",
        "1e-3",
        "--rule",
        "last_k",
    ];
    let stdout = succeed(&bomf(&train_args(&model, &spec, "run", &flags), dir.path()));
    assert!(stdout.contains("kept 3 checkpoints"), "{stdout}");
    let files = manifest_files(&dir.path().join("run/checkpoints"));
    assert_eq!(files.len(), 3);

    let exe = env!("CARGO_BIN_EXE_bomf");
    let got = fuse_then_eval(exe, dir.path(), &files, &tiny().join("eval.jsonl"));
    assert_eq!(
        json(&dir.path().join("fused/config.json"))["model_type"],
        "mpnet"
    );
    assert_eq!(got["num_examples"], 12);
    assert!(got["loss"].as_f64().unwrap().is_finite(), "{got}");
}
