//! The generative families through bomf-core on tiny random models: T5 and LLaMA + LoRA train
//! (LoRA: only the adapters move), evaluate with generation metrics equal to bomf-data's on the
//! decoded strings, multiple choice by option log-likelihood, fusion of LoRA checkpoints over the
//! adapters alone, and stage 2 (trajectory) with the LoRA wrapper.
//!
//! The tokenizer is bomf-data's tiny BPE fixture (`bomf-data/tests/fixtures/tokenizer/bpe.json`,
//! ids 0–3 = `<s>`, `<pad>`, `</s>`, `<unk>`); reference losses come from bomf-models'
//! `forward_with_labels` / `causal_lm_loss`, which are checked against `transformers` there.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use bomf_core::baselines::LearnedSoupConfig;
use bomf_core::eval::{EvalSet, Scoring, evaluate, generate_texts};
use bomf_core::fusion::CheckpointSet;
use bomf_core::fusion_bo::FusionBoConfig;
use bomf_core::generative::{
    LoraLlama, choice_items, default_prompt, generation_items, score_tokens, span_qa_as_generation,
};
use bomf_core::hpbo::{HpSpace, HpboConfig};
use bomf_core::model::{GenerationConfig, TaskModel};
use bomf_core::optim::AdamWConfig;
use bomf_core::pipeline::{BaselinesConfig, BomfConfig, ModelRequest, PipelineData, run_bomf};
use bomf_core::schedule::{ScheduleKind, Warmup};
use bomf_core::train::{Budget, Control, LayerCount, TrainConfig, train};
use bomf_core::trajectory::{KeepRule, TrajectoryConfig, collect_trajectory};
use bomf_data::batch::{BatchConfig, Batcher, Item, ItemTarget};
use bomf_data::metrics::{Metric, corpus_bleu, rouge};
use bomf_data::task::{Dataset, Example, SpanAnswer, Target, Task as DataTask, TaskKind};
use bomf_data::tokenize::{EncoderConfig, ModelFamily, TextEncoder};
use bomf_models::llama::load_llama;
use bomf_models::lora::LoraConfig;
use bomf_models::params::named_tensors;
use bomf_models::t5::load_t5_checkpoint;
use bomf_models::weights::read_safetensors;
use bomf_models::{
    CausalLmInput, CpuAutodiffBackend as AB, CpuBackend as B, LlamaConfig, LlamaForCausalLM,
    LlamaLoraAdapters, Seq2SeqInput, T5Config, T5ForConditionalGeneration,
};
use burn::module::AutodiffModule;
use burn::tensor::backend::Backend;
use proptest::prelude::{Just, Strategy, prop_assert, prop_assert_eq, prop_assume};

const EOS: i64 = 2;
const PAD: i64 = 1;

fn tokenizer_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bomf-data/tests/fixtures/tokenizer/bpe.json")
}

fn t5_encoder() -> TextEncoder {
    let mut config = EncoderConfig::new(ModelFamily::T5, 32);
    config.max_target_length = Some(24);
    TextEncoder::from_file(&tokenizer_path(), config).unwrap()
}

fn llama_encoder() -> TextEncoder {
    TextEncoder::from_file(
        &tokenizer_path(),
        EncoderConfig::new(ModelFamily::Llama, 48),
    )
    .unwrap()
}

fn t5_config() -> T5Config {
    serde_json::from_value(serde_json::json!({
        "vocab_size": 300, "d_model": 16, "d_kv": 4, "d_ff": 32, "num_layers": 2,
        "num_decoder_layers": 1, "num_heads": 2, "dropout_rate": 0.0,
        "feed_forward_proj": "relu", "tie_word_embeddings": true,
        "pad_token_id": PAD, "eos_token_id": EOS, "decoder_start_token_id": PAD
    }))
    .unwrap()
}

fn llama_config() -> LlamaConfig {
    serde_json::from_value(serde_json::json!({
        "vocab_size": 300, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
        "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 64,
        "bos_token_id": 0, "eos_token_id": EOS, "pad_token_id": PAD, "initializer_range": 0.2
    }))
    .unwrap()
}

fn generation(max_new_tokens: usize) -> GenerationConfig {
    GenerationConfig {
        max_new_tokens,
        eos_token_ids: vec![EOS],
        pad_token_id: PAD,
        ..GenerationConfig::default()
    }
}

