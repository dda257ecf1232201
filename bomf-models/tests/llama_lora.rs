//! LoRA adapters, beam search and training steps of the LLaMA decoder against `transformers` +
//! `peft`, from the fixtures written by `tests/fixtures/gen_llama_lora.py`: logits with peft
//! adapters (q/v, and all-linear with rsLoRA), merged weights and logits, beam-search tokens for
//! several length penalties and early-stopping modes, two AdamW steps of the full model and of
//! the adapters alone, adapter save/load and the errors of bad adapters.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bomf_models::generation::pad_to_longest;
use bomf_models::llama::{export_llama, load_llama};
use bomf_models::lora::{self, LoraConfig};
use bomf_models::params::{self, named_gradients};
use bomf_models::weights::read_safetensors;
use bomf_models::{
    BeamSearchConfig, Generate, HfNamed, HfTensor, LlamaConfig, LlamaForCausalLM, LlamaLoraAdapters,
};
use burn::module::AutodiffModule;
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};
use common::*;
use serde_json::Value;

/// fp32 logits tolerance required by the issue.
const TOL: f32 = 1e-4;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama_lora")
}

fn expected() -> Value {
    read_json(&dir().join("expected.json"))
}

fn base<Bk: Backend>() -> (LlamaForCausalLM<Bk>, LlamaConfig) {
    load_llama::<Bk>(dir().join("base"), &Default::default()).unwrap()
}

fn adapter<Bk: Backend>(name: &str, config: &LlamaConfig) -> LlamaLoraAdapters<Bk> {
    LlamaLoraAdapters::load(dir().join(name), config, &Default::default()).unwrap()
}

fn check_adapter_logits(name: &str) {
    let e = expected();
    let (model, config) = base::<B>();
    let adapters = adapter::<B>(name, &config);
    let inputs = causal_input(&e["inputs"]);
    let (shape, got) = to_vec(adapters.attach(&model).unwrap().logits(&inputs).unwrap());
    let (eshape, want) = flat(&e[name]["logits"]);
    assert_eq!(shape, eshape);
    let diff = real_token_diff(&got, &want, &inputs.attention_mask, config.vocab_size);
    assert!(diff <= TOL, "{name}: logits max abs diff {diff:e}");
    // The adapter must matter, or this test could not fail.
    let (_, plain) = flat(&e["base_logits"]);
    let effect = real_token_diff(&plain, &want, &inputs.attention_mask, config.vocab_size);
    assert!(
        effect > 0.05,
        "{name}: adapter changes logits by only {effect:e}"
    );
    let (_, ours_plain) = to_vec(model.logits(&inputs).unwrap());
    let base_diff = real_token_diff(
        &ours_plain,
        &plain,
        &inputs.attention_mask,
        config.vocab_size,
    );
    assert!(base_diff <= TOL, "base logits max abs diff {base_diff:e}");
    println!("{name}: logits max diff {diff:e} (adapter effect {effect:.3})");
}

tests_of!(check_adapter_logits {
    qv_adapter_logits_match_peft("adapter_qv"),
    all_linear_rslora_adapter_logits_match_peft("adapter_all"),
});

fn check_merge(name: &str) {
    let e = expected();
    let (model, config) = base::<B>();
    let adapters = adapter::<B>(name, &config);
    let inputs = causal_input(&e["inputs"]);
    let (_, unmerged) = to_vec(adapters.attach(&model).unwrap().logits(&inputs).unwrap());
    let merged = adapters.merge_into(model).unwrap();
    let (_, got) = to_vec(merged.logits(&inputs).unwrap());
    let self_diff = real_token_diff(&got, &unmerged, &inputs.attention_mask, config.vocab_size);
    assert!(self_diff <= 1e-5, "{name}: merged vs adapted {self_diff:e}");
    let (_, want) = flat(&e[name]["merged_logits"]);
    let diff = real_token_diff(&got, &want, &inputs.attention_mask, config.vocab_size);
    assert!(diff <= TOL, "{name}: merged logits vs peft {diff:e}");

    // A merged model exports as a plain LLaMA folder and reloads to the same outputs.
    let out = tempfile::tempdir().unwrap();
    export_llama(&merged, &config, out.path(), None).unwrap();
    let (reloaded, _) = load_llama::<B>(out.path(), &Default::default()).unwrap();
    let (_, again) = to_vec(reloaded.logits(&inputs).unwrap());
    assert_eq!(max_abs_diff(&again, &got), 0.0);
    println!("{name}: merged vs adapted {self_diff:e}, vs peft {diff:e}");
}

