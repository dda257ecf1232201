//! LLaMA decoder against `transformers`: logits with left/right padding, causal-LM loss and greedy
//! generations of tiny random models (GQA, tied embeddings with biases, llama3 and linear RoPE
//! scaling), from the fixtures written by `tests/fixtures/gen_llama.py`.

mod common;

use std::path::PathBuf;

use bomf_models::llama::load_llama;
use bomf_models::{CausalLmInput, Generate, LlamaConfig};
use common::*;
use serde_json::Value;

/// fp32 logits tolerance required by the issue.
const TOL: f32 = 1e-4;

fn llama_fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama")
}

fn check(name: &str) {
    let all = read_json(&llama_fixtures().join("expected_llama.json"));
    let e = &all[name];
    let device = Default::default();
    let (model, config) = load_llama::<B>(llama_fixtures().join(name), &device).unwrap();
    let input = causal_input(&e["inputs"]);
    let logits = model.logits(&input).unwrap();
    let (shape, got) = to_vec(logits.clone());
    let (eshape, want) = flat(&e["logits"]);
    assert_eq!(shape, eshape);
    // Compare real-token positions only.
    let vocab = config.vocab_size;
    let diff = real_token_diff(&got, &want, &input.attention_mask, vocab);
    assert!(diff <= TOL, "{name}: logits max abs diff {diff:e}");
    // The same logits gathered at the real positions only (the LM head on those rows alone).
    let seq = input.attention_mask[0].len();
    let index: Vec<usize> = (0..input.attention_mask.len() * seq)
        .filter(|&i| input.attention_mask[i / seq][i % seq] == 1)
        .collect();
    let (_, at) = to_vec(model.logits_at(&input, &index).unwrap());
    for (j, &i) in index.iter().enumerate() {
        let d = max_abs_diff(
            &at[j * vocab..(j + 1) * vocab],
            &want[i * vocab..(i + 1) * vocab],
        );
        assert!(
            d <= TOL,
            "{name}: logits_at position {i}: max abs diff {d:e}"
        );
    }
    assert!(
        model
            .logits_at(&input, &[input.attention_mask.len() * seq])
            .is_err()
    );
    let loss = model
        .causal_lm_loss(logits, &rows(&e["inputs"]["labels"]))
        .unwrap();
    assert_scalar("loss", loss, &e["loss"], TOL);

    let g = &e["generation"];
    let prompt = causal_input(g);
    let generated = model
        .generate_greedy(
            &prompt,
            g["max_new_tokens"].as_u64().unwrap() as usize,
            &[g["eos_token_id"].as_i64().unwrap()],
            g["pad_token_id"].as_i64().unwrap(),
        )
        .unwrap();
    assert_eq!(generated, rows(&g["new_tokens"]), "{name}: greedy tokens");
    println!("{name}: logits max diff {diff:e}, greedy {generated:?}");
}

tests_of!(check {
    gqa_untied_matches_transformers("gqa"),
    tied_embeddings_with_biases_match_transformers("tied"),
    llama3_rope_scaling_matches_transformers("llama3"),
    linear_rope_scaling_matches_transformers("linear"),
});

#[test]
fn unsupported_rope_type_is_a_clear_error() {
    let text = std::fs::read_to_string(llama_fixtures().join("gqa/config.json")).unwrap();
    let mut v: Value = serde_json::from_str(&text).unwrap();
    v["rope_parameters"] =
        serde_json::json!({"rope_type": "yarn", "rope_theta": 1e4, "factor": 2.0});
    let config: LlamaConfig = serde_json::from_value(v).unwrap();
    let err = config.validate().unwrap_err().to_string();
    assert!(
        err.contains("yarn") && err.contains("rope_parameters"),
        "{err}"
    );
}

#[test]
fn missing_tensor_is_an_error_naming_it() {
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let src = llama_fixtures().join("gqa");
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
    let mut ck = bomf_models::weights::read_checkpoint(&src).unwrap();
    ck.tensors.remove("model.layers.1.mlp.up_proj.weight");
    let config = LlamaConfig::from_file(src.join("config.json")).unwrap();
    let err = bomf_models::llama::load_llama_checkpoint::<B>(&config, ck, &device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("model.layers.1.mlp.up_proj.weight"), "{err}");
}

#[test]
fn seeded_sampling_is_reproducible_and_top_k_one_is_greedy() {
    let device = Default::default();
    let (model, _) = load_llama::<B>(llama_fixtures().join("gqa"), &device).unwrap();
    let prompt = CausalLmInput {
        input_ids: vec![vec![0, 0, 5, 17], vec![9, 33, 41, 2]],
        attention_mask: vec![vec![0, 0, 1, 1], vec![1, 1, 1, 1]],
    };
    let sampling = |seed, top_k| bomf_models::SamplingConfig {
        temperature: 1.0,
        top_k,
        top_p: Some(0.95),
        seed,
    };
    let a = model
        .generate_sampled(&prompt, 8, &[], 0, &sampling(7, None))
        .unwrap();
    let b = model
        .generate_sampled(&prompt, 8, &[], 0, &sampling(7, None))
        .unwrap();
    let c = model
        .generate_sampled(&prompt, 8, &[], 0, &sampling(8, None))
        .unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c, "different seeds gave identical samples");
    let greedy = model.generate_greedy(&prompt, 8, &[], 0).unwrap();
    let top1 = model
        .generate_sampled(&prompt, 8, &[], 0, &sampling(3, Some(1)))
        .unwrap();
    assert_eq!(top1, greedy);
}
