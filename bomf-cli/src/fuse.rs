//! `bomf fuse`: θ = Σ_k w_k θ_k over K fine-tuned checkpoints of one architecture, written as a
//! Hugging Face folder that `bomf eval`, `bomf predict` and `transformers` load unchanged.
//!
//! Each checkpoint is loaded strictly into the architecture of the config (the first
//! checkpoint's, or `--config`), so a checkpoint with another shape or a missing tensor is an
//! error naming the checkpoint and the tensor before anything is written. The sum itself is the
//! engine's fusion kernel (`bomf_core::fusion::CheckpointSet`). Every family the CLI knows is
//! fused the same way: BERT/RoBERTa classifiers, T5 and LLaMA (dense weights; a LLaMA config may
//! come from a `.gguf` file, then the output gets its embedded tokenizer). peft LoRA adapter
//! folders fuse into an adapter folder (`--base` names the model they adapt), as `--lora` says:
//! `factors` (default) averages every tensor, `lora_A` and `lora_B` alike (rank r, not the
//! average of the updates); `delta` averages the updates exactly, Σ_k w_k s·B_k A_k, written
//! losslessly as one adapter of rank K·r (`lora_alpha` scaled so the update scale stays s).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bomf_core::family::{OpenOptions, OpenedModel, config_dir_of, open};
use bomf_core::fusion::{CheckpointSet, LoraFusion};
use bomf_core::merge::{self, OutDtype};
use bomf_core::rundir::StagedDir;
use bomf_models::lora::{ADAPTER_CONFIG_FILE, LlamaLoraAdapters, LoraConfig};
use bomf_models::{CpuAutodiffBackend, CpuBackend};
use clap::{Args, ValueEnum};

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    bomf fuse --checkpoints ckpt-a ckpt-b ckpt-c --weights 0.2,0.3,0.5 --out fused\n  \
    bomf fuse --checkpoints runs/x/checkpoints/checkpoint-000040.safetensors \\\n             \
    runs/x/checkpoints/checkpoint-000050.safetensors --weights 0.5,0.5 --out fused\n  \
    bomf fuse --checkpoints adapter-a adapter-b --weights 0.3,0.7 --base smollm2.gguf --out fused-adapter\n\n\
    Checkpoints are Hugging Face folders (config.json + weights, e.g. PyTorch fine-tunes saved\n\
    with save_pretrained) or .safetensors files of a `bomf train` run, whose folder holds the\n\
    config. The output folder gets config.json, model.safetensors and the tokenizer files of\n\
    the config folder. Weights are usually on the simplex (>= 0, summing to 1); other finite\n\
    weights are allowed with a warning.\n\n\
    peft LoRA adapter folders (adapter_config.json + adapter_model.safetensors) of one base model\n\
    fuse into an adapter folder: use it with `bomf eval/predict --model BASE --adapter DIR`, or\n\
    PeftModel.from_pretrained. The adapters must share rank, scale and target modules.\n\
    --lora delta fuses their updates exactly into one adapter of rank K·r (weights summing to 1):\n  \
    bomf fuse --checkpoints adapter-a adapter-b --weights 0.3,0.7 --lora delta --out fused-adapter")]
pub struct FuseArgs {
    /// The checkpoints to fuse (two or more make sense; one just re-exports it).
    #[arg(long, value_name = "CKPT", num_args = 1.., required = true)]
    pub checkpoints: Vec<PathBuf>,
    /// One weight per checkpoint, comma separated, in the same order.
    #[arg(
        long,
        value_name = "W1,W2,...",
        value_delimiter = ',',
        allow_hyphen_values = true,
        required = true
    )]
    pub weights: Vec<f64>,
    /// The output folder (created; must be empty unless --force).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The folder whose config.json and tokenizer files describe the checkpoints (default: the
    /// first checkpoint's folder).
    #[arg(long, value_name = "DIR")]
    pub config: Option<PathBuf>,
    /// Adapter folders: the base model they adapt (a LLaMA-family folder or .gguf file; default:
    /// the adapters' base_model_name_or_path when that is a local path).
    #[arg(long, value_name = "MODEL")]
    pub base: Option<PathBuf>,
    /// Replace a non-empty output folder (the new one is written beside it and swapped in whole).
    #[arg(long)]
    pub force: bool,
    /// Adapter folders: `factors` averages lora_A and lora_B separately (rank r); `delta`
    /// averages the updates s·B·A exactly, as one adapter of rank K·r (weights summing to 1).
    #[arg(long, value_enum, default_value_t = LoraMode::Factors)]
    pub lora: LoraMode,
    /// Fuse tensor by tensor from the safetensors files without the model code: any
    /// architecture (Qwen2, Mistral, Gemma, …), memory of about one tensor whatever K. A
    /// checkpoint may be a training output folder (its checkpoint-* subfolders, in step order).
    /// The output keeps the first checkpoint's shards and files (config, tokenizer, …).
    #[arg(long)]
    pub stream: bool,
    /// With --stream: the dtype of the fused tensors (`same`: each tensor's input dtype).
    #[arg(
        long,
        value_name = "same|f32|f16|bf16",
        default_value = "same",
        requires = "stream"
    )]
    pub dtype: OutDtype,
}

