//! The text of `bomf run` configs and data specs as the CLI tests write them.

use std::path::{Path, PathBuf};

/// A `bomf run` config in the shape the CLI tests share: 4 epochs with 10 % warmup, the last 3
/// checkpoints taken every 2 steps, and a learned soup of one epoch at 0.05.
pub struct RunConfig<'a> {
    pub seed: u64,
    /// The model folder (`[model] path`).
    pub model: &'a Path,
    /// Lines after `path` in `[model]`, and tables that follow it (e.g. `[model.lora]`).
    pub model_extra: &'a str,
    /// The body of `[data]`, with its split table.
    pub data: &'a str,
    pub learning_rate: f64,
    pub batch_size: usize,
    /// The body of `[fusion]`.
    pub fusion: &'a str,
    /// Lines of `[baselines]` besides the learned soup.
    pub baselines: &'a str,
    /// Appended after `[baselines]` (e.g. an `[hpbo]` table).
    pub extra: &'a str,
}

impl RunConfig<'_> {
    pub fn text(&self) -> String {
        let RunConfig {
            seed,
            model,
            model_extra,
            data,
            learning_rate,
            batch_size,
            fusion,
            baselines,
            extra,
        } = self;
        format!(
            r#"seed = {seed}

[model]
path = "{model}"
{model_extra}
[data]
{data}
[train]
learning_rate = {learning_rate}
batch_size = {batch_size}
epochs = 4
warmup_ratio = 0.1

[trajectory]
k = 3
every = 2
rule = {{ rule = "last_k" }}

[fusion]
{fusion}
[baselines]
{baselines}learned_soup = {{ epochs = 1, learning_rate = 0.05 }}
{extra}
"#,
            model = model.display(),
        )
    }

    /// Writes the config to `dir/run.toml` and returns that path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("run.toml");
        std::fs::write(&path, self.text()).unwrap();
        path
    }
}

/// A run config of the tiny BERT classifier (`tiny`: `bomf-cli/tests/fixtures/tiny`, its model
/// `a` on `train.jsonl` split by hash rank) at seed 1, learning rate 0.01, batches of 8, written
/// to `dir/run.toml`; `fusion`, `baselines` and `extra` as in [`RunConfig`].
pub fn write_tiny_classifier_run(
    dir: &Path,
    tiny: &Path,
    (fusion, baselines): (&str, &str),
    extra: &str,
) -> PathBuf {
    RunConfig {
        seed: 1,
        model: &tiny.join("a"),
        model_extra: "",
        data: &by_rank_data(&tiny.join("train.jsonl")),
        learning_rate: 0.01,
        batch_size: 8,
        fusion,
        baselines,
        extra,
    }
    .write(dir)
}

/// The `format` and columns of a JSONL file of `{"text", "label"}` lines.
pub const JSONL_TEXT_LABEL: &str =
    "format = \"jsonl\"\ntext_fields = [\"text\"]\nlabel_field = \"label\"\n";

/// A split table `[table]` of files: `kind = "files"` and a `name = "path"` line for each of
/// `files`.
pub fn files_split(table: &str, files: &[(&str, &Path)]) -> String {
    let mut text = format!("[{table}]\nkind = \"files\"\n");
    for (name, path) in files {
        text += &format!("{name} = {:?}\n", path.display().to_string());
    }
    text
}

/// A data spec of JSONL `{"text", "label"}` files (`[split]` of `files`).
pub fn jsonl_spec(files: &[(&str, &Path)]) -> String {
    format!("{JSONL_TEXT_LABEL}\n{}", files_split("split", files))
}

/// The body of `[data]` for the JSONL `{"text", "label"}` file `path` of 48 lines, split by
/// hash rank into 24 training, 12 validation and 12 test lines.
pub fn by_rank_data(path: &Path) -> String {
    format!(
        "format = \"jsonl\"\npath = \"{}\"\ntext_fields = [\"text\"]\nlabel_field = \"label\"\n\n\
         [data.split]\nkind = \"by_rank\"\ntrain = 24\nvalidation = 12\ntest = 12\nseed = 0\n",
        path.display()
    )
}
