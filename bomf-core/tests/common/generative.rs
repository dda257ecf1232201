//! Tiny random LLaMA / T5 models and bomf-data's tiny BPE tokenizer
//! (`bomf-data/tests/fixtures/tokenizer/bpe.json`, ids 0–3 = `<s>`, `<pad>`, `</s>`, `<unk>`)
//! for the tests of the generative families.

use std::path::PathBuf;
use std::sync::Arc;

use bomf_core::eval::EvalSet;
use bomf_core::generative::{LoraLlama, default_prompt, generation_items};
use bomf_core::model::GenerationConfig;
use bomf_core::train::{Budget, TrainConfig};
use bomf_data::batch::{BatchConfig, Batcher, Item};
use bomf_data::task::{Dataset, Example, Target, Task as DataTask};
use bomf_data::tokenize::{EncoderConfig, ModelFamily, TextEncoder};
use bomf_models::lora::LoraConfig;
use bomf_models::{LlamaConfig, LlamaForCausalLM, LlamaLoraAdapters, T5Config};
use burn::module::{ModuleMapper, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

pub const EOS: i64 = 2;
pub const PAD: i64 = 1;

fn tokenizer_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bomf-data/tests/fixtures/tokenizer/bpe.json")
}

/// T5 encoding: inputs of at most 32 tokens, targets of at most 24.
pub fn t5_encoder() -> TextEncoder {
    let mut config = EncoderConfig::new(ModelFamily::T5, 32);
    config.max_target_length = Some(24);
    TextEncoder::from_file(&tokenizer_path(), config).unwrap()
}

/// LLaMA encoding of at most 48 tokens.
pub fn llama_encoder() -> TextEncoder {
    TextEncoder::from_file(
        &tokenizer_path(),
        EncoderConfig::new(ModelFamily::Llama, 48),
    )
    .unwrap()
}

pub fn t5_config() -> T5Config {
    serde_json::from_value(serde_json::json!({
        "vocab_size": 300, "d_model": 16, "d_kv": 4, "d_ff": 32, "num_layers": 2,
        "num_decoder_layers": 1, "num_heads": 2, "dropout_rate": 0.0,
        "feed_forward_proj": "relu", "tie_word_embeddings": true,
        "pad_token_id": PAD, "eos_token_id": EOS, "decoder_start_token_id": PAD
    }))
    .unwrap()
}

pub fn llama_config() -> LlamaConfig {
    serde_json::from_value(serde_json::json!({
        "vocab_size": 300, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
        "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 64,
        "bos_token_id": 0, "eos_token_id": EOS, "pad_token_id": PAD, "initializer_range": 0.2
    }))
    .unwrap()
}

/// Greedy decoding of at most `max_new_tokens`, stopping at the tokenizer's `</s>`.
pub fn generation(max_new_tokens: usize) -> GenerationConfig {
    GenerationConfig {
        max_new_tokens,
        eos_token_ids: vec![EOS],
        pad_token_id: PAD,
        ..GenerationConfig::default()
    }
}

/// The training items of `dataset` (default prompt).
pub fn train_items(encoder: &TextEncoder, dataset: &Dataset) -> Vec<Item> {
    generation_items(encoder, dataset, default_prompt)
        .unwrap()
        .items
}

/// `dataset` as a generation set (default prompt, batches of 4), decoding `max_new` tokens.
pub fn generative_set(encoder: &TextEncoder, dataset: &Dataset, max_new: usize) -> EvalSet {
    let g = generation_items(encoder, dataset, default_prompt).unwrap();
    EvalSet::generative(
        dataset.task.clone(),
        g.items,
        g.references,
        Arc::new(encoder.clone()),
        generation(max_new),
        4,
    )
    .unwrap()
}

/// A random LLaMA (seeded by `seed`) with fresh adapters of `lora`, at rank `rank` when given
/// (at `lora`'s update scale, as a LoRA-rank proxy builds it).
pub fn lora_llama<BK: Backend>(seed: u64, lora: &LoraConfig, rank: Option<usize>) -> LoraLlama<BK> {
    let device = Default::default();
    BK::seed(&device, seed);
    let base = LlamaForCausalLM::<BK>::new(&llama_config(), &device).unwrap();
    let lora = match rank {
        Some(r) => lora.clone().with_rank(r),
        None => lora.clone(),
    };
    let adapters = LlamaLoraAdapters::new(&lora, &llama_config(), &device).unwrap();
    LoraLlama::new(base, adapters).unwrap()
}

/// A small E2E-like data-to-text set: `name[X], food[Y]` → `X serves Y food.` (two references).
pub fn e2e_dataset(n: usize, offset: usize) -> Dataset {
    let names = ["Alpha", "Brown", "Crowd", "Stage", "Field", "Grass"];
    let foods = ["Thai", "quick", "lazy", "tall"];
    let examples = (offset..offset + n)
        .map(|i| {
            let (name, food) = (names[i % names.len()], foods[(i / 2) % foods.len()]);
            Example {
                id: i.to_string(),
                inputs: vec![format!("name[{name}], food[{food}]")],
                options: vec![],
                target: Some(Target::Text(vec![
                    format!("{name} serves {food} food."),
                    format!("The {name} has {food} food."),
                ])),
            }
        })
        .collect();
    Dataset {
        task: DataTask::e2e_nlg(),
        examples,
    }
}

/// Shuffled training batches of 4.
pub fn train_batcher(items: Vec<Item>, pad: u32) -> Batcher {
    Batcher::new(items, pad, BatchConfig::train(4, 3)).unwrap()
}

/// `n` steps at `lr`, gradients clipped at norm 1, no evaluation along the way.
pub fn steps(n: usize, lr: f64) -> TrainConfig {
    TrainConfig {
        learning_rate: lr,
        budget: Budget::Steps(n),
        eval_every: None,
        max_grad_norm: Some(1.0),
        seed: 5,
        ..TrainConfig::default()
    }
}

/// Adds `x ↦ c·sin(x + 1)` to every parameter (a deterministic, non-uniform change: LoRA's `B`
/// is no longer zero).
pub struct Perturb(pub f32);

impl<BK: Backend> ModuleMapper<BK> for Perturb {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<BK, D>>) -> Param<Tensor<BK, D>> {
        let c = self.0;
        param.map(|t| t.clone() + t.add_scalar(1.0).sin().mul_scalar(c))
    }
}
