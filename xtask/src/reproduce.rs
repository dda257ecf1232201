//! `cargo xtask reproduce`: runs the paper's protocol over tasks × seeds with `bomf run`
//! (starting, resuming or only collecting each run, and a variant's runs when asked) and
//! writes the mean ± std per method to `RESULTS.md`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::results::{results_markdown, sections_not_rerun};
use crate::{
    RunSpec, archive, assets, build_bomf, layout, packages_for, run, variants, workspace_root,
};

/// What `reproduce` does with a run that has not finished.
pub(crate) enum Runs {
    /// Start or resume it, with this `bomf` binary (else one built now).
    Start(Option<PathBuf>),
    /// Leave it out of RESULTS.md.
    FinishedOnly,
}

/// `cargo xtask reproduce`.
pub(crate) fn reproduce(
    tasks: &[String],
    seeds: u64,
    out: &Path,
    device: &str,
    runs: Runs,
    variant: Option<&variants::Variant>,
) -> Result<()> {
    let cuda = device.starts_with("cuda") || device == "gpu";
    if !cuda && device != "cpu" {
        bail!("--device {device}: expected `cpu`, `cuda` or `cuda:N`");
    }
    let root = workspace_root();
    let dir = root.join("configs/reproduce");
    let (chosen, templates) = task_templates(tasks, &reproduce_tasks(&dir)?, &dir)?;
    let assets_dir = assets(&packages_for(&templates)?)?;
    let bomf = match runs {
        Runs::FinishedOnly => None,
        Runs::Start(Some(path)) if path.is_file() => Some(path),
        Runs::Start(Some(path)) => bail!("--bomf {}: no such file", path.display()),
        Runs::Start(None) => Some(build_bomf(cuda)?),
    };
    let out = if out.is_relative() {
        root.join(out)
    } else {
        out.to_path_buf()
    };
    let starter = Starter {
        root: &root,
        bomf,
        device,
        assets_dir: &assets_dir,
    };
    let mut results = Vec::new();
    for (task, template) in chosen.iter().zip(&templates) {
        for seed in 0..seeds {
            let name = format!("{task}-seed{seed}");
            let run_dir = out.join(&name);
            let spec = RunSpec::new(template, &assets_dir, Some(seed))?;
            if !starter.start(&spec, &run_dir)? {
                continue;
            }
            if let Some(v) = variant {
                starter.start_variant(&spec, &run_dir, v)?;
            }
            for v in &variants::VARIANTS {
                let variant_name = format!("{name}-{}", v.name);
                archive::load(&root, &out.join(&variant_name), &variant_name)?;
            }
            let Some(value) = archive::load(&root, &run_dir, &name)? else {
                continue;
            };
            results.push((task.clone(), seed, value));
        }
    }
    write_results(&out, &root, &results)
}

/// The tasks of `configs/reproduce/` (`dir`): the stems of its `.toml` files, sorted.
fn reproduce_tasks(dir: &Path) -> Result<Vec<String>> {
    let mut available: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let p = e.path();
            (p.extension().is_some_and(|x| x == "toml"))
                .then(|| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .flatten()
        })
        .collect();
    available.sort();
    Ok(available)
}

/// Starts or resumes the runs of `reproduce` with `bomf` (none: finished runs only).
struct Starter<'a> {
    root: &'a Path,
    bomf: Option<PathBuf>,
    device: &'a str,
    assets_dir: &'a Path,
}

impl Starter<'_> {
    /// Runs `spec` in `run_dir` unless it has finished (or is archived): resumed when the folder
    /// holds a run. Whether the run is finished now.
    fn start(&self, spec: &RunSpec, run_dir: &Path) -> Result<bool> {
        let name = run_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        let archived_only =
            !run_dir.exists() && name.is_some_and(|name| archive::is_archived(self.root, &name));
        if run_dir.join("results.json").is_file() || archived_only {
            return Ok(true);
        }
        let Some(bomf) = &self.bomf else {
            println!("not finished yet, left out: {}", run_dir.display());
            return Ok(false);
        };
        let mut command = Command::new(bomf);
        command
            .arg("run")
            .args(spec.args())
            .arg("--out")
            .arg(run_dir)
            .arg("--device")
            .arg(self.device)
            .env(layout::ASSETS_ENV, self.assets_dir)
            .current_dir(self.root);
        if run_dir.join("config.toml").is_file() {
            command.arg("--resume");
        }
        run(command)?;
        Ok(true)
    }

    /// The variant `v` of the finished run of `spec` in `run_dir`: stage 3 again on its
    /// checkpoints, in `<run_dir>-<variant>`.
    fn start_variant(&self, spec: &RunSpec, run_dir: &Path, v: &variants::Variant) -> Result<()> {
        let name = run_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let variant_name = format!("{name}-{}", v.name);
        let variant_dir = run_dir.with_file_name(&variant_name);
        if run_dir.is_dir() {
            let variant_spec = spec.with(variants::overrides(v)?);
            variants::prepare(run_dir, &variant_dir, &variant_spec.config_text()?)?;
            self.start(&variant_spec, &variant_dir)?;
        } else if !archive::is_archived(self.root, &variant_name) {
            println!(
                "{name} is archived without its checkpoints: the {} variant needs the run \
                 directory, left out",
                v.name
            );
        }
        Ok(())
    }
}