#[test]
fn merged_qv_model_equals_adapted_model_and_peft_merge() {
    check_merge("adapter_qv");
    // The merged dense weights themselves equal peft's `merge_and_unload()`.
    let (model, config) = base::<B>();
    let merged = adapter::<B>("adapter_qv", &config)
        .merge_into(model)
        .unwrap();
    let ours: BTreeMap<String, HfTensor> = params::named_tensors(&merged)
        .unwrap()
        .into_iter()
        .collect();
    let peft = read_safetensors(&dir().join("merged_qv.safetensors")).unwrap();
    assert_eq!(peft.tensors.len(), 4);
    for (name, want) in &peft.tensors {
        let got = &ours[name];
        assert_eq!(got.shape, want.shape, "{name}");
        let diff = max_abs_diff(&got.data, &want.data);
        assert!(diff <= 1e-6, "{name}: merged weight max diff {diff:e}");
    }
}

#[test]
fn merged_all_linear_model_equals_adapted_model_and_peft_merge() {
    check_merge("adapter_all");
}

#[test]
fn beam_search_matches_transformers() {
    let e = expected();
    let b = &e["beam"];
    let (model, config) = base::<B>();
    let adapters = adapter::<B>("adapter_qv", &config);
    let adapted = adapters.attach(&model).unwrap();
    let prompt = causal_input(b);
    let eos = [b["eos_token_id"].as_i64().unwrap()];
    let pad = b["pad_token_id"].as_i64().unwrap();
    let mut differs_from_greedy = 0;
    for which in ["base", "adapter_qv"] {
        for s in b[which].as_array().unwrap() {
            let beam = BeamSearchConfig {
                num_beams: s["num_beams"].as_u64().unwrap() as usize,
                max_new_tokens: s["max_new_tokens"].as_u64().unwrap() as usize,
                length_penalty: s["length_penalty"].as_f64().unwrap(),
                early_stopping: early_stopping(&s["early_stopping"]),
            };
            let (got, greedy) = if which == "base" {
                let g = model.generate_greedy(&prompt, beam.max_new_tokens, &eos, pad);
                (model.generate_beam(&prompt, &beam, &eos), g)
            } else {
                let g = adapted.generate_greedy(&prompt, beam.max_new_tokens, &eos, pad);
                (adapted.generate_beam(&prompt, &beam, &eos), g)
            };
            // `generate` returns the batch padded to its longest hypothesis.
            let got = pad_to_longest(got.unwrap(), pad);
            assert_eq!(got, rows(&s["new_tokens"]), "{which} {beam:?}");
            assert_eq!(
                greedy.unwrap(),
                rows(&s["greedy_new_tokens"]),
                "{which} greedy"
            );
            if got != rows(&s["greedy_new_tokens"]) {
                differs_from_greedy += 1;
            }
            println!("{which} {beam:?}: {got:?}");
        }
    }
    assert!(
        differs_from_greedy >= 4,
        "beam search too often equals greedy"
    );
}

#[test]
fn beam_search_with_one_beam_is_greedy_and_bad_settings_are_errors() {
    let (model, _) = base::<B>();
    let prompt = causal_input(&expected()["beam"]);
    let one = BeamSearchConfig::new(1, 5);
    let greedy = model.generate_greedy(&prompt, 5, &[], 1).unwrap();
    assert_eq!(model.generate_beam(&prompt, &one, &[]).unwrap(), greedy);
    let err = model
        .generate_beam(&prompt, &BeamSearchConfig::new(0, 5), &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("num_beams"), "{err}");
}

/// Asserts `got` holds exactly the tensors of `file` under `prefix`, each within `tol`.
fn compare_named(what: &str, got: &[(String, HfTensor)], file: &Path, prefix: &str, tol: f32) {
    let want = file_tensors(file, prefix);
    assert_eq!(got.len(), want.len(), "{what}: number of tensors");
    assert_tensors_close(what, got, &want, tol);
}

