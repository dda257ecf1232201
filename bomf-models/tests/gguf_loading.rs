//! GGUF: parsing and dequantisation against the `gguf` Python package, the llama.cpp → HF mapping
//! (names and Q/K row permutation) against the safetensors model, the real SmolLM2 file against
//! `transformers` (asset-gated), and clear errors for broken files. Fixtures come from
//! `tests/fixtures/gen_llama.py`.

mod common;

use std::path::PathBuf;

use bomf_models::gguf::{GgufFile, GgufValue, load_llama_gguf};
use bomf_models::llama::load_llama;
use bomf_models::{CausalLmInput, Generate};
use common::*;

fn llama_fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama")
}

#[test]
fn quantised_tensors_dequantise_like_the_gguf_package() {
    let file = GgufFile::open(llama_fixtures().join("quants.gguf")).unwrap();
    let expected = read_json(&llama_fixtures().join("quants_expected.json"));
    for name in ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1"] {
        let info = file.tensor(name).unwrap_or_else(|| panic!("{name} absent"));
        let (shape, want) = flat(&expected[name]);
        assert_eq!(info.hf_shape(), shape, "{name}");
        let got = file.dequantize(info).unwrap();
        let diff = max_abs_diff(&got, &want);
        assert!(diff == 0.0, "{name}: max abs diff {diff:e}");
    }
}

#[test]
fn metadata_of_every_type_is_parsed() {
    let file = GgufFile::open(llama_fixtures().join("quants.gguf")).unwrap();
    let m = &file.metadata;
    assert_eq!(m["test.u8"], GgufValue::U8(200));
    assert_eq!(m["test.i8"], GgufValue::I8(-5));
    assert_eq!(m["test.u16"], GgufValue::U16(60000));
    assert_eq!(m["test.i16"], GgufValue::I16(-1234));
    assert_eq!(m["test.u32"], GgufValue::U32(4_000_000_000));
    assert_eq!(m["test.i32"], GgufValue::I32(-7));
    assert_eq!(m["test.f32"], GgufValue::F32(0.25));
    assert_eq!(m["test.u64"], GgufValue::U64(1 << 40));
    assert_eq!(m["test.i64"], GgufValue::I64(-(1 << 40)));
    assert_eq!(m["test.f64"], GgufValue::F64(1.5));
    assert_eq!(m["test.bool"], GgufValue::Bool(true));
    assert_eq!(m["test.string"], GgufValue::String("héllo".into()));
    assert_eq!(m["test.array_i32"].as_array().unwrap().len(), 3);
    assert_eq!(
        m["test.array_i32"].as_array().unwrap()[1].as_i64(),
        Some(-2)
    );
    assert_eq!(
        m["test.array_str"].as_array().unwrap()[1].as_str(),
        Some("bc")
    );
}

#[test]
fn gguf_llama_equals_the_safetensors_model() {
    let device = Default::default();
    let (from_gguf, config, _) =
        load_llama_gguf::<B>(llama_fixtures().join("gqa.gguf"), &device).unwrap();
    let (reference, _) = load_llama::<B>(llama_fixtures().join("gqa"), &device).unwrap();
    assert_eq!(config.num_key_value_heads(), 2);
    assert!(!config.tie_word_embeddings);
    let input = CausalLmInput::unpadded(vec![vec![5, 17, 42, 8, 96, 3, 11]]);
    let (_, a) = to_vec(from_gguf.logits(&input).unwrap());
    let (_, b) = to_vec(reference.logits(&input).unwrap());
    let diff = max_abs_diff(&a, &b);
    assert!(diff <= 1e-5, "max abs diff {diff:e}");
}

fn broken(bytes: Vec<u8>) -> String {
    GgufFile::parse("broken.gguf", bytes)
        .unwrap_err()
        .to_string()
}

#[test]
fn broken_files_are_clear_errors() {
    let good = std::fs::read(llama_fixtures().join("quants.gguf")).unwrap();
    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    assert!(broken(bad_magic).contains("not a GGUF file"));
    // The last cut falls inside the data of the last tensor (before the trailing alignment).
    for cut in [3, 10, 30, 200, good.len() - 20] {
        let err = broken(good[..cut].to_vec());
        assert!(err.contains("truncated"), "cut at {cut}: {err}");
    }
    let mut bad_version = good.clone();
    bad_version[4] = 1;
    assert!(broken(bad_version).contains("version 1"));
    // Rewrite the type of the first tensor (`f32`, after the metadata) to Q4_K (12).
    let file = GgufFile::parse("q.gguf", good.clone()).unwrap();
    assert_eq!(file.tensors[0].name, "f32");
    let pos = good
        .windows(11)
        .position(|w| w == [3, 0, 0, 0, 0, 0, 0, 0, b'f', b'3', b'2'])
        .expect("tensor info of `f32`");
    let type_at = pos + 11 + 4 + 2 * 8;
    let mut unknown = good;
    unknown[type_at..type_at + 4].copy_from_slice(&12u32.to_le_bytes());
    let err = broken(unknown);
    assert!(err.contains("Q4_K") && err.contains("`f32`"), "{err}");
}

