//! The run configuration (`configs/*.toml`): the schema of `bomf run` and `bomf hpo`, checked
//! when it is read, and the library settings ([`BomfConfig`]) it stands for.
//!
//! Unknown keys are errors naming the key and its line; every value that can be checked without
//! the model or the data is checked by [`RunConfig::from_text`], so a bad config fails before
//! a run directory exists. Relative paths are taken against the config file's folder.

use std::path::{Path, PathBuf};

use bomf_data::spec::DataSpec;
use bomf_models::lora::{LoraConfig, TargetModules};
use serde::{Deserialize, Serialize};

use crate::device::DeviceSpec;
use crate::error::{CoreError, Result};
use crate::fusion_bo::FusionBoConfig;
use crate::hpbo::HpboConfig;
use crate::pipeline::{BaselinesConfig, BomfConfig};
use crate::schedule::{ScheduleKind, Warmup};
use crate::train::{Budget, TrainConfig};
use crate::trajectory::TrajectoryConfig;

/// Default number of new tokens a generation may add (an E2E reference is ~25 tokens, a SAMSum
/// summary ~30).
pub const DEFAULT_MAX_NEW_TOKENS: usize = 64;

/// A run configuration. Unknown keys are errors naming the key and line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Seeds the new head, dropout, batch order and both optimisers.
    #[serde(default)]
    pub seed: u64,
    /// Where the run trains and evaluates: `cpu` (default) or `cuda:N` (a `cuda` build).
    #[serde(default)]
    pub device: DeviceSpec,
    pub model: ModelSection,
    pub data: DataSpec,
    #[serde(default)]
    pub train: TrainSection,
    /// Present: run stage 1 (HPBO on the proxy) first.
    pub hpbo: Option<HpboConfig>,
    #[serde(default)]
    pub trajectory: TrajectoryConfig,
    #[serde(default)]
    pub fusion: FusionBoConfig,
    #[serde(default)]
    pub baselines: BaselinesConfig,
    /// Generative models: how generations are produced for scoring.
    #[serde(default)]
    pub generation: GenerationSection,
}

/// The pretrained model.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// An HF folder (config.json, weights, tokenizer.json) or, for the LLaMA family, a `.gguf`
    /// file (its embedded tokenizer is used); relative to the config file.
    pub path: PathBuf,
    /// Maximum input length in tokens (classifiers: 128 by default; generative models: 256,
    /// prompt and target together for the LLaMA family).
    pub max_len: Option<usize>,
    /// T5 only: maximum target length in tokens (64 by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_target_len: Option<usize>,
    /// LLaMA family only: train LoRA adapters on the frozen model instead of every weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraSection>,
}

/// Fine-tuning settings (stage 2, and the base of stage 1's trials).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSection {
    pub learning_rate: f64,
    pub batch_size: usize,
    /// The most stage 2 may train (the window rule usually stops earlier).
    pub epochs: usize,
    pub warmup_ratio: f64,
    /// Learning-rate shape after warm-up: `constant` (the paper's GLUE setting), `linear` decay
    /// to 0 (its T5/LLM setting) or `cosine`; transformers' schedules.
    pub schedule: ScheduleKind,
    /// Micro-batches per optimiser step: the effective batch is `batch_size ×
    /// grad_accum_steps`, for memory that does not fit the whole batch.
    pub grad_accum_steps: usize,
    pub weight_decay: f64,
    pub max_grad_norm: Option<f64>,
    pub eval_batch_size: usize,
}

impl Default for TrainSection {
    fn default() -> Self {
        Self {
            learning_rate: 5e-5,
            batch_size: 32,
            epochs: 2,
            warmup_ratio: 0.05,
            schedule: ScheduleKind::Constant,
            grad_accum_steps: 1,
            weight_decay: 0.1,
            max_grad_norm: Some(1.0),
            eval_batch_size: 64,
        }
    }
}

/// `[generation]`: how generations are produced when a generation task is scored (greedy
/// decoding unless `num_beams > 1`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerationSection {
    /// The most tokens a generation may add.
    pub max_new_tokens: usize,
    /// 1: greedy; more: beam search with this many beams.
    pub num_beams: usize,
    /// Beam search ranks hypotheses by `sum of log-probs / length^length_penalty` (HF's 1.0).
    pub length_penalty: f64,
}

