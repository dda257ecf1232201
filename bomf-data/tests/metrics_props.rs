//! Property tests for the metrics: ranges, symmetries and the "perfect prediction" fixed points.

use bomf_data::metrics::{self, bleu, classification as cls, rouge, squad};
use proptest::prelude::*;

/// Paired label vectors with their class count.
fn labels() -> impl Strategy<Value = (Vec<usize>, Vec<usize>, usize)> {
    (2usize..6).prop_flat_map(|k| {
        (1usize..60).prop_flat_map(move |n| {
            (
                prop::collection::vec(0..k, n),
                prop::collection::vec(0..k, n),
                Just(k),
            )
        })
    })
}

/// A permutation of `0..k`.
fn permutation(k: usize) -> impl Strategy<Value = Vec<usize>> {
    Just((0..k).collect::<Vec<_>>()).prop_shuffle()
}

fn paired_floats() -> impl Strategy<Value = (Vec<f64>, Vec<f64>)> {
    (3usize..40).prop_flat_map(|n| {
        (
            prop::collection::vec(-100.0f64..100.0, n),
            prop::collection::vec(-100.0f64..100.0, n),
        )
    })
}

const WORDS: &[&str] = &[
    "the",
    "a",
    "an",
    "The",
    "cat",
    "sat",
    "on",
    "mat",
    "Denver",
    "Broncos",
    "1879",
    "3.5",
    "million",
    "café",
    "naïve",
    "東京",
    "rock'n'roll",
    "U.S.A.",
    "(really)",
    "well-known",
    "&amp;",
    "$1,000",
    "--",
    "!",
    "Σίσυφος",
    "x",
    "runs",
    "running",
];