fn smollm2_file() -> Option<PathBuf> {
    let root = std::env::var_os("BOMF_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.bomf/assets"));
    let file = root.join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    if file.is_file() {
        return Some(file);
    }
    if std::env::var("BOMF_REQUIRE_ASSETS").as_deref() == Ok("1") {
        panic!(
            "BOMF_REQUIRE_ASSETS=1 but SmolLM2 is not at {}",
            file.display()
        );
    }
    println!("skipped: SmolLM2 not found at {}", file.display());
    None
}

#[test]
fn smollm2_gguf_matches_transformers() {
    let Some(path) = smollm2_file() else { return };
    let device = Default::default();
    let (model, config, file) = load_llama_gguf::<B>(&path, &device).unwrap();
    assert_eq!(config.num_hidden_layers, 30);
    let dir = tempfile::tempdir().unwrap();
    let tok_path = dir.path().join("tokenizer.json");
    file.write_tokenizer_json(&tok_path).unwrap();
    let tokenizer = tokenizers::Tokenizer::from_file(&tok_path).unwrap();
    let expected = read_json(&llama_fixtures().join("smollm2_expected.json"));
    for case in expected["prompts"].as_array().unwrap() {
        let prompt = case["prompt"].as_str().unwrap();
        let want_ids = ints(&case["ids"]);
        let ids: Vec<i64> = tokenizer
            .encode(prompt, false)
            .unwrap()
            .get_ids()
            .iter()
            .map(|&i| i as i64)
            .collect();
        assert_eq!(ids, want_ids, "token ids of {prompt:?}");
        let logits = model
            .logits(&CausalLmInput::unpadded(vec![ids.clone()]))
            .unwrap();
        let [_, seq, vocab] = logits.dims();
        let (_, last) = to_vec(logits.narrow(1, seq - 1, 1).reshape([vocab]));
        let first: Vec<f32> = case["first_logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let mut diff = max_abs_diff(&last[..first.len()], &first);
        for (id, value) in case["top_ids"]
            .as_array()
            .unwrap()
            .iter()
            .zip(case["top_logits"].as_array().unwrap())
        {
            diff = diff
                .max((last[id.as_u64().unwrap() as usize] - value.as_f64().unwrap() as f32).abs());
        }
        let argmax = last
            .iter()
            .enumerate()
            .fold(0, |best, (i, &v)| if v > last[best] { i } else { best });
        assert_eq!(
            argmax as u64,
            case["top_ids"][0].as_u64().unwrap(),
            "{prompt:?}"
        );
        assert!(diff <= 1e-3, "{prompt:?}: logits max abs diff {diff:e}");
        println!("{prompt:?}: {} tokens, logits max diff {diff:e}", ids.len());
    }
}

/// Not a check: prints SmolLM2's greedy generation speed on this machine
/// (`cargo test -p bomf-models --test gguf_loading -- --ignored --nocapture`).
#[test]
#[ignore]
fn smollm2_generation_speed() {
    let Some(path) = smollm2_file() else { return };
    let device = Default::default();
    let (model, _, file) = load_llama_gguf::<B>(&path, &device).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tok_path = dir.path().join("tokenizer.json");
    file.write_tokenizer_json(&tok_path).unwrap();
    let tokenizer = tokenizers::Tokenizer::from_file(&tok_path).unwrap();
    let ids: Vec<i64> = tokenizer
        .encode("The capital of France is", false)
        .unwrap()
        .get_ids()
        .iter()
        .map(|&i| i as i64)
        .collect();
    let new_tokens = 32;
    let start = std::time::Instant::now();
    let out = model
        .generate_greedy(&CausalLmInput::unpadded(vec![ids]), new_tokens, &[], 0)
        .unwrap();
    let secs = start.elapsed().as_secs_f64();
    let text = tokenizer
        .decode(&out[0].iter().map(|&t| t as u32).collect::<Vec<_>>(), false)
        .unwrap();
    println!(
        "SmolLM2 greedy: {new_tokens} tokens in {secs:.2} s = {:.1} tokens/s: {text:?}",
        new_tokens as f64 / secs
    );
}
