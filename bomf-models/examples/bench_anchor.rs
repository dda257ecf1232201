//! The Rust half of the PyTorch-anchored benchmark (the PyTorch half is `benches/anchor.py`).
//!
//! Measures, on the CPU backend, the same two things on the same inputs as the Python script:
//! - `minilm_forward_b32_l64`: forward of MiniLM with a fresh 2-label classification head,
//! - `smollm2_greedy_32_tokens`: SmolLM2-135M (the GGUF from the assets, dequantised to f32)
//!   generating 32 tokens greedily with its KV cache after the prompt `The capital of France is`
//!   (skipped when the file is absent),
//! - `minilm_train_step_b32_l64`: forward + cross-entropy + backward + AdamW step (dropout on;
//!   the AdamW update is `bomf_models::ops::adamw_update`, the one `bomf-core` trains with).
//!
//! The batch is 32 rows padded to the longest row (64 tokens), rows shortened by `(row * 7) % 24`
//! tokens. Each measurement prints one JSON line `{"name": ..., "seconds": median}` on stdout
//! (every sample goes to stderr); `cargo xtask bench` pairs these lines with the Python ones.
//!
//! Threads: burn's CPU backend runs on rayon's global pool, so `RAYON_NUM_THREADS` sets the thread
//! count (default: one per core). Run it optimised:
//! `RAYON_NUM_THREADS=2 cargo run --release -p bomf-models --example models_anchor`.
//! The assets folder (holding `minilm/`) comes from `BOMF_ASSETS`, else `<workspace>/.bomf/assets`.
//! `BOMF_BENCH_REPS` (default 7) and `BENCH_WARMUP` (default 2) set the sample counts;
//! `BENCH_ONLY=forward`, `generate` or `train` runs one of them (for a profiler).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use bomf_models::bert::Task;
use bomf_models::{
    BertConfig, BertWithHead, CausalLmInput, CpuAutodiffBackend, CpuBackend, EncoderInput,
    Generate, SequenceClassifier, weights,
};
use std::collections::HashMap;

use bomf_models::ops::{AdamWStep, Moments, adamw_update};
use burn::module::{AutodiffModule, ModuleMapper, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::Backend;
use burn::tensor::{Device, Int, Tensor, TensorData};

/// The batch `anchor.py` builds, shared with the criterion bench.
#[path = "../benches/common/mod.rs"]
mod common;

use common::{BATCH, SEQ_LEN};

/// The same allocator as the `bomf` binary, so the bench measures what users run.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// As the `bomf` binary's `keep_freed_pages` (see there): freed pages are never returned to the
/// OS (option 15 = mimalloc v3's purge delay, default 1000 ms) unless `MIMALLOC_PURGE_DELAY` is
/// set.
#[allow(unsafe_code)]
fn keep_freed_pages() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: a plain C call on mimalloc's option table, initialised before main.
        unsafe { libmimalloc_sys::mi_option_set(15, -1) };
    }
}

fn assets_dir() -> PathBuf {
    std::env::var_os("BOMF_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.bomf/assets"))
}

fn env_count(name: &str, default: usize) -> Result<usize, String> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => v
            .parse()
            .map_err(|_| format!("{name}={v} is not a non-negative integer")),
    }
}

/// MiniLM with a fresh 2-label sequence-classification head, as `anchor.py` builds it.
fn load_model<Bk: Backend>(
    dir: &std::path::Path,
    device: &Bk::Device,
) -> Result<BertWithHead<Bk>, String> {
    let config = BertConfig::from_file(dir.join("config.json"))
        .map_err(|e| e.to_string())?
        .with_num_labels(2);
    let (model, _) =
        weights::load_bert_with_config(dir, &config, Task::SequenceClassification, device)
            .map_err(|e| e.to_string())?;
    Ok(model)
}

/// The deterministic batch `anchor.py` builds: right padding, longest row = `SEQ_LEN`.
fn batch<Bk: Backend>(device: &Bk::Device) -> Result<EncoderInput<Bk>, String> {
    let (ids, mask) = common::anchor_rows();
    EncoderInput::from_rows(&ids, &mask, None, BATCH, SEQ_LEN, device).map_err(|e| e.to_string())
}

/// CPU seconds (user + system, all threads) this process has used so far, from `/proc/self/stat`
/// (Linux; `None` elsewhere). On a shared machine CPU time is a steadier yardstick than wall time.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // Linux reports these in USER_HZ ticks, 100 per second on every mainstream configuration.
    Some((utime + stime) / 100.0)
}

