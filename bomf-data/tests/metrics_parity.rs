//! Parity of `bomf_data::metrics` with the Python references.
//!
//! The JSON fixtures are written by `tests/fixtures/metrics/gen_metrics.py` (scikit-learn, scipy,
//! the official SQuAD scripts, rouge-score, sacrebleu; versions are recorded in each file).
//! Formulas that are exact up to float rounding are held to 1e-9; nothing here needs more slack.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bomf_data::metrics::{
    self, Metric, MetricError, MetricInput, SquadV2Options, bleu, classification, rouge, squad,
};
use serde::Deserialize;

const TOL: f64 = 1e-9;

fn fixture<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests",
        "fixtures",
        "metrics",
        name,
    ]
    .iter()
    .collect();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("cannot parse {}: {e}", path.display()))
}

#[track_caller]
fn close(actual: f64, expected: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= TOL,
        "{what}: got {actual}, reference {expected} (diff {:e})",
        (actual - expected).abs()
    );
}

#[derive(Deserialize)]
struct Cases<T> {
    cases: Vec<T>,
}

#[derive(Deserialize)]
struct ClassificationCase {
    name: String,
    num_classes: usize,
    y_true: Vec<usize>,
    y_pred: Vec<usize>,
    accuracy: f64,
    f1_macro: f64,
    mcc: f64,
    f1_one_vs_rest: Vec<f64>,
    f1_binary: Option<Vec<f64>>,
}

#[test]
fn classification_matches_sklearn() {
    let file: Cases<ClassificationCase> = fixture("classification.json");
    assert!(file.cases.len() >= 20);
    for case in &file.cases {
        let (t, p, k) = (&case.y_true, &case.y_pred, case.num_classes);
        let name = &case.name;
        close(
            classification::accuracy(t, p, k).unwrap(),
            case.accuracy,
            &format!("{name} accuracy"),
        );
        close(
            classification::f1_macro(t, p, k).unwrap(),
            case.f1_macro,
            &format!("{name} f1_macro"),
        );
        close(
            classification::matthews_corrcoef(t, p, k).unwrap(),
            case.mcc,
            &format!("{name} mcc"),
        );
        for (c, &expected) in case.f1_one_vs_rest.iter().enumerate() {
            close(
                classification::f1_binary(t, p, k, c).unwrap(),
                expected,
                &format!("{name} f1 one-vs-rest class {c}"),
            );
        }
        if let Some(binary) = &case.f1_binary {
            for (c, &expected) in binary.iter().enumerate() {
                close(
                    classification::f1_binary(t, p, k, c).unwrap(),
                    expected,
                    &format!("{name} f1 binary pos_label={c}"),
                );
            }
            // Metric::F1Binary uses positive label 1.
            let input = MetricInput::Labels {
                truth: t,
                predicted: p,
                num_classes: k,
            };
            close(
                Metric::F1Binary.compute(input).unwrap(),
                binary[1],
                &format!("{name} Metric::F1Binary"),
            );
        }
    }
}

#[derive(Deserialize)]
struct RegressionCase {
    name: String,
    x: Vec<f64>,
    y: Vec<f64>,
    pearson: f64,
    spearman: f64,
}

#[test]
fn correlations_match_scipy() {
    let file: Cases<RegressionCase> = fixture("regression.json");
    assert!(file.cases.len() >= 10);
    for case in &file.cases {
        close(
            metrics::pearson(&case.x, &case.y).unwrap(),
            case.pearson,
            &format!("{} pearson", case.name),
        );
        close(
            metrics::spearman(&case.x, &case.y).unwrap(),
            case.spearman,
            &format!("{} spearman", case.name),
        );
    }
}

#[derive(Deserialize)]
struct ConstantCase {
    name: String,
    x: Vec<f64>,
    y: Vec<f64>,
    scipy_pearson_is_nan: bool,
    scipy_spearman_is_nan: bool,
}

#[derive(Deserialize)]
struct ConstantCases {
    constant_cases: Vec<ConstantCase>,
}