impl Default for GenerationSection {
    fn default() -> Self {
        Self {
            max_new_tokens: DEFAULT_MAX_NEW_TOKENS,
            num_beams: 1,
            length_penalty: 1.0,
        }
    }
}

/// `[model.lora]`: train LoRA adapters on a frozen LLaMA-family model. The names are peft's
/// (`LoraConfig`), so an `adapter_config.json` reads the same. How the K kept adapters are fused
/// is `[fusion] lora` (`factors`: rank r; `delta`: the exact update, rank K·r, also in
/// `fused-adapter/`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraSection {
    /// Rank of each adapter.
    pub r: usize,
    /// Scale numerator: updates are scaled by `lora_alpha / r` (`/ √r` with rsLoRA).
    pub lora_alpha: f64,
    /// Dropout on the adapter input during training.
    #[serde(default)]
    pub lora_dropout: f64,
    /// Adapted projections (`q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`, `up_proj`,
    /// `down_proj`); peft's default `["q_proj", "v_proj"]` when absent.
    #[serde(default)]
    pub target_modules: Option<Vec<String>>,
    #[serde(default)]
    pub use_rslora: bool,
}

impl LoraSection {
    /// The peft config this section describes (checked by `LoraConfig::validate`).
    pub fn to_lora_config(&self, base_model: &Path) -> Result<LoraConfig> {
        let config = LoraConfig {
            r: self.r,
            lora_alpha: self.lora_alpha,
            lora_dropout: self.lora_dropout,
            target_modules: self.target_modules.clone().map(TargetModules::List),
            use_rslora: self.use_rslora,
            base_model_name_or_path: Some(base_model.display().to_string()),
            ..LoraConfig::default()
        };
        config
            .validate()
            .map_err(|e| CoreError::config("model.lora", e.to_string()))?;
        Ok(config)
    }
}

