//! `bomf fuse`, `bomf eval` and `bomf predict` as a user runs them, on tiny random BERT folders.
//!
//! Reference numbers come from PyTorch + transformers (`fixtures/gen_tiny_models.py`): the
//! logits of model `a`, and loss/accuracy/macro-F1 of `a` and of the fusion 0.2·a + 0.3·b + 0.5·c
//! summed over PyTorch state dicts, and of a tiny RoBERTa, all on `fixtures/tiny/eval.jsonl`.

use std::path::{Path, PathBuf};
use std::process::Output;

use bomf_tests::cli::config::jsonl_spec;
use bomf_tests::cli::{assert_mentions, fail, fuse_args, json, model_args, succeed, succeed_json};
use serde_json::Value;

bomf_tests::bomf_cli!();

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny")
}

fn expected() -> Value {
    json(&tiny().join("expected.json"))
}

/// `bomf fuse` of `checkpoints` with `weights` into `out`, then `flags`.
fn fuse(dir: &Path, checkpoints: &[&Path], weights: &str, out: &Path, flags: &[&str]) -> Output {
    bomf(&fuse_args(checkpoints, weights, out, flags), dir)
}

/// `bomf CMD --model MODEL` (`eval`, `predict`) with `flags` after it.
fn with_model(dir: &Path, cmd: &str, model: &Path, flags: &[&str]) -> Output {
    bomf(&model_args(cmd, model, flags), dir)
}

/// The path of `tiny/eval.jsonl`, as a flag value.
fn eval_file() -> String {
    tiny().join("eval.jsonl").display().to_string()
}

fn close(a: f64, b: f64, tol: f64, what: &str) {
    assert!((a - b).abs() <= tol, "{what}: {a} vs reference {b}");
}

fn eval_json(model: &Path, dir: &Path) -> Value {
    let flags = [
        "--file",
        &eval_file(),
        "--max-len",
        "32",
        "--batch-size",
        "5",
    ];
    succeed_json(&with_model(dir, "eval", model, &flags))
}

fn check_eval(got: &Value, reference: &Value) {
    let keys: Vec<&String> = got.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["loss", "metrics", "num_examples"], "{got}");
    assert_eq!(got["num_examples"], 12);
    close(
        got["loss"].as_f64().unwrap(),
        reference["loss"].as_f64().unwrap(),
        1e-5,
        "loss",
    );
    for metric in ["accuracy", "f1_macro"] {
        close(
            got["metrics"][metric].as_f64().unwrap(),
            reference[metric].as_f64().unwrap(),
            1e-12,
            metric,
        );
    }
}

/// `bomf eval` of the fixture folder `name` gives what transformers computed for it.
fn eval_matches_transformers(name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let got = eval_json(&tiny().join(name), dir.path());
    check_eval(&got, &expected()[name]);
}

#[test]
fn eval_of_a_folder_matches_transformers() {
    eval_matches_transformers("a");
}

/// `--device cpu` is the default; `cuda:N` in a build without CUDA is an error that says how to
/// build with it, for every command that takes `--device`.
#[test]
fn device_flag_is_parsed_and_cuda_needs_the_feature() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny().join("a");
    let file = eval_file();
    let eval = |device: &str| {
        with_model(
            dir.path(),
            "eval",
            &model,
            &["--file", &file, "--device", device],
        )
    };
    let got = succeed_json(&eval("cpu"));
    check_eval(&got, &expected()["a"]);
    let err = fail(&eval("cuda:x"));
    assert_mentions(&err, &["cuda:x", "cuda:N"]);
    if cfg!(feature = "cuda") {
        return;
    }
    let err = fail(&eval("cuda:1"));
    assert_mentions(&err, &["cuda:1", "--features cuda"]);
    let out = dir.path().join("out.jsonl");
    let flags = [
        "--input",
        &file,
        "--out",
        out.to_str().unwrap(),
        "--device",
        "cuda",
    ];
    let err = fail(&with_model(dir.path(), "predict", &model, &flags));
    assert_mentions(&err, &["cuda:0", "--features cuda"]);
    assert!(
        !out.exists(),
        "nothing is written when the device is missing"
    );
}

