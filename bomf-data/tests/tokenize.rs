//! Tokenisation parity with Python `tokenizers` (fixtures from `fixtures/gen_tokenizer.py`)
//! and the error paths: vocabulary mismatch, too-long input, bad family/pair combinations.

use std::path::{Path, PathBuf};

use bomf_data::DataError;
use bomf_data::assets;
use bomf_data::task::Example;
use bomf_data::tokenize::{
    EncoderConfig, IGNORE_INDEX, ModelFamily, TextEncoder, Truncation, model_vocab_size,
};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tokenizer")
        .join(name)
}

fn load(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap()
}

fn family(name: &str) -> ModelFamily {
    match name {
        "bert" => ModelFamily::Bert,
        "roberta" => ModelFamily::Roberta,
        "t5" => ModelFamily::T5,
        "llama" => ModelFamily::Llama,
        other => panic!("unknown family {other}"),
    }
}

fn truncation(name: &str) -> Truncation {
    match name {
        "longest_first" => Truncation::LongestFirst,
        "only_first" => Truncation::OnlyFirst,
        "only_second" => Truncation::OnlySecond,
        "disabled" => Truncation::Disabled,
        other => panic!("unknown strategy {other}"),
    }
}

/// A JSON list of `T`s (ids, labels, input strings).
fn list<T: serde::de::DeserializeOwned>(v: &Value) -> Vec<T> {
    serde_json::from_value(v.clone()).unwrap()
}

fn u32s(v: &Value) -> Vec<u32> {
    list(v)
}

fn i64s(v: &Value) -> Vec<i64> {
    list(v)
}

/// Runs every case of `cases` through a `TextEncoder` on `tokenizer_json`; returns how many ran.
fn check_cases(tokenizer_json: &Path, cases: &[Value]) -> usize {
    for case in cases {
        let mut config = EncoderConfig::new(
            family(case["family"].as_str().unwrap()),
            case["max_length"].as_u64().unwrap() as usize,
        );
        config.truncation = truncation(case["truncation"].as_str().unwrap());
        let encoder = TextEncoder::from_file(tokenizer_json, config).unwrap();
        let inputs: Vec<String> = list(&case["inputs"]);
        let result = encoder.encode(&inputs);
        if case.get("error").is_some() {
            assert!(
                matches!(result, Err(DataError::Tokenizer { .. })),
                "case {case} should fail, got {result:?}"
            );
            continue;
        }
        let encoded = result.unwrap_or_else(|e| panic!("case {case}: {e}"));
        assert_eq!(encoded.ids, u32s(&case["ids"]), "ids of {case}");
        assert_eq!(
            encoded.type_ids,
            u32s(&case["type_ids"]),
            "type ids of {case}"
        );
        assert!(u32s(&case["attention_mask"]).iter().all(|&m| m == 1));
        assert_eq!(
            encoded.ids.len(),
            case["attention_mask"].as_array().unwrap().len()
        );
        assert_eq!(
            encoded.truncated,
            case["truncated"].as_bool().unwrap(),
            "truncated flag of {case}"
        );
    }
    cases.len()
}

#[test]
fn wordpiece_bert_matches_python() {
    let expected = load("expected.json");
    let cases = expected["wordpiece"].as_array().unwrap();
    assert!(check_cases(&fixture("wordpiece.json"), cases) >= 20);
    assert!(
        cases.iter().any(|c| c["truncated"] == Value::Bool(true)),
        "fixtures exercise truncation"
    );
}

#[test]
fn byte_level_bpe_roberta_t5_llama_match_python() {
    let expected = load("expected.json");
    assert!(check_cases(&fixture("bpe.json"), expected["bpe"].as_array().unwrap()) >= 30);
}

