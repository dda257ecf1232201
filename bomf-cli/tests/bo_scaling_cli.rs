//! `bomf bo suggest` with a history longer than the exact GP takes: the subset notice on
//! stderr, deterministic candidates, and the refusal of a GP size that would not fit in memory.
//! (Timings at 100 / 1,000 / 10,000 observations: `cargo run --release -p bomf-bo --example
//! bo_suggest_scaling`; histories of any size: `tests/fixtures/gen_bo_history.py`.)

use bomf_tests::cli::bo_suggest;

bomf_tests::bomf_cli!();

const SPACE: &str = r#"{"params": [{"name": "lr", "low": 1e-6, "high": 1e-4, "log": true},
                                   {"name": "bs", "low": 4, "high": 32, "integer": true},
                                   {"name": "p0", "low": 0, "high": 1},
                                   {"name": "p1", "low": 0, "high": 1}],
                        "objectives": [{"name": "acc", "goal": "max"},
                                       {"name": "loss", "goal": "min"}]}"#;

/// `n` history lines on a fixed grid-free recurrence, every 17th a failure.
fn history(n: usize) -> String {
    let mut out = String::new();
    for i in 0..n {
        let u: Vec<f64> = [2f64, 3.0, 5.0, 7.0]
            .iter()
            .map(|p| ((i + 1) as f64 * p.sqrt()).fract())
            .collect();
        let lr = (1e-6f64.ln() + u[0] * (1e-4f64.ln() - 1e-6f64.ln())).exp();
        let bs = (4.0 + u[1] * 28.0).round();
        let acc = 1.0 - (u[0] - 0.3).powi(2) - (u[2] - 0.3).powi(2) - 0.1 * u[3];
        let loss = (u[0] - 0.7).powi(2) + (u[3] - 0.7).powi(2) + 0.1 * u[2];
        let y = if i % 17 == 16 {
            "[null, null]".to_string()
        } else {
            format!("[{acc}, {loss}]")
        };
        out.push_str(&format!(
            "{{\"x\": [{lr}, {bs}, {}, {}], \"y\": {y}}}\n",
            u[2], u[3]
        ));
    }
    out
}

#[test]
fn a_history_over_the_gp_limit_is_subsampled_with_a_notice() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("space.json"), SPACE).unwrap();
    std::fs::write(dir.path().join("history.jsonl"), history(170)).unwrap();
    let args = bo_suggest(&["--history", "history.jsonl", "--max-gp-points", "60"]);
    let first = bomf(&args, dir.path());
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "bomf failed: {stderr}");
    assert_eq!(
        stderr.matches("exceed the exact-GP limit of 60").count(),
        1,
        "one notice expected: {stderr}"
    );
    assert!(stderr.contains("160 successful observations"), "{stderr}");
    let out: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(out["candidates"].as_array().unwrap().len(), 1);
    // The subset is seeded: the same files give the same candidate.
    let again = bomf(&args, dir.path());
    assert_eq!(first.stdout, again.stdout);
    // Within the limit, no notice.
    let within = bomf(&args[..6], dir.path());
    assert!(within.status.success());
    assert!(!String::from_utf8_lossy(&within.stderr).contains("exact-GP limit"));
}

#[test]
fn a_gp_size_that_cannot_fit_in_memory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("space.json"), SPACE).unwrap();
    let out = bomf(&bo_suggest(&["--max-gp-points", "50000000"]), dir.path());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("50000000 observations"), "{stderr}");
    assert!(stderr.contains("GiB"), "{stderr}");
    assert!(stderr.contains("max_gp_points <="), "{stderr}");
}