/// A small E2E-like data-to-text set: `name[X], food[Y]` → `X serves Y food.` (two references).
fn e2e_dataset(n: usize, offset: usize) -> Dataset {
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

fn generative_set(encoder: &TextEncoder, dataset: &Dataset, max_new: usize) -> EvalSet {
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

fn train_batcher(items: Vec<Item>, pad: u32) -> Batcher {
    Batcher::new(items, pad, BatchConfig::train(4, 3)).unwrap()
}

fn steps(n: usize, lr: f64) -> TrainConfig {
    TrainConfig {
        learning_rate: lr,
        budget: Budget::Steps(n),
        eval_every: None,
        max_grad_norm: Some(1.0),
        seed: 5,
        ..TrainConfig::default()
    }
}

fn lora_model<BK: Backend>(seed: u64) -> LoraLlama<BK> {
    lora_model_of_rank(seed, None)
}

/// Rank 4 unless `rank` is given (at rank 4's update scale, as a LoRA-rank proxy builds it).
fn lora_model_of_rank<BK: Backend>(seed: u64, rank: Option<usize>) -> LoraLlama<BK> {
    let device = Default::default();
    BK::seed(&device, seed);
    let base = LlamaForCausalLM::<BK>::new(&llama_config(), &device).unwrap();
    let lora = LoraConfig::new(4, 8.0, &["q_proj", "v_proj"]).without_dropout();
    let lora = match rank {
        Some(r) => lora.with_rank(r),
        None => lora,
    };
    let adapters = LlamaLoraAdapters::new(&lora, &llama_config(), &device).unwrap();
    LoraLlama::new(base, adapters).unwrap()
}

fn flat(tensors: &[(String, bomf_models::HfTensor)]) -> Vec<f32> {
    tensors.iter().flat_map(|(_, t)| t.data.clone()).collect()
}

#[test]
fn token_loss_equals_the_models_reference_losses() {
    let _rng = common::rng_lock();
    let device = Default::default();
    B::seed(&device, 11);
    // T5: the batch loss equals `forward_with_labels` (checked against transformers in
    // bomf-models); the row score is the row's mean token log-probability.
    let encoder = t5_encoder();
    let data = e2e_dataset(5, 0);
    let set = generative_set(&encoder, &data, 4);
    let t5 = T5ForConditionalGeneration::<B>::new(&t5_config(), &device).unwrap();
    let batch = &set.batches[0];
    let out = t5.forward_batch(batch, &device).unwrap();
    let w = batch.seq_len;
    let rows: Vec<Vec<i64>> = batch.input_ids.chunks(w).map(<[i64]>::to_vec).collect();
    let mask: Vec<Vec<i64>> = batch
        .attention_mask
        .chunks(w)
        .map(<[i64]>::to_vec)
        .collect();
    let bomf_data::batch::BatchTargets::Tokens { labels, len } = &batch.targets else {
        panic!("token targets expected")
    };
    let labels: Vec<Vec<i64>> = labels.chunks(*len).map(<[i64]>::to_vec).collect();
    let input = Seq2SeqInput {
        input_ids: rows.clone(),
        attention_mask: mask,
    };
    let reference = t5.forward_with_labels(&input, &labels).unwrap();
    let ours = out.loss.into_scalar();
    let theirs = reference.loss.into_scalar();
    assert!((ours - theirs).abs() < 1e-5, "{ours} vs {theirs}");
    // Row 0 alone, unpadded: its loss is minus its mean token log-probability.
    let real: Vec<i64> = rows[0]
        .iter()
        .zip(&input.attention_mask[0])
        .filter(|(_, m)| **m == 1)
        .map(|(t, _)| *t)
        .collect();
    let row_labels: Vec<i64> = labels[0].iter().copied().filter(|&t| t != -100).collect();
    let alone = t5
        .forward_with_labels(&Seq2SeqInput::unpadded(vec![real]), &[row_labels])
        .unwrap()
        .loss
        .into_scalar();
    let score = out.logits.into_data().to_vec::<f32>().unwrap()[0];
    assert!((score + alone).abs() < 1e-4, "{score} vs -{alone}");

    // LLaMA: equals `causal_lm_loss` on the same logits.
    let encoder = llama_encoder();
    let set = generative_set(&encoder, &data, 4);
    let llama = LlamaForCausalLM::<B>::new(&llama_config(), &device).unwrap();
    let batch = &set.batches[0];
    let out = llama.forward_batch(batch, &device).unwrap();
    let w = batch.seq_len;
    let input = CausalLmInput {
        input_ids: batch.input_ids.chunks(w).map(<[i64]>::to_vec).collect(),
        attention_mask: batch
            .attention_mask
            .chunks(w)
            .map(<[i64]>::to_vec)
            .collect(),
    };
    let bomf_data::batch::BatchTargets::Tokens { labels, len } = &batch.targets else {
        panic!("token targets expected")
    };
    assert_eq!(*len, w, "causal labels are aligned with the inputs");
    let labels: Vec<Vec<i64>> = labels.chunks(w).map(<[i64]>::to_vec).collect();
    let reference = llama
        .causal_lm_loss(llama.logits(&input).unwrap(), &labels)
        .unwrap()
        .into_scalar();
    let ours = out.loss.into_scalar();
    assert!((ours - reference).abs() < 1e-5, "{ours} vs {reference}");
}

#[test]
fn t5_training_lowers_the_loss_and_reports_generation_metrics() {
    let _rng = common::rng_lock();
    let device = Default::default();
    AB::seed(&device, 3);
    let encoder = t5_encoder();
    let model = T5ForConditionalGeneration::<AB>::new(&t5_config(), &device).unwrap();
    let train_items = generation_items(&encoder, &e2e_dataset(16, 0), default_prompt).unwrap();
    let validation = generative_set(&encoder, &e2e_dataset(6, 100), 6);
    let before = evaluate(&model.valid(), &validation, &device).unwrap();
    let run = train(
        model,
        &train_batcher(train_items.items, encoder.pad_id()),
        Some(&validation),
        &steps(12, 1e-2),
        &device,
        |_| Control::Continue,
    )
    .unwrap();
    let after = &run.evaluations.last().unwrap().1;
    assert!(
        after.loss < before.loss - 0.3,
        "{} -> {}",
        before.loss,
        after.loss
    );
    let keys: Vec<&str> = after.metrics.keys().map(String::as_str).collect();
    assert_eq!(keys, ["bleu", "rouge1", "rouge2", "rougeL", "rougeLsum"]);
    assert_eq!(
        after.primary(&validation.task),
        Some(after.metrics["bleu"]),
        "E2E selects by BLEU, its first metric"
    );
    assert!(after.metrics.values().all(|v| v.is_finite()));
}

#[test]
fn generation_metrics_equal_bomf_data_on_the_decoded_strings() {
    let _rng = common::rng_lock();
    let device = Default::default();
    AB::seed(&device, 21);
    let encoder = t5_encoder();
    // A few steps first, so that generations are words rather than stray byte pieces.
    let fresh = T5ForConditionalGeneration::<AB>::new(&t5_config(), &device).unwrap();
    let train_items = generation_items(&encoder, &e2e_dataset(16, 0), default_prompt).unwrap();
    let model = train(
        fresh,
        &train_batcher(train_items.items, encoder.pad_id()),
        None,
        &steps(30, 1e-2),
        &device,
        |_| Control::Continue,
    )
    .unwrap()
    .model
    .valid();
    let data = e2e_dataset(7, 0);
    let set = generative_set(&encoder, &data, 5);
    let texts = generate_texts(&model, &set, &device).unwrap();
    assert_eq!(texts.len(), 7);
    assert!(texts.iter().any(|t| !t.is_empty()));

    // Batched generation equals each example alone (padding does not leak), and decoding cuts
    // at the eos and skips special tokens.
    let g = generation_items(&encoder, &data, default_prompt).unwrap();
    for (i, item) in g.items.iter().enumerate() {
        let ids: Vec<i64> = item.ids.iter().map(|&t| t as i64).collect();
        let alone = model
            .generate_greedy(&Seq2SeqInput::unpadded(vec![ids]), 5, &[EOS], PAD)
            .unwrap();
        let end = alone[0]
            .iter()
            .position(|&t| t == EOS)
            .unwrap_or(alone[0].len());
        let ids: Vec<u32> = alone[0][..end].iter().map(|&t| t as u32).collect();
        let decoded = encoder.tokenizer().decode(&ids, true).unwrap();
        assert_eq!(texts[i], decoded.trim(), "example {i}");
    }

    // References that share words with some predictions, so the scores are not all zero.
    let references: Vec<Vec<String>> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if i % 2 == 0 {
                vec![format!("{t} and more words"), "unrelated reference".into()]
            } else {
                vec![data.examples[i].inputs[0].clone()]
            }
        })
        .collect();
    let set = EvalSet::generative(
        data.task.clone(),
        g.items,
        references.clone(),
        Arc::new(encoder.clone()),
        generation(5),
        3,
    )
    .unwrap();
    let e = evaluate(&model, &set, &device).unwrap();
    let r = rouge(&texts, &references).unwrap();
    let b = corpus_bleu(&texts, &references).unwrap();
    assert!(r.rouge1 > 0.0 && r.rouge1 < 1.0, "{r:?}");
    assert_eq!(e.metrics["rouge1"], r.rouge1);
    assert_eq!(e.metrics["rouge2"], r.rouge2);
    assert_eq!(e.metrics["rougeL"], r.rouge_l);
    assert_eq!(e.metrics["rougeLsum"], r.rouge_lsum);
    assert_eq!(e.metrics["bleu"], b.score);
    assert_eq!(e.num_examples, 7);
}

