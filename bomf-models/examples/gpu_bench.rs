//! Throughput of a RoBERTa-base-sized encoder (random init: 12 layers, hidden 768, 12 heads,
//! FFN 3072, vocabulary 50,265) for issue 7's side-by-side with PyTorch on the same GPU
//! (`benches/gpu/torch_bench.py` measures the same two things on the same inputs):
//! - `train_step_b32_l128`: forward + cross-entropy + backward + AdamW step, batch 32, length 128;
//! - `eval_277_l128`: forward over 277 examples (RTE's validation size) of length 128, batch 32;
//! - `fusion_host_k10` / `fusion_device_k10` (f32 only): θ(w) for 10 checkpoints of the model
//!   as the reference does it (fused on the host, then copied into the model on the device) and
//!   with the checkpoints resident on the device ([`StackedParams`], one product per tensor).
//!
//! ```text
//! cargo run --release -p bomf-models --example gpu_bench -- [--device cpu|cuda] [--dtype f32|bf16]
//!     [--tiny] [--repeats 5] [--warmup 2]
//! ```
//! `--device cuda` needs a build with `--features cuda` (see `benches/gpu/README.md`). `--tiny`
//! shrinks the model and batch so the CPU build can check the program in seconds. Prints one JSON
//! line per measurement: `{"name", "device", "dtype", "seconds"}` (median, after a device sync).

use std::process::ExitCode;
use std::time::Instant;

use bomf_models::bert::Task;
use bomf_models::params::{Coverage, named_tensors, set_tensors};
use bomf_models::{
    BertConfig, BertWithHead, EncoderInput, HfTensor, SequenceClassifier, StackedParams,
};
use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};

struct Args {
    device: String,
    dtype: String,
    tiny: bool,
    repeats: usize,
    warmup: usize,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        device: "cpu".into(),
        dtype: "f32".into(),
        tiny: false,
        repeats: 5,
        warmup: 2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--tiny" {
            a.tiny = true;
            continue;
        }
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let count = |v: &str| v.parse::<usize>().map_err(|_| format!("bad {flag} {v}"));
        match flag.as_str() {
            "--device" => a.device = value,
            "--dtype" => a.dtype = value,
            "--repeats" => a.repeats = count(&value)?.max(1),
            "--warmup" => a.warmup = count(&value)?,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(a)
}

/// RoBERTa-base's `config.json` (or a tiny one), two labels.
fn config(tiny: bool) -> Result<BertConfig, String> {
    let (layers, hidden, heads, ffn, vocab) = if tiny {
        (2, 64, 4, 128, 1000)
    } else {
        (12, 768, 12, 3072, 50265)
    };
    BertConfig::from_json(serde_json::json!({
        "model_type": "roberta", "vocab_size": vocab, "hidden_size": hidden,
        "num_hidden_layers": layers, "num_attention_heads": heads, "intermediate_size": ffn,
        "hidden_act": "gelu", "max_position_embeddings": 514, "type_vocab_size": 1,
        "pad_token_id": 1, "layer_norm_eps": 1e-5, "num_labels": 2
    }))
    .map_err(|e| e.to_string())
}

