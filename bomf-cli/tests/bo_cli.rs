//! `bomf bo suggest` / `bomf bo hypervolume` as a user runs them: files in, JSON out.

use std::process::Output;

use bomf_tests::cli::{assert_mentions, bo_suggest, fail, succeed_json};

bomf_tests::bomf_cli!();

fn stderr(out: &Output) -> String {
    fail(out)
}

const SPACE: &str = r#"{"params": [{"name": "lr", "low": 1e-6, "high": 1e-4, "log": true},
                                   {"name": "bs", "low": 4, "high": 32, "integer": true}],
                        "objectives": [{"name": "acc", "goal": "max"}]}"#;

fn candidates(v: &serde_json::Value) -> Vec<Vec<f64>> {
    serde_json::from_value(v["candidates"].clone()).expect("candidates is a list of points")
}

#[test]
fn empty_history_gives_a_seeded_design_inside_the_space() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("space.json"), SPACE).unwrap();
    let args = bo_suggest(&["--q", "4", "--seed", "7"]);
    let first = candidates(&succeed_json(&bomf(&args, dir.path())));
    assert_eq!(first.len(), 4);
    for x in &first {
        assert!((1e-6..=1e-4).contains(&x[0]), "lr out of range: {x:?}");
        assert!(
            (4.0..=32.0).contains(&x[1]) && x[1].fract() == 0.0,
            "bs: {x:?}"
        );
    }
    // Same files and seed: same answer; another seed: another design.
    assert_eq!(first, candidates(&succeed_json(&bomf(&args, dir.path()))));
    let other = bo_suggest(&["--q", "4", "--seed", "8"]);
    assert_ne!(first, candidates(&succeed_json(&bomf(&other, dir.path()))));
}

#[test]
fn history_drives_bayesian_optimisation_and_tolerates_failures() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("space.json"), SPACE).unwrap();
    // A smooth objective peaked at lr = 1e-5, bs = 16, one evaluation failing (null y).
    let f = |x: &[f64]| -(x[0].log10() + 5.0).powi(2) - (x[1] - 16.0).powi(2) / 100.0;
    let mut history = String::new();
    for i in 0..8 {
        let args = bo_suggest(&["--history", "h.jsonl"]);
        let x = candidates(&succeed_json(&bomf(&args, dir.path())))[0].clone();
        // Failures as Python's json.dumps writes them, and as null.
        let y = match i {
            2 => "null".to_string(),
            4 => "NaN".to_string(),
            6 => "-Infinity".to_string(),
            _ => f(&x).to_string(),
        };
        history.push_str(&format!("{{\"x\": {x:?}, \"y\": [{y}]}}\n"));
        std::fs::write(dir.path().join("h.jsonl"), &history).unwrap();
    }
    // Past the initial design the proposal comes from the GP; it must be a new point.
    let args = bo_suggest(&["--history", "h.jsonl"]);
    let next = candidates(&succeed_json(&bomf(&args, dir.path())))[0].clone();
    assert!(
        !history.contains(&format!("{next:?}")),
        "re-proposed a point"
    );
}

#[test]
fn pending_points_are_never_suggested_again() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("space.json"), SPACE).unwrap();
    let f = |x: &[f64]| -(x[0].log10() + 5.0).powi(2) - (x[1] - 16.0).powi(2) / 100.0;
    let suggest = |history: &str| {
        std::fs::write(dir.path().join("h.jsonl"), history).unwrap();
        let args = bo_suggest(&["--history", "h.jsonl"]);
        candidates(&succeed_json(&bomf(&args, dir.path())))[0].clone()
    };
    // In the design and after it: what one worker is evaluating, the next one never gets.
    let mut history = String::new();
    for _ in 0..7 {
        let x = suggest(&history);
        let with_pending = format!("{history}{{\"x\": {x:?}, \"pending\": true}}\n");
        let other = suggest(&with_pending);
        assert_ne!(other, x, "a pending point was suggested again");
        history.push_str(&format!("{{\"x\": {x:?}, \"y\": [{}]}}\n", f(&x)));
    }
    // A pending line with a value, or a line with neither, is an error naming the line.
    let bad = format!("{history}{{\"x\": [1e-5, 8], \"y\": [0.1], \"pending\": true}}\n");
    std::fs::write(dir.path().join("h.jsonl"), bad).unwrap();
    let out = bomf(&bo_suggest(&["--history", "h.jsonl"]), dir.path());
    assert_mentions(&stderr(&out), &["h.jsonl:8", "pending"]);
    std::fs::write(dir.path().join("h.jsonl"), "{\"x\": [1e-5, 8]}\n").unwrap();
    let out = bomf(&bo_suggest(&["--history", "h.jsonl"]), dir.path());
    assert_mentions(&stderr(&out), &["h.jsonl:1", "no y"]);
}

