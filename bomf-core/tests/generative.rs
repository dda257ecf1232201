//! The generative families through bomf-core on tiny random models: T5 and LLaMA + LoRA train
//! (LoRA: only the adapters move), evaluate with generation metrics equal to bomf-data's on the
//! decoded strings, multiple choice by option log-likelihood, fusion of LoRA checkpoints over the
//! adapters alone, and stage 2 (trajectory) with the LoRA wrapper.
//!
//! The tokenizer is bomf-data's tiny BPE fixture (see `common/generative.rs`); reference losses
//! come from bomf-models' `forward_with_labels` / `causal_lm_loss`, which are checked against
//! `transformers` there.

mod common;

use std::sync::Arc;

use bomf_core::eval::{EvalSet, Evaluation, Scoring, evaluate, generate_texts};
use bomf_core::fusion::CheckpointSet;
use bomf_core::generative::{
    LoraLlama, choice_items, default_prompt, generation_items, score_tokens, span_qa_as_generation,
};
use bomf_core::hpbo::HpboConfig;
use bomf_core::model::{GenerationConfig, TaskModel};
use bomf_core::pipeline::{BaselinesConfig, BomfConfig, ModelRequest, run_bomf};
use bomf_core::train::{Control, TrainRun, train};
use bomf_core::trajectory::collect_trajectory;
use bomf_data::batch::ItemTarget;
use bomf_data::metrics::{Metric, corpus_bleu, rouge};
use bomf_data::task::{Dataset, Example, SpanAnswer, Target, Task as DataTask, TaskKind};
use bomf_data::tokenize::TextEncoder;
use bomf_models::lora::LoraConfig;
use bomf_models::params::named_tensors;
use bomf_models::{
    CausalLmInput, CpuAutodiffBackend as AB, CpuBackend as B, Generate, HfNamed, LlamaForCausalLM,
    LlamaLoraAdapters, Seq2SeqInput, T5ForConditionalGeneration,
};
use burn::module::AutodiffModule;
use burn::tensor::backend::Backend;
use common::generative::*;
use proptest::prelude::{Just, Strategy, prop_assert, prop_assert_eq, prop_assume};

/// Rank-4 adapters of the q and v projections at alpha 8.
fn qv_lora() -> LoraConfig {
    LoraConfig::new(4, 8.0, &["q_proj", "v_proj"]).without_dropout()
}

fn lora_model<BK: Backend>(seed: u64) -> LoraLlama<BK> {
    lora_llama(seed, &qv_lora(), None)
}

/// The LoRA LLaMA of seed 4, its encoder, and five E2E examples with their generation set (at
/// most `max_new` new tokens).
fn llama_on_e2e(max_new: usize) -> (LoraLlama<B>, TextEncoder, Dataset, EvalSet) {
    let model = lora_model::<B>(4);
    let encoder = llama_encoder();
    let data = e2e_dataset(5, 0);
    let set = generative_set(&encoder, &data, max_new);
    (model, encoder, data, set)
}

/// The text of generated `tokens` as evaluation decodes it: cut at the first `</s>`, special
/// tokens skipped, trimmed.
fn decoded(encoder: &TextEncoder, tokens: &[i64]) -> String {
    let end = tokens
        .iter()
        .position(|&t| t == EOS)
        .unwrap_or(tokens.len());
    let ids: Vec<u32> = tokens[..end].iter().map(|&t| t as u32).collect();
    let text = encoder.tokenizer().decode(&ids, true).unwrap();
    text.trim().to_string()
}

fn flat(tensors: &[(String, bomf_models::HfTensor)]) -> Vec<f32> {
    tensors.iter().flat_map(|(_, t)| t.data.clone()).collect()
}