#[test]
fn eval_of_a_roberta_folder_matches_transformers() {
    eval_matches_transformers("roberta");
}

#[test]
fn fuse_then_eval_matches_the_pytorch_fusion() {
    let dir = tempfile::tempdir().unwrap();
    let t = tiny();
    let out_dir = dir.path().join("fused");
    let (a, b, c) = (t.join("a"), t.join("b"), t.join("c"));
    succeed(&fuse(
        dir.path(),
        &[&a, &b, &c],
        "0.2,0.3,0.5",
        &out_dir,
        &[],
    ));
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(out_dir.join(file).is_file(), "fused folder lacks {file}");
    }
    assert_eq!(json(&out_dir.join("config.json"))["id2label"]["1"], "pos");
    let got = eval_json(&out_dir, dir.path());
    check_eval(&got, &expected()["fused"]);

    // A second fuse into the same folder needs --force.
    let again = fuse(dir.path(), &[&a], "1", &out_dir, &[]);
    assert!(fail(&again).contains("not empty"));

    // With --force the folder is replaced whole: a file of the old folder does not survive next
    // to the new model, and no staging folder is left beside it.
    std::fs::write(out_dir.join("stale.txt"), "old").unwrap();
    succeed(&fuse(dir.path(), &[&a], "1", &out_dir, &["--force"]));
    assert!(out_dir.join("model.safetensors").is_file());
    assert!(
        !out_dir.join("stale.txt").exists(),
        "the old folder was mixed in"
    );
    let beside: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".fused"))
        .collect();
    assert!(beside.is_empty(), "left beside the output: {beside:?}");
}

#[test]
fn fuse_of_mismatched_checkpoints_names_the_checkpoint_and_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let t = tiny();
    let out_dir = dir.path().join("fused");
    let (a, wide) = (t.join("a"), t.join("wide"));
    let err = fail(&fuse(dir.path(), &[&a, &wide], "0.5,0.5", &out_dir, &[]));
    assert!(err.contains("checkpoint 2"), "{err}");
    assert!(err.contains("wide"), "{err}");
    assert_mentions(&err, &["bert.", "shape"]);
    assert!(!out_dir.join("model.safetensors").exists());
}

#[test]
fn fusing_bare_checkpoint_files_asks_for_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let t = tiny();
    // The checkpoints/ folder of a `bomf run`: weight files and a manifest, no config.json.
    let run = dir.path().join("checkpoints");
    std::fs::create_dir(&run).unwrap();
    for name in [
        "checkpoint-000010.safetensors",
        "checkpoint-000020.safetensors",
    ] {
        std::fs::copy(t.join("a/model.safetensors"), run.join(name)).unwrap();
    }
    let (first, second) = (
        run.join("checkpoint-000010.safetensors"),
        run.join("checkpoint-000020.safetensors"),
    );
    let fused = dir.path().join("fused");
    let err = fail(&fuse(
        dir.path(),
        &[&first, &second],
        "0.5,0.5",
        &fused,
        &[],
    ));
    assert_mentions(&err, &["no config.json", "--config"]);
}

#[test]
fn fusing_gguf_files_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let a = tiny().join("a");
    // By extension, and by the magic bytes of a file named otherwise.
    let named = dir.path().join("model.gguf");
    let unnamed = dir.path().join("model.bin");
    for path in [&named, &unnamed] {
        std::fs::write(path, b"GGUF\x03\x00\x00\x00").unwrap();
    }
    for (path, stream) in [(&named, &[][..]), (&unnamed, &["--stream"][..])] {
        let fused = dir.path().join("fused");
        let err = fail(&fuse(dir.path(), &[&a, path], "0.5,0.5", &fused, stream));
        assert_mentions(&err, &["checkpoint 2", "GGUF file", "--base"]);
        assert!(!fused.exists());
    }
}

