//! The two comparisons of RESULTS.md beyond the method tables: whether stage 1's proxy transfers
//! to the full model, and which stage-3 selection rule wins on test.

use serde_json::Value;

/// The BOMF rows of `results.json`, one per selection rule.
pub const SELECTION_ROWS: [&str; 3] = [
    "BOMF (posterior mean)",
    "BOMF (highest metric)",
    "BOMF (knee)",
];

/// `### Stage 1` of a task: per seed, the best hyperparameters of the proxy search and of the
/// same search on the full model (HPBO-full), then the Spearman rank correlation of the two
/// objectives over the trial points both evaluated. Both searches start from the same Sobol
/// design (same seed, same space), so those points are shared; seeds draw different designs and
/// are pooled. `None` when no run has stage-1 trials.
pub fn proxy_transfer(runs: &[(u64, &Value)]) -> Option<String> {
    if !runs
        .iter()
        .any(|(_, v)| !trials(v, "hpbo_trials").is_empty())
    {
        return None;
    }
    let mut md = String::from(
        "\n### Stage 1: does the proxy transfer?\n\nBest trial of the proxy search (stage 1) and \
         of the same search on the full model (HPBO-full); objective = best validation metric \
         along the trial.\n\n| seed | proxy lr | proxy batch | proxy best | full lr | full batch \
         | full best |\n|---|---|---|---|---|---|---|\n",
    );
    let (mut proxy, mut full) = (Vec::new(), Vec::new());
    for (seed, v) in runs {
        let p = trials(v, "hpbo_trials");
        let f = trials(v, "hpbo_full_trials");
        md += &format!("| {seed} | {} | {} |\n", best_cells(&p), best_cells(&f));
        for t in &p {
            if let Some(u) = f.iter().find(|u| same_point(t, u)) {
                proxy.push(t.objective);
                full.push(u.objective);
            }
        }
    }
    md += &match spearman(&proxy, &full) {
        Some(rho) => format!(
            "\nSpearman ρ between proxy and full-model objectives over the {} shared trial \
             points: **{rho:.2}**.\n",
            proxy.len()
        ),
        None => format!(
            "\nSpearman ρ: not defined ({} shared trial points; HPBO-full needs \
             `[baselines] hpbo_full = true`).\n",
            proxy.len()
        ),
    };
    Some(md)
}

/// One stage-1 trial of `results.json`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Trial {
    learning_rate: f64,
    batch_size: Option<u64>,
    /// Best validation metric; NaN for a failed trial.
    objective: f64,
}

fn trials(v: &Value, key: &str) -> Vec<Trial> {
    v[key]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| {
            Some(Trial {
                learning_rate: t["hyperparams"]["learning_rate"].as_f64()?,
                batch_size: t["hyperparams"]["batch_size"].as_u64(),
                objective: t["result"]["best_metric"].as_f64().unwrap_or(f64::NAN),
            })
        })
        .collect()
}

fn same_point(a: &Trial, b: &Trial) -> bool {
    (a.learning_rate - b.learning_rate).abs() <= 1e-9 * a.learning_rate.abs()
        && a.batch_size == b.batch_size
}

/// `lr | batch | best` of the best finite trial, or dashes.
fn best_cells(trials: &[Trial]) -> String {
    let best = trials
        .iter()
        .filter(|t| t.objective.is_finite())
        .max_by(|a, b| a.objective.total_cmp(&b.objective));
    match best {
        Some(t) => format!(
            "{:.2e} | {} | {:.4}",
            t.learning_rate,
            t.batch_size.map_or("—".into(), |b| b.to_string()),
            t.objective
        ),
        None => "— | — | —".into(),
    }
}

/// Spearman's ρ: Pearson's correlation of the ranks (ties get their average rank), over the
/// pairs where both values are finite; `None` below 3 pairs or for a constant side.
pub fn spearman(a: &[f64], b: &[f64]) -> Option<f64> {
    let (a, b): (Vec<f64>, Vec<f64>) = a
        .iter()
        .zip(b)
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .map(|(x, y)| (*x, *y))
        .unzip();
    if a.len() < 3 {
        return None;
    }
    pearson(&ranks(&a), &ranks(&b))
}

/// 1-based ranks, ties averaged.
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
    let mut out = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            out[k] = rank;
        }
        i = j + 1;
    }
    out
}

fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    (va > 0.0 && vb > 0.0).then(|| cov / (va * vb).sqrt())
}