/// Runs `step` `warmup` times untimed, then `repeats` times timed; returns the wall-clock samples
/// in seconds and the CPU seconds each sample used (empty where the OS does not tell).
fn timed(warmup: usize, repeats: usize, mut step: impl FnMut()) -> (Vec<f64>, Vec<f64>) {
    for _ in 0..warmup {
        step();
    }
    let mut wall = Vec::with_capacity(repeats);
    let mut cpu = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let cpu_start = process_cpu_seconds();
        let start = Instant::now();
        step();
        wall.push(start.elapsed().as_secs_f64());
        if let (Some(a), Some(b)) = (cpu_start, process_cpu_seconds()) {
            cpu.push(b - a);
        }
    }
    (wall, cpu)
}

fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

fn report(name: &str, (wall, cpu): &(Vec<f64>, Vec<f64>)) {
    let list = |v: &[f64]| {
        v.iter()
            .map(|s| format!("{s:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    eprintln!("{name}: wall {} | cpu {}", list(wall), list(cpu));
    println!(
        "{}",
        serde_json::json!({ "name": name, "seconds": median(wall) })
    );
}

fn run() -> Result<(), String> {
    let dir = assets_dir().join("minilm");
    if !dir.join("model.safetensors").is_file() {
        return Err(format!(
            "MiniLM not found in {} (set BOMF_ASSETS)",
            dir.display()
        ));
    }
    let warmup = env_count("BENCH_WARMUP", 2)?;
    let repeats = env_count("BOMF_BENCH_REPS", 7)?.max(1);
    eprintln!(
        "burn Flex backend, rayon threads {}, CPU kernels {} (BOMF_CPU_KERNELS)",
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default (one per core)".into()),
        if std::env::var("BOMF_CPU_KERNELS").is_ok_and(|v| v == "0") {
            "off"
        } else {
            "on"
        }
    );

    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if !matches!(only.as_str(), "" | "forward" | "generate" | "train") {
        return Err(format!(
            "BENCH_ONLY={only}: expected `forward`, `generate` or `train`"
        ));
    }
    let device = Default::default();
    if matches!(only.as_str(), "" | "forward") {
        forward_bench(&dir, &device, warmup, repeats)?;
    }
    if matches!(only.as_str(), "" | "generate") {
        generate_bench(&device, warmup, repeats)?;
    }
    if matches!(only.as_str(), "" | "train") {
        train_bench(&dir, &device, warmup, repeats)?;
    }
    Ok(())
}

fn forward_bench(
    dir: &std::path::Path,
    device: &Device<CpuBackend>,
    warmup: usize,
    repeats: usize,
) -> Result<(), String> {
    let model = load_model::<CpuBackend>(dir, device)?;
    let input = batch::<CpuBackend>(device)?;
    let mut failure = None;
    let samples = timed(warmup, repeats, || {
        match model.sequence_logits(&input) {
            // Reading the result back forces the whole computation.
            Ok(logits) => drop(logits.into_data()),
            Err(e) => failure = Some(e.to_string()),
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    report("minilm_forward_b32_l64", &samples);
    Ok(())
}

/// The SmolLM2 GGUF of the assets, if fetched.
const SMOLLM2: &str = "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
const GENERATE_PROMPT: &str = "The capital of France is";
const GENERATE_TOKENS: usize = 32;

fn generate_bench(
    device: &Device<CpuBackend>,
    warmup: usize,
    repeats: usize,
) -> Result<(), String> {
    let path = assets_dir().join(SMOLLM2);
    if !path.is_file() {
        eprintln!(
            "skipped smollm2_greedy_32_tokens: {} not found",
            path.display()
        );
        return Ok(());
    }
    let (model, _, file) = bomf_models::gguf::load_llama_gguf::<CpuBackend>(&path, device)
        .map_err(|e| e.to_string())?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let tokenizer_path = dir.path().join("tokenizer.json");
    file.write_tokenizer_json(&tokenizer_path)
        .map_err(|e| e.to_string())?;
    let tokenizer = tokenizers::Tokenizer::from_file(&tokenizer_path).map_err(|e| e.to_string())?;
    let ids: Vec<i64> = tokenizer
        .encode(GENERATE_PROMPT, false)
        .map_err(|e| e.to_string())?
        .get_ids()
        .iter()
        .map(|&id| i64::from(id))
        .collect();
    let prompt = CausalLmInput::unpadded(vec![ids]);
    let mut failure = None;
    let samples = timed(warmup, repeats, || {
        // No end-of-sequence ids: exactly `GENERATE_TOKENS` new tokens, as `min_new_tokens` on
        // the Python side.
        match model.generate_greedy(&prompt, GENERATE_TOKENS, &[], 0) {
            Ok(tokens) if tokens[0].len() == GENERATE_TOKENS => {}
            Ok(tokens) => failure = Some(format!("generated {} tokens", tokens[0].len())),
            Err(e) => failure = Some(e.to_string()),
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    report("smollm2_greedy_32_tokens", &samples);
    Ok(())
}

fn train_bench(
    dir: &std::path::Path,
    device: &Device<CpuBackend>,
    warmup: usize,
    repeats: usize,
) -> Result<(), String> {
    let model = load_model::<CpuAutodiffBackend>(dir, device)?;
    let input = batch::<CpuAutodiffBackend>(device)?;
    let mut failure = None;
    let labels: Tensor<CpuAutodiffBackend, 1, Int> = Tensor::from_data(
        TensorData::new((0..BATCH as i64).map(|i| i % 2).collect(), [BATCH]),
        device,
    );
    let mut optim = FusedAdamW::default();
    let mut current = Some(model);
    // Wall seconds of each phase (forward + loss, backward, optimiser step), per step.
    let mut phases: Vec<[f64; 3]> = Vec::new();
    let samples = timed(warmup, repeats, || {
        let Some(model) = current.take() else { return };
        let start = Instant::now();
        match model.sequence_logits(&input) {
            Ok(logits) => {
                let loss = model.classification_loss(logits, labels.clone());
                let forward = start.elapsed().as_secs_f64();
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                let backward = start.elapsed().as_secs_f64();
                current = Some(optim.step(2e-5, model, grads));
                let step = start.elapsed().as_secs_f64();
                phases.push([forward, backward - forward, step - backward]);
            }
            Err(e) => failure = Some(e.to_string()),
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    let timed_phases = &phases[phases.len().saturating_sub(repeats)..];
    let phase = |i: usize| median(&timed_phases.iter().map(|p| p[i]).collect::<Vec<_>>());
    eprintln!(
        "train step phases (median s): forward+loss {:.3}, backward {:.3}, AdamW step {:.3}",
        phase(0),
        phase(1),
        phase(2)
    );
    report("minilm_train_step_b32_l64", &samples);
    Ok(())
}

/// `torch.optim.AdamW(lr, eps=1e-8, weight_decay=0.01)` as `anchor.py` configures it (one decay
/// for every parameter), through the fused update `bomf-core`'s optimiser runs.
#[derive(Default)]
struct FusedAdamW {
    moments: HashMap<ParamId, Moments<Flex>>,
    steps: i32,
}

type Flex = CpuBackend;

impl FusedAdamW {
    fn step<M: AutodiffModule<CpuAutodiffBackend>>(
        &mut self,
        lr: f64,
        model: M,
        mut grads: GradientsParams,
    ) -> M {
        self.steps += 1;
        let (beta1, beta2) = (0.9f64, 0.999f64);
        let step = AdamWStep {
            lr,
            beta1,
            beta2,
            eps: 1e-8,
            weight_decay: 0.01,
            grad_scale: 1.0,
            bias_correction1: 1.0 - beta1.powi(self.steps),
            bias_correction2: 1.0 - beta2.powi(self.steps),
        };
        model.map(&mut Update {
            moments: &mut self.moments,
            grads: &mut grads,
            step,
        })
    }
}

struct Update<'a> {
    moments: &'a mut HashMap<ParamId, Moments<Flex>>,
    grads: &'a mut GradientsParams,
    step: AdamWStep,
}

impl ModuleMapper<CpuAutodiffBackend> for Update<'_> {
    fn map_float<const D: usize>(
        &mut self,
        param: Param<Tensor<CpuAutodiffBackend, D>>,
    ) -> Param<Tensor<CpuAutodiffBackend, D>> {
        let id = param.id;
        let Some(grad) = self.grads.remove::<Flex, D>(id) else {
            return param;
        };
        param.map(|tensor| {
            let dims = tensor.dims();
            let n: usize = dims.iter().product();
            let theta = tensor.inner().reshape([n]);
            let previous = self.moments.remove(&id);
            let (theta, moments) = adamw_update(theta, grad.reshape([n]), previous, &self.step);
            self.moments.insert(id, moments);
            Tensor::from_inner(theta.reshape(dims)).require_grad()
        })
    }
}

fn main() -> ExitCode {
    keep_freed_pages();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_anchor: {e}");
            ExitCode::FAILURE
        }
    }
}
