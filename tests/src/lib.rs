//! Test support shared by the workspace's integration tests, and (in `tests/`) the tests that
//! cross crate boundaries: data read by `bomf-data`, a model loaded by `bomf-models`, the
//! pipeline of `bomf-core` searching with `bomf-bo`.
//!
//! [`cli`] drives the `bomf` binary; a test crate of `bomf-cli` names its binary with
//! [`bomf_cli!`], which defines `fn bomf(args, dir) -> Output` there (Cargo sets
//! `CARGO_BIN_EXE_bomf` only for `bomf-cli`'s own tests).

pub mod cli {
    use std::ffi::OsStr;
    use std::path::Path;
    use std::process::{Command, Output};

    /// Runs `exe` with `args` in `dir` and returns its output.
    pub fn run<S: AsRef<OsStr>>(exe: &str, args: &[S], dir: &Path) -> Output {
        Command::new(exe)
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the bomf binary runs")
    }

    /// Asserts success and returns stdout.
    pub fn succeed(out: &Output) -> String {
        assert!(
            out.status.success(),
            "bomf failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Asserts success and returns stderr (where progress and summaries go).
    pub fn succeed_stderr(out: &Output) -> String {
        succeed(out);
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Asserts failure and returns stderr (the error message).
    pub fn fail(out: &Output) -> String {
        assert!(!out.status.success(), "bomf should have failed");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `a` equals the reference `b` to `tol` relative to `1 + |b|`.
    pub fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + b.abs())
    }

    /// A JSON file's value.
    pub fn json(path: &Path) -> serde_json::Value {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }
}

/// Defines `fn bomf(args, dir) -> std::process::Output`, running the `bomf` binary of the
/// calling test crate (one of `bomf-cli`'s).
#[macro_export]
macro_rules! bomf_cli {
    () => {
        fn bomf<S: AsRef<std::ffi::OsStr>>(
            args: &[S],
            dir: &std::path::Path,
        ) -> std::process::Output {
            $crate::cli::run(env!("CARGO_BIN_EXE_bomf"), args, dir)
        }
    };
}
