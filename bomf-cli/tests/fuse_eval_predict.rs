//! `bomf fuse`, `bomf eval` and `bomf predict` as a user runs them, on tiny random BERT folders.
//!
//! Reference numbers come from PyTorch + transformers (`fixtures/gen_tiny_models.py`): the
//! logits of model `a`, and loss/accuracy/macro-F1 of `a` and of the fusion 0.2·a + 0.3·b + 0.5·c
//! summed over PyTorch state dicts, and of a tiny RoBERTa, all on `fixtures/tiny/eval.jsonl`.

use std::path::{Path, PathBuf};

use bomf_tests::cli::{fail, succeed};
use serde_json::Value;

bomf_tests::bomf_cli!();

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny")
}

fn expected() -> Value {
    let text = std::fs::read_to_string(tiny().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn close(a: f64, b: f64, tol: f64, what: &str) {
    assert!((a - b).abs() <= tol, "{what}: {a} vs reference {b}");
}

fn eval_json(model: &Path, dir: &Path) -> Value {
    let file = tiny().join("eval.jsonl");
    let out = bomf(
        &[
            "eval".as_ref(),
            "--model".as_ref(),
            model.as_os_str(),
            "--file".as_ref(),
            file.as_os_str(),
            "--max-len".as_ref(),
            "32".as_ref(),
            "--batch-size".as_ref(),
            "5".as_ref(),
        ],
        dir,
    );
    serde_json::from_str(&succeed(&out)).expect("stdout is one JSON object")
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

#[test]
fn eval_of_a_folder_matches_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let got = eval_json(&tiny().join("a"), dir.path());
    check_eval(&got, &expected()["a"]);
}

/// `--device cpu` is the default; `cuda:N` in a build without CUDA is an error that says how to
/// build with it, for every command that takes `--device`.
#[test]
fn device_flag_is_parsed_and_cuda_needs_the_feature() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny().join("a");
    let file = tiny().join("eval.jsonl");
    let eval = |device: &str| {
        bomf(
            &[
                "eval".as_ref(),
                "--model".as_ref(),
                model.as_os_str(),
                "--file".as_ref(),
                file.as_os_str(),
                "--device".as_ref(),
                device.as_ref(),
            ],
            dir.path(),
        )
    };
    let got: Value = serde_json::from_str(&succeed(&eval("cpu"))).unwrap();
    check_eval(&got, &expected()["a"]);
    let err = fail(&eval("cuda:x"));
    assert!(err.contains("cuda:x") && err.contains("cuda:N"), "{err}");
    if cfg!(feature = "cuda") {
        return;
    }
    let err = fail(&eval("cuda:1"));
    assert!(
        err.contains("cuda:1") && err.contains("--features cuda"),
        "{err}"
    );
    let out = dir.path().join("out.jsonl");
    let err = fail(&bomf(
        &[
            "predict".as_ref(),
            "--model".as_ref(),
            model.as_os_str(),
            "--input".as_ref(),
            file.as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
            "--device".as_ref(),
            "cuda".as_ref(),
        ],
        dir.path(),
    ));
    assert!(
        err.contains("cuda:0") && err.contains("--features cuda"),
        "{err}"
    );
    assert!(
        !out.exists(),
        "nothing is written when the device is missing"
    );
}

#[test]
fn eval_of_a_roberta_folder_matches_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let got = eval_json(&tiny().join("roberta"), dir.path());
    check_eval(&got, &expected()["roberta"]);
}