/// Where scipy answers NaN (constant input) we answer a typed error, never a number.
#[test]
fn constant_inputs_are_errors_where_scipy_returns_nan() {
    let file: ConstantCases = fixture("regression.json");
    assert!(!file.constant_cases.is_empty());
    for case in &file.constant_cases {
        assert!(
            case.scipy_pearson_is_nan && case.scipy_spearman_is_nan,
            "{}",
            case.name
        );
        for result in [
            metrics::pearson(&case.x, &case.y),
            metrics::spearman(&case.x, &case.y),
        ] {
            assert!(
                matches!(result, Err(MetricError::ConstantInput { .. })),
                "{}: {result:?}",
                case.name
            );
        }
    }
}

#[derive(Deserialize)]
struct SquadCase {
    name: String,
    predictions: Vec<String>,
    references: Vec<Vec<String>>,
    v2: BTreeMap<String, f64>,
    v2_exact_per_example: Vec<f64>,
    v2_f1_per_example: Vec<f64>,
    no_answer_probabilities: Option<Vec<f64>>,
    v1: Option<V1Expected>,
}

#[derive(Deserialize)]
struct V1Expected {
    exact_match: f64,
    f1: f64,
}

#[test]
fn squad_matches_the_official_scripts() {
    let file: Cases<SquadCase> = fixture("squad.json");
    let mut v1_checked = 0;
    for case in &file.cases {
        let name = &case.name;
        let expect = |key: &str| -> f64 {
            *case
                .v2
                .get(key)
                .unwrap_or_else(|| panic!("{name}: no {key} in fixture"))
        };
        let options = SquadV2Options {
            no_answer_probabilities: case.no_answer_probabilities.as_deref(),
            ..SquadV2Options::default()
        };
        let score = squad::squad_v2(&case.predictions, &case.references, &options).unwrap();
        for (i, (e, f)) in score
            .exact_per_example
            .iter()
            .zip(&score.f1_per_example)
            .enumerate()
        {
            let what = format!(
                "{name} #{i} pred {:?} golds {:?}",
                case.predictions[i], case.references[i]
            );
            close(*e, case.v2_exact_per_example[i], &format!("{what} exact"));
            close(*f, case.v2_f1_per_example[i], &format!("{what} f1"));
        }
        close(score.exact, expect("exact"), &format!("{name} exact"));
        close(score.f1, expect("f1"), &format!("{name} f1"));
        assert_eq!(score.total as f64, expect("total"));
        for (subset, prefix) in [(score.has_answer, "HasAns"), (score.no_answer, "NoAns")] {
            let key = |what: &str| format!("{prefix}_{what}");
            match subset {
                Some(s) => {
                    close(
                        s.exact,
                        expect(&key("exact")),
                        &format!("{name} {}", key("exact")),
                    );
                    close(s.f1, expect(&key("f1")), &format!("{name} {}", key("f1")));
                    assert_eq!(s.total as f64, expect(&key("total")));
                }
                None => assert!(!case.v2.contains_key(&key("total")), "{name}"),
            }
        }
        if let Some(probabilities) = &case.no_answer_probabilities {
            let best = score.best.expect("best thresholds with probabilities");
            close(
                best.best_exact,
                expect("best_exact"),
                &format!("{name} best_exact"),
            );
            close(
                best.best_exact_thresh,
                expect("best_exact_thresh"),
                &format!("{name} best_exact_thresh"),
            );
            close(best.best_f1, expect("best_f1"), &format!("{name} best_f1"));
            close(
                best.best_f1_thresh,
                expect("best_f1_thresh"),
                &format!("{name} best_f1_thresh"),
            );
            let half = SquadV2Options {
                no_answer_probabilities: Some(probabilities),
                no_answer_threshold: 0.5,
            };
            let at_half = squad::squad_v2(&case.predictions, &case.references, &half).unwrap();
            close(
                at_half.exact,
                expect("thresh_0.5_exact"),
                &format!("{name} exact@0.5"),
            );
            close(
                at_half.f1,
                expect("thresh_0.5_f1"),
                &format!("{name} f1@0.5"),
            );
        } else {
            assert!(score.best.is_none());
            // The Metric enum reports the v2 numbers.
            let input = MetricInput::Texts {
                references: &case.references,
                predicted: &case.predictions,
            };
            close(
                Metric::SquadExactMatch.compute(input).unwrap(),
                expect("exact"),
                name,
            );
            close(Metric::SquadF1.compute(input).unwrap(), expect("f1"), name);
        }
        if let Some(v1) = &case.v1 {
            let s = squad::squad_v1(&case.predictions, &case.references).unwrap();
            close(
                s.exact_match,
                v1.exact_match,
                &format!("{name} v1 exact_match"),
            );
            close(s.f1, v1.f1, &format!("{name} v1 f1"));
            v1_checked += 1;
        }
    }
    assert!(v1_checked >= 2, "the fixture must exercise v1.1 too");
}

