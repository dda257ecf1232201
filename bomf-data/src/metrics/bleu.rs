//! Corpus BLEU as `sacrebleu.corpus_bleu` computes it with its defaults: the `13a` tokenizer
//! (mteval-v13a, as used by WMT), no lowercasing, n-grams up to 4, `exp` smoothing, no effective
//! order, score on a 0–100 scale.
//!
//! Statistics are summed over the whole corpus before the score is formed (which is what makes it
//! corpus BLEU, not a mean of sentence BLEUs): clipped n-gram matches against the per-n-gram
//! maximum count over an example's references, hypothesis length, and for each example the
//! reference length closest to the hypothesis length (the shorter one on ties).

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

use super::pytext::{rstrip, split_whitespace};
use super::{MetricResult, reference_pairs};

/// Largest n-gram order.
pub const MAX_ORDER: usize = 4;

/// The corpus score with the statistics it was formed from (sacrebleu's `BLEUScore`).
#[derive(Debug, Clone, PartialEq)]
pub struct BleuScore {
    /// BLEU, 0–100.
    pub score: f64,
    /// Clipped matches per order 1..=4.
    pub counts: [u64; MAX_ORDER],
    /// Hypothesis n-grams per order 1..=4.
    pub totals: [u64; MAX_ORDER],
    /// Smoothed precisions per order, in percent.
    pub precisions: [f64; MAX_ORDER],
    /// Brevity penalty.
    pub brevity_penalty: f64,
    /// Total hypothesis length in tokens.
    pub sys_len: u64,
    /// Total effective reference length in tokens.
    pub ref_len: u64,
}

/// The four substitutions of sacrebleu's `TokenizerRegexp`, in order.
static REGEXP_STEPS: LazyLock<[(Regex, &'static str); 4]> = LazyLock::new(|| {
    let compile = |pattern: &str| Regex::new(pattern).expect("static regex is valid");
    [
        // ASCII symbols and punctuation other than . , - and ' become tokens of their own:
        // { | } ~  [ \ ] ^ _ `  space ! " # $ % &  ( ) * +  : ; < = > ? @  /
        (compile(r"([{-~\[-`\x20-&(-+:-@/])"), " ${1} "),
        // period and comma, unless preceded by a digit
        (compile(r"([^0-9])([.,])"), "${1} ${2} "),
        // period and comma, unless followed by a digit
        (compile(r"([.,])([^0-9])"), " ${1} ${2}"),
        // dash preceded by a digit
        (compile(r"([0-9])(-)"), "${1} ${2} "),
    ]
});

/// sacrebleu's `13a` tokenizer, after the `rstrip` sacrebleu applies to every segment.
pub fn tokenize_13a(line: &str) -> Vec<String> {
    let mut text = rstrip(line)
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if text.contains('&') {
        text = text
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let mut text = format!(" {text} ");
    for (pattern, replacement) in REGEXP_STEPS.iter() {
        text = pattern.replace_all(&text, *replacement).into_owned();
    }
    split_whitespace(&text).map(str::to_owned).collect()
}

fn ngram_counts(tokens: &[String]) -> HashMap<&[String], u64> {
    let mut counts = HashMap::new();
    for n in 1..=MAX_ORDER {
        if tokens.len() >= n {
            for gram in tokens.windows(n) {
                *counts.entry(gram).or_insert(0) += 1;
            }
        }
    }
    counts
}

/// sacrebleu's `my_log`: log, with log(0) floored to -9999999999.
fn floored_log(x: f64) -> f64 {
    if x == 0.0 { -9_999_999_999.0 } else { x.ln() }
}

/// Corpus BLEU of `hypotheses` against `references` (one list of references per hypothesis; the
/// lists may differ in length but not be empty).
pub fn corpus_bleu<P, R, S>(hypotheses: &[P], references: &[R]) -> MetricResult<BleuScore>
where
    P: AsRef<str>,
    R: AsRef<[S]>,
    S: AsRef<str>,
{
    let mut counts = [0u64; MAX_ORDER];
    let mut totals = [0u64; MAX_ORDER];
    let (mut sys_len, mut ref_len) = (0u64, 0u64);
    for (hypothesis, refs) in reference_pairs("bleu", "hypotheses", hypotheses, references)? {
        let ref_tokens: Vec<Vec<String>> = refs.iter().map(|r| tokenize_13a(r.as_ref())).collect();
        let mut max_ref_counts: HashMap<&[String], u64> = HashMap::new();
        for tokens in &ref_tokens {
            for (gram, count) in ngram_counts(tokens) {
                let slot = max_ref_counts.entry(gram).or_insert(0);
                *slot = (*slot).max(count);
            }
        }
        let hyp_tokens = tokenize_13a(hypothesis);
        let hyp_len = hyp_tokens.len();
        // closest reference length, the shorter one on ties
        let closest = ref_tokens
            .iter()
            .map(Vec::len)
            .min_by_key(|&len| (len.abs_diff(hyp_len), len))
            .unwrap_or(0);
        sys_len += hyp_len as u64;
        ref_len += closest as u64;
        for (gram, count) in ngram_counts(&hyp_tokens) {
            let order = gram.len() - 1;
            totals[order] += count;
            counts[order] += count.min(max_ref_counts.get(gram).copied().unwrap_or(0));
        }
    }
    Ok(score_from_statistics(counts, totals, sys_len, ref_len))
}

/// sacrebleu's `compute_bleu` with `smooth_method="exp"` and `effective_order=False`.
fn score_from_statistics(
    counts: [u64; MAX_ORDER],
    totals: [u64; MAX_ORDER],
    sys_len: u64,
    ref_len: u64,
) -> BleuScore {
    let brevity_penalty = if sys_len < ref_len {
        if sys_len > 0 {
            (1.0 - ref_len as f64 / sys_len as f64).exp()
        } else {
            0.0
        }
    } else {
        1.0
    };
    let mut precisions = [0.0f64; MAX_ORDER];
    let result = |score: f64, precisions: [f64; MAX_ORDER]| BleuScore {
        score,
        counts,
        totals,
        precisions,
        brevity_penalty,
        sys_len,
        ref_len,
    };
    if counts.iter().all(|&c| c == 0) {
        return result(0.0, precisions);
    }
    let mut smooth = 1.0f64;
    for n in 0..MAX_ORDER {
        if totals[n] == 0 {
            break;
        }
        precisions[n] = if counts[n] == 0 {
            // NIST-style "exp" smoothing: 1 / 2^k for the k-th order without matches
            smooth *= 2.0;
            100.0 / (smooth * totals[n] as f64)
        } else {
            100.0 * counts[n] as f64 / totals[n] as f64
        };
    }
    let mean_log = precisions.iter().map(|&p| floored_log(p)).sum::<f64>() / MAX_ORDER as f64;
    result(brevity_penalty * mean_log.exp(), precisions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_13a_splits_like_mteval() {
        assert_eq!(
            tokenize_13a("Prices rose 3.5% in 1999-2000, (really)."),
            [
                "Prices", "rose", "3.5", "%", "in", "1999", "-", "2000", ",", "(", "really", ")",
                "."
            ]
        );
        assert_eq!(
            tokenize_13a("long-\nterm &amp; co"),
            ["longterm", "&", "co"]
        );
    }
}