#[test]
fn llama_generation_continues_each_prompt_like_the_model_alone() {
    let _rng = common::rng_lock();
    let device = Default::default();
    let model = lora_model::<B>(4);
    let encoder = llama_encoder();
    let data = e2e_dataset(5, 0);
    let set = generative_set(&encoder, &data, 4);
    let texts = generate_texts(&model, &set, &device).unwrap();
    for (i, example) in data.examples.iter().enumerate() {
        // The prompt alone: `<s>` + the prompt's raw tokens (what `encode_causal` puts first).
        let c = encoder
            .encode_causal(&default_prompt(example), "x")
            .unwrap();
        let prompt_len = c.labels.iter().position(|&l| l != -100).unwrap();
        let prompt: Vec<i64> = c.ids[..prompt_len].iter().map(|&t| t as i64).collect();
        let adapted = model.adapters.attach(&model.base).unwrap();
        let alone = adapted
            .generate_greedy(&CausalLmInput::unpadded(vec![prompt]), 4, &[EOS], EOS)
            .unwrap();
        let end = alone[0]
            .iter()
            .position(|&t| t == EOS)
            .unwrap_or(alone[0].len());
        let ids: Vec<u32> = alone[0][..end].iter().map(|&t| t as u32).collect();
        let decoded = encoder.tokenizer().decode(&ids, true).unwrap();
        assert_eq!(texts[i], decoded.trim(), "example {i}");
    }
}