impl RunConfig {
    /// Reads and checks a config file; returns it with its text (what a run directory keeps).
    pub fn from_file(path: &Path) -> Result<(Self, String)> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CoreError::file(path, format!("reading the run config: {e}")))?;
        Ok((Self::from_text(&text, path)?, text))
    }

    /// Parses and checks config `text` as if read from `path` (relative paths are taken
    /// against its folder). Errors name the key and line.
    pub fn from_text(text: &str, path: &Path) -> Result<Self> {
        let config: RunConfig = toml::from_str(text).map_err(|e| CoreError::file(path, e))?;
        config.resolved(path)
    }

    /// Like [`Self::from_text`] for a TOML table already parsed (and perhaps edited: a
    /// command-line override of a key).
    pub fn from_table(table: toml::Table, path: &Path) -> Result<Self> {
        let config = RunConfig::deserialize(table).map_err(|e| CoreError::file(path, e))?;
        config.resolved(path)
    }

    /// The config with its paths relative to `path`'s folder, checked.
    fn resolved(mut self, path: &Path) -> Result<Self> {
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        if self.model.path.is_relative() {
            self.model.path = base.join(&self.model.path);
        }
        self.data.resolve_paths(base);
        self.data.validate()?;
        self.validate().map_err(|e| CoreError::file(path, e))?;
        Ok(self)
    }

    /// Every setting that can be checked before a run directory is created or a model loaded:
    /// a bad value is an error naming its key, and nothing is left behind to block a rerun.
    fn validate(&self) -> std::result::Result<(), String> {
        let t = &self.train;
        for (key, v) in [
            ("batch_size", t.batch_size),
            ("epochs", t.epochs),
            ("grad_accum_steps", t.grad_accum_steps),
            ("eval_batch_size", t.eval_batch_size),
        ] {
            if v == 0 {
                return Err(format!("[train] {key} must be at least 1"));
            }
        }
        if !(0.0..=1.0).contains(&t.warmup_ratio) {
            return Err(format!(
                "[train] warmup_ratio = {} is not in [0, 1]",
                t.warmup_ratio
            ));
        }
        self.bomf_config()
            .train
            .validate()
            .map_err(|e| format!("[train] {e}"))?;
        self.trajectory
            .validate()
            .map_err(|e| format!("[trajectory] {e}"))?;
        if self.trajectory.k < 2 {
            return Err(format!(
                "[trajectory] k = {} must be at least 2: fusion needs two checkpoints",
                self.trajectory.k
            ));
        }
        self.validate_searches()?;
        if self.generation.num_beams == 0 {
            return Err("generation.num_beams must be at least 1 (1 is greedy decoding)".into());
        }
        Ok(())
    }

    /// The budgets of stage 1 and stage 3, and stage 1's LoRA-rank proxy.
    fn validate_searches(&self) -> std::result::Result<(), String> {
        if let (Some(n), Some(budget)) = (self.fusion.n_initial, self.fusion.budget)
            && (n == 0 || budget < n)
        {
            return Err(format!(
                "[fusion] n_initial = {n} must be at least 1 and at most budget = {budget}"
            ));
        }
        if self.fusion.budget == Some(0) {
            return Err("[fusion] budget must be at least 1".into());
        }
        let Some(h) = &self.hpbo else {
            return Ok(());
        };
        if h.n_initial == 0 || h.budget < h.n_initial {
            return Err(format!(
                "[hpbo] n_initial = {} must be at least 1 and at most budget = {}",
                h.n_initial, h.budget
            ));
        }
        if let Some(rank) = h.lora_rank
            && self.model.lora.is_none()
        {
            return Err(format!(
                "[hpbo] lora_rank = {rank} makes stage 1's proxy a LoRA model of that rank, and \
                 needs [model.lora] (for other models use freeze_lower_layers)"
            ));
        }
        Ok(())
    }

    /// The library's settings. The budget is in epochs, so a stage-1 trial at another batch size
    /// sees the same data (and takes a different number of steps), as the authors' trials do.
    pub fn bomf_config(&self) -> BomfConfig {
        let t = &self.train;
        let mut train = TrainConfig {
            learning_rate: t.learning_rate,
            schedule: t.schedule,
            warmup: Warmup::Ratio(t.warmup_ratio),
            budget: Budget::Epochs(t.epochs),
            grad_accumulation: t.grad_accum_steps,
            max_grad_norm: t.max_grad_norm,
            seed: self.seed,
            ..TrainConfig::default()
        };
        train.adamw.weight_decay = t.weight_decay;
        let mut fusion = self.fusion.clone();
        fusion.seed = self.seed;
        let hpbo = self.hpbo.clone().map(|mut h| {
            h.seed = self.seed;
            h
        });
        BomfConfig {
            train,
            batch_size: t.batch_size,
            hpbo,
            trajectory: self.trajectory,
            fusion,
            baselines: self.baselines.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[train]` reaches the trainer: the schedule, gradient accumulation, and a budget in
    /// epochs (so a stage-1 trial at another batch size trains on the same data).
    #[test]
    fn train_section_sets_schedule_accumulation_and_an_epoch_budget() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.toml");
        let write = |train: &str| {
            std::fs::write(
                &path,
                format!(
                    "[model]\npath = \"m\"\n[data]\nformat = \"jsonl\"\npath = \"d.jsonl\"\n\
                     text_fields = [\"t\"]\nlabel_field = \"l\"\n\
                     [data.split]\nkind = \"fractions\"\ntrain = 0.8\nvalidation = 0.1\n\
                     test = 0.1\n[train]\n{train}"
                ),
            )
            .unwrap();
        };
        write("schedule = \"cosine\"\ngrad_accum_steps = 4\nepochs = 3\nwarmup_ratio = 0.1\n");
        let (config, _) = RunConfig::from_file(&path).unwrap();
        let train = config.bomf_config().train;
        assert_eq!(train.schedule, ScheduleKind::Cosine);
        assert_eq!(train.grad_accumulation, 4);
        assert_eq!(train.budget, Budget::Epochs(3));
        assert_eq!(train.warmup, Warmup::Ratio(0.1));
        write("grad_accum_steps = 0\n");
        let err = RunConfig::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("grad_accum_steps must be at least 1"), "{err}");
        write("schedule = \"step\"\n");
        let err = RunConfig::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("unknown variant `step`"), "{err}");
        // Every bad value is refused when the config is read, before any run directory exists.
        for (text, says) in [
            ("learning_rate = nan\n", "learning_rate"),
            ("batch_size = 0\n", "batch_size must be at least 1"),
            ("epochs = 0\n", "epochs must be at least 1"),
            ("warmup_ratio = 1.5\n", "warmup_ratio = 1.5"),
            ("[trajectory]\nk = 1\n", "k = 1 must be at least 2"),
            ("[trajectory]\nk = 0\n", "trajectory.k"),
            ("[fusion]\nbudget = 0\n", "budget must be at least 1"),
            (
                "[fusion]\nbudget = 3\nn_initial = 5\n",
                "at most budget = 3",
            ),
            (
                "[hpbo]\nbudget = 2\nn_initial = 4\n",
                "[hpbo] n_initial = 4",
            ),
        ] {
            write(text);
            let err = RunConfig::from_file(&path).unwrap_err().to_string();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    /// Fuzzing the run-config parser: random edits of every example config give a config or an
    /// error, never a panic (including the validation and the library settings built from it).
    #[test]
    fn edited_configs_never_panic() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        let seeds: Vec<String> = [dir.clone(), dir.join("reproduce")]
            .into_iter()
            .flat_map(|d| std::fs::read_dir(d).unwrap())
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        let mut runner = TestRunner::new(Config {
            cases: 512,
            failure_persistence: None,
            ..Config::default()
        });
        let edit = (0usize..4000, 0usize..16, "[a-z0-9=\\[\\]\"{}., \n_-]{0,16}");
        let strategy = (0..seeds.len(), prop::collection::vec(edit, 1..6));
        runner
            .run(&strategy, |(seed, edits)| {
                let mut text: Vec<char> = seeds[seed].chars().collect();
                for (at, len, insert) in &edits {
                    let at = at % (text.len() + 1);
                    let end = (at + len).min(text.len());
                    text.splice(at..end, insert.chars());
                }
                let text: String = text.into_iter().collect();
                if let Ok(config) = RunConfig::from_text(&text, Path::new("/fuzz/run.toml")) {
                    let _ = config.bomf_config();
                }
                Ok(())
            })
            .unwrap();
        assert!(seeds.len() >= 8);
    }

    /// Every example config in `configs/` parses and passes validation; one whose data are
    /// installed assets loads them (with `BOMF_REQUIRE_ASSETS=1`, missing assets fail the test).
    #[test]
    fn example_configs_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        let mut n = 0;
        let paths = [dir.clone(), dir.join("reproduce")]
            .into_iter()
            .flat_map(|d| std::fs::read_dir(d).unwrap())
            .map(|e| e.unwrap().path());
        for path in paths {
            if path.extension().is_some_and(|e| e == "toml") {
                let (config, _) = RunConfig::from_file(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                config.bomf_config().train.validate().unwrap();
                config.trajectory.validate().unwrap();
                load_served_data(&config.data, &path);
                n += 1;
            }
        }
        assert!(n >= 8, "only {n} configs found");
    }

    /// Loads a config's data when its files are in the assets folder (the default one in the
    /// config, wherever `BOMF_ASSETS` puts it): every split non-empty.
    fn load_served_data(data: &DataSpec, config: &Path) {
        use bomf_data::spec::SplitSpec;
        const MARK: &str = ".bomf/assets/";
        let installed = |path: &mut PathBuf| -> Option<bool> {
            let text = path.to_string_lossy().into_owned();
            let rest = &text[text.find(MARK)? + MARK.len()..];
            *path = bomf_data::assets::assets_dir().join(rest);
            Some(bomf_data::assets::require(path.clone()).unwrap().is_some())
        };
        let mut data = data.clone();
        let mut files: Vec<&mut PathBuf> = data.path.iter_mut().collect();
        if let SplitSpec::Files {
            train,
            validation,
            test,
        } = &mut data.split
        {
            files.extend([train, validation, test].into_iter().flatten());
        }
        let found: Vec<bool> = files.into_iter().filter_map(installed).collect();
        if found.is_empty() || found.contains(&false) {
            return; // not on served data, or skipped: assets not installed
        }
        let splits = data
            .load()
            .unwrap_or_else(|e| panic!("{}: {e}", config.display()));
        for split in [&splits.train, &splits.validation, &splits.test] {
            assert!(!split.is_empty(), "{}", config.display());
        }
    }
}
