//! `bomf run` and `bomf hpo` on a tiny random BERT and a 48-sentence JSONL dataset: what a run
//! directory holds, that a second run cannot take the same directory, that `kill -9` followed by
//! `--resume` finishes the run without repeating a completed evaluation, and config errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use bomf_tests::cli::config::write_tiny_classifier_run;
use bomf_tests::cli::interrupt::{
    assert_each_evaluation_once, kill_after_fusions, spawn_slow, wait_for_fusions,
};
use bomf_tests::cli::{
    assert_mentions, assert_run_outputs, count_events, fail, fusion_indices, model_args, run_args,
    succeed, succeed_json, write_replaced,
};
use serde_json::Value;

bomf_tests::bomf_cli!();

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny")
}

const FUSION_BUDGET: usize = 8;

/// A run config over the tiny model; `extra` is appended (e.g. an `[hpbo]` table).
fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let fusion = format!("budget = {FUSION_BUDGET}\n");
    write_tiny_classifier_run(dir, &tiny(), (&fusion, "greedy_soup = true\n"), extra)
}

/// The fixture's training data (the lines of `train.jsonl`).
fn train_data() -> String {
    std::fs::read_to_string(tiny().join("train.jsonl")).unwrap()
}

/// A run config as [`write_config`] that reads its data from `dir/name`, written with `data`;
/// returns the config's path and text and the data file's path.
fn write_config_on_data(dir: &Path, name: &str, data: &str) -> (PathBuf, String, PathBuf) {
    let config = write_config(dir, "");
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    let original = tiny().join("train.jsonl").display().to_string();
    let text = write_replaced(&config, &config, &original, &path.display().to_string());
    (config, text, path)
}

/// `bomf ARGS` in the background, each evaluation slowed down (300 ms) so that a test can
/// interrupt it mid-search.
fn slow_run(dir: &Path, args: &[&str], stderr: Stdio) -> std::process::Child {
    spawn_slow(env!("CARGO_BIN_EXE_bomf"), args, dir, 300, stderr)
}

#[test]
fn run_writes_results_fused_model_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let out = bomf(
        &["-v", "run", config.to_str().unwrap(), "--out", "run1"],
        dir.path(),
    );
    let stdout = succeed(&out);
    let run = dir.path().join("run1");
    assert_mentions(&stdout, &["BOMF (posterior mean)", "greedy soup"]);
    // stderr is a pipe here: progress comes as plain lines, stage 2's and stage 3's included,
    // and the logs (`-v`) carry no colour codes.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("stage 2 done"), "{stderr}");
    assert!(!stderr.contains('\x1b'), "colour codes in a log: {stderr}");
    assert!(stderr.contains("trajectory: "), "{stderr}");
    assert!(
        stderr.contains(&format!("bomf: {FUSION_BUDGET}/{FUSION_BUDGET} (")),
        "{stderr}"
    );
    let results = assert_run_outputs(
        &run,
        &[
            "BOMF (posterior mean)",
            "best checkpoint",
            "SWA",
            "greedy soup",
            "learned soup",
        ],
        &[
            "report/pareto.svg",
            "report/hypervolume.svg",
            "report/learning_curve.svg",
        ],
    );
    assert_eq!(
        fusion_indices(&run, "bomf"),
        (0..FUSION_BUDGET as u64).collect::<Vec<_>>()
    );
    let md = std::fs::read_to_string(run.join("report/report.md")).unwrap();
    assert_mentions(&md, &["greedy soup", "pareto.svg"]);

    // The exported model is the chosen fusion: `bomf eval` on it reproduces its test numbers.
    let spec = dir.path().join("data.toml");
    let config_text = std::fs::read_to_string(&config).unwrap();
    let data_table = config_text
        .split("[data]")
        .nth(1)
        .unwrap()
        .split("[train]")
        .next()
        .unwrap()
        .replace("[data.split]", "[split]");
    std::fs::write(&spec, data_table).unwrap();
    let flags = ["--data", spec.to_str().unwrap(), "--split", "test"];
    let eval = succeed(&bomf(
        &model_args("eval", &run.join("fused"), &flags),
        dir.path(),
    ));
    let eval: Value = serde_json::from_str(&eval).unwrap();
    let chosen = &results["methods"][0]["test"];
    let (a, b) = (
        eval["loss"].as_f64().unwrap(),
        chosen["loss"].as_f64().unwrap(),
    );
    assert!((a - b).abs() < 1e-4, "exported model loss {a} vs run's {b}");

    // Without --resume, the same directory is refused, and the message says what to do.
    let again = bomf(&run_args(&config, "run1", &[]), dir.path());
    assert!(fail(&again).contains("--resume"));
}

#[test]
fn kill_9_then_resume_repeats_no_evaluation() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let run = dir.path().join("run2");
    let child = slow_run(dir.path(), &run_args(&config, "run2", &[]), Stdio::null());
    kill_after_fusions(child, &run, 3, FUSION_BUDGET);

    succeed(&bomf(&run_args(&config, "run2", &["--resume"]), dir.path()));
    // Every evaluation of the search exactly once, in order, across the two processes, and
    // stage 2 not redone.
    assert_each_evaluation_once(&run, FUSION_BUDGET);
    assert!(run.join("results.json").is_file());
}