#[derive(Deserialize)]
struct RougeFile {
    examples: Vec<RougeExample>,
    corpus_mean_f: BTreeMap<String, BTreeMap<String, f64>>,
    tokens: BTreeMap<String, Vec<String>>,
    stemmed_tokens: BTreeMap<String, Vec<String>>,
    porter_stems: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct RougeExample {
    prediction: String,
    references: Vec<String>,
    /// rouge type → [precision, recall, fmeasure], without the stemmer
    plain: BTreeMap<String, [f64; 3]>,
    /// the same with `use_stemmer=True`
    stemmed: BTreeMap<String, [f64; 3]>,
}

const ROUGE_TYPES: [&str; 4] = ["rouge1", "rouge2", "rougeL", "rougeLsum"];

#[test]
fn rouge_matches_rouge_score_without_stemmer() {
    let file: RougeFile = fixture("rouge.json");
    for (text, expected) in &file.tokens {
        assert_eq!(&rouge::tokenize(text), expected, "tokens of {text:?}");
    }
    for ex in &file.examples {
        let got = rouge::score_multi(&ex.references, &ex.prediction);
        for (score, kind) in got.iter().zip(ROUGE_TYPES) {
            let [p, r, f] = ex.plain[kind];
            let what = format!("{kind} of {:?} vs {:?}", ex.prediction, ex.references);
            close(score.precision, p, &format!("{what} precision"));
            close(score.recall, r, &format!("{what} recall"));
            close(score.fmeasure, f, &format!("{what} fmeasure"));
        }
    }
    let predictions: Vec<String> = file.examples.iter().map(|e| e.prediction.clone()).collect();
    let references: Vec<Vec<String>> = file.examples.iter().map(|e| e.references.clone()).collect();
    let corpus = metrics::rouge(&predictions, &references).unwrap();
    let expected = &file.corpus_mean_f["plain"];
    close(corpus.rouge1, expected["rouge1"], "corpus rouge1");
    close(corpus.rouge2, expected["rouge2"], "corpus rouge2");
    close(corpus.rouge_l, expected["rougeL"], "corpus rougeL");
    close(corpus.rouge_lsum, expected["rougeLsum"], "corpus rougeLsum");
    let input = MetricInput::Texts {
        references: &references,
        predicted: &predictions,
    };
    for (metric, kind) in [
        Metric::Rouge1,
        Metric::Rouge2,
        Metric::RougeL,
        Metric::RougeLsum,
    ]
    .into_iter()
    .zip(ROUGE_TYPES)
    {
        close(metric.compute(input).unwrap(), expected[kind], kind);
    }
}

#[test]
fn porter_stemmer_matches_nltk() {
    let file: RougeFile = fixture("rouge.json");
    assert!(file.porter_stems.len() > 300);
    let wrong: Vec<String> = file
        .porter_stems
        .iter()
        .filter(|(word, stem)| metrics::porter::stem(word) != **stem)
        .map(|(word, stem)| format!("{word}: nltk {stem}, ours {}", metrics::porter::stem(word)))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} stems differ:\n{}",
        wrong.len(),
        file.porter_stems.len(),
        wrong.join("\n")
    );
}