#[test]
fn fuse_refuses_checkpoints_whose_classes_are_in_another_order() {
    let dir = tempfile::tempdir().unwrap();
    let swapped = dir.path().join("b-swapped");
    std::fs::create_dir(&swapped).unwrap();
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(tiny().join("b").join(f), swapped.join(f)).unwrap();
    }
    let config = std::fs::read_to_string(tiny().join("b/config.json"))
        .unwrap()
        .replace("\"0\": \"neg\"", "\"0\": \"POS\"")
        .replace("\"1\": \"pos\"", "\"1\": \"neg\"")
        .replace("\"0\": \"POS\"", "\"0\": \"pos\"");
    std::fs::write(swapped.join("config.json"), config).unwrap();
    let out_dir = dir.path().join("fused");
    let a = tiny().join("a");
    let err = fail(&fuse(dir.path(), &[&a, &swapped], "0.5,0.5", &out_dir, &[]));
    assert_mentions(&err, &["checkpoint 2", "id2label"]);
    assert!(err.contains(r#"["pos", "neg"]"#), "{err}");
    assert!(!out_dir.join("model.safetensors").exists());
}

#[test]
fn fuse_checks_the_weights() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (tiny().join("a"), tiny().join("b"));
    let run = |weights: &str| {
        let out = dir.path().join(format!("out-{}", weights.len()));
        fuse(dir.path(), &[&a, &b], weights, &out, &[])
    };
    let err = fail(&run("0.2,0.3,0.5"));
    assert!(err.contains("3 weight(s) for 2 checkpoint(s)"), "{err}");
    let err = fail(&run("0.5,NaN"));
    assert!(err.contains("finite"), "{err}");
    // Off the simplex: allowed, with a warning.
    let out = run("0.7,0.7");
    succeed(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning: the weights sum to 1.4"));
}

#[test]
fn unsupported_model_type_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("gpt");
    std::fs::create_dir(&model).unwrap();
    let config = std::fs::read_to_string(tiny().join("a/config.json"))
        .unwrap()
        .replace("\"model_type\": \"bert\"", "\"model_type\": \"gpt2\"");
    std::fs::write(model.join("config.json"), config).unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"text\": \"hi\"}\n").unwrap();
    let flags = ["--input", input.to_str().unwrap(), "--out", "out.jsonl"];
    let err = fail(&with_model(dir.path(), "predict", &model, &flags));
    assert_mentions(&err, &["model_type", "gpt2"]);
}

/// `bomf predict` of tiny model `a` from `input` to `out`, then `flags`.
fn predict(dir: &Path, input: &Path, out: &Path, flags: &[&str]) -> Output {
    let mut all = vec![
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    all.extend(flags);
    with_model(dir, "predict", &tiny().join("a"), &all)
}

#[test]
fn predict_refuses_to_write_over_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::copy(tiny().join("eval.jsonl"), &input).unwrap();
    let before = std::fs::read(&input).unwrap();
    // The same file by another path, and by a hard link.
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let link = dir.path().join("link.jsonl");
    std::fs::hard_link(&input, &link).unwrap();
    for out in [Path::new("sub/../in.jsonl"), link.as_path()] {
        let err = fail(&predict(dir.path(), &input, out, &[]));
        assert!(err.contains("is the input file"), "{err}");
        assert_eq!(std::fs::read(&input).unwrap(), before);
    }
}