#[test]
fn beam_search_in_evaluation_is_the_models_beam_search() {
    let _rng = common::rng_lock();
    let device = Default::default();
    let model = lora_model::<B>(4);
    let encoder = llama_encoder();
    let data = e2e_dataset(5, 0);
    let mut set = generative_set(&encoder, &data, 5);
    let Scoring::Generation { config, .. } = &mut set.scoring else {
        panic!("a generation set")
    };
    config.num_beams = 3;
    config.length_penalty = 0.5;
    let beam = config.beam().unwrap();
    assert_eq!((beam.num_beams, beam.max_new_tokens), (3, 5));
    let eval_config = config.clone();
    let adapted = model.adapters.attach(&model.base).unwrap();
    for batch in &set.batches {
        let ours = model.generate_batch(batch, &eval_config, &device).unwrap();
        // Each prompt alone (unpadded) through the model's own beam search: the same tokens,
        // whatever the batching and left padding.
        let w = batch.seq_len;
        let bomf_data::batch::BatchTargets::Tokens { labels, len } = &batch.targets else {
            panic!("token targets expected")
        };
        let strip = |row: &[i64]| {
            let end = row.iter().rposition(|&t| t != PAD).map_or(0, |i| i + 1);
            row[..end].to_vec()
        };
        for (r, (ids, l)) in batch
            .input_ids
            .chunks(w)
            .zip(labels.chunks(*len))
            .enumerate()
        {
            let end = l.iter().position(|&t| t != -100).unwrap();
            let alone = adapted
                .generate_beam(
                    &CausalLmInput::unpadded(vec![ids[..end].to_vec()]),
                    &beam,
                    &[EOS],
                    PAD,
                )
                .unwrap();
            assert_eq!(strip(&ours[r]), strip(&alone[0]), "row {r}");
        }
    }
    let greedy = GenerationConfig {
        num_beams: 1,
        ..eval_config
    };
    assert!(greedy.beam().is_none());
}

#[test]
fn lora_training_moves_only_the_adapters() {
    let _rng = common::rng_lock();
    let device = Default::default();
    let model = lora_model::<AB>(7);
    let names: Vec<String> = named_tensors(&model)
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names.len(), 2 * 2 * 2, "2 layers × (q, v) × (A, B)");
    assert_eq!(
        names[0],
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    );
    let base_before = flat(&named_tensors(&model.base).unwrap());
    let adapters_before = flat(&named_tensors(&model).unwrap());

    let encoder = llama_encoder();
    let train_items = generation_items(&encoder, &e2e_dataset(16, 0), default_prompt).unwrap();
    let validation = generative_set(&encoder, &e2e_dataset(6, 100), 3);
    let before = evaluate(&model.valid(), &validation, &device).unwrap();
    let run = train(
        model,
        &train_batcher(train_items.items, encoder.pad_id()),
        Some(&validation),
        &steps(16, 5e-2),
        &device,
        |_| Control::Continue,
    )
    .unwrap();
    let after = &run.evaluations.last().unwrap().1;
    assert!(
        after.loss < before.loss - 0.1,
        "{} -> {}",
        before.loss,
        after.loss
    );
    assert_eq!(flat(&named_tensors(&run.model.base).unwrap()), base_before);
    assert_ne!(flat(&named_tensors(&run.model).unwrap()), adapters_before);
    assert!(after.metrics.contains_key("rougeLsum"));
}

#[test]
fn fusing_lora_checkpoints_fuses_the_adapters_only() {
    let _rng = common::rng_lock();
    let device = Default::default();
    let a = lora_model::<B>(1);
    // A second checkpoint: same base, other adapters (B non-zero so the adapters matter).
    B::seed(&device, 2);
    let lora = LoraConfig::new(4, 8.0, &["q_proj", "v_proj"]).without_dropout();
    let other = LlamaLoraAdapters::<B>::new(&lora, &llama_config(), &device).unwrap();
    let other = burn::module::Module::map(other, &mut Perturb(0.3));
    let b = LoraLlama::new(a.base.clone(), other).unwrap();
    let a = LoraLlama::new(
        a.base.clone(),
        burn::module::Module::map(a.adapters, &mut Perturb(-0.2)),
    )
    .unwrap();

    let mut set = CheckpointSet::new();
    set.push_model(&a).unwrap();
    set.push_model(&b).unwrap();
    let adapter_params: usize = named_tensors(&a.adapters)
        .unwrap()
        .iter()
        .map(|(_, t)| t.data.len())
        .sum();
    assert_eq!(set.layout().unwrap().num_params(), adapter_params);

    let w = [0.3, 0.7];
    let fused = set.fused_model(a.clone(), &w, &device).unwrap();
    let (xa, xb) = (
        flat(&named_tensors(&a).unwrap()),
        flat(&named_tensors(&b).unwrap()),
    );
    let got = flat(&named_tensors(&fused.adapters).unwrap());
    for ((g, x), y) in got.iter().zip(&xa).zip(&xb) {
        let want = 0.3 * x + 0.7 * y;
        assert!(
            (g - want).abs() <= 1e-6 * (1.0 + want.abs()),
            "{g} vs {want}"
        );
    }
    assert_eq!(
        flat(&named_tensors(&fused.base).unwrap()),
        flat(&named_tensors(&a.base).unwrap())
    );
    // The fused wrapper evaluates like any model.
    let encoder = llama_encoder();
    let e = evaluate(
        &fused,
        &generative_set(&encoder, &e2e_dataset(3, 0), 2),
        &device,
    )
    .unwrap();
    assert!(e.loss.is_finite());
}

