//! Splits: stable hash checked against Python (`fixtures/gen_split.py`), config validation,
//! exact GLUE protocol sizes, and property tests (disjoint, stable, order-independent,
//! duplicates together).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use bomf_data::DataError;
use bomf_data::split::{
    Part, SplitConfig, Splits, assign, glue_protocol, input_hash, split_by_hash, split_by_rank,
    split_exact,
};
use bomf_data::task::{Dataset, Example, GlueTask, Target};
use proptest::prelude::*;

fn dataset(texts: &[String]) -> Dataset {
    Dataset {
        task: GlueTask::Sst2.task(),
        examples: texts
            .iter()
            .enumerate()
            .map(|(i, t)| Example {
                id: format!("e{i}"),
                inputs: vec![t.clone()],
                options: vec![],
                target: Some(Target::Class(i % 2)),
            })
            .collect(),
    }
}

fn ids(d: &Dataset) -> Vec<String> {
    d.examples.iter().map(|e| e.id.clone()).collect()
}

fn part_of_id(splits: &Splits) -> HashMap<String, Part> {
    let mut map = HashMap::new();
    for (part, d) in [
        (Part::Train, &splits.train),
        (Part::Validation, &splits.validation),
        (Part::Test, &splits.test),
    ] {
        for e in &d.examples {
            assert!(
                map.insert(e.id.clone(), part).is_none(),
                "{} is in two splits",
                e.id
            );
        }
    }
    map
}

#[test]
fn hash_and_assignment_match_python_reference() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/split_expected.json");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let c = &expected["config"];
    let cases = expected["cases"].as_array().unwrap();
    assert!(cases.len() > 100);
    for case in cases {
        let seed = case["seed"].as_u64().unwrap();
        let config = SplitConfig::new(
            c["train"].as_f64().unwrap(),
            c["validation"].as_f64().unwrap(),
            c["test"].as_f64().unwrap(),
            seed,
        )
        .unwrap();
        let inputs: Vec<String> = serde_json::from_value(case["inputs"].clone()).unwrap();
        assert_eq!(
            input_hash(&inputs, seed).to_string(),
            case["hash"].as_str().unwrap(),
            "{case}"
        );
        let example = Example {
            id: "x".into(),
            inputs,
            options: vec![],
            target: None,
        };
        let part = match assign(&example, &config) {
            Part::Train => "train",
            Part::Validation => "validation",
            Part::Test => "test",
            Part::Unused => "unused",
        };
        assert_eq!(part, case["part"].as_str().unwrap(), "{case}");
    }
}

