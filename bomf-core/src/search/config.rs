//! The configuration of `bomf search` (a TOML file), mirrored by [`SearchConfig`].
//!
//! ```toml
//! checkpoints = ["trainer-output"]          # folders, or a Trainer output's checkpoint-* subfolders
//! workers = 2                               # evaluations at once
//! devices = ["cuda:0", "cuda:1"]            # one per worker (default: cpu for all)
//!
//! [evaluator]
//! command = ["python", "eval.py", "{model}"]
//! timeout_s = 600
//!
//! [[objectives]]
//! name = "accuracy"
//! direction = "maximize"
//!
//! [[objectives]]
//! name = "loss"
//! direction = "minimize"
//!
//! [search]                                  # stage 3's settings, as in a run config's [fusion]
//! budget = 30
//! seed = 0
//!
//! [output]
//! dtype = "same"                            # or f32, f16, bf16
//! ```
//!
//! Relative paths (the checkpoints) are relative to the config file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::evaluator::CommandEvaluator;
use crate::device::DeviceSpec;
use crate::fusion_bo::{FusionBoConfig, FusionObjective};
use crate::merge::OutDtype;

/// Whether an objective is maximised or minimised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Maximize,
    Minimize,
}

/// One named objective of the evaluator's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectiveSpec {
    pub name: String,
    pub direction: Direction,
}

/// How the chosen fusion is written.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputSection {
    /// `same` (each tensor's input dtype), `f32`, `f16` or `bf16`.
    #[serde(with = "dtype_text")]
    pub dtype: OutDtype,
}

mod dtype_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::merge::OutDtype;

    pub fn serialize<S: Serializer>(d: &OutDtype, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match d {
            OutDtype::Same => "same",
            OutDtype::F32 => "f32",
            OutDtype::F16 => "f16",
            OutDtype::BF16 => "bf16",
        })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OutDtype, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// `bomf search`'s configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchConfig {
    /// Model folders, or training output folders whose `checkpoint-*` subfolders are the
    /// checkpoints (see [`crate::merge::resolve`]).
    pub checkpoints: Vec<PathBuf>,
    pub evaluator: CommandEvaluator,
    pub objectives: Vec<ObjectiveSpec>,
    /// Evaluations run at once.
    #[serde(default = "one")]
    pub workers: usize,
    /// One device per worker (`cpu`, `cuda:N`); empty: `cpu` for every worker.
    #[serde(default)]
    pub devices: Vec<DeviceSpec>,
    /// Stage 3's settings, as a run config's `[fusion]`; `objectives` are given at the top
    /// level instead, and `fuse_on` and `lora` (which concern bomf's own models) must be left
    /// at their defaults.
    #[serde(default)]
    pub search: FusionBoConfig,
    #[serde(default)]
    pub output: OutputSection,
}

fn one() -> usize {
    1
}

/// The most workers a search runs.
pub const MAX_WORKERS: usize = 256;

impl SearchConfig {
    /// Parses `text` (see [`Self::resolved`]).
    pub fn parse(text: &str, base: &Path) -> Result<Self, String> {
        let config: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        config.resolved(base)
    }

