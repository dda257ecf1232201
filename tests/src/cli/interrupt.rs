//! Runs interrupted mid-search: started in the background with every evaluation slowed down,
//! killed once the search is under way, then resumed.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{count_events, fusion_indices};

/// `exe ARGS` in `dir` in the background, each evaluation slowed down by `delay_ms` so that a
/// test can interrupt it mid-search; stdout is dropped.
pub fn spawn_slow(exe: &str, args: &[&str], dir: &Path, delay_ms: u64, stderr: Stdio) -> Child {
    Command::new(exe)
        .args(args)
        .current_dir(dir)
        .env("BOMF_TEST_EVAL_DELAY_MS", delay_ms.to_string())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

/// Waits (a minute at most) until the run in `run` has logged `n` evaluations of the `bomf`
/// search, the process still running.
pub fn wait_for_fusions(child: &mut Child, run: &Path, n: usize) {
    let started = Instant::now();
    while fusion_indices(run, "bomf").len() < n {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the run made no progress"
        );
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills (SIGKILL) the run of `child` in `run` once its `bomf` search has logged `n`
/// evaluations, and checks that it died mid-search (fewer than `budget`).
pub fn kill_after_fusions(mut child: Child, run: &Path, n: usize, budget: usize) {
    wait_for_fusions(&mut child, run, n);
    child.kill().unwrap();
    child.wait().unwrap();
    let before = fusion_indices(run, "bomf");
    assert!(before.len() < budget, "killed too late: {before:?}");
}

/// After a resumed run: each of the `budget` evaluations of the `bomf` search logged exactly
/// once, in order, across the processes, and stage 2 not redone (one `checkpoints` event).
pub fn assert_each_evaluation_once(run: &Path, budget: usize) {
    assert_eq!(
        fusion_indices(run, "bomf"),
        (0..budget as u64).collect::<Vec<_>>()
    );
    assert_eq!(count_events(run, "checkpoints"), 1, "stage 2 ran again");
}
