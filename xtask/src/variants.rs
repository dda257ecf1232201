//! `cargo xtask reproduce --variant NAME`: stage 3 again on the checkpoints of finished runs, with
//! one setting changed, so two settings are compared on the same stage-1 and stage-2 results
//! (a measurement of that setting alone, at a fraction of a run's cost).
//!
//! A variant run `<task>-seed<N>-<variant>` starts as a copy of the finished run's stage-1
//! state and checkpoints, under the changed config (the base run's `--set` overrides and the
//! variant's, see [`overrides`]); `bomf run --resume` then skips stages 1 and 2 and runs stage 3
//! (baselines off, except the free ones). RESULTS.md compares the final
//! hypervolume (same checkpoints, so the same normalisation) and each selection rule's test
//! metric.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::overrides::Override;

/// A setting stage 3 can be rerun with: its name and the `--set` of the `[fusion]` key it
/// changes.
#[derive(Debug)]
pub struct Variant {
    pub name: &'static str,
    pub set: &'static str,
    pub what: &'static str,
}

pub const VARIANTS: [Variant; 3] = [
    Variant {
        name: "matern52_gamma",
        set: "fusion.kernel=matern52_gamma",
        what: "the authors' GP kernel (Matérn-5/2 with Gamma priors) instead of the default",
    },
    Variant {
        name: "rbf_dim_scaled",
        set: "fusion.kernel=rbf_dim_scaled",
        what: "the RBF kernel with dimension-scaled priors",
    },
    Variant {
        name: "lora_delta",
        set: "fusion.lora=delta",
        what: "LoRA updates B·A averaged exactly (rank K·r) instead of A and B separately",
    },
];

/// Every costly baseline off: the comparison is stage 3's.
const BASELINES_OFF: [&str; 5] = [
    "baselines.greedy_soup=false",
    "baselines.learned_soup=false",
    "baselines.loss_only_bo=false",
    "baselines.metric_only_bo=false",
    "baselines.hpbo_full=false",
];

pub fn find(name: &str) -> Result<&'static Variant> {
    VARIANTS.iter().find(|v| v.name == name).with_context(|| {
        let names: Vec<&str> = VARIANTS.iter().map(|v| v.name).collect();
        format!("unknown variant {name:?}; known: {}", names.join(", "))
    })
}

/// The overrides that make a run the variant: its setting, and the costly baselines off.
pub fn overrides(variant: &Variant) -> Result<Vec<Override>> {
    std::iter::once(variant.set)
        .chain(BASELINES_OFF)
        .map(|arg| {
            arg.parse()
                .with_context(|| format!("variant {}: --set {arg}", variant.name))
        })
        .collect()
}

/// `md` with, at the end of each task's section, the comparison of every variant that has
/// archived runs (`results/reproduce/<task>-seed<N>-<variant>.json`, see [`crate::archive`]).
pub fn insert_comparisons(
    md: String,
    results: &[(String, u64, Value)],
    root: &Path,
) -> Result<String> {
    let mut md = md;
    let mut tasks: Vec<&String> = results.iter().map(|(t, _, _)| t).collect();
    tasks.dedup();
    for task in tasks {
        let mut section = String::new();
        for variant in &VARIANTS {
            let mut runs = Vec::new();
            for (_, seed, base) in results.iter().filter(|(t, _, _)| t == task) {
                let name = format!("{task}-seed{seed}-{}", variant.name);
                let path = crate::archive::archived_path(root, &name);
                if let Ok(text) = std::fs::read_to_string(&path) {
                    let value: Value = serde_json::from_str(&text)
                        .with_context(|| format!("reading {}", path.display()))?;
                    runs.push((*seed, base, value));
                }
            }
            if let Some((_, base, _)) = runs.first() {
                let metric = crate::results::primary_metric(base);
                let pairs: Vec<(u64, &Value, &Value)> =
                    runs.iter().map(|(s, b, v)| (*s, *b, v)).collect();
                section += &comparison(variant, &metric, &pairs);
            }
        }
        if section.is_empty() {
            continue;
        }
        let heading = format!("\n## {task} (");
        let Some(start) = md.find(&heading) else {
            continue;
        };
        let end = md[start + 1..]
            .find("\n## ")
            .map_or(md.len(), |i| start + 1 + i);
        md.insert_str(end, &section);
    }
    Ok(md)
}