/// `### Selection rules` (before the task sections): over every (task, seed), the test metric of each BOMF selection rule's
/// pick: wins (ties shared), mean rank among the three, and the mean relative difference (%) to
/// the posterior-mean rule. `metric_of(run)` names the metric a run optimised.
pub fn selection_rules(
    results: &[(String, u64, Value)],
    metric_of: impl Fn(&Value) -> String,
) -> String {
    let mut wins = [0.0f64; 3];
    let mut rank_sum = [0.0f64; 3];
    let mut diff_sum = [0.0f64; 3];
    let mut n = 0usize;
    for (_, _, v) in results {
        let metric = metric_of(v);
        let scores: Option<Vec<f64>> = SELECTION_ROWS
            .iter()
            .map(|row| {
                v["methods"]
                    .as_array()?
                    .iter()
                    .find(|m| m["method"] == *row)?["test"]["metrics"][metric.as_str()]
                .as_f64()
            })
            .collect();
        let Some(scores) = scores else { continue };
        n += 1;
        let best = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let winners = scores.iter().filter(|&&s| s == best).count() as f64;
        // Higher is better: rank 1 for the best, ties averaged.
        let negated: Vec<f64> = scores.iter().map(|s| -s).collect();
        for (i, (s, r)) in scores.iter().zip(ranks(&negated)).enumerate() {
            if *s == best {
                wins[i] += 1.0 / winners;
            }
            rank_sum[i] += r;
            // Relative to the posterior-mean pick, so accuracies and exact-match points mix.
            diff_sum[i] += 100.0 * (s - scores[0]) / scores[0].abs().max(f64::MIN_POSITIVE);
        }
    }
    let mut md = format!(
        "\n### Selection rules, all tasks\n\nWhich Pareto point stage 3 returns, judged on test over the \
         {n} (task, seed) runs of this reproduction: wins (ties shared), mean rank among the \
         three (1 = best) and the mean relative test-metric difference to the posterior-mean rule.\n\n\
         | rule | wins | mean rank | mean Δ vs posterior mean (%) |\n|---|---|---|---|\n"
    );
    for (i, row) in SELECTION_ROWS.iter().enumerate() {
        md += &if n == 0 {
            format!("| {row} | — | — | — |\n")
        } else {
            format!(
                "| {row} | {:.1} | {:.2} | {:+.2} |\n",
                wins[i],
                rank_sum[i] / n as f64,
                diff_sum[i] / n as f64
            )
        };
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against scipy.stats.spearmanr: the cases bomf-data's generator script
    /// (bomf-data/tests/fixtures/metrics/gen_metrics.py) wrote for its own Spearman metric.
    #[test]
    fn spearman_matches_scipy() {
        let fixture: Value = serde_json::from_str(include_str!(
            "../../bomf-data/tests/fixtures/metrics/regression.json"
        ))
        .unwrap();
        let floats = |v: &Value| -> Vec<f64> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        };
        let mut checked = 0;
        for case in fixture["cases"].as_array().unwrap() {
            let (a, b) = (floats(&case["x"]), floats(&case["y"]));
            let (Some(got), Some(want)) = (spearman(&a, &b), case["spearman"].as_f64()) else {
                continue;
            };
            assert!(
                (got - want).abs() < 1e-12,
                "{}: {got} vs {want}",
                case["name"]
            );
            checked += 1;
        }
        assert!(checked >= 5, "only {checked} cases");
        assert_eq!(spearman(&[1.0, 2.0], &[2.0, 1.0]), None);
        assert_eq!(spearman(&[1.0, 1.0, 1.0], &[2.0, 1.0, 3.0]), None);
        // Failed trials (NaN) are left out.
        let r = spearman(&[1.0, 2.0, f64::NAN, 3.0], &[1.0, 2.0, 5.0, 3.0]).unwrap();
        assert!((r - 1.0).abs() < 1e-12);
    }

    fn trial(lr: f64, bs: u64, metric: f64) -> Value {
        serde_json::json!({"hyperparams": {"learning_rate": lr, "batch_size": bs},
                           "result": {"best_metric": metric}})
    }

    #[test]
    fn proxy_transfer_pairs_the_shared_design_points_across_seeds() {
        let run = |offset: f64| {
            serde_json::json!({
                "hpbo_trials": [trial(1e-4 + offset, 16, 0.5), trial(2e-4 + offset, 32, 0.6),
                                trial(3e-4 + offset, 64, 0.7), trial(9e-4, 8, 0.9)],
                "hpbo_full_trials": [trial(1e-4 + offset, 16, 0.55), trial(2e-4 + offset, 32, 0.75),
                                     trial(3e-4 + offset, 64, 0.7), trial(5e-5, 8, 0.2)]
            })
        };
        let (a, b) = (run(0.0), run(1e-5));
        let md = proxy_transfer(&[(0, &a), (1, &b)]).unwrap();
        assert!(
            md.contains("| 0 | 9.00e-4 | 8 | 0.9000 | 2.00e-4 | 32 | 0.7500 |"),
            "{md}"
        );
        assert!(md.contains("over the 6 shared trial points"), "{md}");
        let none = serde_json::json!({"hpbo_trials": []});
        assert!(proxy_transfer(&[(0, &none)]).is_none());
    }

    #[test]
    fn selection_rules_count_wins_ranks_and_differences() {
        let run = |pm: f64, hm: f64, knee: f64| {
            serde_json::json!({"metric": "accuracy", "methods": [
                {"method": SELECTION_ROWS[0], "test": {"metrics": {"accuracy": pm}}},
                {"method": SELECTION_ROWS[1], "test": {"metrics": {"accuracy": hm}}},
                {"method": SELECTION_ROWS[2], "test": {"metrics": {"accuracy": knee}}}]})
        };
        let results = vec![
            ("a".to_string(), 0, run(0.8, 0.7, 0.8)),
            ("a".to_string(), 1, run(0.6, 0.9, 0.7)),
        ];
        let md = selection_rules(&results, |v| v["metric"].as_str().unwrap().to_string());
        assert!(md.contains("over the 2 (task, seed) runs"), "{md}");
        assert!(
            md.contains("| BOMF (posterior mean) | 0.5 | 2.25 | +0.00 |"),
            "{md}"
        );
        assert!(
            md.contains("| BOMF (highest metric) | 1.0 | 2.00 | +18.75 |"),
            "{md}"
        );
        assert!(md.contains("| BOMF (knee) | 0.5 | 1.75 | +8.33 |"), "{md}");
    }
}