/// Adds `x ↦ x + c·sin(x + k)` to every parameter (a deterministic, non-uniform change).
struct Perturb(f32);

impl<BK: Backend> burn::module::ModuleMapper<BK> for Perturb {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<burn::tensor::Tensor<BK, D>>,
    ) -> burn::module::Param<burn::tensor::Tensor<BK, D>> {
        let c = self.0;
        param.map(|t| t.clone() + t.add_scalar(1.0).sin().mul_scalar(c))
    }
}

#[test]
fn collect_trajectory_keeps_adapter_checkpoints() {
    let _rng = common::rng_lock();
    let device = Default::default();
    let model = lora_model::<AB>(9);
    let encoder = llama_encoder();
    let train_items = generation_items(&encoder, &e2e_dataset(12, 0), default_prompt).unwrap();
    let validation = generative_set(&encoder, &e2e_dataset(4, 50), 2);
    let trajectory = collect_trajectory(
        model,
        &train_batcher(train_items.items, encoder.pad_id()),
        &validation,
        &steps(6, 1e-2),
        &TrajectoryConfig {
            rule: KeepRule::LastK,
            k: 3,
            every: 2,
            patience: 5,
        },
        &device,
        |_, _| {},
    )
    .unwrap();
    assert_eq!(trajectory.checkpoints.len(), 3);
    let layout = trajectory.checkpoints.layout().unwrap();
    assert!(
        layout.names.iter().all(|n| n.contains(".lora_")),
        "{:?}",
        layout.names
    );
    assert!(
        trajectory
            .kept
            .iter()
            .all(|k| k.validation.metrics.contains_key("bleu"))
    );
}

/// Questions whose options are scored by mean token log-likelihood.
fn mcqa_dataset() -> Dataset {
    let rows = [
        (
            "Which animal jumps?",
            ["The fox.", "The stage.", "A guitar."],
            0,
        ),
        (
            "Who sings along?",
            ["The dog.", "The crowd.", "The field."],
            1,
        ),
        (
            "What is tall?",
            ["The grass.", "The senator.", "Profit."],
            0,
        ),
        (
            "What did critics do?",
            ["Played.", "Ran.", "They were divided."],
            2,
        ),
    ];
    Dataset {
        task: DataTask::mcqa("tiny_mcqa"),
        examples: rows
            .iter()
            .enumerate()
            .map(|(i, (q, options, answer))| Example {
                id: i.to_string(),
                inputs: vec![q.to_string()],
                options: options.iter().map(|o| o.to_string()).collect(),
                target: Some(Target::Choice(
                    (0..3)
                        .map(|k| if k == *answer { 1.0 } else { 0.0 })
                        .collect(),
                )),
            })
            .collect(),
    }
}

#[test]
fn multiple_choice_accuracy_picks_the_most_likely_option() {
    let _rng = common::rng_lock();
    let device = Default::default();
    let model = lora_model::<B>(13);
    let merged = model.merged().unwrap();
    let encoder = llama_encoder();
    let data = mcqa_dataset();
    let c = choice_items(&encoder, &data, default_prompt).unwrap();
    let set = EvalSet::multiple_choice(
        data.task.clone(),
        c.items.clone(),
        c.item_examples.clone(),
        c.answers.clone(),
        encoder.pad_id(),
        5,
    )
    .unwrap();
    assert!(matches!(set.scoring, Scoring::Choices { .. }));
    let e = evaluate(&model, &set, &device).unwrap();

    // Independently: each option alone through the merged plain model's `causal_lm_loss`
    // (mean NLL of the option tokens); the predicted option has the lowest.
    let mut correct = 0;
    let mut correct_option_loss = 0.0;
    for (example, &answer) in c.answers.iter().enumerate() {
        let losses: Vec<f32> = c
            .items
            .iter()
            .zip(&c.item_examples)
            .filter(|(_, e)| **e == example)
            .map(|(item, _)| {
                let ids: Vec<i64> = item.ids.iter().map(|&t| t as i64).collect();
                let ItemTarget::AlignedLabels(labels) = &item.target else {
                    panic!("causal labels expected")
                };
                let input = CausalLmInput::unpadded(vec![ids]);
                merged
                    .causal_lm_loss(merged.logits(&input).unwrap(), std::slice::from_ref(labels))
                    .unwrap()
                    .into_scalar()
            })
            .collect();
        let best = (0..losses.len())
            .min_by(|&i, &j| losses[i].total_cmp(&losses[j]))
            .unwrap();
        correct += usize::from(best == answer);
        correct_option_loss += losses[answer] as f64;
    }
    let want = correct as f64 / c.answers.len() as f64;
    assert_eq!(e.metrics["accuracy"], want);
    // The loss is the correct option's mean token NLL, averaged over the questions: the wrong
    // options do not enter it.
    let want_loss = correct_option_loss / c.answers.len() as f64;
    assert!(
        (e.loss - want_loss).abs() < 1e-4 * want_loss.abs().max(1.0),
        "loss {} vs the correct options' {want_loss}",
        e.loss
    );
    // The learned soup trains on the same quantity: the correct options' batches only.
    assert_eq!(
        set.loss_batches().iter().map(|b| b.rows).sum::<usize>(),
        c.answers.len()
    );
    assert_eq!(
        Metric::Accuracy.name(),
        "accuracy",
        "the metric key is the task's metric name"
    );
    assert_eq!(e.num_examples, 4, "questions, not options");
}