#[test]
fn seq2seq_targets_and_causal_lm_match_python() {
    let expected = load("expected.json");
    for case in expected["bpe_t5_targets"].as_array().unwrap() {
        let mut config = EncoderConfig::new(ModelFamily::T5, 64);
        config.max_target_length = Some(case["max_length"].as_u64().unwrap() as usize);
        let encoder = TextEncoder::from_file(&fixture("bpe.json"), config).unwrap();
        let (labels, truncated) = encoder
            .encode_target(case["inputs"][0].as_str().unwrap())
            .unwrap();
        assert_eq!(labels, i64s(&case["ids"]), "{case}");
        assert_eq!(truncated, case["truncated"].as_bool().unwrap());
    }
    for case in expected["bpe_causal"].as_array().unwrap() {
        let config = EncoderConfig::new(
            ModelFamily::Llama,
            case["max_length"].as_u64().unwrap() as usize,
        );
        let encoder = TextEncoder::from_file(&fixture("bpe.json"), config).unwrap();
        let out = encoder
            .encode_causal(
                case["prompt"].as_str().unwrap(),
                case["target"].as_str().unwrap(),
            )
            .unwrap();
        assert_eq!(out.ids, u32s(&case["ids"]), "{case}");
        assert_eq!(out.labels, i64s(&case["labels"]), "{case}");
        assert_eq!(out.truncated, case["truncated"].as_bool().unwrap());
        assert!(
            out.labels
                .iter()
                .zip(&out.ids)
                .all(|(&l, &i)| l == IGNORE_INDEX || l == i64::from(i))
        );
    }
}

#[test]
fn real_minilm_tokenizer_matches_python_when_present() {
    let Some(dir) = assets::require(assets::minilm_dir()).unwrap() else {
        return;
    };
    let expected = load("minilm_expected.json");
    let ran = check_cases(
        &dir.join("tokenizer.json"),
        expected["cases"].as_array().unwrap(),
    );
    assert!(ran >= 20);
    // The model's own vocabulary size matches its tokenizer.
    let vocab = model_vocab_size(&dir.join("config.json")).unwrap();
    let mut config = EncoderConfig::new(ModelFamily::Bert, 128);
    config.model_vocab_size = Some(vocab);
    config.model_max_length = Some(512);
    let encoder = TextEncoder::from_file(&dir.join("tokenizer.json"), config).unwrap();
    assert_eq!(encoder.vocab_size(), vocab);
    assert_eq!(encoder.pad_id(), 0);
}

#[test]
fn bad_configurations_are_clear_errors() {
    let wp = fixture("wordpiece.json");
    let mut config = EncoderConfig::new(ModelFamily::Bert, 16);
    config.model_vocab_size = Some(50);
    match TextEncoder::from_file(&wp, config) {
        Err(DataError::VocabMismatch {
            tokenizer_vocab,
            model_vocab,
        }) => {
            assert!(tokenizer_vocab > 50);
            assert_eq!(model_vocab, 50);
        }
        other => panic!("{other:?}"),
    }
    let mut config = EncoderConfig::new(ModelFamily::Bert, 1024);
    config.model_max_length = Some(512);
    assert!(matches!(
        TextEncoder::from_file(&wp, config),
        Err(DataError::InvalidConfig(_))
    ));
    assert!(matches!(
        TextEncoder::from_file(&wp, EncoderConfig::new(ModelFamily::Roberta, 16)),
        Err(DataError::MissingSpecialToken { .. })
    ));
    assert!(matches!(
        TextEncoder::from_file(&wp, EncoderConfig::new(ModelFamily::Bert, 3)),
        Err(DataError::InvalidConfig(_))
    ));
    assert!(matches!(
        TextEncoder::from_file(
            Path::new("/nonexistent/tokenizer.json"),
            EncoderConfig::new(ModelFamily::Bert, 16)
        ),
        Err(DataError::Io { .. })
    ));
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("tokenizer.json");
    std::fs::write(&broken, "{\"not\": \"a tokenizer\"}").unwrap();
    assert!(matches!(
        TextEncoder::from_file(&broken, EncoderConfig::new(ModelFamily::Bert, 16)),
        Err(DataError::Tokenizer { .. })
    ));

    let t5 = TextEncoder::from_file(
        &fixture("bpe.json"),
        EncoderConfig::new(ModelFamily::T5, 32),
    )
    .unwrap();
    assert!(matches!(
        t5.encode(&["a".into(), "b".into()]),
        Err(DataError::Unsupported(_))
    ));
    assert!(
        matches!(t5.encode_target("a"), Err(DataError::InvalidConfig(_))),
        "targets need max_target_length"
    );
    let bert = TextEncoder::from_file(&wp, EncoderConfig::new(ModelFamily::Bert, 16)).unwrap();
    assert!(matches!(bert.encode(&[]), Err(DataError::Unsupported(_))));
}