/// `--lora`: bomf-core's [`LoraFusion`] on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LoraMode {
    Factors,
    Delta,
}

impl From<LoraMode> for LoraFusion {
    fn from(mode: LoraMode) -> Self {
        match mode {
            LoraMode::Factors => LoraFusion::Factors,
            LoraMode::Delta => LoraFusion::Delta,
        }
    }
}

/// Checks the weights against the checkpoints; returns a warning when they leave the simplex.
pub fn check_weights(weights: &[f64], checkpoints: usize) -> Result<Option<String>> {
    if weights.len() != checkpoints {
        bail!(
            "{} weight(s) for {checkpoints} checkpoint(s): give exactly one weight per checkpoint",
            weights.len()
        );
    }
    if let Some((i, w)) = weights.iter().enumerate().find(|(_, w)| !w.is_finite()) {
        bail!(
            "weight {} is {w}: every weight must be a finite number",
            i + 1
        );
    }
    let sum: f64 = weights.iter().sum();
    let mut warnings = Vec::new();
    if (sum - 1.0).abs() > 1e-6 {
        warnings.push(format!(
            "the weights sum to {sum}, not 1: the fused parameters are scaled by that much"
        ));
    }
    if weights.iter().any(|&w| w < 0.0) {
        warnings.push("some weights are negative (extrapolation, not interpolation)".into());
    }
    Ok((!warnings.is_empty()).then(|| warnings.join("; ")))
}

fn ensure_empty_or_forced(out: &Path, force: bool) -> Result<()> {
    if out.is_file() {
        bail!("--out {} is a file, not a folder", out.display());
    }
    let non_empty = out
        .read_dir()
        .map(|mut entries| entries.next().is_some())
        .unwrap_or(false);
    if non_empty && !force {
        bail!(
            "--out {} is not empty: choose a new folder or pass --force to replace it",
            out.display()
        );
    }
    Ok(())
}

/// GGUF files are whole models, usually quantized: they are read as a base (`--base`, or
/// `--model` of eval/train), never fused as checkpoints, so they are refused by name here rather
/// than failing later on a missing config.json or folder.
fn refuse_gguf(checkpoints: &[PathBuf]) -> Result<()> {
    let is_gguf = |path: &Path| {
        path.extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
            || (path.is_file()
                && std::fs::File::open(path)
                    .and_then(|mut f| {
                        let mut magic = [0u8; 4];
                        std::io::Read::read_exact(&mut f, &mut magic).map(|()| magic)
                    })
                    .is_ok_and(|magic| &magic == b"GGUF"))
    };
    if let Some((i, path)) = checkpoints.iter().enumerate().find(|(_, p)| is_gguf(p)) {
        bail!(
            "checkpoint {}: {} is a GGUF file, which bomf fuse does not read as a checkpoint: \
             fuse the Hugging Face folders (safetensors) the GGUF files were made from, or pass \
             a GGUF model as --base when fusing LoRA adapter folders",
            i + 1,
            path.display()
        );
    }
    Ok(())
}

