//! `bomf train` on a tiny random BERT and a 48-sentence JSONL dataset: the trajectory folder it
//! writes (manifest, K checkpoints, config, tokenizer) and that `bomf fuse` / `bomf eval` accept
//! its checkpoints as they are.

use std::path::{Path, PathBuf};
use std::process::Output;

use bomf_tests::cli::succeed;
use serde_json::Value;

bomf_tests::bomf_cli!();

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny")
}

fn write_spec(dir: &Path) -> PathBuf {
    let spec = dir.join("data.toml");
    std::fs::write(
        &spec,
        format!(
            "format = \"jsonl\"\ntext_fields = [\"text\"]\nlabel_field = \"label\"\n\
             [split]\nkind = \"files\"\ntrain = \"{}\"\nvalidation = \"{}\"\n",
            tiny().join("train.jsonl").display(),
            tiny().join("eval.jsonl").display()
        ),
    )
    .unwrap();
    spec
}

fn train(dir: &Path, run: &str, extra: &[&str]) -> Output {
    let spec = write_spec(dir);
    let model = tiny().join("a");
    let mut args: Vec<std::ffi::OsString> = vec![
        "train".into(),
        "--model".into(),
        model.into_os_string(),
        "--data".into(),
        spec.into_os_string(),
        "--out".into(),
        run.into(),
        "--batch-size".into(),
        "8".into(),
        "--epochs".into(),
        "2".into(),
        "--every".into(),
        "2".into(),
        "--k".into(),
        "3".into(),
        "--lr".into(),
        "1e-3".into(),
        "--seed".into(),
        "7".into(),
    ];
    args.extend(extra.iter().map(Into::into));
    bomf(&args, dir)
}

#[test]
fn train_keeps_the_last_k_checkpoints_and_they_fuse() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = succeed(&train(dir.path(), "run", &["--rule", "last_k"]));
    assert!(stdout.contains("kept 3 checkpoints"), "{stdout}");

    let ckpts = dir.path().join("run/checkpoints");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(ckpts.join("manifest.json")).unwrap())
            .unwrap();
    let entries = manifest["checkpoints"].as_array().unwrap();
    // 48 examples / 8 = 6 steps per epoch, 12 steps, evaluated every 2: the last 3 are 8, 10, 12.
    let steps: Vec<u64> = entries
        .iter()
        .map(|e| e["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [8, 10, 12]);
    let files: Vec<PathBuf> = entries
        .iter()
        .map(|e| ckpts.join(e["file"].as_str().unwrap()))
        .collect();
    for f in &files {
        assert!(f.is_file(), "{} missing", f.display());
    }
    assert_eq!(manifest["curve"].as_array().unwrap().len(), 6);
    for file in ["config.json", "tokenizer.json"] {
        assert!(ckpts.join(file).is_file(), "checkpoints/ lacks {file}");
    }

    // The kept files fuse as they are, and the result evaluates.
    let mut args: Vec<std::ffi::OsString> = vec!["fuse".into(), "--checkpoints".into()];
    args.extend(files.iter().map(|f| f.clone().into_os_string()));
    args.extend([
        "--weights".into(),
        "0.2,0.3,0.5".into(),
        "--out".into(),
        "fused".into(),
    ]);
    succeed(&bomf(&args, dir.path()));
    let eval = bomf(
        &[
            "eval".as_ref(),
            "--model".as_ref(),
            "fused".as_ref(),
            "--file".as_ref(),
            tiny().join("eval.jsonl").as_os_str(),
        ],
        dir.path(),
    );
    let got: Value = serde_json::from_str(&succeed(&eval)).unwrap();
    assert_eq!(got["num_examples"], 12);
    assert!(got["loss"].as_f64().unwrap().is_finite());

    // The same run again is refused without --force.
    let again = train(dir.path(), "run", &["--rule", "last_k"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
}

#[test]
fn train_needs_a_validation_split() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("data.toml");
    std::fs::write(
        &spec,
        format!(
            "format = \"jsonl\"\ntext_fields = [\"text\"]\nlabel_field = \"label\"\n\
             [split]\nkind = \"files\"\ntrain = \"{}\"\n",
            tiny().join("train.jsonl").display()
        ),
    )
    .unwrap();
    let out = bomf(
        &[
            "train".as_ref(),
            "--model".as_ref(),
            tiny().join("a").as_os_str(),
            "--data".as_ref(),
            spec.as_os_str(),
            "--out".as_ref(),
            "run".as_ref(),
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
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
    let manifest = |run: &str| -> Value {
        let path = dir.path().join(run).join("checkpoints/manifest.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    assert_eq!(manifest("default")["curve"], manifest("cpu")["curve"]);
    if cfg!(feature = "cuda") {
        return;
    }
    let out = train(dir.path(), "gpu", &["--device", "cuda:0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--features cuda"), "{err}");
    assert!(!dir.path().join("gpu/checkpoints/manifest.json").exists());
}
