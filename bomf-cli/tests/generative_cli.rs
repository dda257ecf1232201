//! `bomf run`, `eval`, `predict` and `fuse` on generative models: a tiny random LLaMA (with and
//! without LoRA) and a tiny random T5, on a tiny E2E-style generation set and a tiny
//! multiple-choice set (fixtures from `fixtures/gen_tiny_generative.py`).
//!
//! Checked against transformers (the script's `expected.json`): `bomf eval` losses and accuracy
//! of the untrained models, and the texts `bomf predict` generates (greedy and beam search).
//! Checked for consistency: a run writes every method's row, `fused/` is an HF folder whose
//! `bomf eval` test loss equals the chosen method's in `results.json`, and a LoRA run also
//! writes the fused adapters in peft's format; `kill -9` + `--resume` of a LoRA run repeats no
//! evaluation. Extractive QA (SQuAD v2.0, `gen_tiny_squad.py`) is answered by generation:
//! `bomf eval` losses, `bomf predict` texts and the official script's exact match and F1 of
//! those texts, against transformers; a T5 run on it, against its own `bomf predict`. Checked
//! against peft (`expected_adapters.json` from `gen_tiny_adapters.py`):
//! `--adapter` in `bomf eval`/`predict`, and `bomf fuse` of adapter folders.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use bomf_tests::cli::config::by_rank_data;
use bomf_tests::cli::interrupt::{assert_each_evaluation_once, kill_after_fusions, spawn_slow};
use bomf_tests::cli::{
    assert_mentions, assert_run_outputs, close, count_events, fail, fuse_args, json, model_args,
    succeed, succeed_stderr, train_args,
};
use serde_json::Value;

bomf_tests::bomf_cli!();

mod common;

use common::{Data, LORA, MAX_NEW_TOKENS, eval_with, fixtures};

fn expected() -> Value {
    json(&fixtures().join("expected.json"))
}

const FUSION_BUDGET: usize = 5;

/// A run config; `model_extra` is appended to `[model]` (e.g. a `[model.lora]` table).
fn write_run_config(dir: &Path, model: &str, model_extra: &str, data: Data) -> PathBuf {
    let fusion = format!("budget = {FUSION_BUDGET}\n");
    common::write_run_config(
        dir,
        (model, model_extra),
        data,
        &fusion,
        "greedy_soup = true\n",
    )
}

/// Runs `bomf run`, checks the table and the run folder, and returns the chosen method's test
/// loss and metrics as `results.json` reports them.
fn run_and_check(dir: &Path, config: &Path, metric: &str) -> Value {
    let stdout = succeed(&bomf(
        &["run", config.to_str().unwrap(), "--out", "run"],
        dir,
    ));
    assert!(
        stdout.contains(&format!("validation and test {metric} and loss")),
        "{stdout}"
    );
    let results = assert_run_outputs(
        &dir.join("run"),
        &[
            "BOMF (posterior mean)",
            "best checkpoint",
            "last checkpoint",
            "SWA",
            "greedy soup",
            "learned soup",
        ],
        &[],
    );
    for m in results["methods"].as_array().unwrap() {
        let test = &m["test"];
        assert!(test["loss"].as_f64().unwrap().is_finite(), "{m}");
        assert!(test["metrics"][metric].is_number(), "{metric} missing: {m}");
    }
    results["methods"][0]["test"].clone()
}

/// `bomf eval` of `model` on the test split of `data`, as JSON.
fn eval(dir: &Path, model: &Path, data: Data) -> Value {
    eval_with(dir, model, data, "test", &[])
}

/// The fused model reloads through `bomf eval` with the test numbers the run reported.
fn assert_fused_reproduces(dir: &Path, chosen_test: &Value, data: Data) {
    let again = eval(dir, &dir.join("run/fused"), data);
    let (ours, reported) = (
        again["loss"].as_f64().unwrap(),
        chosen_test["loss"].as_f64().unwrap(),
    );
    assert!(close(ours, reported, 1e-5), "{ours} vs {reported}");
    assert_eq!(again["metrics"], chosen_test["metrics"]);
}

