//! The tiny generative fixtures (`fixtures/tiny_gen`, written by `gen_tiny_generative.py`,
//! `gen_tiny_squad.py` and `gen_tiny_adapters.py`) as the test files on them use them: their
//! data specs, run configs and `bomf eval`. The test file defines `bomf` (`bomf_cli!`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use bomf_tests::cli::config::{RunConfig, files_split};
use bomf_tests::cli::{model_args, succeed_json};
use serde_json::Value;

use crate::bomf;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_gen")
}

/// What `bomf eval`, `bomf predict` and a run's `[generation]` generate at most.
pub const MAX_NEW_TOKENS: usize = 6;

/// Rank-4 adapters of the q and v projections at alpha 8, as a `[model.lora]` table.
pub const LORA: &str =
    "\n[model.lora]\nr = 4\nlora_alpha = 8.0\ntarget_modules = [\"q_proj\", \"v_proj\"]\n";

#[derive(Clone, Copy)]
pub enum Data {
    Generation,
    Choice,
    /// SQuAD v2.0 files (`gen_tiny_squad.py`), answered by generation.
    Squad,
    /// The generation files read as classification of each sentence into its MR, cast as
    /// text-to-text (`as_generation`): the model writes the label.
    Labels,
}

impl Data {
    /// The `format` line, the columns and the three split files, the split table named `table`.
    pub fn spec_body(self, table: &str) -> String {
        let (format, prefix, ext) = match self {
            Data::Generation => ("e2e", "gen", "csv"),
            Data::Choice => ("mcqa", "mc", "jsonl"),
            Data::Squad => ("squad", "squad", "json"),
            Data::Labels => ("csv", "gen", "csv"),
        };
        let columns = match self {
            Data::Labels => "text_fields = [\"ref\"]\nlabel_field = \"mr\"\nas_generation = true\n",
            _ => "",
        };
        let f = |split: &str| fixtures().join(format!("{prefix}_{split}.{ext}"));
        let (train, validation, test) = (f("train"), f("validation"), f("test"));
        let files = [
            ("train", train.as_path()),
            ("validation", &validation),
            ("test", &test),
        ];
        format!(
            "format = \"{format}\"\n{columns}\n{}",
            files_split(table, &files)
        )
    }

    /// A data spec file for `bomf eval --data`.
    pub fn write_spec(self, dir: &Path) -> PathBuf {
        let path = dir.join(match self {
            Data::Generation => "gen.toml",
            Data::Choice => "mc.toml",
            Data::Squad => "squad.toml",
            Data::Labels => "labels.toml",
        });
        std::fs::write(&path, self.spec_body("split")).unwrap();
        path
    }
}

/// A run config of the fixture model `model` on `data`: `model_extra` is appended to `[model]`
/// (e.g. a `[model.lora]` table), `fusion` is the body of `[fusion]` and `baselines` the lines
/// of `[baselines]` besides the learned soup.
pub fn write_run_config(
    dir: &Path,
    (model, model_extra): (&str, &str),
    data: Data,
    fusion: &str,
    baselines: &str,
) -> PathBuf {
    RunConfig {
        seed: 3,
        model: &fixtures().join(model),
        model_extra: &format!(
            "max_len = 64\n{model_extra}\n\n[generation]\nmax_new_tokens = {MAX_NEW_TOKENS}\n"
        ),
        data: &data.spec_body("data.split"),
        learning_rate: 0.02,
        batch_size: 4,
        fusion,
        baselines,
        extra: "",
    }
    .write(dir)
}

/// `bomf eval` of `model` on `split` of `data` with `extra` flags (e.g. `--adapter DIR`), as
/// JSON.
pub fn eval_with(dir: &Path, model: &Path, data: Data, split: &str, extra: &[&str]) -> Value {
    let spec = data.write_spec(dir);
    let max_new = MAX_NEW_TOKENS.to_string();
    let mut flags = vec![
        "--data",
        spec.to_str().unwrap(),
        "--split",
        split,
        "--batch-size",
        "64",
        "--max-len",
        "64",
        "--max-new-tokens",
        &max_new,
    ];
    flags.extend(extra);
    succeed_json(&bomf(&model_args("eval", model, &flags), dir))
}