/// Two AdamW steps of `model` with the fixture's settings `t` (see `two_adamw_steps`): each
/// loss against `losses`, the first step's gradients (after `at_first` on them) and the weights
/// after the second against the `grad.` and `after.` tensors of `file`.
fn check_steps<M: AutodiffModule<AB> + HfNamed<AB>>(
    (what, file, losses): (&str, &Path, &Value),
    model: M,
    t: &Value,
    loss: impl Fn(&M) -> Tensor<AB, 1>,
    at_first: impl Fn(&<AB as AutodiffBackend>::Gradients),
) -> M {
    let model = two_adamw_steps(model, t, loss, |step, model, loss, grads| {
        assert_scalar(&format!("{what}: loss {step}"), loss, &losses[step], TOL);
        if step == 0 {
            at_first(grads);
            let named = named_gradients(model, grads).unwrap();
            compare_named(&format!("{what} grads"), &named, file, "grad.", TOL);
        }
    });
    let weights = params::named_tensors(&model).unwrap();
    let after = format!("{what} weights after 2 steps");
    compare_named(&after, &weights, file, "after.", TOL);
    model
}

#[test]
fn full_model_training_steps_match_pytorch() {
    let e = expected();
    let t = &e["train"];
    let inputs = causal_input(&t["inputs"]);
    let labels = rows(&t["inputs"]["labels"]);
    let (model, _) = base::<AB>();
    let file = dir().join("train_full.safetensors");
    let loss = |model: &LlamaForCausalLM<AB>| {
        let logits = model.logits(&inputs).unwrap();
        model.causal_lm_loss(logits, &labels).unwrap()
    };
    let fixture = ("full", file.as_path(), &t["full_losses"]);
    check_steps(fixture, model, t, loss, |_| {});
}

#[test]
fn lora_training_steps_match_peft() {
    let e = expected();
    let t = &e["train"];
    let inputs = causal_input(&t["inputs"]);
    let labels = rows(&t["inputs"]["labels"]);
    let (model, config) = base::<AB>();
    let model = lora::freeze(model);
    let before = params::named_tensors(&model).unwrap();
    let lora_dir = dir().join("adapter_qv");
    let lora_config = LoraConfig::from_file(lora_dir.join("adapter_config.json"))
        .unwrap()
        .without_dropout();
    let adapters = LlamaLoraAdapters::<AB>::load_with_config(
        &lora_dir,
        &lora_config,
        &config,
        &Default::default(),
    )
    .unwrap();
    let file = dir().join("train_lora.safetensors");
    let loss = |adapters: &LlamaLoraAdapters<AB>| {
        let logits = adapters.attach(&model).unwrap().logits(&inputs).unwrap();
        model.causal_lm_loss(logits, &labels).unwrap()
    };
    let fixture = ("lora", file.as_path(), &t["lora_losses"]);
    check_steps(fixture, adapters, t, loss, |grads| {
        assert!(
            named_gradients(&model, grads).unwrap().is_empty(),
            "the frozen base model got gradients"
        );
    });
    assert_eq!(
        params::named_tensors(&model).unwrap(),
        before,
        "base model changed"
    );
}

#[test]
fn adapters_save_and_load_in_peft_format() {
    let (model, config) = base::<B>();
    let adapters = adapter::<B>("adapter_all", &config);
    let out = tempfile::tempdir().unwrap();
    adapters.save(out.path()).unwrap();
    let reloaded = LlamaLoraAdapters::<B>::load(out.path(), &config, &Default::default()).unwrap();
    assert_eq!(reloaded.config(), adapters.config());
    let a = params::named_tensors(&adapters).unwrap();
    assert_eq!(params::named_tensors(&reloaded).unwrap(), a);
    // Exactly the tensor names peft wrote.
    let peft = read_safetensors(&dir().join("adapter_all/adapter_model.safetensors")).unwrap();
    let ours: Vec<&String> = a.iter().map(|(n, _)| n).collect();
    let theirs: Vec<&String> = peft.tensors.keys().collect();
    let mut ours_sorted = ours.clone();
    ours_sorted.sort();
    assert_eq!(ours_sorted, theirs);
    assert_eq!(ours.len(), 2 * 7 * 2);
    let inputs = causal_input(&expected()["inputs"]);
    let (_, x) = to_vec(adapters.attach(&model).unwrap().logits(&inputs).unwrap());
    let (_, y) = to_vec(reloaded.attach(&model).unwrap().logits(&inputs).unwrap());
    assert_eq!(max_abs_diff(&x, &y), 0.0);
    let written: Value = read_json(&out.path().join("adapter_config.json"));
    assert_eq!(written["peft_type"], "LORA");
    assert_eq!(written["r"], 2);
    assert_eq!(written["use_rslora"], true);

    // For `gen_llama_lora.py --check-rust DIR`: peft loads our adapter folder and transformers
    // our merged export, unchanged, and give the expected logits.
    if let Some(check_dir) = std::env::var_os("BOMF_LORA_EXPORT_DIR") {
        let check_dir = PathBuf::from(check_dir);
        adapters.save(check_dir.join("adapter_all")).unwrap();
        let merged = adapters.merge_into(model).unwrap();
        export_llama(&merged, &config, check_dir.join("merged_all"), None).unwrap();
    }
}