#[test]
fn lora_llama_run_on_generation_writes_merged_model_and_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_run_config(dir.path(), "llama", LORA, Data::Generation);
    let chosen = run_and_check(dir.path(), &config, "bleu");
    for m in ["rouge1", "rouge2", "rougeL", "rougeLsum"] {
        assert!(chosen["metrics"][m].is_number(), "{m} missing: {chosen}");
    }
    let adapter = dir.path().join("run/fused-adapter");
    let adapter_config = json(&adapter.join("adapter_config.json"));
    assert_eq!(adapter_config["r"], 4);
    assert_eq!(adapter_config["peft_type"], "LORA");
    assert!(adapter.join("adapter_model.safetensors").is_file());
    // The merged model is a plain LLaMA folder.
    let fused_config = json(&dir.path().join("run/fused/config.json"));
    assert_eq!(fused_config["model_type"], "llama");
    assert_fused_reproduces(dir.path(), &chosen, Data::Generation);

    // Resuming the finished run reloads the LoRA checkpoints and the searches from the run
    // folder: nothing is evaluated again and the results are the same.
    let run = dir.path().join("run");
    let read = |f: &str| std::fs::read_to_string(run.join(f)).unwrap();
    let (evaluations, results) = (read("evaluations.jsonl"), read("results.json"));
    succeed(&bomf(
        &["run", config.to_str().unwrap(), "--out", "run", "--resume"],
        dir.path(),
    ));
    assert_eq!(read("evaluations.jsonl"), evaluations);
    // Equal up to wall times.
    let without_times = |text: &str| -> Vec<Value> {
        let v: Value = serde_json::from_str(text).unwrap();
        v["methods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let mut m = m.clone();
                m.as_object_mut().unwrap().remove("seconds");
                m
            })
            .collect()
    };
    assert_eq!(
        without_times(&read("results.json")),
        without_times(&results)
    );
}

#[test]
fn lora_llama_run_writes_class_labels_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_run_config(dir.path(), "llama", LORA, Data::Labels);
    let chosen = run_and_check(dir.path(), &config, "exact_match");
    assert_fused_reproduces(dir.path(), &chosen, Data::Labels);
}

/// Stage 1 on the LoRA-rank proxy (`[hpbo] lora_rank`, at rank 2 of the run's 4).
const LORA_RANK_PROXY: &str = "\n[hpbo]\nn_initial = 1\nbudget = 2\nfreeze_lower_layers = 0\nlora_rank = 2\n\n[hpbo.space]\nlearning_rate = [0.005, 0.05]\nbatch_size = [2, 8]\n";

#[test]
fn lora_llama_run_on_multiple_choice_scores_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("{LORA}{LORA_RANK_PROXY}");
    let config = write_run_config(dir.path(), "llama", &extra, Data::Choice);
    let chosen = run_and_check(dir.path(), &config, "accuracy");
    assert_fused_reproduces(dir.path(), &chosen, Data::Choice);
    assert_eq!(count_events(&dir.path().join("run"), "hp_trial"), 2);
}

#[test]
fn t5_run_on_generation_exports_a_t5_folder() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_run_config(dir.path(), "t5", "", Data::Generation);
    let chosen = run_and_check(dir.path(), &config, "bleu");
    let fused_config = json(&dir.path().join("run/fused/config.json"));
    assert_eq!(fused_config["model_type"], "t5");
    assert_fused_reproduces(dir.path(), &chosen, Data::Generation);
}

