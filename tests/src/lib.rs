//! Test support shared by the workspace's integration tests, and (in `tests/`) the tests that
//! cross crate boundaries: data read by `bomf-data`, a model loaded by `bomf-models`, the
//! pipeline of `bomf-core` searching with `bomf-bo`.
//!
//! [`cli`] drives the `bomf` binary; a test crate of `bomf-cli` names its binary with
//! [`bomf_cli!`], which defines `fn bomf(args, dir) -> Output` there (Cargo sets
//! `CARGO_BIN_EXE_bomf` only for `bomf-cli`'s own tests).

pub mod cli;

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