#[test]
fn bad_generative_sets_are_clear_errors() {
    let encoder = t5_encoder();
    let data = e2e_dataset(3, 0);
    let g = generation_items(&encoder, &data, default_prompt).unwrap();
    let err = EvalSet::generative(
        data.task.clone(),
        g.items.clone(),
        g.references[..2].to_vec(),
        Arc::new(encoder.clone()),
        generation(4),
        2,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("2 references for 3 items"),
        "{err}"
    );
    // A classification set cannot score a generative model, and generation needs references.
    let mut unlabelled = data.clone();
    unlabelled.examples[1].target = None;
    let err = generation_items(&encoder, &unlabelled, default_prompt).unwrap_err();
    assert!(err.to_string().contains("example 1"), "{err}");
    let err = EvalSet::multiple_choice(
        DataTask::mcqa("x"),
        g.items,
        vec![0, 0, 1],
        vec![0, 1],
        0,
        2,
    )
    .unwrap_err();
    assert!(err.to_string().contains("answer 1 but 1 options"), "{err}");
}

fn models_fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bomf-models/tests/fixtures")
}

fn json_rows(v: &serde_json::Value) -> Vec<Vec<i64>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_i64().unwrap())
                .collect()
        })
        .collect()
}

/// One training batch holding every row of a fixture (real tokens only; the batcher re-pads).
fn fixture_batcher(ids: &[Vec<i64>], mask: &[Vec<i64>], targets: Vec<ItemTarget>) -> Batcher {
    let items: Vec<Item> = ids
        .iter()
        .zip(mask)
        .zip(targets)
        .map(|((ids, mask), target)| Item {
            ids: ids
                .iter()
                .zip(mask)
                .filter(|(_, m)| **m == 1)
                .map(|(&t, _)| t as u32)
                .collect(),
            type_ids: vec![],
            target,
        })
        .collect();
    let n = items.len();
    Batcher::new(items, 0, BatchConfig::train(n, 0)).unwrap()
}

/// The optimiser of the reference scripts: torch AdamW, constant lr, no warmup, no clipping.
fn reference_steps(t: &serde_json::Value) -> TrainConfig {
    let betas = t["betas"].as_array().map_or((0.9, 0.999), |b| {
        (b[0].as_f64().unwrap(), b[1].as_f64().unwrap())
    });
    TrainConfig {
        learning_rate: t["lr"].as_f64().unwrap(),
        adamw: AdamWConfig {
            beta1: betas.0,
            beta2: betas.1,
            eps: t["eps"].as_f64().unwrap(),
            weight_decay: t["weight_decay"].as_f64().unwrap(),
        },
        schedule: ScheduleKind::Constant,
        warmup: Warmup::Steps(0),
        budget: Budget::Steps(2),
        max_grad_norm: None,
        eval_every: None,
        ..TrainConfig::default()
    }
}