/// Prepares `variant_dir` from the finished run in `base_dir`: the variant config as the run's
/// `config.toml`, the stage-1 state and the checkpoints (hard links where possible). Does
/// nothing if the variant run exists already (it is resumed as it is).
pub fn prepare(base_dir: &Path, variant_dir: &Path, config_text: &str) -> Result<()> {
    if variant_dir.join("config.toml").is_file() {
        return Ok(());
    }
    if !base_dir.join("results.json").is_file() {
        bail!(
            "{} has not finished: a variant reruns stage 3 of a finished run",
            base_dir.display()
        );
    }
    for sub in ["checkpoints", "state"] {
        std::fs::create_dir_all(variant_dir.join(sub))?;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(base_dir.join("checkpoints"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .map(|p| PathBuf::from("checkpoints").join(p.file_name().unwrap_or_default()))
        .collect();
    files.push(PathBuf::from("state/hpbo.json"));
    for rel in files {
        let (from, to) = (base_dir.join(&rel), variant_dir.join(&rel));
        if !from.is_file() {
            continue; // a run without stage 1
        }
        if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to)
                .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        }
    }
    // Written last: a folder with `config.toml` is a run `--resume` continues.
    std::fs::write(variant_dir.join("config.toml"), config_text)?;
    Ok(())
}

/// `### Variant` of a task: per seed, the final hypervolume and each selection rule's test
/// metric, base run against variant run.
pub fn comparison(variant: &Variant, metric: &str, pairs: &[(u64, &Value, &Value)]) -> String {
    let mut md = format!(
        "\n### Variant `{}`: {}\n\nStage 3 rerun on the same checkpoints; hypervolume of the \
         normalised validation front after the last evaluation, and test {metric} of each \
         selection rule's pick (base → variant).\n\n| seed | hypervolume |",
        variant.name, variant.what
    );
    for row in crate::comparisons::SELECTION_ROWS {
        md += &format!(" {row} |");
    }
    md += "\n|---|---|---|---|---|\n";
    let mut gains = Vec::new();
    for (seed, base, var) in pairs {
        let hv = |v: &Value| v["hypervolume"].as_array().and_then(|h| h.last()?.as_f64());
        md += &format!("| {seed} | {} |", arrow(hv(base), hv(var)));
        if let (Some(a), Some(b)) = (hv(base), hv(var)) {
            gains.push(b - a);
        }
        for row in crate::comparisons::SELECTION_ROWS {
            let test = |v: &Value| {
                v["methods"]
                    .as_array()?
                    .iter()
                    .find(|m| m["method"] == row)?["test"]["metrics"][metric]
                    .as_f64()
            };
            md += &format!(" {} |", arrow(test(base), test(var)));
        }
        md += "\n";
    }
    if !gains.is_empty() {
        let mean = gains.iter().sum::<f64>() / gains.len() as f64;
        md += &format!(
            "\nMean hypervolume change with `{}`: {mean:+.4} over {} seed(s).\n",
            variant.name,
            gains.len()
        );
    }
    md
}

fn arrow(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => format!("{a:.4} → {b:.4}"),
        _ => "—".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_variant_changes_one_fusion_setting_and_turns_costly_baselines_off() {
        let base = "seed = 1\n[fusion]\nkernel = \"rbf_dim_scaled\"\nbudget = 20\n\n\
                    [baselines]\ngreedy_soup = true\nhpbo_full = true\n\
                    learned_soup = { epochs = 1, learning_rate = 0.05 }\n";
        let set = overrides(find("matern52_gamma").unwrap()).unwrap();
        let text = crate::overrides::effective_text(base, &set).unwrap();
        let config: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(config["fusion"]["kernel"].as_str(), Some("matern52_gamma"));
        assert_eq!(config["fusion"]["budget"].as_integer(), Some(20));
        assert_eq!(config["seed"].as_integer(), Some(1));
        for key in [
            "greedy_soup",
            "learned_soup",
            "loss_only_bo",
            "metric_only_bo",
            "hpbo_full",
        ] {
            assert_eq!(config["baselines"][key].as_bool(), Some(false), "{key}");
        }
        // A config without the tables gets them.
        let text = crate::overrides::effective_text("seed = 1\n", &set).unwrap();
        let config: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(config["fusion"]["kernel"].as_str(), Some("matern52_gamma"));
        assert_eq!(config["baselines"]["greedy_soup"].as_bool(), Some(false));
        for v in &VARIANTS {
            assert_eq!(overrides(v).unwrap().len(), 1 + BASELINES_OFF.len());
        }
        assert!(find("nope").unwrap_err().to_string().contains("lora_delta"));
    }

    #[test]
    fn a_variant_run_starts_from_the_finished_runs_state_and_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("t-seed0");
        for sub in ["checkpoints", "state"] {
            std::fs::create_dir_all(base.join(sub)).unwrap();
        }
        std::fs::write(base.join("checkpoints/manifest.json"), "{}").unwrap();
        std::fs::write(base.join("state/hpbo.json"), "{}").unwrap();
        std::fs::write(base.join("state/search-bomf.json"), "{}").unwrap();
        let variant = dir.path().join("t-seed0-lora_delta");
        assert!(prepare(&base, &variant, "x").is_err(), "unfinished base");
        std::fs::write(base.join("results.json"), "{}").unwrap();
        prepare(&base, &variant, "x = 1\n").unwrap();
        assert!(variant.join("checkpoints/manifest.json").is_file());
        assert!(variant.join("state/hpbo.json").is_file());
        assert!(
            !variant.join("state/search-bomf.json").exists(),
            "stage 3 reruns"
        );
        assert_eq!(
            std::fs::read_to_string(variant.join("config.toml")).unwrap(),
            "x = 1\n"
        );
    }
}
