//! `bomf train` on a tiny random BERT and a 48-sentence JSONL dataset: the trajectory folder it
//! writes (manifest, K checkpoints, config, tokenizer) and that `bomf fuse` / `bomf eval` accept
//! its checkpoints as they are.

use std::path::{Path, PathBuf};
use std::process::Output;

use bomf_tests::cli::config::jsonl_spec;
use bomf_tests::cli::{fail, fuse_then_eval, json, manifest_files, succeed, train_args};

bomf_tests::bomf_cli!();

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny")
}

/// `data.toml` in `dir`: the tiny training and validation files, or only the training file.
fn write_spec(dir: &Path, with_validation: bool) -> PathBuf {
    let (train, validation) = (tiny().join("train.jsonl"), tiny().join("eval.jsonl"));
    let files = [("train", train.as_path()), ("validation", &validation)];
    let spec = dir.join("data.toml");
    let n = if with_validation { 2 } else { 1 };
    std::fs::write(&spec, jsonl_spec(&files[..n])).unwrap();
    spec
}

fn train(dir: &Path, run: &str, extra: &[&str]) -> Output {
    let spec = write_spec(dir, true);
    let mut flags = vec![
        "--batch-size",
        "8",
        "--epochs",
        "2",
        "--every",
        "2",
        "--k",
        "3",
        "--lr",
        "1e-3",
        "--seed",
        "7",
    ];
    flags.extend(extra);
    bomf(&train_args(&tiny().join("a"), &spec, run, &flags), dir)
}

#[test]
fn train_keeps_the_last_k_checkpoints_and_they_fuse() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = succeed(&train(dir.path(), "run", &["--rule", "last_k"]));
    assert!(stdout.contains("kept 3 checkpoints"), "{stdout}");

    let ckpts = dir.path().join("run/checkpoints");
    let manifest = json(&ckpts.join("manifest.json"));
    let entries = manifest["checkpoints"].as_array().unwrap();
    // 48 examples / 8 = 6 steps per epoch, 12 steps, evaluated every 2: the last 3 are 8, 10, 12.
    let steps: Vec<u64> = entries
        .iter()
        .map(|e| e["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [8, 10, 12]);
    let files = manifest_files(&ckpts);
    for f in &files {
        assert!(f.is_file(), "{} missing", f.display());
    }
    assert_eq!(manifest["curve"].as_array().unwrap().len(), 6);
    for file in ["config.json", "tokenizer.json"] {
        assert!(ckpts.join(file).is_file(), "checkpoints/ lacks {file}");
    }

    // The kept files fuse as they are, and the result evaluates.
    let exe = env!("CARGO_BIN_EXE_bomf");
    let got = fuse_then_eval(exe, dir.path(), &files, &tiny().join("eval.jsonl"));
    assert_eq!(got["num_examples"], 12);
    assert!(got["loss"].as_f64().unwrap().is_finite());

    // The same run again is refused without --force.
    let again = train(dir.path(), "run", &["--rule", "last_k"]);
    assert!(fail(&again).contains("--force"));
}

#[test]
fn train_needs_a_validation_split() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), false);
    let args = train_args(&tiny().join("a"), &spec, "run", &[]);
    let err = fail(&bomf(&args, dir.path()));
    assert!(err.contains("validation split is empty"), "{err}");
}

/// `--device cpu` trains as the default does (same seed, same checkpoints); `cuda:N` in a build
/// without CUDA stops before writing anything.
#[test]
fn train_device_flag() {
    let dir = tempfile::tempdir().unwrap();
    succeed(&train(dir.path(), "default", &["--rule", "last_k"]));
    succeed(&train(
        dir.path(),
        "cpu",
        &["--rule", "last_k", "--device", "cpu"],
    ));
    let manifest = |run: &str| json(&dir.path().join(run).join("checkpoints/manifest.json"));
    assert_eq!(manifest("default")["curve"], manifest("cpu")["curve"]);
    if cfg!(feature = "cuda") {
        return;
    }
    let err = fail(&train(dir.path(), "gpu", &["--device", "cuda:0"]));
    assert!(err.contains("--features cuda"), "{err}");
    assert!(!dir.path().join("gpu/checkpoints/manifest.json").exists());
}