#[test]
fn eval_matches_transformers_on_the_untrained_models() {
    let dir = tempfile::tempdir().unwrap();
    let want = expected();
    for (model, data, loss, accuracy) in [
        (
            "llama",
            Data::Generation,
            &want["llama"]["generation_test_loss"],
            None,
        ),
        (
            "t5",
            Data::Generation,
            &want["t5"]["generation_test_loss"],
            None,
        ),
        (
            "llama",
            Data::Choice,
            &want["llama"]["choice_test"]["loss"],
            Some(&want["llama"]["choice_test"]["accuracy"]),
        ),
    ] {
        let got = eval(dir.path(), &fixtures().join(model), data);
        let (ours, theirs) = (got["loss"].as_f64().unwrap(), loss.as_f64().unwrap());
        assert!(close(ours, theirs, 1e-5), "{model}: {ours} vs {theirs}");
        if let Some(acc) = accuracy {
            assert_eq!(got["metrics"]["accuracy"].as_f64(), acc.as_f64(), "{model}");
        } else {
            assert!(got["metrics"]["bleu"].is_number(), "{got}");
        }
    }
}

fn predict(dir: &Path, model: &str, extra: &[&str]) -> Vec<String> {
    let want = expected();
    let max_new = want["predict_max_new_tokens"].to_string();
    let out = dir.join(format!("{model}-predictions.jsonl"));
    let input = fixtures().join("predict.jsonl");
    let mut flags = vec![
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--max-new-tokens",
        &max_new,
        "--batch-size",
        "2",
    ];
    flags.extend(extra);
    succeed(&bomf(
        &model_args("predict", &fixtures().join(model), &flags),
        dir,
    ));
    generated_texts(&out)
}

/// The `generated_text` of each line `bomf predict` wrote to `out`.
fn generated_texts(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["generated_text"].as_str().unwrap().to_string()
        })
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn predict_generates_what_transformers_generates() {
    let dir = tempfile::tempdir().unwrap();
    let want = expected();
    // Batches of 2 over 3 lines: padding (left for LLaMA, right for T5) must not change them.
    assert_eq!(
        predict(dir.path(), "llama", &[]),
        strings(&want["llama"]["greedy"])
    );
    assert_eq!(
        predict(dir.path(), "llama", &["--num-beams", "2"]),
        strings(&want["llama"]["beam2"])
    );
    assert_eq!(
        predict(dir.path(), "t5", &[]),
        strings(&want["t5"]["greedy"])
    );
}

fn expected_squad() -> Value {
    json(&fixtures().join("expected_squad.json"))
}

/// The SQuAD test file's questions as `bomf predict` input lines (`question`, `context`) and
/// their gold answers (empty: unanswerable).
fn squad_test_questions(dir: &Path) -> (PathBuf, Vec<Vec<String>>) {
    let squad = json(&fixtures().join("squad_test.json"));
    let (mut lines, mut golds) = (String::new(), Vec::new());
    for article in squad["data"].as_array().unwrap() {
        for paragraph in article["paragraphs"].as_array().unwrap() {
            for qa in paragraph["qas"].as_array().unwrap() {
                let line = serde_json::json!({
                    "question": qa["question"],
                    "context": paragraph["context"],
                });
                lines += &format!("{line}\n");
                golds.push(
                    qa["answers"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|a| a["text"].as_str().unwrap().to_string())
                        .collect(),
                );
            }
        }
    }
    let path = dir.join("squad_questions.jsonl");
    std::fs::write(&path, lines).unwrap();
    (path, golds)
}

/// `bomf predict` of `model` on the SQuAD test questions, asked as training asks them.
fn predict_squad(dir: &Path, model: &Path) -> Vec<String> {
    let (input, _) = squad_test_questions(dir);
    let out = dir.join("squad-predictions.jsonl");
    let max_new = MAX_NEW_TOKENS.to_string();
    let flags = [
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--text-field",
        "question",
        "--text-field",
        "context",
        "--max-new-tokens",
        &max_new,
        "--max-len",
        "64",
    ];
    succeed(&bomf(&model_args("predict", model, &flags), dir));
    generated_texts(&out)
}