/// `bomf predict` of `input` with `extra` flags: the logits of each line.
fn predict_logits(dir: &Path, input: &str, extra: &[&str]) -> Vec<Value> {
    std::fs::write(dir.join("in.jsonl"), input).unwrap();
    let (input, out) = (Path::new("in.jsonl"), Path::new("out.jsonl"));
    succeed(&predict(dir, input, out, extra));
    std::fs::read_to_string(dir.join("out.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["logits"].clone())
        .collect()
}

#[test]
fn predict_reads_text_pair_lines_as_pairs_line_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let mixed = "{\"text\": \"a good film\", \"text_pair\": \"it was fine\"}\n\
                 {\"text\": \"a bad film\"}\n";
    let logits = predict_logits(dir.path(), mixed, &[]);
    let pair = predict_logits(
        dir.path(),
        "{\"text\": \"a good film\", \"text_pair\": \"it was fine\"}\n",
        &["--text-field", "text", "--text-field", "text_pair"],
    );
    let single = predict_logits(dir.path(), "{\"text\": \"a bad film\"}\n", &[]);
    // Equal up to the batch's padding (another batch shape, other rounding).
    let near = |a: &Value, b: &Value| {
        let (a, b) = (a.as_array().unwrap(), b.as_array().unwrap());
        a.iter()
            .zip(b)
            .all(|(x, y)| (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() < 1e-5)
    };
    assert!(near(&logits[0], &pair[0]), "{logits:?} vs {pair:?}");
    assert!(near(&logits[1], &single[0]), "{logits:?} vs {single:?}");
    // The pair is not read as its first sentence alone.
    let first_only = predict_logits(dir.path(), "{\"text\": \"a good film\"}\n", &[]);
    assert!(
        !near(&logits[0], &first_only[0]),
        "{logits:?} vs {first_only:?}"
    );
}

#[test]
fn predict_writes_one_line_per_input_with_reference_logits() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("pred.jsonl");
    let input = tiny().join("eval.jsonl");
    succeed(&predict(
        dir.path(),
        &input,
        &out_file,
        &["--batch-size", "4"],
    ));
    let reference = &expected()["a"];
    let text = std::fs::read_to_string(&out_file).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 12);
    for (i, line) in lines.iter().enumerate() {
        let logits = line["logits"].as_array().unwrap();
        let probs = line["probabilities"].as_array().unwrap();
        assert_eq!(logits.len(), 2);
        for j in 0..2 {
            close(
                logits[j].as_f64().unwrap(),
                reference["logits"][i][j].as_f64().unwrap(),
                1e-4,
                &format!("logit [{i}][{j}]"),
            );
            close(
                probs[j].as_f64().unwrap(),
                reference["probabilities"][i][j].as_f64().unwrap(),
                1e-5,
                &format!("probability [{i}][{j}]"),
            );
        }
        let best = if reference["logits"][i][1].as_f64() > reference["logits"][i][0].as_f64() {
            "pos"
        } else {
            "neg"
        };
        assert_eq!(line["label"], best, "line {i}");
    }
}

#[test]
fn predict_names_the_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"text\": \"fine\"}\n{\"text\": oops}\n").unwrap();
    let out = Path::new("out.jsonl");
    let err = fail(&predict(dir.path(), &input, out, &[]));
    assert_mentions(&err, &["in.jsonl:2", "invalid JSON"]);
    assert!(!dir.path().join("out.jsonl").exists());

    std::fs::write(&input, "{\"text\": \"fine\"}\n{\"review\": \"x\"}\n").unwrap();
    let err = fail(&predict(dir.path(), &input, out, &[]));
    assert_mentions(&err, &["in.jsonl:2", "`text`"]);
}

#[test]
fn eval_reads_a_data_spec_and_rejects_a_missing_split() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("data.toml");
    let eval = tiny().join("eval.jsonl");
    std::fs::write(&spec, jsonl_spec(&[("validation", &eval)])).unwrap();
    let model = tiny().join("a");
    let run = |split: &str| {
        let flags = [
            "--data",
            spec.to_str().unwrap(),
            "--split",
            split,
            "--max-len",
            "32",
        ];
        with_model(dir.path(), "eval", &model, &flags)
    };
    let got = succeed_json(&run("validation"));
    check_eval(&got, &expected()["a"]);
    let err = fail(&run("test"));
    assert!(err.contains("test split"), "{err}");

    // The spec with its `labels` list.
    let text = std::fs::read_to_string(&spec).unwrap();
    let with_labels = |labels: &str| {
        let listed = text.replace("[split]", &format!("labels = {labels}\n[split]"));
        std::fs::write(&spec, listed).unwrap();
    };
    // Labels listed in another order than the model's id2label are mapped by name.
    with_labels("[\"pos\", \"neg\"]");
    let got = succeed_json(&run("validation"));
    check_eval(&got, &expected()["a"]);
    // Labels the model does not know are an error naming both sets.
    with_labels("[\"neg\", \"pos\", \"meh\"]");
    let err = fail(&run("validation"));
    assert_mentions(&err, &["id2label", "meh"]);
}

#[test]
fn help_teaches_with_examples() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in ["fuse", "eval", "predict", "train"] {
        let help = succeed(&bomf(&[cmd, "--help"], dir.path()));
        assert!(
            help.contains("Examples:"),
            "`bomf {cmd} --help` has no examples"
        );
        assert!(help.contains(&format!("bomf {cmd} --")), "{help}");
    }
}