/// Ctrl-C (SIGINT) stops a run after the evaluation in flight, saying how to continue; while
/// it runs, a second `bomf run` on the same folder is refused (the lock); `--resume` then
/// finishes with every evaluation exactly once.
#[cfg(unix)]
#[test]
fn ctrl_c_stops_cleanly_and_a_second_run_is_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let run = dir.path().join("run4");
    let resume = run_args(&config, "run4", &["--resume"]);
    let mut child = slow_run(dir.path(), &run_args(&config, "run4", &[]), Stdio::piped());
    wait_for_fusions(&mut child, &run, 2);
    let err = fail(&bomf(&resume, dir.path()));
    assert!(err.contains("in use by another process"), "{err}");

    let before = fusion_indices(&run, "bomf").len();
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("stopped; continue with: bomf run"), "{err}");
    // It stopped early: at most the evaluation in flight when `before` was read and the one in
    // flight when the signal landed finished after it; no results yet.
    let after = fusion_indices(&run, "bomf").len();
    assert!(
        after <= before + 2 && after < FUSION_BUDGET,
        "{before} then {after}: {err}"
    );
    assert!(!run.join("results.json").exists());

    succeed(&bomf(&resume, dir.path()));
    assert_eq!(
        fusion_indices(&run, "bomf"),
        (0..FUSION_BUDGET as u64).collect::<Vec<_>>()
    );
    assert!(run.join("results.json").is_file());
}

#[test]
fn resume_refuses_a_changed_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    std::fs::create_dir_all(dir.path().join("run3")).unwrap();
    succeed(&bomf(&run_args(&config, "run3", &[]), dir.path()));
    write_replaced(&config, &config, "seed = 1", "seed = 2");
    let err = fail(&bomf(&run_args(&config, "run3", &["--resume"]), dir.path()));
    assert_mentions(&err, &["line 1", "seed"]);
}

#[test]
fn resume_refuses_changed_data_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _, data) = write_config_on_data(dir.path(), "train.jsonl", &train_data());
    succeed(&bomf(&run_args(&config, "run4", &[]), dir.path()));
    assert!(dir.path().join("run4/inputs.json").is_file());
    // Unchanged inputs resume (here: nothing left to do).
    let resume = run_args(&config, "run4", &["--resume"]);
    succeed(&bomf(&resume, dir.path()));
    // One example more: the hash-rank split changes, and resuming would mix evaluations on
    // two validation sets.
    let mut text = std::fs::read_to_string(&data).unwrap();
    text += "{\"text\": \"one more review\", \"label\": \"pos\"}\n";
    std::fs::write(&data, text).unwrap();
    let err = fail(&bomf(&resume, dir.path()));
    assert_mentions(&err, &["train.jsonl changed size", "start a new run"]);
}

#[test]
fn one_class_data_and_bad_settings_fail_before_the_run_directory_exists() {
    let dir = tempfile::tempdir().unwrap();
    let one_class = train_data().replace("\"neg\"", "\"pos\"");
    let (config, text, _) = write_config_on_data(dir.path(), "one-class.jsonl", &one_class);
    let args = run_args(&config, "r", &[]);
    let err = fail(&bomf(&args, dir.path()));
    assert!(err.contains("single class"), "{err}");
    assert!(
        !dir.path().join("r").exists(),
        "a failed validation left a run directory"
    );

    std::fs::write(&config, text.replace("epochs = 4", "epochs = 0")).unwrap();
    let err = fail(&bomf(&args, dir.path()));
    assert!(err.contains("epochs must be at least 1"), "{err}");
    assert!(!dir.path().join("r").exists());
}

#[test]
fn unknown_config_key_names_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let with_typo = "batch_size = 8\nbatchsize = 8";
    write_replaced(&config, &config, "batch_size = 8", with_typo);
    let err = fail(&bomf(&["run", config.to_str().unwrap()], dir.path()));
    assert_mentions(&err, &["batchsize", "line"]);
}

#[test]
fn hpo_finds_settings_and_writes_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "\n[hpbo]\nn_initial = 2\nbudget = 3\nfreeze_lower_layers = 1\n\
         [hpbo.space]\nlearning_rate = [0.001, 0.03]\n",
    );
    let v = succeed_json(&bomf(
        &["hpo", config.to_str().unwrap(), "--out", "hpo"],
        dir.path(),
    ));
    let lr = v["learning_rate"].as_f64().unwrap();
    assert!((0.001..=0.03).contains(&lr));
    assert_eq!(v["trials"].as_array().unwrap().len(), 3);
    assert_eq!(count_events(&dir.path().join("hpo"), "hp_trial"), 3);
}

#[test]
fn device_key_is_checked_and_cuda_needs_the_feature() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let text = std::fs::read_to_string(&config).unwrap();
    // The config with `device` on line 2, run.
    let run_on = |device: &str| {
        let with_device = text.replace("seed = 1", &format!("seed = 1\ndevice = \"{device}\""));
        std::fs::write(&config, with_device).unwrap();
        fail(&bomf(&["run", config.to_str().unwrap()], dir.path()))
    };
    let err = run_on("tpu");
    assert_mentions(&err, &["tpu", "line 2", "cuda:N"]);

    if cfg!(feature = "cuda") {
        return;
    }
    let err = run_on("cuda:0");
    assert_mentions(&err, &["cuda:0", "--features cuda"]);
    // `--device` overrides the config's key (here to another GPU, named in the error).
    let err = fail(&bomf(
        &["run", config.to_str().unwrap(), "--device", "cuda:2"],
        dir.path(),
    ));
    assert!(err.contains("cuda:2"), "{err}");
}
