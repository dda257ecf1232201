//! `bomf run CONFIG --seed N --set KEY=VALUE` on the tiny BERT: the overrides change the run,
//! the run directory records the overridden config (so `--resume` needs the same overrides),
//! and a key the config does not know, or a bad value, is refused before anything runs.

use std::path::{Path, PathBuf};

use bomf_tests::cli::config::{RunConfig, by_rank_data};
use bomf_tests::cli::{assert_mentions, fail, fusion_indices, json, succeed};

bomf_tests::bomf_cli!();

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny")
}

/// The config's own budget; the tests override it.
const FILE_BUDGET: usize = 8;

fn write_config(dir: &Path) -> PathBuf {
    RunConfig {
        seed: 1,
        model: &tiny().join("a"),
        model_extra: "",
        data: &by_rank_data(&tiny().join("train.jsonl")),
        learning_rate: 0.01,
        batch_size: 8,
        fusion: &format!("budget = {FILE_BUDGET}\n"),
        baselines: "greedy_soup = false\n",
        extra: "",
    }
    .write(dir)
}

#[test]
fn seed_and_set_change_the_run_and_a_resume_needs_the_same_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let config = config.to_str().unwrap();
    let overrides = ["--seed", "3", "--set", "fusion.budget=5"];
    let args = |out: &str, extra: &[&'static str]| -> Vec<String> {
        let mut args = vec!["run".to_string(), config.into(), "--out".into(), out.into()];
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    };
    succeed(&bomf(&args("run", &overrides), dir.path()));
    let run = dir.path().join("run");
    // The search ran the overridden budget, stage 2 trained with the overridden seed.
    assert_eq!(fusion_indices(&run, "bomf"), (0..5).collect::<Vec<_>>());
    let results = json(&run.join("results.json"));
    assert_eq!(results["train"]["seed"], 3, "{results}");
    // The run directory records the overridden config, headed by the overrides.
    let recorded = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(
        recorded.contains("# --set seed=3\n# --set fusion.budget=5\n"),
        "{recorded}"
    );
    assert!(recorded.contains("\nseed = 3\n"), "{recorded}");
    let fusion = recorded.split("[fusion]\n").nth(1).unwrap_or_default();
    assert!(fusion.starts_with("budget = 5\n"), "{recorded}");

    // The same overrides resume (nothing is left to do); other ones, or none, are refused as a
    // changed config, naming the line that differs.
    succeed(&bomf(
        &args("run", &[&overrides[..], &["--resume"]].concat()),
        dir.path(),
    ));
    assert_eq!(fusion_indices(&run, "bomf"), (0..5).collect::<Vec<_>>());
    let other = ["--seed", "3", "--set", "fusion.budget=6", "--resume"];
    let err = fail(&bomf(&args("run", &other), dir.path()));
    assert_mentions(
        &err,
        &[
            "differs from the run's",
            "# --set fusion.budget=5",
            "# --set fusion.budget=6",
        ],
    );
    let err = fail(&bomf(&args("run", &["--resume"]), dir.path()));
    assert!(err.contains("differs from the run's"), "{err}");
}

#[test]
fn an_unknown_key_or_a_bad_value_is_refused_naming_it_before_the_run_directory_exists() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let config = config.to_str().unwrap();
    let refused = |flags: &[&str]| -> String {
        let args = [&["run", config, "--out", "r"], flags].concat();
        let err = fail(&bomf(&args, dir.path()));
        assert!(
            !dir.path().join("r").exists(),
            "{flags:?} left a run directory"
        );
        err
    };
    let err = refused(&["--set", "fusion.budgett=5"]);
    assert_mentions(&err, &["--set fusion.budgett=5", "unknown field `budgett`"]);
    let err = refused(&["--set", "no_such_table.key=1"]);
    assert!(err.contains("--set no_such_table.key=1"), "{err}");
    let err = refused(&["--set", "fusion.budget=many"]);
    assert!(err.contains("--set fusion.budget=\"many\""), "{err}");
    let err = refused(&["--set", "seed.x=1"]);
    assert!(err.contains("`seed` is a value, not a table"), "{err}");
    let err = refused(&["--set", "fusion={ budget = 3 }"]);
    assert!(err.contains("not a table"), "{err}");
    let err = refused(&["--set", "budget"]);
    assert!(err.contains("KEY=VALUE"), "{err}");
    let err = refused(&["--seed", "2", "--set", "seed=4"]);
    assert!(err.contains("both set the seed"), "{err}");
    // An overridden value goes through the same checks as the file's.
    let err = refused(&["--set", "train.epochs=0"]);
    assert!(err.contains("epochs must be at least 1"), "{err}");
}