fn sentence() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(WORDS), 0..14).prop_map(|w| w.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn classification_metrics_stay_in_range((t, p, k) in labels()) {
        let acc = cls::accuracy(&t, &p, k).unwrap();
        let macro_f1 = cls::f1_macro(&t, &p, k).unwrap();
        let mcc = cls::matthews_corrcoef(&t, &p, k).unwrap();
        prop_assert!((0.0..=1.0).contains(&acc));
        prop_assert!((0.0..=1.0).contains(&macro_f1));
        prop_assert!((-1.0 - 1e-12..=1.0 + 1e-12).contains(&mcc));
        for c in 0..k {
            let f1 = cls::f1_binary(&t, &p, k, c).unwrap();
            prop_assert!((0.0..=1.0).contains(&f1));
        }
    }

    #[test]
    fn classification_metrics_ignore_label_names(((t, p, k), perm) in labels().prop_flat_map(|(t, p, k)| (Just((t, p, k)), permutation(k)))) {
        let rename = |v: &[usize]| v.iter().map(|&l| perm[l]).collect::<Vec<_>>();
        let (t2, p2) = (rename(&t), rename(&p));
        prop_assert_eq!(cls::accuracy(&t, &p, k).unwrap(), cls::accuracy(&t2, &p2, k).unwrap());
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        prop_assert!(close(cls::matthews_corrcoef(&t, &p, k).unwrap(), cls::matthews_corrcoef(&t2, &p2, k).unwrap()));
        prop_assert!(close(cls::f1_macro(&t, &p, k).unwrap(), cls::f1_macro(&t2, &p2, k).unwrap()));
        for (c, &renamed) in perm.iter().enumerate() {
            prop_assert!(close(cls::f1_binary(&t, &p, k, c).unwrap(), cls::f1_binary(&t2, &p2, k, renamed).unwrap()));
        }
    }

    #[test]
    fn symmetric_classification_metrics((t, p, k) in labels()) {
        // accuracy, MCC and macro F1 do not care which side is the truth
        prop_assert_eq!(cls::accuracy(&t, &p, k).unwrap(), cls::accuracy(&p, &t, k).unwrap());
        prop_assert!((cls::matthews_corrcoef(&t, &p, k).unwrap() - cls::matthews_corrcoef(&p, &t, k).unwrap()).abs() < 1e-12);
        prop_assert!((cls::f1_macro(&t, &p, k).unwrap() - cls::f1_macro(&p, &t, k).unwrap()).abs() < 1e-12);
    }

    #[test]
    fn perfect_classification_scores_one((t, _, k) in labels()) {
        prop_assert_eq!(cls::accuracy(&t, &t, k).unwrap(), 1.0);
        prop_assert!((cls::f1_macro(&t, &t, k).unwrap() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn correlations_are_symmetric_and_bounded((x, y) in paired_floats()) {
        let (Ok(p), Ok(p_swapped)) = (metrics::pearson(&x, &y), metrics::pearson(&y, &x)) else {
            return Ok(()); // constant input drawn: covered by unit tests
        };
        prop_assert!((p - p_swapped).abs() < 1e-12);
        prop_assert!((-1.0..=1.0).contains(&p));
        let s = metrics::spearman(&x, &y).unwrap();
        prop_assert!((s - metrics::spearman(&y, &x).unwrap()).abs() < 1e-12);
        prop_assert!((-1.0..=1.0).contains(&s));
    }

    #[test]
    fn spearman_ignores_monotone_transforms((x, y) in paired_floats()) {
        let Ok(s) = metrics::spearman(&x, &y) else { return Ok(()); };
        let squashed: Vec<f64> = x.iter().map(|v| v.atan() * 3.0 + 7.0).collect();
        if let Ok(s2) = metrics::spearman(&squashed, &y) {
            // atan can merge nearly equal values into ties; only compare when ranks survive
            let distinct = |v: &[f64]| { let mut w = v.to_vec(); w.sort_by(f64::total_cmp); w.dedup(); w.len() };
            if distinct(&squashed) == distinct(&x) {
                prop_assert!((s - s2).abs() < 1e-9);
            }
        }
        let linear: Vec<f64> = x.iter().map(|v| 2.5 * v - 4.0).collect();
        prop_assert!((metrics::pearson(&linear, &x).unwrap() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn squad_prediction_equal_to_reference_is_perfect(answers in prop::collection::vec(sentence(), 1..8)) {
        let references: Vec<Vec<String>> = answers.iter().map(|a| vec![a.clone()]).collect();
        let v2 = squad::squad_v2(&answers, &references, &Default::default()).unwrap();
        prop_assert_eq!(v2.exact, 100.0);
        prop_assert!((v2.f1 - 100.0).abs() < 1e-9);
        let v1 = squad::squad_v1(&answers, &references).unwrap();
        prop_assert_eq!(v1.exact_match, 100.0);
        // v1.1 gives F1 = 0 to answers that normalise to nothing (e.g. "the"), by design
        if answers.iter().all(|a| !squad::normalize_answer(a).is_empty()) {
            prop_assert!((v1.f1 - 100.0).abs() < 1e-9);
        }
    }

    #[test]
    fn squad_scores_stay_in_range(preds in prop::collection::vec(sentence(), 1..8), golds in prop::collection::vec(prop::collection::vec(sentence(), 0..3), 1..8)) {
        let n = preds.len().min(golds.len());
        let s = squad::squad_v2(&preds[..n], &golds[..n], &Default::default()).unwrap();
        prop_assert!((0.0..=100.0).contains(&s.exact) && (0.0..=100.0).contains(&s.f1));
        prop_assert!(s.exact <= s.f1 + 1e-9, "EM {} > F1 {}", s.exact, s.f1);
    }

    #[test]
    fn rouge_of_identical_text_is_one(text in sentence(), other in sentence()) {
        let [r1, r2, rl, rlsum] = rouge::score_pair(&text, &text);
        let tokens = rouge::tokenize(&text);
        if !tokens.is_empty() {
            prop_assert!((r1.fmeasure - 1.0).abs() < 1e-12);
            prop_assert!((rl.fmeasure - 1.0).abs() < 1e-12);
            prop_assert!((rlsum.fmeasure - 1.0).abs() < 1e-12);
        }
        if tokens.len() >= 2 {
            prop_assert!((r2.fmeasure - 1.0).abs() < 1e-12);
        }
        for s in rouge::score_pair(&other, &text) {
            prop_assert!((0.0..=1.0).contains(&s.precision));
            prop_assert!((0.0..=1.0).contains(&s.recall));
            prop_assert!((0.0..=1.0).contains(&s.fmeasure));
        }
    }

    #[test]
    fn bleu_of_identical_corpus_is_100(corpus in prop::collection::vec(sentence(), 1..6)) {
        let references: Vec<Vec<String>> = corpus.iter().map(|s| vec![s.clone()]).collect();
        let score = bleu::corpus_bleu(&corpus, &references).unwrap();
        if score.totals[3] > 0 {
            prop_assert!((score.score - 100.0).abs() < 1e-9, "{:?}", score);
        }
    }

    #[test]
    fn bleu_stays_in_range(hyps in prop::collection::vec(sentence(), 1..6), refs in prop::collection::vec(prop::collection::vec(sentence(), 1..3), 1..6)) {
        let n = hyps.len().min(refs.len());
        let score = bleu::corpus_bleu(&hyps[..n], &refs[..n]).unwrap();
        prop_assert!((0.0..=100.0 + 1e-9).contains(&score.score));
    }
}