#[test]
fn config_is_validated() {
    assert!(
        SplitConfig::new(0.7, 0.2, 0.1, 0).is_ok(),
        "decimal fractions summing to 1 are fine"
    );
    assert!(SplitConfig::new(0.5, 0.0, 0.0, 0).is_ok());
    for (a, b, c) in [
        (0.8, 0.2, 0.1),
        (-0.1, 0.5, 0.5),
        (f64::NAN, 0.1, 0.1),
        (0.5, f64::INFINITY, 0.0),
    ] {
        assert!(
            matches!(
                SplitConfig::new(a, b, c, 0),
                Err(DataError::InvalidConfig(_))
            ),
            "{a} {b} {c}"
        );
    }
    let parsed: Result<SplitConfig, _> =
        serde_json::from_str(r#"{"train": 0.8, "validation": 0.1, "test": 0.1, "sed": 3}"#);
    assert!(parsed.is_err(), "typos in config keys are rejected");
    let empty = dataset(&[]);
    assert!(matches!(
        split_by_hash(&empty, &SplitConfig::new(0.8, 0.1, 0.1, 0).unwrap()),
        Err(DataError::Empty { .. })
    ));
}

#[test]
fn hash_split_sizes_follow_the_fractions() {
    let texts: Vec<String> = (0..2000).map(|i| format!("example text {i}")).collect();
    let d = dataset(&texts);
    let s = split_by_hash(&d, &SplitConfig::new(0.8, 0.1, 0.1, 7).unwrap()).unwrap();
    assert_eq!(s.train.len() + s.validation.len() + s.test.len(), 2000);
    // ±5 standard deviations of a binomial(2000, 0.1): 67.
    assert!(
        (s.validation.len() as i64 - 200).abs() < 67,
        "{}",
        s.validation.len()
    );
    assert!((s.test.len() as i64 - 200).abs() < 67, "{}", s.test.len());
    let other_seed = split_by_hash(&d, &SplitConfig::new(0.8, 0.1, 0.1, 8).unwrap()).unwrap();
    assert_ne!(
        ids(&s.test),
        ids(&other_seed.test),
        "the seed changes membership"
    );
    // Fractions below 1 leave the rest out.
    let partial = split_by_hash(&d, &SplitConfig::new(0.5, 0.1, 0.1, 7).unwrap()).unwrap();
    let used = partial.train.len() + partial.validation.len() + partial.test.len();
    assert!(used < 2000 && used > 1200, "{used}");
}

#[test]
fn rank_split_and_glue_protocol_have_exact_sizes() {
    let texts: Vec<String> = (0..277).map(|i| format!("rte dev {i}")).collect();
    let dev = dataset(&texts);
    let train = dataset(&(0..3000).map(|i| format!("train {i}")).collect::<Vec<_>>());

    let small = glue_protocol(GlueTask::Rte, &train, &dev, 0, 1000).unwrap();
    assert_eq!(small.train.len(), 3000);
    assert_eq!(small.validation.len(), 138);
    assert_eq!(small.test.len(), 139);
    let validation_ids: HashSet<String> = ids(&small.validation).into_iter().collect();
    assert!(
        ids(&small.test)
            .iter()
            .all(|id| !validation_ids.contains(id))
    );

    let large = glue_protocol(GlueTask::Qnli, &train, &dev, 0, 1000).unwrap();
    assert_eq!(large.train.len(), 2000);
    assert_eq!(large.validation.len(), 1000);
    assert_eq!(large.test, dev);
    let train_ids: HashSet<String> = ids(&large.train).into_iter().collect();
    assert!(
        ids(&large.validation)
            .iter()
            .all(|id| !train_ids.contains(id))
    );

    assert!(matches!(
        glue_protocol(GlueTask::Qnli, &train, &dev, 0, 3000),
        Err(DataError::InvalidConfig(_))
    ));
    assert!(matches!(
        split_by_rank(&dev, [200, 50, 50], 0),
        Err(DataError::InvalidConfig(_))
    ));
    let exact = split_exact(&dev, &SplitConfig::new(0.8, 0.1, 0.1, 3).unwrap()).unwrap();
    assert_eq!(
        (exact.train.len(), exact.validation.len(), exact.test.len()),
        (221, 28, 28)
    );
}

#[test]
fn duplicates_are_never_cut_by_a_rank_split() {
    // 10 copies of one sentence among 20 distinct ones: the copies all land together.
    let mut texts: Vec<String> = (0..20).map(|i| format!("distinct {i}")).collect();
    texts.extend(std::iter::repeat_n(
        "the duplicated sentence".to_string(),
        10,
    ));
    let d = dataset(&texts);
    for seed in 0..20 {
        let s = split_by_rank(&d, [10, 10, 10], seed).unwrap();
        let parts = part_of_id(&s);
        let dup_parts: HashSet<Part> = (20..30).map(|i| parts[&format!("e{i}")]).collect();
        assert_eq!(dup_parts.len(), 1, "seed {seed}");
        assert_eq!(parts.len(), 30);
    }
}

fn text_strategy() -> impl Strategy<Value = Vec<String>> {
    // A small alphabet makes duplicates common.
    prop::collection::vec("[ab ]{0,4}", 1..60)
}

proptest! {
    #[test]
    fn hash_splits_are_disjoint_stable_order_free_and_keep_duplicates_together(
        texts in text_strategy(),
        seed in any::<u64>(),
        a in 0.0f64..1.0, b in 0.0f64..1.0,
    ) {
        let (train, validation) = (a * 0.7, (1.0 - a * 0.7) * b * 0.9);
        let test = (1.0 - train - validation).max(0.0) * 0.99;
        let config = SplitConfig::new(train, validation, test, seed).unwrap();
        let d = dataset(&texts);
        let s = split_by_hash(&d, &config).unwrap();
        let parts = part_of_id(&s);
        // Stable: the same call gives the same splits.
        prop_assert_eq!(&split_by_hash(&d, &config).unwrap(), &s);
        // Order-free: reversing the file puts every example in the same split.
        let mut reversed = d.clone();
        reversed.examples.reverse();
        let r = part_of_id(&split_by_hash(&reversed, &config).unwrap());
        prop_assert_eq!(&r, &parts);
        // Duplicates together.
        let mut part_of_text: HashMap<&str, Option<Part>> = HashMap::new();
        for e in &d.examples {
            let p = parts.get(&e.id).copied();
            let seen = part_of_text.entry(e.inputs[0].as_str()).or_insert(p);
            prop_assert_eq!(*seen, p);
        }
    }

    #[test]
    fn rank_splits_are_disjoint_order_free_and_keep_duplicates_together(
        texts in text_strategy(),
        seed in any::<u64>(),
        cuts in (0usize..30, 0usize..30, 0usize..30),
    ) {
        let n = texts.len();
        let counts = [cuts.0.min(n), cuts.1.min(n - cuts.0.min(n)), 0];
        let counts = [counts[0], counts[1], cuts.2.min(n - counts[0] - counts[1])];
        let d = dataset(&texts);
        let s = split_by_rank(&d, counts, seed).unwrap();
        let parts = part_of_id(&s);
        let mut reversed = d.clone();
        reversed.examples.reverse();
        prop_assert_eq!(&part_of_id(&split_by_rank(&reversed, counts, seed).unwrap()), &parts);
        let mut part_of_text: HashMap<&str, Option<Part>> = HashMap::new();
        for e in &d.examples {
            let p = parts.get(&e.id).copied();
            let seen = part_of_text.entry(e.inputs[0].as_str()).or_insert(p);
            prop_assert_eq!(*seen, p);
        }
        // Each part reaches its count unless the data ran out.
        let total_used = parts.len();
        prop_assert!(total_used >= counts.iter().sum::<usize>().min(n));
    }
}