#[test]
fn squad_is_answered_by_generation_like_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let want = expected_squad();
    assert_eq!(want["max_new_tokens"].as_u64(), Some(MAX_NEW_TOKENS as u64));
    for model in ["llama", "t5"] {
        let got = eval(dir.path(), &fixtures().join(model), Data::Squad);
        let (ours, theirs) = (
            got["loss"].as_f64().unwrap(),
            want[model]["test_loss"].as_f64().unwrap(),
        );
        assert!(close(ours, theirs, 1e-5), "{model}: {ours} vs {theirs}");
        for metric in ["exact_match", "squad_f1"] {
            assert_eq!(
                got["metrics"][metric].as_f64(),
                want[model]["test_metrics"][metric].as_f64(),
                "{model} {metric}"
            );
        }
        assert_eq!(
            predict_squad(dir.path(), &fixtures().join(model)),
            strings(&want[model]["greedy"]),
            "{model}"
        );
    }
}

#[test]
fn a_classifier_on_squad_is_told_to_use_a_generative_model() {
    let dir = tempfile::tempdir().unwrap();
    let spec = Data::Squad.write_spec(dir.path());
    let bert = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny/a");
    let flags = ["--data", spec.to_str().unwrap()];
    let err = fail(&bomf(&model_args("eval", &bert, &flags), dir.path()));
    assert!(err.contains("T5 or LLaMA-family"), "{err}");
}

#[test]
fn t5_run_on_squad_selects_by_exact_match() {
    use bomf_data::metrics::{Metric, MetricInput};
    let dir = tempfile::tempdir().unwrap();
    let config = write_run_config(dir.path(), "t5", "", Data::Squad);
    let chosen = run_and_check(dir.path(), &config, "exact_match");
    assert!(chosen["metrics"]["squad_f1"].is_number(), "{chosen}");
    assert_fused_reproduces(dir.path(), &chosen, Data::Squad);
    // The run's test scores are the official metrics of what the fused model generates.
    let (_, golds) = squad_test_questions(dir.path());
    let predicted = predict_squad(dir.path(), &dir.path().join("run/fused"));
    for (metric, name) in [
        (Metric::SquadExactMatch, "exact_match"),
        (Metric::SquadF1, "squad_f1"),
    ] {
        let score = metric
            .compute(MetricInput::Texts {
                references: &golds,
                predicted: &predicted,
            })
            .unwrap();
        let reported = chosen["metrics"][name].as_f64().unwrap();
        assert!(
            close(score, reported, 1e-9),
            "{name}: {score} vs {reported}"
        );
    }
}

#[test]
fn fuse_of_one_generative_checkpoint_reexports_it() {
    let dir = tempfile::tempdir().unwrap();
    for model in ["llama", "t5"] {
        let source = fixtures().join(model);
        let out = dir.path().join(format!("{model}-fused"));
        succeed(&bomf(
            &fuse_args(&[&source, &source], "0.5,0.5", &out, &[]),
            dir.path(),
        ));
        assert!(out.join("tokenizer.json").is_file());
        let a = eval(dir.path(), &source, Data::Generation);
        let b = eval(dir.path(), &out, Data::Generation);
        let (a, b) = (a["loss"].as_f64().unwrap(), b["loss"].as_f64().unwrap());
        assert!(close(a, b, 1e-5), "{model}: {a} vs {b}");
    }
}

fn expected_adapters() -> Value {
    json(&fixtures().join("expected_adapters.json"))
}

