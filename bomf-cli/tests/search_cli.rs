//! `bomf search` and `bomf fuse --stream` on checkpoints of an architecture bomf does not
//! implement (the tiny Qwen2 Trainer folder of `bomf-core/tests/fixtures/gen_qwen2_trainer.py`),
//! scored by the README's 20-line Python evaluator (`configs/search/eval_norm.py`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use bomf_tests::cli::{assert_mentions, fail, json, run, succeed, succeed_stderr};
use serde_json::Value;

const BOMF: &str = env!("CARGO_BIN_EXE_bomf");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn trainer_folder() -> PathBuf {
    repo().join("bomf-core/tests/fixtures/qwen2_trainer")
}

/// A search config on the Qwen2 fixture; `evaluator` is the command's JSON array.
fn write_config(dir: &Path, evaluator: &str, extra: &str) -> PathBuf {
    let text = format!(
        "checkpoints = [{:?}]\n{extra}\n[evaluator]\ncommand = {evaluator}\ntimeout_s = 20\n\n\
         [[objectives]]\nname = \"closeness\"\ndirection = \"maximize\"\n\n\
         [[objectives]]\nname = \"norm\"\ndirection = \"minimize\"\n\n[search]\nbudget = 8\n",
        trainer_folder().display().to_string()
    );
    let path = dir.join("search.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `bomf search CONFIG --out run FLAGS...` in `dir`.
fn search(dir: &Path, config: &Path, flags: &[&str]) -> Output {
    let args = [&["search", config.to_str().unwrap(), "--out", "run"], flags].concat();
    run(BOMF, &args, dir)
}

fn python_evaluator(script: &Path) -> String {
    format!(
        "[\"python3\", {:?}, \"{{model}}\"]",
        script.display().to_string()
    )
}

/// The command of a Python wrapper around the README's evaluator: `script` runs first, then the
/// wrapper prints what `eval_norm.py` prints; called as `wrapper.py {model} ARGS... eval_norm.py`.
fn wrapper_evaluator(dir: &Path, script: &str, args: &[&str]) -> String {
    let path = dir.join("wrapper.py");
    let score = "out = subprocess.run([sys.executable, sys.argv[-1], sys.argv[1]], \
                 capture_output=True, text=True)\nprint(out.stdout.strip().splitlines()[-1])\n";
    std::fs::write(&path, format!("{script}{score}")).unwrap();
    let eval_norm = repo().join("configs/search/eval_norm.py");
    let mut command = vec!["python3", path.to_str().unwrap(), "{model}"];
    command.extend_from_slice(args);
    command.push(eval_norm.to_str().unwrap());
    serde_json::to_string(&command).unwrap()
}

/// A search config whose evaluator is `script` wrapped as [`wrapper_evaluator`] says, with the
/// path of file `name` in `dir` (which need not exist) as its one argument; returns both paths.
fn wrapped_config(dir: &Path, script: &str, name: &str) -> (PathBuf, PathBuf) {
    let file = dir.join(name);
    let eval = wrapper_evaluator(dir, script, &[file.to_str().unwrap()]);
    (file, write_config(dir, &eval, ""))
}

fn evaluations(run_dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(run_dir.join("evaluations.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn fusion_weights(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .filter(|r| r["checkpoint"].is_null())
        .map(|r| r["weights"].to_string())
        .collect()
}

#[test]
fn a_search_on_trainer_checkpoints_with_two_workers_never_repeats_a_point() {
    let tmp = tempfile::tempdir().unwrap();
    let eval = python_evaluator(&repo().join("configs/search/eval_norm.py"));
    let config = write_config(tmp.path(), &eval, "");
    let stdout = succeed(&search(tmp.path(), &config, &["--workers", "2"]));
    assert_mentions(&stdout, &["chosen fusion", "fused model"]);
    let run_dir = tmp.path().join("run");
    let records = evaluations(&run_dir);
    assert_eq!(
        records
            .iter()
            .filter(|r| !r["checkpoint"].is_null())
            .count(),
        3
    );
    let fusions = fusion_weights(&records);
    assert_eq!(fusions.len(), 8);
    let distinct: BTreeSet<&String> = fusions.iter().collect();
    assert_eq!(
        distinct.len(),
        fusions.len(),
        "a point was evaluated twice: {fusions:?}"
    );
    let workers: BTreeSet<u64> = records
        .iter()
        .map(|r| r["worker"].as_u64().unwrap())
        .collect();
    assert_eq!(workers, BTreeSet::from([0, 1]));
    let ids: BTreeSet<u64> = records.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), records.len(), "evaluation ids repeat");

    let results = json(&run_dir.join("results.json"));
    assert_eq!(results["evaluations"], 8);
    let report = std::fs::read_to_string(run_dir.join("report/report.md")).unwrap();
    assert_mentions(
        &report,
        &[
            "checkpoint-10",
            "closeness ↑",
            "norm ↓",
            "chosen",
            "pareto.svg",
        ],
    );
    // The exported fusion is the chosen weights' fusion, as `bomf fuse --stream` writes it.
    let weights: Vec<String> = results["chosen_weights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_f64().unwrap().to_string())
        .collect();
    succeed(&run(
        BOMF,
        &[
            "fuse",
            "--stream",
            "--checkpoints",
            trainer_folder().to_str().unwrap(),
            "--weights",
            &weights.join(","),
            "--out",
            "again",
        ],
        tmp.path(),
    ));
    for file in [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "config.json",
    ] {
        let a = std::fs::read(run_dir.join("fused").join(file)).unwrap();
        let b = std::fs::read(tmp.path().join("again").join(file)).unwrap();
        assert!(
            a == b,
            "{file} differs between the search's export and bomf fuse"
        );
    }
    assert!(!run_dir.join("fused/optimizer.pt").exists());
}

/// An evaluator that logs where it ran (worker, device, CUDA_VISIBLE_DEVICES), then scores.
const PLACED: &str = r#"
import os, subprocess, sys
with open(sys.argv[2], "a") as log:
    log.write(f"{os.environ['BOMF_WORKER']} {sys.argv[3]} {os.environ['BOMF_DEVICE']} {os.environ['CUDA_VISIBLE_DEVICES']}\n")
"#;

#[test]
fn each_worker_gets_its_own_device() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("placement.log");
    let eval = wrapper_evaluator(tmp.path(), PLACED, &[log.to_str().unwrap(), "{device}"]);
    let config = write_config(tmp.path(), &eval, "");
    let flags = ["--workers", "2", "--devices", "cuda:0,cuda:1"];
    succeed(&search(tmp.path(), &config, &flags));
    let lines = std::fs::read_to_string(&log).unwrap();
    let mut workers = BTreeSet::new();
    for line in lines.lines() {
        let [worker, arg, env, visible] = line.split(' ').collect::<Vec<_>>()[..] else {
            panic!("{line}");
        };
        assert_eq!(
            (arg, env),
            (format!("cuda:{worker}").as_str(), arg),
            "{line}"
        );
        assert_eq!(visible, worker, "{line}");
        workers.insert(worker.to_owned());
    }
    assert_eq!(lines.lines().count(), 3 + 8);
    assert_eq!(workers.len(), 2);
}

/// An evaluator that fails on some candidates, times out on one, and (once) kills the search.
const FLAKY: &str = r#"
import json, os, pathlib, subprocess, sys, time
model = pathlib.Path(sys.argv[1])
marker = pathlib.Path(sys.argv[2])
n = int(model.name.split("-")[1]) if model.name.startswith("candidate-") else -1
if n == 4:
    print("evaluator broke on candidate 4", file=sys.stderr)
    sys.exit(3)
if n == 5:
    time.sleep(60)
if n == 7 and not marker.exists():
    marker.write_text("killed")
    os.kill(os.getppid(), 9)
    time.sleep(5)
print("some log line")
"#;

#[test]
fn failed_and_timed_out_evaluations_are_recorded_and_a_killed_search_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let (marker, config) = wrapped_config(tmp.path(), FLAKY, "killed-once");
    std::fs::write(
        &config,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("timeout_s = 20", "timeout_s = 3"),
    )
    .unwrap();
    let killed = search(tmp.path(), &config, &[]);
    assert!(!killed.status.success(), "the evaluator killed the search");
    assert!(marker.exists());
    let run_dir = tmp.path().join("run");
    let before = fusion_weights(&evaluations(&run_dir));

    let resumed = search(tmp.path(), &config, &["--resume"]);
    succeed_stderr(&resumed);
    let records = evaluations(&run_dir);
    let fusions = fusion_weights(&records);
    assert_eq!(fusions.len(), 8);
    assert_eq!(
        &fusions[..before.len()],
        &before[..],
        "resume rewrote history"
    );
    let distinct: BTreeSet<&String> = fusions.iter().collect();
    assert_eq!(distinct.len(), fusions.len(), "a point was evaluated twice");
    let failed: Vec<&Value> = records
        .iter()
        .filter(|r| r["outcome"]["status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    let reasons: Vec<String> = failed
        .iter()
        .map(|r| r["outcome"]["reason"].as_str().unwrap().to_owned())
        .collect();
    assert_mentions(&reasons.join("\n"), &["exited with", "timed out after 3 s"]);
    // Evaluations 0-2 are the checkpoints; a candidate's folder is named by its evaluation id.
    let broke = failed
        .iter()
        .find(|r| r["id"] == 4)
        .expect("candidate 4 failed");
    let log = std::fs::read_to_string(run_dir.join("logs/evaluation-4.stderr")).unwrap();
    assert_mentions(&log, &["evaluator broke on candidate 4"]);
    assert_eq!(
        broke["outcome"]["stderr_tail"].as_str().unwrap().trim(),
        log.trim()
    );
    assert_eq!(json(&run_dir.join("results.json"))["failed"], 2);
}

/// An evaluator that fails until the file named by its second argument exists.
const UNCONFIGURED: &str = r#"
import os, subprocess, sys
if not os.path.exists(sys.argv[2]):
    sys.exit("evaluator not configured yet")
"#;

#[test]
fn a_failed_checkpoint_evaluation_stops_the_search_and_resume_evaluates_it_again() {
    let tmp = tempfile::tempdir().unwrap();
    let (ready, config) = wrapped_config(tmp.path(), UNCONFIGURED, "ready");
    let err = fail(&search(tmp.path(), &config, &[]));
    assert_mentions(&err, &["checkpoint-10", "not configured yet", "--resume"]);
    std::fs::write(&ready, "").unwrap();
    succeed(&search(tmp.path(), &config, &["--resume"]));
    let records = evaluations(&tmp.path().join("run"));
    let failed = records
        .iter()
        .filter(|r| r["outcome"]["status"] == "failed");
    assert!(failed.clone().all(|r| !r["checkpoint"].is_null()));
    assert_eq!(
        failed.count(),
        3,
        "each checkpoint failed once, before the fix"
    );
    assert_eq!(records.len(), 3 + 3 + 8);
}

#[test]
fn mismatched_checkpoints_and_bad_configs_are_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    // A checkpoint whose norm weight has another shape.
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let first = trainer_folder().join("checkpoint-10");
    for entry in std::fs::read_dir(&first).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, other.join(path.file_name().unwrap())).unwrap();
    }
    let index = other.join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index).unwrap();
    std::fs::write(
        &index,
        text.replace("\"model.norm.weight\"", "\"model.final_norm.weight\""),
    )
    .unwrap();
    let out = run(
        BOMF,
        &[
            "fuse",
            "--stream",
            "--checkpoints",
            first.to_str().unwrap(),
            other.to_str().unwrap(),
            "--weights",
            "0.5,0.5",
            "--out",
            "f",
        ],
        tmp.path(),
    );
    assert_mentions(&fail(&out), &["model.norm.weight"]);
    assert!(!tmp.path().join("f").exists());

    // Each bad config fails before the run folder exists, naming what to change.
    for (evaluator, extra, needle) in [
        ("[\"python3\", \"eval.py\"]", "", "{model}"),
        ("[\"true\", \"{model}\"]", "workers = 0", "workers"),
    ] {
        let config = write_config(tmp.path(), evaluator, extra);
        assert_mentions(&fail(&search(tmp.path(), &config, &[])), &[needle]);
        assert!(!tmp.path().join("run").exists());
    }
}