#[test]
fn fresh_adapters_leave_the_model_unchanged() {
    let (model, config) = base::<B>();
    let lora = LoraConfig::new(
        4,
        16.0,
        &["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"],
    );
    let adapters = LlamaLoraAdapters::<B>::new(&lora, &config, &Default::default()).unwrap();
    let inputs = causal_input(&expected()["inputs"]);
    let (_, x) = to_vec(model.logits(&inputs).unwrap());
    let (_, y) = to_vec(adapters.attach(&model).unwrap().logits(&inputs).unwrap());
    assert_eq!(max_abs_diff(&x, &y), 0.0);
}

#[test]
fn adapters_fuse_by_name_without_the_base_model() {
    // Fusion of LoRA runs combines the adapter tensors only: θ = Σ w_k θ_k over adapters.
    let (_, config) = base::<B>();
    let a = adapter::<B>("adapter_qv", &config);
    let lora = LoraConfig::from_file(dir().join("adapter_qv/adapter_config.json")).unwrap();
    let fresh = LlamaLoraAdapters::<B>::new(&lora, &config, &Default::default()).unwrap();
    let fused = params::weighted_sum(&[a, fresh], &[0.25, 0.75]).unwrap();
    let fused_named = params::named_tensors(&fused).unwrap();
    let a_named = params::named_tensors(&adapter::<B>("adapter_qv", &config)).unwrap();
    assert_eq!(fused_named.len(), 8);
    for ((name, f), (_, x)) in fused_named.iter().zip(&a_named) {
        assert!(name.starts_with("base_model.model.model.layers."), "{name}");
        if name.contains("lora_B") {
            // B of the fresh adapters is zero: the fused B is 0.25 · B_a.
            let want: Vec<f32> = x.data.iter().map(|v| 0.25 * v).collect();
            assert!(max_abs_diff(&f.data, &want) <= 1e-6, "{name}");
        }
    }
}

#[test]
fn bad_target_modules_are_clear_errors() {
    let (_, config) = base::<B>();
    let device = Default::default();
    let bad = LoraConfig::new(4, 8.0, &["q_proj", "lm_head"]);
    let err = LlamaLoraAdapters::<B>::new(&bad, &config, &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("target_modules") && err.contains("`lm_head`"),
        "{err}"
    );
    let regex = LoraConfig {
        target_modules: Some(lora::TargetModules::Pattern(r".*\.(q|v)_proj".into())),
        ..LoraConfig::default()
    };
    let err = LlamaLoraAdapters::<B>::new(&regex, &config, &device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("regular expression"), "{err}");
    let mut layers = LoraConfig::new(4, 8.0, &["q_proj"]);
    layers.layers_to_transform = Some(lora::LayerSelection::Many(vec![0, 5]));
    let err = LlamaLoraAdapters::<B>::new(&layers, &config, &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("layers_to_transform") && err.contains('5'),
        "{err}"
    );
}

/// A copy of `adapter_qv` with its config edited by `edit`.
fn edited_adapter(edit: impl FnOnce(&mut Value)) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    let src = dir().join("adapter_qv");
    let file = "adapter_model.safetensors";
    std::fs::copy(src.join(file), out.path().join(file)).unwrap();
    let mut config = read_json(&src.join("adapter_config.json"));
    edit(&mut config);
    std::fs::write(
        out.path().join("adapter_config.json"),
        serde_json::to_string(&config).unwrap(),
    )
    .unwrap();
    out
}