pub fn run(args: FuseArgs) -> Result<()> {
    refuse_gguf(&args.checkpoints)?;
    if args.stream {
        return fuse_streamed(&args);
    }
    if let Some(warning) = check_weights(&args.weights, args.checkpoints.len())? {
        eprintln!("warning: {warning}");
    }
    ensure_empty_or_forced(&args.out, args.force)?;
    if is_adapter_folder(&args.checkpoints[0]) {
        return fuse_adapters(&args);
    }
    if args.lora != LoraMode::Factors {
        bail!(
            "--lora applies to peft LoRA adapter folders, and {} is not one (no {ADAPTER_CONFIG_FILE})",
            args.checkpoints[0].display()
        );
    }
    if let Some(base) = &args.base {
        bail!(
            "--base {} is for fusing LoRA adapter folders, and {} is not one (no {ADAPTER_CONFIG_FILE})",
            base.display(),
            args.checkpoints[0].display()
        );
    }
    let config_dir = args
        .config
        .clone()
        .unwrap_or_else(|| config_dir_of(&args.checkpoints[0]));
    if args.config.is_none() && !config_dir.join("config.json").is_file() {
        bail!(
            "{} has no config.json to describe the checkpoints: pass --config with the model \
             folder they come from (for the checkpoints/ of a `bomf run`, the run's [model] path; \
             its config.toml names it)",
            config_dir.display()
        );
    }
    let model = open(
        &config_dir,
        &OpenOptions {
            config_only: true,
            ..OpenOptions::default()
        },
    )
    .context(
        "opening the checkpoints' model (for an architecture bomf does not implement, --stream \
         fuses the checkpoints tensor by tensor without its model code)",
    )?;
    let params = model.fuse_checkpoints::<CpuAutodiffBackend>(
        &args.checkpoints,
        &args.weights,
        &args.out,
        &Default::default(),
    )?;
    eprintln!(
        "fused {} checkpoints ({params} parameters each) into {}",
        args.checkpoints.len(),
        args.out.display()
    );
    Ok(())
}

/// `bomf fuse --stream`: [`bomf_core::merge`] over the checkpoints the paths stand for.
fn fuse_streamed(args: &FuseArgs) -> Result<()> {
    for (flag, given) in [
        ("--config", args.config.is_some()),
        ("--base", args.base.is_some()),
        ("--lora delta", args.lora != LoraMode::Factors),
    ] {
        if given {
            bail!("{flag} does not apply to --stream, which reads every checkpoint's own files");
        }
    }
    let dirs = merge::resolve(&args.checkpoints)?;
    if let Some(warning) = check_weights(&args.weights, dirs.len())
        .with_context(|| format!("the checkpoints are {}", labels(&dirs)))?
    {
        eprintln!("warning: {warning}");
    }
    let set = merge::CheckpointSet::open(&dirs)?;
    let summary = merge::merge(
        &set,
        &args.weights,
        &args.out,
        &merge::MergeOptions { dtype: args.dtype },
    )?;
    eprintln!(
        "fused {} checkpoints ({} parameters each, {} tensors averaged, {} copied) into {}",
        set.len(),
        set.parameter_count(),
        summary.fused,
        summary.copied,
        args.out.display()
    );
    Ok(())
}