/// `rows` rows of `len` tokens (all real), ids spread over the vocabulary as the Python side.
fn batch<B: Backend>(
    rows: usize,
    len: usize,
    offset: usize,
    vocab: usize,
    device: &B::Device,
) -> Result<EncoderInput<B>, String> {
    let ids: Vec<i64> = (0..rows * len)
        .map(|i| 3 + ((offset * len + i) * 7919 % (vocab - 3)) as i64)
        .collect();
    let mask = vec![1i64; rows * len];
    EncoderInput::from_rows(&ids, &mask, None, rows, len, device).map_err(|e| e.to_string())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn sync<B: Backend>(device: &B::Device) -> Result<(), String> {
    B::sync(device).map_err(|e| format!("device sync failed: {e:?}"))
}

fn emit(name: &str, args: &Args, samples: Vec<f64>) {
    eprintln!("{name}: {samples:?}");
    println!(
        "{}",
        serde_json::json!({"name": name, "device": args.device, "dtype": args.dtype,
                           "seconds": median(samples)})
    );
}

/// Both measurements on one autodiff backend.
fn run<B: AutodiffBackend>(args: &Args, device: B::Device) -> Result<(), String> {
    let config = config(args.tiny)?;
    let (rows, len, eval_rows): (usize, usize, usize) = if args.tiny {
        (4, 16, 10)
    } else {
        (32, 128, 277)
    };
    B::seed(&device, 0);
    let model = BertWithHead::<B>::new(&config, Task::SequenceClassification, &device);

    // Evaluation: inference copy of the model, 277 rows in batches of 32.
    let inference = model.valid();
    let eval_batches = (0..eval_rows.div_ceil(rows))
        .map(|b| {
            let n = rows.min(eval_rows - b * rows);
            batch::<B::InnerBackend>(n, len, b * rows, config.vocab_size, &device)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut samples = Vec::new();
    for i in 0..args.warmup + args.repeats {
        let start = Instant::now();
        for input in &eval_batches {
            let logits = inference
                .sequence_logits(input)
                .map_err(|e| e.to_string())?;
            drop(logits);
        }
        sync::<B::InnerBackend>(&device)?;
        if i >= args.warmup {
            samples.push(start.elapsed().as_secs_f64());
        }
    }
    emit(&format!("eval_{eval_rows}_l{len}"), args, samples);
    if args.dtype == "f32" {
        fusion::<B::InnerBackend>(args, &config, &device)?;
    }

    // Training step.
    let input = batch::<B>(rows, len, 0, config.vocab_size, &device)?;
    let labels: Tensor<B, 1, Int> = Tensor::from_data(
        TensorData::new((0..rows as i64).map(|i| i % 2).collect(), [rows]),
        &device,
    );
    let mut optim = AdamWConfig::new()
        .with_epsilon(1e-8)
        .with_weight_decay(0.01)
        .init();
    let mut model = model;
    let mut samples = Vec::new();
    for i in 0..args.warmup + args.repeats {
        let start = Instant::now();
        let logits = model.sequence_logits(&input).map_err(|e| e.to_string())?;
        let loss = model.classification_loss(logits, labels.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(2e-5, model, grads);
        sync::<B>(&device)?;
        if i >= args.warmup {
            samples.push(start.elapsed().as_secs_f64());
        }
    }
    emit(&format!("train_step_b{rows}_l{len}"), args, samples);
    Ok(())
}

/// θ(w) of K = 10 checkpoints (random models of the config): host fusion + upload against
/// fusion on the device from resident checkpoints.
fn fusion<B: Backend>(args: &Args, config: &BertConfig, device: &B::Device) -> Result<(), String> {
    const K: usize = 10;
    let err = |e: bomf_models::ModelError| e.to_string();
    let template = BertWithHead::<B>::new(config, Task::SequenceClassification, device);
    let checkpoints: Vec<Vec<(String, HfTensor)>> = (0..K)
        .map(|k| {
            B::seed(device, 100 + k as u64);
            named_tensors(&BertWithHead::<B>::new(
                config,
                Task::SequenceClassification,
                device,
            ))
        })
        .collect::<Result<_, _>>()
        .map_err(err)?;
    let weights: Vec<f64> = (0..K).map(|k| (k + 1) as f64 / 55.0).collect();

    let mut samples = Vec::new();
    for i in 0..args.warmup + args.repeats {
        let start = Instant::now();
        let fused: std::collections::BTreeMap<String, HfTensor> = (0..checkpoints[0].len())
            .map(|t| {
                let (name, first) = &checkpoints[0][t];
                let mut data = vec![0.0f32; first.data.len()];
                for (ckpt, &w) in checkpoints.iter().zip(&weights) {
                    for (o, &x) in data.iter_mut().zip(&ckpt[t].1.data) {
                        *o += w as f32 * x;
                    }
                }
                (name.clone(), HfTensor::new(first.shape.clone(), data))
            })
            .map(|(n, t)| t.map(|t| (n, t)))
            .collect::<Result<_, _>>()
            .map_err(err)?;
        let model = set_tensors(template.clone(), &fused, Coverage::All, device).map_err(err)?;
        sync::<B>(device)?;
        drop(model);
        if i >= args.warmup {
            samples.push(start.elapsed().as_secs_f64());
        }
    }
    emit(&format!("fusion_host_k{K}"), args, samples);

    let by_name: std::collections::BTreeMap<&str, usize> = checkpoints[0]
        .iter()
        .enumerate()
        .map(|(i, (n, _))| (n.as_str(), i))
        .collect();
    let stacked = StackedParams::new(
        &template,
        K,
        |name| {
            let t = *by_name.get(name)?;
            Some(checkpoints.iter().map(|c| c[t].1.data.as_slice()).collect())
        },
        device,
    )
    .map_err(err)?;
    let mut samples = Vec::new();
    for i in 0..args.warmup + args.repeats {
        let start = Instant::now();
        let model = stacked.fused(template.clone(), &weights).map_err(err)?;
        sync::<B>(device)?;
        drop(model);
        if i >= args.warmup {
            samples.push(start.elapsed().as_secs_f64());
        }
    }
    emit(&format!("fusion_device_k{K}"), args, samples);
    Ok(())
}

fn dispatch(args: &Args) -> Result<(), String> {
    match (args.device.as_str(), args.dtype.as_str()) {
        ("cpu", "f32") => run::<Autodiff<bomf_models::CpuBackend>>(args, Default::default()),
        #[cfg(feature = "cuda")]
        ("cuda", "f32") => run::<Autodiff<burn::backend::Cuda>>(args, Default::default()),
        #[cfg(feature = "cuda")]
        ("cuda", "bf16") => {
            run::<Autodiff<burn::backend::Cuda<burn::tensor::bf16>>>(args, Default::default())
        }
        ("cuda", _) if !cfg!(feature = "cuda") => {
            Err("this build has no CUDA: rebuild with --features bomf-models/cuda".into())
        }
        (d, t) => Err(format!("unsupported --device {d} --dtype {t}")),
    }
}

fn main() -> ExitCode {
    match parse().and_then(|a| dispatch(&a)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gpu_bench: {e}");
            ExitCode::FAILURE
        }
    }
}