#[test]
fn lora_training_through_core_matches_peft() {
    // `gen_llama_lora.py`: two torch AdamW steps of peft's q/v adapter on a frozen LLaMA.
    let dir = models_fixtures().join("llama_lora");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let t = &expected["train"];
    let device = Default::default();
    let (base, config) = load_llama::<AB>(dir.join("base"), &device).unwrap();
    let lora_dir = dir.join("adapter_qv");
    let lora = LoraConfig::from_file(lora_dir.join("adapter_config.json"))
        .unwrap()
        .without_dropout();
    let adapters =
        LlamaLoraAdapters::<AB>::load_with_config(&lora_dir, &lora, &config, &device).unwrap();
    let model = LoraLlama::new(base, adapters).unwrap();
    let ids = json_rows(&t["inputs"]["input_ids"]);
    let mask = json_rows(&t["inputs"]["attention_mask"]);
    let labels = json_rows(&t["inputs"]["labels"]);
    let targets = labels
        .iter()
        .zip(&mask)
        .map(|(l, m)| {
            let real = m.iter().filter(|&&x| x == 1).count();
            ItemTarget::AlignedLabels(l[..real].to_vec())
        })
        .collect();
    let run = train(
        model,
        &fixture_batcher(&ids, &mask, targets),
        None,
        &reference_steps(t),
        &device,
        |_| Control::Continue,
    )
    .unwrap();
    assert_eq!(run.history.len(), 2);
    for (step, record) in run.history.iter().enumerate() {
        let want = t["lora_losses"][step].as_f64().unwrap();
        assert!(
            (record.loss - want).abs() < 1e-5,
            "step {step}: {} vs peft {want}",
            record.loss
        );
    }
    let after = read_safetensors(&dir.join("train_lora.safetensors")).unwrap();
    assert_eq!(
        named_tensors(&run.model).unwrap().len(),
        8,
        "2 layers × (q, v) × (A, B)"
    );
    for (name, tensor) in named_tensors(&run.model).unwrap() {
        let reference = &after.tensors[&format!("after.{name}")];
        let diff = tensor
            .data
            .iter()
            .zip(&reference.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-5, "{name}: max diff {diff:e} after two steps");
    }
}

#[test]
fn t5_training_through_core_matches_transformers() {
    // `gen_t5.py`: two torch AdamW steps of T5 v1.1 without dropout. Our AdamW exempts the
    // layer norms from weight decay (torch's run decays them), a ~1e-5 relative difference in
    // those weights after one step, far below the loss tolerance.
    let dir = models_fixtures().join("t5");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected_t5.json")).unwrap())
            .unwrap();
    let e = &expected["v1_1"];
    let t = &e["train"];
    let device = Default::default();
    let config = T5Config::from_file(dir.join("v1_1/config.json"))
        .unwrap()
        .without_dropout();
    let model = load_t5_checkpoint::<AB>(
        &config,
        bomf_models::weights::read_checkpoint(dir.join("v1_1")).unwrap(),
        &device,
    )
    .unwrap();
    let ids = json_rows(&e["inputs"]["input_ids"]);
    let mask = json_rows(&e["inputs"]["attention_mask"]);
    let targets = json_rows(&e["inputs"]["labels"])
        .into_iter()
        .map(|l| ItemTarget::Labels(l.into_iter().filter(|&x| x != -100).collect()))
        .collect();
    let run = train(
        model,
        &fixture_batcher(&ids, &mask, targets),
        None,
        &reference_steps(t),
        &device,
        |_| Control::Continue,
    )
    .unwrap();
    assert_eq!(run.history.len(), 2);
    for (step, record) in run.history.iter().enumerate() {
        let want = t["losses"][step].as_f64().unwrap();
        assert!(
            (record.loss - want).abs() < 1e-4,
            "step {step}: {} vs transformers {want}",
            record.loss
        );
    }
}