fn labels(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes the output folder `out` with `write` into a staging folder and moves it into place
/// whole ([`StagedDir`]): a killed or failed fuse leaves the previous folder (or none), and
/// `--force` replaces the folder rather than mixing new files with old ones.
fn write_out(out: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let staged = StagedDir::new(out)?;
    write(staged.path()).with_context(|| format!("writing {}", out.display()))?;
    staged.publish()?;
    Ok(())
}

fn is_adapter_folder(path: &Path) -> bool {
    path.join(ADAPTER_CONFIG_FILE).is_file()
}

/// `bomf fuse` of peft LoRA adapter folders: θ = Σ_k w_k θ_k over the adapter tensors, written
/// as a peft adapter folder with the first adapter's config.
fn fuse_adapters(args: &FuseArgs) -> Result<()> {
    if let Some(config) = &args.config {
        bail!(
            "--config {} describes dense checkpoints; for adapter folders give the model they \
             adapt with --base",
            config.display()
        );
    }
    let first_config = LoraConfig::from_file(args.checkpoints[0].join(ADAPTER_CONFIG_FILE))
        .with_context(|| format!("checkpoint 1 ({})", args.checkpoints[0].display()))?;
    let base = match (&args.base, &first_config.base_model_name_or_path) {
        (Some(base), _) => base.clone(),
        (None, Some(named)) if Path::new(named).exists() => PathBuf::from(named),
        (None, named) => bail!(
            "fusing adapter folders needs the model they adapt: give it with --base ({})",
            named.as_deref().map_or(
                "their adapter_config.json names no base model".to_string(),
                |n| format!("their base_model_name_or_path `{n}` is not a local path")
            )
        ),
    };
    let options = OpenOptions {
        config_only: true,
        ..OpenOptions::default()
    };
    let model = open(&base, &options)
        .with_context(|| format!("opening the base model {}", base.display()))?;
    // LoRA adapters are LLaMA-family adapters: their tensors are named by its projections.
    let OpenedModel::Llama(llama) = &model else {
        bail!(
            "--base {}: LoRA adapters apply to LLaMA-family models only",
            base.display()
        );
    };
    let config = llama.config();
    let device = Default::default();
    let mut set = CheckpointSet::new();
    let mut template: Option<LlamaLoraAdapters<CpuBackend>> = None;
    for (i, path) in args.checkpoints.iter().enumerate() {
        let which = format!("checkpoint {} ({})", i + 1, path.display());
        if !is_adapter_folder(path) {
            bail!(
                "{which} is not a peft adapter folder (no {ADAPTER_CONFIG_FILE}) while checkpoint \
                 1 is: adapters fuse only with adapters"
            );
        }
        let adapters = LlamaLoraAdapters::<CpuBackend>::load(path, config, &device)
            .with_context(|| format!("{which} does not fit the base model {}", base.display()))?;
        if let Some(first) = &template {
            same_adapter_kind(first.config(), adapters.config(), config.num_hidden_layers)
                .with_context(|| format!("{which} differs from checkpoint 1"))?;
        }
        set.push_model(&adapters).with_context(|| which.clone())?;
        template.get_or_insert(adapters);
    }
    let template = template.context("no checkpoint given")?;
    let params = set.layout().map_or(0, |l| l.num_params());
    let set = set.for_lora_fusion(args.lora.into())?;
    let template = match set.lora_rank()? {
        // `delta`: adapters of rank K·r at the same update scale (`lora_alpha` moves with r).
        Some(rank) if args.lora == LoraMode::Delta => {
            let lora = template.config().clone().with_rank(rank);
            LlamaLoraAdapters::<CpuBackend>::new(&lora, config, &device)?
        }
        _ => template,
    };
    let fused = set.fused_model(template, &args.weights, &device)?;
    write_out(&args.out, |dir| Ok(fused.save(dir)?))?;
    eprintln!(
        "fused {} adapters ({params} parameters each, `{}` fusion, rank {}) into {}",
        args.checkpoints.len(),
        args.lora
            .to_possible_value()
            .map_or_else(String::new, |v| v.get_name().to_string()),
        fused.config().r,
        args.out.display()
    );
    Ok(())
}

/// Two adapters can be fused when they adapt the same projections at the same rank and scale
/// (a weighted sum of adapters with different scales would not be the fusion of their updates).
fn same_adapter_kind(first: &LoraConfig, other: &LoraConfig, num_layers: usize) -> Result<()> {
    if first.r != other.r {
        bail!("rank {} vs {}", other.r, first.r);
    }
    if (first.scaling() - other.scaling()).abs() > 1e-12 * first.scaling().abs() {
        bail!(
            "update scale (lora_alpha / r) {} vs {}",
            other.scaling(),
            first.scaling()
        );
    }
    if first.targets(num_layers)? != other.targets(num_layers)? {
        bail!("the adapted projections differ (target_modules / layers_to_transform)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_weights;

    #[test]
    fn weights_must_match_and_be_finite() {
        assert!(check_weights(&[0.5, 0.5], 2).unwrap().is_none());
        let err = check_weights(&[0.5, 0.5], 3).unwrap_err().to_string();
        assert!(err.contains("2 weight(s) for 3 checkpoint(s)"), "{err}");
        let err = check_weights(&[0.5, f64::NAN], 2).unwrap_err().to_string();
        assert!(err.contains("weight 2 is NaN"), "{err}");
        assert!(
            check_weights(&[0.5, 0.6], 2)
                .unwrap()
                .unwrap()
                .contains("sum to")
        );
        assert!(
            check_weights(&[1.5, -0.5], 2)
                .unwrap()
                .unwrap()
                .contains("negative")
        );
    }
}