#[test]
fn rouge_matches_rouge_score_with_stemmer() {
    let file: RougeFile = fixture("rouge.json");
    let scorer = metrics::RougeScorer { use_stemmer: true };
    for (text, expected) in &file.stemmed_tokens {
        assert_eq!(
            &scorer.tokenize(text),
            expected,
            "stemmed tokens of {text:?}"
        );
    }
    for ex in &file.examples {
        let got = scorer.score_multi(&ex.references, &ex.prediction);
        for (score, kind) in got.iter().zip(ROUGE_TYPES) {
            let [p, r, f] = ex.stemmed[kind];
            let what = format!(
                "stemmed {kind} of {:?} vs {:?}",
                ex.prediction, ex.references
            );
            close(score.precision, p, &format!("{what} precision"));
            close(score.recall, r, &format!("{what} recall"));
            close(score.fmeasure, f, &format!("{what} fmeasure"));
        }
    }
    let predictions: Vec<&str> = file
        .examples
        .iter()
        .map(|e| e.prediction.as_str())
        .collect();
    let references: Vec<&[String]> = file
        .examples
        .iter()
        .map(|e| e.references.as_slice())
        .collect();
    let corpus = scorer.corpus(&predictions, &references).unwrap();
    let expected = &file.corpus_mean_f["stemmed"];
    close(corpus.rouge1, expected["rouge1"], "stemmed corpus rouge1");
    close(corpus.rouge2, expected["rouge2"], "stemmed corpus rouge2");
    close(corpus.rouge_l, expected["rougeL"], "stemmed corpus rougeL");
    close(
        corpus.rouge_lsum,
        expected["rougeLsum"],
        "stemmed corpus rougeLsum",
    );
}

#[derive(Deserialize)]
struct BleuFile {
    cases: Vec<BleuCase>,
    tokenized_13a: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct BleuCase {
    name: String,
    hypotheses: Vec<String>,
    references: Vec<Vec<String>>,
    score: f64,
    counts: Vec<u64>,
    totals: Vec<u64>,
    precisions: Vec<f64>,
    bp: f64,
    sys_len: u64,
    ref_len: u64,
}

#[test]
fn bleu_matches_sacrebleu() {
    let file: BleuFile = fixture("bleu.json");
    for (text, expected) in &file.tokenized_13a {
        assert_eq!(
            bleu::tokenize_13a(text).join(" "),
            *expected,
            "13a tokens of {text:?}"
        );
    }
    for case in &file.cases {
        let name = &case.name;
        let got = bleu::corpus_bleu(&case.hypotheses, &case.references).unwrap();
        assert_eq!(got.counts.to_vec(), case.counts, "{name} counts");
        assert_eq!(got.totals.to_vec(), case.totals, "{name} totals");
        assert_eq!(got.sys_len, case.sys_len, "{name} sys_len");
        assert_eq!(got.ref_len, case.ref_len, "{name} ref_len");
        close(got.brevity_penalty, case.bp, &format!("{name} bp"));
        for (n, (&p, &e)) in got.precisions.iter().zip(&case.precisions).enumerate() {
            close(p, e, &format!("{name} precision {}", n + 1));
        }
        close(got.score, case.score, &format!("{name} score"));
        let input = MetricInput::Texts {
            references: &case.references,
            predicted: &case.hypotheses,
        };
        close(Metric::Bleu.compute(input).unwrap(), case.score, name);
    }
}

#[test]
fn metric_names_round_trip() {
    for metric in Metric::ALL {
        let json = serde_json::to_string(&metric).unwrap();
        assert_eq!(json, format!("\"{}\"", metric.name()));
        let back: Metric = serde_json::from_str(&json).unwrap();
        assert_eq!(back, metric);
        assert_eq!(metric.name().parse::<Metric>().unwrap(), metric);
        assert!(metric.higher_is_better());
    }
    assert_eq!(Metric::RougeL.name(), "rougeL");
    assert!("rouge_l".parse::<Metric>().is_err());
}

#[test]
fn wrong_input_kind_is_an_error() {
    let input = MetricInput::Scores {
        truth: &[1.0, 2.0],
        predicted: &[1.0, 2.0],
    };
    assert_eq!(
        Metric::Accuracy.compute(input).unwrap_err(),
        MetricError::WrongInputKind {
            metric: "accuracy",
            expected: "label",
            got: "score"
        }
    );
    assert!(matches!(
        Metric::Bleu.compute(input),
        Err(MetricError::WrongInputKind { .. })
    ));
}