/// `RESULTS.md` in `out` from `results`, with the sections of tasks not rerun kept.
fn write_results(
    out: &Path,
    root: &Path,
    results: &[(String, u64, serde_json::Value)],
) -> Result<()> {
    let path = out.join("RESULTS.md");
    let mut md = results_markdown(results);
    md = variants::insert_comparisons(md, results, root)?;
    // A reproduction of some tasks must not erase the others' tables (runs of other tasks may
    // live on another machine, or be older than this checkout).
    if let Ok(previous) = std::fs::read_to_string(&path) {
        md += &sections_not_rerun(&previous, results);
    }
    std::fs::write(&path, &md)?;
    println!("{md}\nwritten to {}", path.display());
    Ok(())
}

/// The task names and config templates of `--tasks`: names of `configs/reproduce/` (`dir`), or
/// paths to a user's own `.toml` run configs (named by their file stem).
fn task_templates(
    tasks: &[String],
    available: &[String],
    dir: &Path,
) -> Result<(Vec<String>, Vec<PathBuf>)> {
    if tasks.is_empty() {
        let templates = available
            .iter()
            .map(|t| dir.join(format!("{t}.toml")))
            .collect();
        return Ok((available.to_vec(), templates));
    }
    let (mut names, mut templates) = (Vec::new(), Vec::new());
    for t in tasks {
        if t.ends_with(".toml") {
            let path = PathBuf::from(t);
            if !path.is_file() {
                bail!("--tasks {t}: no such config file");
            }
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            names.push(name);
            templates.push(std::path::absolute(&path)?);
        } else if available.contains(t) {
            names.push(t.clone());
            templates.push(dir.join(format!("{t}.toml")));
        } else {
            bail!(
                "unknown task {t:?}; available: {} (or the path of a run config, `*.toml`)",
                available.join(", ")
            );
        }
    }
    if let Some(twice) = names
        .iter()
        .enumerate()
        .find_map(|(i, n)| names[..i].contains(n).then_some(n))
    {
        bail!("two tasks are named {twice:?}: their runs would share folders");
    }
    Ok((names, templates))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{recorded, strs};

    #[test]
    fn a_user_config_keeps_its_files_and_gets_the_seed() {
        let dir = tempfile::tempdir().unwrap();
        let mine = dir.path().join("mine");
        std::fs::create_dir_all(&mine).unwrap();
        let template = mine.join("rte.toml");
        std::fs::write(
            &template,
            "seed = 0\n[model]\npath = \"models/roberta\"\n# path = \"a comment\"\n[data]\n\
             format = \"glue\"\n[data.split]\nkind = \"files\"\ntrain = \"data/train.tsv\"\n\
             validation = \"/abs/dev.tsv\"\ntest = \"data/test.tsv\"\n",
        )
        .unwrap();
        // Nothing in the assets folder: the template runs where it is (its relative paths
        // taken against its folder by `bomf run`), with the seed as the only override.
        let seeded = RunSpec::new(&template, Path::new("/opt/assets"), Some(1)).unwrap();
        assert!(seeded.set.is_empty());
        assert_eq!(strs(&seeded)[1..], ["--seed", "1"]);
        let config = recorded(&seeded);
        assert_eq!(config["seed"].as_integer(), Some(1));
        assert_eq!(config["model"]["path"].as_str(), Some("models/roberta"));
        assert_eq!(
            config["data"]["split"]["validation"].as_str(),
            Some("/abs/dev.tsv")
        );
        // Without a seed or assets the recorded config is the template, comments and all.
        let plain = RunSpec::new(&template, Path::new("/opt/assets"), None).unwrap();
        assert_eq!(
            plain.config_text().unwrap(),
            std::fs::read_to_string(&template).unwrap()
        );

        // --tasks takes names and config paths; a missing file or a name used twice is an error.
        let available = vec!["banking77".to_string()];
        let (names, templates) = task_templates(
            &["banking77".into(), template.to_string_lossy().into_owned()],
            &available,
            Path::new("/repo/configs/reproduce"),
        )
        .unwrap();
        assert_eq!(names, ["banking77", "rte"]);
        assert_eq!(
            templates,
            [
                Path::new("/repo/configs/reproduce/banking77.toml"),
                template.as_path()
            ]
        );
        let path = template.to_string_lossy().into_owned();
        let refused = [
            (vec!["nope.toml".to_owned()], "no such config file"),
            (vec!["nope".to_owned()], "available: banking77"),
            (vec![path.clone(), path], "two tasks are named \"rte\""),
        ];
        for (tasks, expected) in refused {
            let err = task_templates(&tasks, &available, Path::new("."))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{tasks:?}: {err}");
        }
    }
}