/// Stage 1 on a rank-1 proxy (`[hpbo] lora_rank`), everything else (the trajectory, the
/// HPBO-full baseline, the soups) at the configured rank.
#[test]
fn the_whole_pipeline_runs_on_a_lora_model() {
    let _rng = common::rng_lock();
    let device = Default::default();
    let encoder = llama_encoder();
    let train_items = generation_items(&encoder, &e2e_dataset(16, 0), default_prompt)
        .unwrap()
        .items;
    let validation = generative_set(&encoder, &e2e_dataset(4, 200), 3);
    let test = generative_set(&encoder, &e2e_dataset(4, 300), 3);
    let config = BomfConfig {
        train: steps(8, 3e-2),
        batch_size: 4,
        hpbo: Some(HpboConfig {
            space: HpSpace {
                learning_rate: (1e-3, 5e-2),
                batch_size: None,
                warmup_ratio: None,
                weight_decay: None,
            },
            n_initial: 2,
            budget: 2,
            freeze_lower_layers: LayerCount::Count(0),
            freeze_embeddings: false,
            epochs: None,
            lora_rank: Some(1),
            seed: 0,
        }),
        trajectory: TrajectoryConfig {
            rule: KeepRule::LastK,
            k: 3,
            every: 2,
            patience: 5,
        },
        fusion: FusionBoConfig {
            budget: Some(4),
            ..FusionBoConfig::default()
        },
        baselines: BaselinesConfig {
            greedy_soup: true,
            learned_soup: Some(LearnedSoupConfig {
                epochs: 1,
                learning_rate: 0.05,
            }),
            loss_only_bo: false,
            metric_only_bo: false,
            hpbo_full: true,
        },
    };
    let requests = std::cell::RefCell::new(Vec::new());
    let make = |request: ModelRequest| -> bomf_core::Result<LoraLlama<AB>> {
        requests.borrow_mut().push(request);
        let model = lora_model_of_rank::<AB>(17, request.lora_rank);
        let rank = model.adapters.config().r;
        assert_eq!(rank, request.lora_rank.unwrap_or(4));
        Ok(model)
    };
    let report = run_bomf::<AB, _>(
        &make,
        PipelineData {
            train_items: &train_items,
            pad_id: encoder.pad_id(),
            validation: &validation,
            test: &test,
        },
        &config,
        &device,
    )
    .unwrap();
    assert_eq!(report.kept.len(), 3);
    assert_eq!(report.fusion_records.len(), 4);
    let requests = requests.into_inner();
    let proxy = ModelRequest {
        dropout: true,
        lora_rank: Some(1),
    };
    // The two stage-1 trials, and nothing else, on the proxy.
    assert_eq!(requests.iter().filter(|r| **r == proxy).count(), 2);
    assert_eq!(&requests[..2], &[proxy, proxy]);
    // HPBO-full's two trials, its retrained best, and the trajectory at full rank.
    assert!(
        requests
            .iter()
            .filter(|r| **r == ModelRequest::TRAIN)
            .count()
            >= 4
    );
    assert_eq!(report.hpbo_trials.len(), 2);
    assert_eq!(report.hpbo_full_trials.len(), 2);
    for m in &report.methods {
        assert!(m.test.metrics.contains_key("bleu"), "{}", m.method);
        assert!(m.test.loss.is_finite(), "{}", m.method);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(48))]

    /// The batch loss is minus the token-weighted mean of the row scores, each row score is a
    /// mean log-probability (≤ 0), and unlabelled rows score 0.
    #[test]
    fn row_scores_and_loss_agree(
        (rows, len, vocab, values, labels) in (1usize..4, 1usize..5, 2usize..7)
            .prop_flat_map(|(rows, len, vocab)| {
                let n = rows * len;
                (
                    Just(rows),
                    Just(len),
                    Just(vocab),
                    proptest::collection::vec(-4.0f32..4.0, n * vocab),
                    proptest::collection::vec(-1i64..vocab as i64, n),
                )
            })
    ) {
        let labels: Vec<Vec<i64>> = labels
            .chunks(len)
            .map(|r| r.iter().map(|&t| if t < 0 { -100 } else { t }).collect())
            .collect();
        let counts: Vec<usize> =
            labels.iter().map(|r| r.iter().filter(|&&t| t >= 0).count()).collect();
        prop_assume!(counts.iter().sum::<usize>() > 0);
        let device = Default::default();
        let logits = burn::tensor::Tensor::<B, 3>::from_data(
            burn::tensor::TensorData::new(values, [rows, len, vocab]),
            &device,
        );
        let out = score_tokens(logits, &labels).unwrap();
        let loss = out.loss.into_scalar() as f64;
        let scores = out.logits.into_data().to_vec::<f32>().unwrap();
        let total: usize = counts.iter().sum();
        let weighted: f64 =
            scores.iter().zip(&counts).map(|(&s, &c)| s as f64 * c as f64).sum();
        prop_assert!(
            (loss + weighted / total as f64).abs() < 1e-4,
            "{loss} vs {weighted}/{total}"
        );
        for (s, c) in scores.iter().zip(&counts) {
            prop_assert!(*s <= 1e-6);
            if *c == 0 {
                prop_assert_eq!(*s, 0.0);
            }
        }
    }
}

/// SQuAD as generation: every gold answer is a reference (the first is the training target), an
/// unanswerable question has the single empty reference, and the task keeps its own metrics.
#[test]
fn squad_questions_become_generation_targets() {
    let answer = |text: &str, start_char| SpanAnswer {
        text: text.into(),
        start_char,
    };
    let question = |id: &str, answers: Vec<SpanAnswer>| Example {
        id: id.into(),
        inputs: vec!["Where?".into(), "In the riverside.".into()],
        options: Vec::new(),
        target: Some(Target::Span(answers)),
    };
    let squad = Dataset {
        task: DataTask::squad(true),
        examples: vec![
            question(
                "a",
                vec![answer("the riverside", 3), answer("riverside", 7)],
            ),
            question("b", vec![]),
        ],
    };
    let generation = span_qa_as_generation(&squad).unwrap();
    assert_eq!(generation.task.kind, TaskKind::Generation);
    assert_eq!(
        generation.task.metrics,
        vec![Metric::SquadExactMatch, Metric::SquadF1]
    );
    let references: Vec<_> = generation
        .examples
        .iter()
        .map(|e| e.target.clone())
        .collect();
    assert_eq!(
        references,
        [
            Some(Target::Text(vec![
                "the riverside".into(),
                "riverside".into()
            ])),
            Some(Target::Text(vec![String::new()])),
        ]
    );
    assert_eq!(
        default_prompt(&generation.examples[0]),
        "Where?\nIn the riverside.\n"
    );
    // Anything but extractive QA, or a question without its answers, is refused.
    let mut unlabelled = squad.clone();
    unlabelled.examples[1].target = None;
    let err = span_qa_as_generation(&unlabelled).unwrap_err().to_string();
    assert!(
        err.contains("example b") && err.contains("no gold answers"),
        "{err}"
    );
    let err = span_qa_as_generation(&generation).unwrap_err().to_string();
    assert!(err.contains("not an extractive QA task"), "{err}");
}