#[test]
fn fuse_then_eval_matches_the_pytorch_fusion() {
    let dir = tempfile::tempdir().unwrap();
    let t = tiny();
    let out_dir = dir.path().join("fused");
    let out = bomf(
        &[
            "fuse".as_ref(),
            "--checkpoints".as_ref(),
            t.join("a").as_os_str(),
            t.join("b").as_os_str(),
            t.join("c").as_os_str(),
            "--weights".as_ref(),
            "0.2,0.3,0.5".as_ref(),
            "--out".as_ref(),
            out_dir.as_os_str(),
        ],
        dir.path(),
    );
    succeed(&out);
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(out_dir.join(file).is_file(), "fused folder lacks {file}");
    }
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["id2label"]["1"], "pos");
    let got = eval_json(&out_dir, dir.path());
    check_eval(&got, &expected()["fused"]);

    // A second fuse into the same folder needs --force.
    let again = bomf(
        &[
            "fuse".as_ref(),
            "--checkpoints".as_ref(),
            t.join("a").as_os_str(),
            "--weights".as_ref(),
            "1".as_ref(),
            "--out".as_ref(),
            out_dir.as_os_str(),
        ],
        dir.path(),
    );
    assert!(fail(&again).contains("not empty"));

    // With --force the folder is replaced whole: a file of the old folder does not survive next
    // to the new model, and no staging folder is left beside it.
    std::fs::write(out_dir.join("stale.txt"), "old").unwrap();
    let forced = bomf(
        &[
            "fuse".as_ref(),
            "--checkpoints".as_ref(),
            t.join("a").as_os_str(),
            "--weights".as_ref(),
            "1".as_ref(),
            "--out".as_ref(),
            out_dir.as_os_str(),
            "--force".as_ref(),
        ],
        dir.path(),
    );
    succeed(&forced);
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
    let out = bomf(
        &[
            "fuse".as_ref(),
            "--checkpoints".as_ref(),
            t.join("a").as_os_str(),
            t.join("wide").as_os_str(),
            "--weights".as_ref(),
            "0.5,0.5".as_ref(),
            "--out".as_ref(),
            out_dir.as_os_str(),
        ],
        dir.path(),
    );
    let err = fail(&out);
    assert!(err.contains("checkpoint 2"), "{err}");
    assert!(err.contains("wide"), "{err}");
    assert!(err.contains("bert.") && err.contains("shape"), "{err}");
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
    let out = bomf(
        &[
            "fuse".as_ref(),
            "--checkpoints".as_ref(),
            run.join("checkpoint-000010.safetensors").as_os_str(),
            run.join("checkpoint-000020.safetensors").as_os_str(),
            "--weights".as_ref(),
            "0.5,0.5".as_ref(),
            "--out".as_ref(),
            dir.path().join("fused").as_os_str(),
        ],
        dir.path(),
    );
    let err = fail(&out);
    assert!(
        err.contains("no config.json") && err.contains("--config"),
        "{err}"
    );
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
    let err = fail(&bomf(
        &[
            "fuse".as_ref(),
            "--checkpoints".as_ref(),
            tiny().join("a").as_os_str(),
            swapped.as_os_str(),
            "--weights".as_ref(),
            "0.5,0.5".as_ref(),
            "--out".as_ref(),
            out_dir.as_os_str(),
        ],
        dir.path(),
    ));
    assert!(
        err.contains("checkpoint 2") && err.contains("id2label"),
        "{err}"
    );
    assert!(err.contains(r#"["pos", "neg"]"#), "{err}");
    assert!(!out_dir.join("model.safetensors").exists());
}

#[test]
fn fuse_checks_the_weights() {
    let dir = tempfile::tempdir().unwrap();
    let t = tiny();
    let run = |weights: &str| {
        bomf(
            &[
                "fuse".as_ref(),
                "--checkpoints".as_ref(),
                t.join("a").as_os_str(),
                t.join("b").as_os_str(),
                "--weights".as_ref(),
                weights.as_ref(),
                "--out".as_ref(),
                dir.path()
                    .join(format!("out-{}", weights.len()))
                    .as_os_str(),
            ],
            dir.path(),
        )
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
    let out = bomf(
        &[
            "predict".as_ref(),
            "--model".as_ref(),
            model.as_os_str(),
            "--input".as_ref(),
            input.as_os_str(),
            "--out".as_ref(),
            "out.jsonl".as_ref(),
        ],
        dir.path(),
    );
    let err = fail(&out);
    assert!(err.contains("model_type") && err.contains("gpt2"), "{err}");
}

/// `bomf predict` of tiny model `a` from `input` to `out`.
fn predict_args(input: &Path, out: &Path) -> Vec<std::ffi::OsString> {
    let model = tiny().join("a");
    let args: [&std::ffi::OsStr; 7] = [
        "predict".as_ref(),
        "--model".as_ref(),
        model.as_os_str(),
        "--input".as_ref(),
        input.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ];
    args.into_iter().map(Into::into).collect()
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
        let err = fail(&bomf(&predict_args(&input, out), dir.path()));
        assert!(err.contains("is the input file"), "{err}");
        assert_eq!(std::fs::read(&input).unwrap(), before);
    }
}

/// `bomf predict` of `input` with `extra` flags: the logits of each line.
fn predict_logits(dir: &Path, input: &str, extra: &[&str]) -> Vec<Value> {
    let path = dir.join("in.jsonl");
    std::fs::write(&path, input).unwrap();
    let mut args = vec!["predict", "--model"];
    let model = tiny().join("a");
    args.push(model.to_str().unwrap());
    args.extend(["--input", "in.jsonl", "--out", "out.jsonl"]);
    args.extend(extra);
    succeed(&bomf(&args, dir));
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
    let mut args = predict_args(&input, &out_file);
    args.extend(["--batch-size".into(), "4".into()]);
    let out = bomf(&args, dir.path());
    succeed(&out);
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
    let model = tiny().join("a");
    let args = |input: &Path| {
        vec![
            "predict".into(),
            "--model".into(),
            model.clone().into_os_string(),
            "--input".into(),
            input.as_os_str().to_owned(),
            "--out".into(),
            "out.jsonl".into(),
        ]
    };
    let err = fail(&bomf(&args(&input), dir.path()));
    assert!(
        err.contains("in.jsonl:2") && err.contains("invalid JSON"),
        "{err}"
    );
    assert!(!dir.path().join("out.jsonl").exists());

    std::fs::write(&input, "{\"text\": \"fine\"}\n{\"review\": \"x\"}\n").unwrap();
    let err = fail(&bomf(&args(&input), dir.path()));
    assert!(
        err.contains("in.jsonl:2") && err.contains("`text`"),
        "{err}"
    );
}

#[test]
fn eval_reads_a_data_spec_and_rejects_a_missing_split() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("data.toml");
    std::fs::write(
        &spec,
        format!(
            "format = \"jsonl\"\ntext_fields = [\"text\"]\nlabel_field = \"label\"\n\
             [split]\nkind = \"files\"\nvalidation = \"{}\"\n",
            tiny().join("eval.jsonl").display()
        ),
    )
    .unwrap();
    let model = tiny().join("a");
    let run = |split: &str| {
        bomf(
            &[
                "eval".as_ref(),
                "--model".as_ref(),
                model.as_os_str(),
                "--data".as_ref(),
                spec.as_os_str(),
                "--split".as_ref(),
                split.as_ref(),
                "--max-len".as_ref(),
                "32".as_ref(),
            ],
            dir.path(),
        )
    };
    let got: Value = serde_json::from_str(&succeed(&run("validation"))).unwrap();
    check_eval(&got, &expected()["a"]);
    let err = fail(&run("test"));
    assert!(err.contains("test split"), "{err}");

    // Labels listed in another order than the model's id2label are mapped by name.
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(
        &spec,
        text.replace("[split]", "labels = [\"pos\", \"neg\"]\n[split]"),
    )
    .unwrap();
    let got: Value = serde_json::from_str(&succeed(&run("validation"))).unwrap();
    check_eval(&got, &expected()["a"]);
    // Labels the model does not know are an error naming both sets.
    std::fs::write(
        &spec,
        text.replace("[split]", "labels = [\"neg\", \"pos\", \"meh\"]\n[split]"),
    )
    .unwrap();
    let err = fail(&run("validation"));
    assert!(err.contains("id2label") && err.contains("meh"), "{err}");
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