    /// The config with relative checkpoint paths taken from `base` (the config file's folder),
    /// checked.
    pub fn resolved(mut self, base: &Path) -> Result<Self, String> {
        for path in &mut self.checkpoints {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
        self.validate()?;
        Ok(self)
    }

    /// Every setting that can be checked before any work.
    pub fn validate(&self) -> Result<(), String> {
        if self.checkpoints.is_empty() {
            return Err("checkpoints: give at least one folder".into());
        }
        self.evaluator
            .validate()
            .map_err(|e| format!("evaluator: {e}"))?;
        if self.objectives.is_empty() {
            return Err("objectives: give at least one [[objectives]] table".into());
        }
        for (i, o) in self.objectives.iter().enumerate() {
            if o.name.trim().is_empty() {
                return Err(format!("objectives[{i}]: empty name"));
            }
            if self.objectives[..i].iter().any(|p| p.name == o.name) {
                return Err(format!("objectives: {} is named twice", o.name));
            }
        }
        if self.workers == 0 || self.workers > MAX_WORKERS {
            return Err(format!(
                "workers must be between 1 and {MAX_WORKERS}, got {}",
                self.workers
            ));
        }
        if !self.devices.is_empty() && self.devices.len() != self.workers {
            return Err(format!(
                "devices: {} devices for {} workers (give one per worker, or none for cpu)",
                self.devices.len(),
                self.workers
            ));
        }
        let defaults = FusionBoConfig::default();
        for (set, key) in [
            (
                self.search.objectives.is_some(),
                "objectives (give [[objectives]] tables)",
            ),
            (self.search.fuse_on != defaults.fuse_on, "fuse_on"),
            (self.search.lora != defaults.lora, "lora"),
        ] {
            if set {
                return Err(format!("search.{key}: not a setting of bomf search"));
            }
        }
        if self.search.mc_samples == 0 {
            return Err("search.mc_samples must be at least 1".into());
        }
        Ok(())
    }

    /// The device of worker `i`.
    pub fn device(&self, i: usize) -> String {
        self.devices.get(i).copied().unwrap_or_default().to_string()
    }

    /// The objective names, in order.
    pub fn objective_names(&self) -> Vec<String> {
        self.objectives.iter().map(|o| o.name.clone()).collect()
    }

    /// Stage 3's settings for this search: `[search]` with the objectives.
    pub fn fusion_config(&self) -> FusionBoConfig {
        FusionBoConfig {
            objectives: Some(
                self.objectives
                    .iter()
                    .map(|o| match o.direction {
                        Direction::Maximize => FusionObjective::Metric(o.name.clone()),
                        Direction::Minimize => FusionObjective::Minimize(o.name.clone()),
                    })
                    .collect(),
            ),
            ..self.search.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
checkpoints = ["out"]
[evaluator]
command = ["python3", "eval.py", "{model}"]
[[objectives]]
name = "accuracy"
direction = "maximize"
"#;

    #[test]
    fn a_minimal_config_parses_with_relative_paths_from_its_folder() {
        let config = SearchConfig::parse(MINIMAL, Path::new("/data")).unwrap();
        assert_eq!(config.checkpoints, [PathBuf::from("/data/out")]);
        assert_eq!((config.workers, config.device(0)), (1, "cpu".to_string()));
        assert_eq!(config.evaluator.timeout_s, 3600.0);
    }

    #[test]
    fn bad_settings_are_refused_with_what_to_change() {
        for (edit, needle) in [
            ("workers = 0\n", "workers"),
            ("devices = [\"tpu\"]\n", "devices"),
            ("workers = 2\ndevices = [\"cuda:0\"]\n", "one per worker"),
            ("colour = 1\n", "colour"),
        ] {
            let text = format!("{edit}{MINIMAL}");
            let err = SearchConfig::parse(&text, Path::new(".")).unwrap_err();
            assert!(err.contains(needle), "{edit}: {err}");
        }
        let lora = format!("{MINIMAL}[search]\nlora = \"delta\"\n");
        let err = SearchConfig::parse(&lora, Path::new(".")).unwrap_err();
        assert!(err.contains("search.lora"), "{err}");
        let no_model = MINIMAL.replace("{model}", "model");
        let err = SearchConfig::parse(&no_model, Path::new(".")).unwrap_err();
        assert!(err.contains("{model}"), "{err}");
        let twice =
            format!("{MINIMAL}[[objectives]]\nname = \"accuracy\"\ndirection = \"minimize\"\n");
        let err = SearchConfig::parse(&twice, Path::new(".")).unwrap_err();
        assert!(err.contains("twice"), "{err}");
    }
}