#[test]
fn reference_point_rule_decides_where_a_one_point_front_lets_bo_look() {
    let dir = tempfile::tempdir().unwrap();
    let space = r#"{"params": [{"name": "a", "low": 0, "high": 1}, {"name": "b", "low": 0, "high": 1}],
                    "objectives": [{"name": "f", "goal": "min"}, {"name": "g", "goal": "min"}]}"#;
    std::fs::write(dir.path().join("space.json"), space).unwrap();
    // f = a; the first point, (0, 1), dominates every other one.
    let history = [
        ([0.0, 0.0], [0.0, 1.0]),
        ([0.5, 0.5], [0.5, 3.0]),
        ([0.9, 0.4], [0.9, 2.5]),
        ([0.3, 0.8], [0.3, 4.0]),
        ([0.7, 0.9], [0.7, 5.0]),
        ([0.2, 0.3], [0.2, 2.0]),
    ];
    let lines: String = history
        .iter()
        .map(|(x, y)| format!("{{\"x\": {x:?}, \"y\": {y:?}}}\n"))
        .collect();
    std::fs::write(dir.path().join("h.jsonl"), lines).unwrap();
    let suggest = |rule: &str| {
        let args = bo_suggest(&["--history", "h.jsonl", "--ref-rule", rule]);
        candidates(&succeed_json(&bomf(&args, dir.path())))[0].clone()
    };
    // BoTorch's inference on the one-point front leaves a margin of 1e-8 in f = a: only
    // a ≈ 0 can improve the hypervolume. Below the worst observed values, any a can.
    let front = suggest("front");
    let observed = suggest("observed");
    assert!(front[0] < 0.05, "front rule proposed {front:?}");
    assert_ne!(front, observed);
    let out = bomf(
        &bo_suggest(&["--history", "h.jsonl", "--ref-rule", "nadir"]),
        dir.path(),
    );
    assert_mentions(&stderr(&out), &["--ref-rule", "front", "observed"]);
}

#[test]
fn bad_history_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("space.json"), SPACE).unwrap();
    std::fs::write(
        dir.path().join("h.jsonl"),
        "{\"x\": [1e-5, 8], \"y\": [0.5]}\n{\"x\": [1e-5], \"y\": [0.5]}\n",
    )
    .unwrap();
    let args = bo_suggest(&["--history", "h.jsonl"]);
    let err = stderr(&bomf(&args, dir.path()));
    assert!(err.contains("h.jsonl:2"), "{err}");

    std::fs::write(
        dir.path().join("h.jsonl"),
        "{\"x\": [1e-5, 8], \"y\": [0.5, 1.0]}\n",
    )
    .unwrap();
    let err = stderr(&bomf(&args, dir.path()));
    assert_mentions(&err, &["h.jsonl:1", "objective"]);

    std::fs::write(
        dir.path().join("h.jsonl"),
        "{\"x\": [1e-2, 8], \"y\": [0.5]}\n",
    )
    .unwrap();
    let err = stderr(&bomf(&args, dir.path()));
    assert!(err.contains("h.jsonl:1"), "{err}");

    std::fs::write(dir.path().join("h.jsonl"), "not json\n").unwrap();
    let err = stderr(&bomf(&args, dir.path()));
    assert!(err.contains("h.jsonl:1"), "{err}");
    // A batch too large to hold is refused, saying the limit, not an allocation failure.
    let huge = bo_suggest(&["--q", "1000000000000"]);
    let err = stderr(&bomf(&huge, dir.path()));
    assert_mentions(&err, &["1000000000000", "at most 1000"]);
}

#[test]
fn bad_space_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("space.json"),
        r#"{"params": [{"name": "lr", "low": 1e-4, "high": 1e-6}], "objectives": [{"name": "a", "goal": "max"}]}"#,
    )
    .unwrap();
    let err = stderr(&bomf(
        &["bo", "suggest", "--space", "space.json"],
        dir.path(),
    ));
    assert_mentions(&err, &["space.json", "lr"]);
    let err = stderr(&bomf(
        &["bo", "suggest", "--space", "missing.json"],
        dir.path(),
    ));
    assert!(err.contains("missing.json"), "{err}");
}

#[test]
fn hypervolume_matches_botorch_golden_value() {
    // BoTorch test/utils/multi_objective/test_hypervolume.py: this front has HV 37.75 w.r.t.
    // [0, 0] and 28.75 w.r.t. [1, 0.5].
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("front.json"),
        "[[8.5,3],[8.5,3.5],[5,5],[9,1],[4,5]]",
    )
    .unwrap();
    let hv = |r: &str| {
        let out = bomf(
            &["bo", "hypervolume", "--ref", r, "--points", "front.json"],
            dir.path(),
        );
        succeed_json(&out)["hypervolume"].as_f64().unwrap()
    };
    assert!((hv("0,0") - 37.75).abs() < 1e-12);
    assert!((hv("1,0.5") - 28.75).abs() < 1e-12);

    // The same front as JSON lines of {"y": ...}, with the second objective minimised.
    std::fs::write(
        dir.path().join("front.jsonl"),
        "{\"y\": [8.5, -3]}\n{\"y\": [8.5, -3.5]}\n{\"y\": [5, -5]}\n{\"y\": [9, -1]}\n[4, -5]\n",
    )
    .unwrap();
    let out = bomf(
        &[
            "bo",
            "hypervolume",
            "--ref",
            "0,0",
            "--points",
            "front.jsonl",
            "--goals",
            "max,min",
        ],
        dir.path(),
    );
    assert!((succeed_json(&out)["hypervolume"].as_f64().unwrap() - 37.75).abs() < 1e-12);

    std::fs::write(dir.path().join("bad.jsonl"), "[1, 2]\n[1, 2, 3]\n").unwrap();
    let err = stderr(&bomf(
        &["bo", "hypervolume", "--ref", "0,0", "--points", "bad.jsonl"],
        dir.path(),
    ));
    assert!(err.contains("point 2"), "{err}");
}