#[test]
fn mismatched_adapters_are_errors_naming_the_tensor() {
    let (model, config) = base::<B>();
    let device = Default::default();
    // Rank 2 in the config, rank 4 in the file.
    let d = edited_adapter(|c| c["r"] = 2.into());
    let err = LlamaLoraAdapters::<B>::load(d.path(), &config, &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight")
            && err.contains("[4, 32]"),
        "{err}"
    );
    // The config targets k_proj too, the file has no tensor for it.
    let d =
        edited_adapter(|c| c["target_modules"] = serde_json::json!(["q_proj", "k_proj", "v_proj"]));
    let err = LlamaLoraAdapters::<B>::load(d.path(), &config, &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("missing") && err.contains("k_proj.lora_A.weight"),
        "{err}"
    );
    // The config targets q_proj only, the file also has v_proj.
    let d = edited_adapter(|c| c["target_modules"] = serde_json::json!(["q_proj"]));
    let err = LlamaLoraAdapters::<B>::load(d.path(), &config, &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unexpected") && err.contains("v_proj.lora_B.weight"),
        "{err}"
    );
    // Options we do not implement are refused, naming the file and the field.
    let d = edited_adapter(|c| c["use_dora"] = true.into());
    let err = LlamaLoraAdapters::<B>::load(d.path(), &config, &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("use_dora") && err.contains("adapter_config.json"),
        "{err}"
    );
    // Adapters made for another model shape do not attach.
    let mut wider = config.clone();
    wider.intermediate_size = 64;
    let lora = LoraConfig::new(2, 2.0, &["down_proj"]);
    let other = LlamaLoraAdapters::<B>::new(&lora, &wider, &device).unwrap();
    let err = other.attach(&model).unwrap_err().to_string();
    assert!(err.contains("mlp.down_proj"), "{err}");
    assert!(other.merge_into(model).is_err());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(12))]

    /// Merging any adapter (rank, alpha, rsLoRA, any set of projections) leaves the forward
    /// unchanged.
    #[test]
    fn merging_preserves_the_forward(
        r in 1usize..5,
        which in 1u8..128,
        alpha in 0.5f64..16.0,
        use_rslora: bool,
        seed: u64,
    ) {
        let (model, config) = base::<B>();
        let device = Default::default();
        let names: Vec<&str> = lora::Projection::ALL
            .iter()
            .enumerate()
            .filter(|(i, _)| which & (1 << i) != 0)
            .map(|(_, p)| p.name())
            .collect();
        let lora = LoraConfig { use_rslora, ..LoraConfig::new(r, alpha, &names) };
        let adapters = LlamaLoraAdapters::<B>::new(&lora, &config, &device).unwrap();
        // Random B (fresh adapters have B = 0, which would make the check vacuous).
        let mut state = seed;
        let mut uniform = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.6
        };
        let tensors: BTreeMap<String, HfTensor> = params::named_tensors(&adapters)
            .unwrap()
            .into_iter()
            .map(|(name, mut t)| {
                if name.contains("lora_B") {
                    t.data.iter_mut().for_each(|x| *x = uniform());
                }
                (name, t)
            })
            .collect();
        let adapters =
            params::set_tensors(adapters, &tensors, params::Coverage::All, &device).unwrap();
        let inputs = causal_input(&expected()["inputs"]);
        let (_, adapted) = to_vec(adapters.attach(&model).unwrap().logits(&inputs).unwrap());
        let (_, merged) = to_vec(adapters.merge_into(model).unwrap().logits(&inputs).unwrap());
        let scale = adapted.iter().fold(1.0f32, |m, x| m.max(x.abs()));
        let diff = real_token_diff(&merged, &adapted, &inputs.attention_mask, config.vocab_size);
        proptest::prop_assert!(diff <= 1e-5 * scale, "diff {diff:e} at scale {scale}");
    }
}

#[test]
fn lora_dropout_acts_only_when_training() {
    let (_, config) = base::<B>();
    let (model, _) = base::<AB>();
    let model = lora::freeze(model);
    let inputs = causal_input(&expected()["inputs"]);
    // adapter_qv has lora_dropout 0.1: random on an autodiff backend (training) ...
    let adapters = adapter::<AB>("adapter_qv", &config);
    let adapted = adapters.attach(&model).unwrap();
    let (_, first) = to_vec(adapted.logits(&inputs).unwrap());
    let (_, second) = to_vec(adapted.logits(&inputs).unwrap());
    assert!(
        max_abs_diff(&first, &second) > 1e-3,
        "no dropout while training"
    );
    // ... and off without it.
    let lora_dir = dir().join("adapter_qv");
    let plain = LoraConfig::from_file(lora_dir.join("adapter_config.json"))
        .unwrap()
        .without_dropout();
    let adapters =
        LlamaLoraAdapters::<AB>::load_with_config(&lora_dir, &plain, &config, &Default::default())
            .unwrap();
    let adapted = adapters.attach(&model).unwrap();
    let (_, x) = to_vec(adapted.logits(&inputs).unwrap());
    let (_, y) = to_vec(adapted.logits(&inputs).unwrap());
    assert_eq!(max_abs_diff(&x, &y), 0.0);
}