#[test]
fn disabled_truncation_errors_and_truncation_is_counted() {
    let long = "the quick brown fox jumps over the lazy dog ".repeat(10);
    let mut config = EncoderConfig::new(ModelFamily::Bert, 16);
    config.truncation = Truncation::Disabled;
    let strict = TextEncoder::from_file(&fixture("wordpiece.json"), config).unwrap();
    match strict.encode(std::slice::from_ref(&long)) {
        Err(DataError::TooLong {
            length, max_length, ..
        }) => {
            assert!(length > 16);
            assert_eq!(max_length, 16);
        }
        other => panic!("{other:?}"),
    }
    assert!(strict.encode(&["short".into()]).is_ok());
    let mut causal = EncoderConfig::new(ModelFamily::Llama, 8);
    causal.truncation = Truncation::Disabled;
    let strict_lm = TextEncoder::from_file(&fixture("bpe.json"), causal).unwrap();
    assert!(matches!(
        strict_lm.encode_causal(&long, "x"),
        Err(DataError::TooLong { .. })
    ));

    let lenient = TextEncoder::from_file(
        &fixture("wordpiece.json"),
        EncoderConfig::new(ModelFamily::Bert, 16),
    )
    .unwrap();
    let examples: Vec<Example> = ["short one", long.as_str(), long.as_str()]
        .iter()
        .enumerate()
        .map(|(i, t)| Example {
            id: i.to_string(),
            inputs: vec![t.to_string()],
            options: vec![],
            target: None,
        })
        .collect();
    let (encoded, report) = lenient.encode_examples(&examples).unwrap();
    assert_eq!((report.truncated, report.total), (2, 3));
    assert!(encoded.iter().all(|e| e.ids.len() <= 16));
    assert_eq!(encoded[1].ids.len(), 16);
}

#[test]
fn batch_encoding_equals_one_by_one_encoding() {
    let encoder = TextEncoder::from_file(
        &fixture("wordpiece.json"),
        EncoderConfig::new(ModelFamily::Bert, 20),
    )
    .unwrap();
    let texts = [
        "a man is playing a guitar on the stage while the crowd sings along",
        "two dogs",
        "critics were divided",
    ];
    let make = |inputs: Vec<Vec<&str>>| -> Vec<Example> {
        inputs
            .into_iter()
            .enumerate()
            .map(|(i, t)| Example {
                id: i.to_string(),
                inputs: t.iter().map(|s| s.to_string()).collect(),
                options: vec![],
                target: None,
            })
            .collect()
    };
    let singles = make(texts.iter().map(|t| vec![*t]).collect());
    let pairs = make(texts.iter().map(|t| vec![*t, texts[0]]).collect());
    let mixed = make(vec![vec![texts[0]], vec![texts[1], texts[2]]]);
    for examples in [singles, pairs, mixed] {
        let (batch, report) = encoder.encode_examples(&examples).unwrap();
        let one_by_one: Vec<_> = examples
            .iter()
            .map(|e| encoder.encode(&e.inputs).unwrap())
            .collect();
        assert_eq!(batch, one_by_one);
        assert_eq!(
            report.truncated,
            one_by_one.iter().filter(|e| e.truncated).count()
        );
    }
    // With truncation off, the too-long example is named in the error.
    let mut strict = EncoderConfig::new(ModelFamily::Bert, 8);
    strict.truncation = Truncation::Disabled;
    let strict = TextEncoder::from_file(&fixture("wordpiece.json"), strict).unwrap();
    let examples = make(vec![vec!["two dogs"], vec![texts[0]]]);
    match strict.encode_examples(&examples) {
        Err(DataError::TooLong { example, .. }) => assert_eq!(example, "example 1"),
        other => panic!("{other:?}"),
    }
}