/// peft adapter folders (fixtures from `gen_tiny_adapters.py`): `bomf eval` and `bomf predict`
/// with `--adapter` give peft's loss and greedy texts, and `bomf fuse` of two adapters gives the
/// adapter whose loss and texts peft computes for the fused tensors.
#[test]
fn adapters_evaluate_predict_and_fuse_like_peft() {
    let dir = tempfile::tempdir().unwrap();
    let want = expected_adapters();
    let base = fixtures().join("llama");
    let adapter_a = fixtures().join("adapter_a");
    let adapter_b = fixtures().join("adapter_b");
    let fused = dir.path().join("fused-adapter");
    let weights = want["fusion_weights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let with_base = ["--base", base.to_str().unwrap()];
    let stderr = succeed_stderr(&bomf(
        &fuse_args(&[&adapter_a, &adapter_b], &weights, &fused, &with_base),
        dir.path(),
    ));
    assert!(stderr.contains("fused 2 adapters"), "{stderr}");
    assert!(fused.join("adapter_config.json").is_file());
    for (name, adapter) in [("adapter_a", &adapter_a), ("fused", &fused)] {
        let flag = ["--adapter", adapter.to_str().unwrap()];
        let got = eval_with(dir.path(), &base, Data::Generation, "test", &flag);
        let (ours, theirs) = (
            got["loss"].as_f64().unwrap(),
            want[name]["generation_test_loss"].as_f64().unwrap(),
        );
        assert!(close(ours, theirs, 1e-5), "{name}: {ours} vs peft {theirs}");
        assert_eq!(
            predict(dir.path(), "llama", &flag),
            strings(&want[name]["greedy"]),
            "{name}"
        );
    }

    // Mistakes: a dense folder among adapters, no base model, an adapter on T5.
    let err = fail(&bomf(
        &fuse_args(
            &[&adapter_a, &base],
            "0.5,0.5",
            Path::new("bad1"),
            &with_base,
        ),
        dir.path(),
    ));
    assert_mentions(&err, &["checkpoint 2", "not a peft adapter folder"]);
    let err = fail(&bomf(
        &fuse_args(&[&adapter_a, &adapter_b], "0.5,0.5", Path::new("bad2"), &[]),
        dir.path(),
    ));
    assert!(err.contains("--base"), "{err}");
    let spec = Data::Generation.write_spec(dir.path());
    let t5 = fixtures().join("t5");
    let flags = [
        "--adapter",
        adapter_a.to_str().unwrap(),
        "--data",
        spec.to_str().unwrap(),
    ];
    let err = fail(&bomf(&model_args("eval", &t5, &flags), dir.path()));
    assert!(err.contains("LLaMA-family models only"), "{err}");
}

/// `bomf train` of a generative model, then `bomf fuse` of its checkpoints: a one-hot fusion of
/// kept checkpoint k is that checkpoint, so `bomf eval` on validation must give the validation
/// loss the manifest recorded for it. `extra` adds flags; `adapters`: fuse the adapter folders.
fn train_then_refuse(model: &str, extra: &[&str], adapters: bool) {
    let dir = tempfile::tempdir().unwrap();
    let spec = Data::Generation.write_spec(dir.path());
    let model_dir = fixtures().join(model);
    let max_new = MAX_NEW_TOKENS.to_string();
    let mut flags = vec![
        "--lr",
        "0.02",
        "--batch-size",
        "4",
        "--epochs",
        "2",
        "--every",
        "2",
        "--k",
        "2",
        "--rule",
        "last-k",
        "--max-len",
        "64",
        "--max-new-tokens",
        &max_new,
    ];
    flags.extend(extra);
    let stdout = succeed(&bomf(
        &train_args(&model_dir, &spec, "t", &flags),
        dir.path(),
    ));
    assert!(stdout.contains("kept 2 checkpoints"), "{stdout}");
    let checkpoints = dir.path().join("t/checkpoints");
    let manifest = json(&checkpoints.join("manifest.json"));
    let entries = manifest["checkpoints"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    let inputs: Vec<PathBuf> = entries
        .iter()
        .map(|e| {
            let step = e["step"].as_u64().unwrap();
            if adapters {
                checkpoints.join(format!("adapter-{step:06}"))
            } else {
                checkpoints.join(e["file"].as_str().unwrap())
            }
        })
        .collect();
    let fused = dir.path().join("fused");
    succeed(&bomf(&fuse_args(&inputs, "0,1", &fused, &[]), dir.path()));
    let (model_arg, adapter_arg) = if adapters {
        (model_dir.clone(), Some(fused.clone()))
    } else {
        (fused.clone(), None)
    };
    let adapter_flag: Vec<&str> = adapter_arg
        .iter()
        .flat_map(|adapter| ["--adapter", adapter.to_str().unwrap()])
        .collect();
    let got = eval_with(
        dir.path(),
        &model_arg,
        Data::Generation,
        "validation",
        &adapter_flag,
    );
    let recorded = &entries[1]["validation"];
    let (ours, theirs) = (
        got["loss"].as_f64().unwrap(),
        recorded["loss"].as_f64().unwrap(),
    );
    assert!(close(ours, theirs, 1e-5), "{model}: {ours} vs {theirs}");
    assert_eq!(got["metrics"], recorded["metrics"], "{model}");
}

#[test]
fn train_lora_adapters_then_fuse_them() {
    train_then_refuse(
        "llama",
        &[
            "--lora-r",
            "4",
            "--lora-alpha",
            "8",
            "--lora-target",
            "q_proj",
            "--lora-target",
            "v_proj",
        ],
        true,
    );
}

#[test]
fn train_t5_then_fuse_its_checkpoints() {
    train_then_refuse("t5", &[], false);
}

#[test]
fn config_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let run_fails = |config: &Path| {
        fail(&bomf(
            &["run", config.to_str().unwrap(), "--out", "x"],
            dir.path(),
        ))
    };
    // LoRA on T5.
    let config = write_run_config(dir.path(), "t5", LORA, Data::Generation);
    let err = run_fails(&config);
    assert!(err.contains("LLaMA family only"), "{err}");
    // A misspelt LoRA key.
    let misspelt = "\n[model.lora]\nr = 4\nlora_alpha = 8.0\nalpha = 3\n";
    let config = write_run_config(dir.path(), "llama", misspelt, Data::Generation);
    let err = run_fails(&config);
    assert!(err.contains("unknown field `alpha`"), "{err}");
    // A LoRA-rank proxy for a model without LoRA.
    let config = write_run_config(dir.path(), "llama", LORA_RANK_PROXY, Data::Generation);
    let err = run_fails(&config);
    assert!(err.contains("needs [model.lora]"), "{err}");
    // LoRA training of a T5.
    let spec = Data::Generation.write_spec(dir.path());
    let args = train_args(&fixtures().join("t5"), &spec, "z", &["--lora-r", "4"]);
    let err = fail(&bomf(&args, dir.path()));
    assert!(err.contains("LLaMA-family models only"), "{err}");
    // A generative model on classification data.
    let config = write_run_config(dir.path(), "llama", misspelt, Data::Generation);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("alpha = 3\n", "");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny/train.jsonl");
    let start = text.find("[data]").unwrap();
    let end = text.find("[train]").unwrap();
    let text = format!(
        "{}[data]\n{}\n{}",
        &text[..start],
        by_rank_data(&data),
        &text[end..]
    );
    let path = dir.path().join("cls.toml");
    std::fs::write(&path, text).unwrap();
    let err = run_fails(&path);
    assert!(
        err.contains("a generation, extractive QA or multiple-choice task"),
        "{err}"
    );
}

#[test]
fn lora_run_killed_then_resumed_repeats_no_evaluation() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_run_config(dir.path(), "llama", LORA, Data::Generation);
    let run = dir.path().join("run");
    let args = ["run", config.to_str().unwrap(), "--out", "run"];
    let exe = env!("CARGO_BIN_EXE_bomf");
    let child = spawn_slow(exe, &args, dir.path(), 200, Stdio::null());
    kill_after_fusions(child, &run, 2, FUSION_BUDGET);

    succeed(&bomf(&[&args[..], &["--resume"]].concat(), dir.path()));
    assert_each_evaluation_once(&run, FUSION_BUDGET);
    let results = json(&run.join("results.json"));
    assert_fused_reproduces(dir.path(), &results["methods"][0]["test"], Data::Generation);
}