#[test]
fn token_loss_equals_the_models_reference_losses() {
    let (_rng, device) = common::seeded::<B>(11);
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

/// Trains `model` for `n` steps at `lr` on 16 E2E examples, evaluating at the end on
/// `validation` when given.
fn train_on_e2e<M>(
    model: M,
    encoder: &TextEncoder,
    validation: Option<&EvalSet>,
    n: usize,
    lr: f64,
) -> TrainRun<M>
where
    M: AutodiffModule<AB> + TaskModel<AB> + HfNamed<AB>,
    M::InnerModule: TaskModel<B>,
{
    train(
        model,
        &train_batcher(train_items(encoder, &e2e_dataset(16, 0)), encoder.pad_id()),
        validation,
        &steps(n, lr),
        &Default::default(),
        |_| Control::Continue,
    )
    .unwrap()
}

/// [`train_on_e2e`], evaluated on 6 other examples (`max_new` tokens generated): the loss must
/// fall by more than `drop`. Returns the run and its last evaluation.
fn assert_training_lowers_the_loss<M>(
    model: M,
    encoder: &TextEncoder,
    max_new: usize,
    (n, lr): (usize, f64),
    drop: f64,
) -> (TrainRun<M>, Evaluation, EvalSet)
where
    M: AutodiffModule<AB> + TaskModel<AB> + HfNamed<AB>,
    M::InnerModule: TaskModel<B>,
{
    let validation = generative_set(encoder, &e2e_dataset(6, 100), max_new);
    let before = evaluate(&model.valid(), &validation, &Default::default()).unwrap();
    let run = train_on_e2e(model, encoder, Some(&validation), n, lr);
    let after = run.evaluations.last().unwrap().1.clone();
    assert!(
        after.loss < before.loss - drop,
        "{} -> {}",
        before.loss,
        after.loss
    );
    (run, after, validation)
}

#[test]
fn t5_training_lowers_the_loss_and_reports_generation_metrics() {
    let (_rng, device) = common::seeded::<AB>(3);
    let encoder = t5_encoder();
    let model = T5ForConditionalGeneration::<AB>::new(&t5_config(), &device).unwrap();
    let (_, after, validation) =
        assert_training_lowers_the_loss(model, &encoder, 6, (12, 1e-2), 0.3);
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
    let (_rng, device) = common::seeded::<AB>(21);
    let encoder = t5_encoder();
    // A few steps first, so that generations are words rather than stray byte pieces.
    let fresh = T5ForConditionalGeneration::<AB>::new(&t5_config(), &device).unwrap();
    let model = train_on_e2e(fresh, &encoder, None, 30, 1e-2).model.valid();
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
        assert_eq!(texts[i], decoded(&encoder, &alone[0]), "example {i}");
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
    let (_rng, device) = common::locked_device();
    let (model, encoder, data, set) = llama_on_e2e(4);
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
        assert_eq!(texts[i], decoded(&encoder, &alone[0]), "example {i}");
    }
}

#[test]
fn beam_search_in_evaluation_is_the_models_beam_search() {
    let (_rng, device) = common::locked_device();
    let (model, _, _, mut set) = llama_on_e2e(5);
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

    let (run, after, _) =
        assert_training_lowers_the_loss(model, &llama_encoder(), 3, (16, 5e-2), 0.1);
    assert_eq!(flat(&named_tensors(&run.model.base).unwrap()), base_before);
    assert_ne!(flat(&named_tensors(&run.model).unwrap()), adapters_before);
    assert!(after.metrics.contains_key("rougeLsum"));
}

#[test]
fn fusing_lora_checkpoints_fuses_the_adapters_only() {
    let (_rng, device) = common::locked_device();
    let a = lora_model::<B>(1);
    // A second checkpoint: same base, other adapters (B non-zero so the adapters matter).
    B::seed(&device, 2);
    let other = LlamaLoraAdapters::<B>::new(&qv_lora(), &llama_config(), &device).unwrap();
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

#[test]
fn collect_trajectory_keeps_adapter_checkpoints() {
    let (_rng, device) = common::locked_device();
    let model = lora_model::<AB>(9);
    let encoder = llama_encoder();
    let validation = generative_set(&encoder, &e2e_dataset(4, 50), 2);
    let trajectory = collect_trajectory(
        model,
        &train_batcher(train_items(&encoder, &e2e_dataset(12, 0)), encoder.pad_id()),
        &validation,
        &steps(6, 1e-2),
        &common::last_k(3, 2),
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
    let (_rng, device) = common::locked_device();
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

/// Stage 1 on a rank-1 proxy (`[hpbo] lora_rank`), everything else (the trajectory, the
/// HPBO-full baseline, the soups) at the configured rank.
#[test]
fn the_whole_pipeline_runs_on_a_lora_model() {
    let (_rng, device) = common::locked_device();
    let encoder = llama_encoder();
    let train_items = train_items(&encoder, &e2e_dataset(16, 0));
    let validation = generative_set(&encoder, &e2e_dataset(4, 200), 3);
    let test = generative_set(&encoder, &e2e_dataset(4, 300), 3);
    let config = BomfConfig {
        train: steps(8, 3e-2),
        batch_size: 4,
        hpbo: Some(HpboConfig {
            lora_rank: Some(1),
            ..common::lr_search((1e-3, 5e-2), 2, 2)
        }),
        trajectory: common::last_k(3, 2),
        fusion: common::fusion_budget(4),
        baselines: BaselinesConfig {
            hpbo_full: true,
            ..common::soups()
        },
    };
    let requests = std::cell::RefCell::new(Vec::new());
    let make = |request: ModelRequest| -> bomf_core::Result<LoraLlama<AB>> {
        requests.borrow_mut().push(request);
        let model = lora_llama::<AB>(17, &qv_lora(), request.lora_rank);
        let rank = model.adapters.config().r;
        assert_eq!(rank, request.lora_rank.unwrap_or(4));
        Ok(model)
    };
    let data = common::pipeline_data(&train_items, encoder.pad_id(), &validation, &test);
    let report = run_bomf::<AB, _>(&make, data, &config, &device).unwrap();
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
