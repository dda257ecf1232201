//! RESULTS.md of `cargo xtask reproduce`: per task, each method's test and validation metric
//! (the one stage 3 optimised), mean ± std over seeds, then seed by seed.

/// RESULTS.md: per task, each method's test and validation metric, mean ± std over seeds.
pub fn results_markdown(results: &[(String, u64, serde_json::Value)]) -> String {
    let mut md = String::from(
        "# BOMF reproduction\n\nMean ± std over seeds of each method's metric (the one stage 3 optimises with the loss) on the held-out test split and on validation; `cargo xtask reproduce`.\n",
    );
    md += &crate::comparisons::selection_rules(results, primary_metric);
    let mut tasks: Vec<&String> = results.iter().map(|(t, _, _)| t).collect();
    tasks.dedup();
    for task in tasks {
        let runs: Vec<&serde_json::Value> = results
            .iter()
            .filter(|(t, _, _)| t == task)
            .map(|(_, _, v)| v)
            .collect();
        let metric = runs
            .first()
            .map(|v| primary_metric(v))
            .unwrap_or_else(|| "metric".into());
        md += &format!(
            "\n## {task} ({} seed{})\n\n| method | test {metric} | validation {metric} | test loss |\n|---|---|---|---|\n",
            runs.len(),
            if runs.len() == 1 { "" } else { "s" }
        );
        let mut methods: Vec<String> = Vec::new();
        for v in &runs {
            for m in v["methods"].as_array().into_iter().flatten() {
                if let Some(name) = m["method"].as_str()
                    && !methods.iter().any(|x| x == name)
                {
                    methods.push(name.to_string());
                }
            }
        }
        for name in &methods {
            let pick = |split: &str, key: Option<&str>| -> Vec<f64> {
                runs.iter()
                    .filter_map(|v| {
                        let m = v["methods"]
                            .as_array()?
                            .iter()
                            .find(|m| m["method"] == name.as_str())?;
                        match key {
                            Some(k) => m[split]["metrics"][k].as_f64(),
                            None => m[split]["loss"].as_f64(),
                        }
                    })
                    .collect()
            };
            md += &format!(
                "| {name} | {} | {} | {} |\n",
                mean_std(&pick("test", Some(&metric))),
                mean_std(&pick("validation", Some(&metric))),
                mean_std(&pick("test", None))
            );
        }
        // The same numbers seed by seed: the methods share each seed's trajectory, so the
        // comparison that matters is within a column (e.g. which selection rule wins).
        let seeds: Vec<u64> = results
            .iter()
            .filter(|(t, _, _)| t == task)
            .map(|(_, s, _)| *s)
            .collect();
        md += &format!("\nTest {metric} per seed:\n\n| method |");
        for s in &seeds {
            md += &format!(" seed {s} |");
        }
        md += "\n|---|";
        md += &"---|".repeat(seeds.len());
        md += "\n";
        for name in &methods {
            md += &format!("| {name} |");
            for v in &runs {
                let value = v["methods"]
                    .as_array()
                    .and_then(|ms| ms.iter().find(|m| m["method"] == name.as_str()))
                    .and_then(|m| m["test"]["metrics"][metric.as_str()].as_f64());
                md += &match value {
                    Some(x) => format!(" {x:.4} |"),
                    None => " — |".into(),
                };
            }
            md += "\n";
        }
        let seeded: Vec<(u64, &serde_json::Value)> = seeds.iter().copied().zip(runs).collect();
        md += &provenance_line(&seeded);
        if let Some(stage1) = crate::comparisons::proxy_transfer(&seeded) {
            md += &stage1;
        }
    }
    md
}

/// Which commit and day made each seed's run (the archive's `provenance`, see
/// [`crate::archive`]), so a table mixing runs of several binaries says so.
fn provenance_line(runs: &[(u64, &serde_json::Value)]) -> String {
    let made: Vec<String> = runs
        .iter()
        .filter_map(|(seed, v)| {
            let p = &v["provenance"];
            Some(format!(
                "seed {seed} at `{}` ({})",
                p["commit"].as_str()?,
                p["date"].as_str().unwrap_or("?")
            ))
        })
        .collect();
    if made.is_empty() {
        return String::new();
    }
    format!("\nRuns: {}.\n", made.join(", "))
}

/// The metric a run's stage 3 optimised (`results.json`'s `metric`); for a run that does not
/// say, its first reported one.
pub fn primary_metric(results: &serde_json::Value) -> String {
    match results["metric"].as_str() {
        Some(metric) if !metric.is_empty() => metric.to_owned(),
        _ => results["methods"][0]["test"]["metrics"]
            .as_object()
            .and_then(|m| m.keys().next().cloned())
            .unwrap_or_else(|| "metric".into()),
    }
}

/// The `## task` sections of an earlier RESULTS.md whose task has no run in `results`, each
/// marked as kept from the earlier file.
pub fn sections_not_rerun(previous: &str, results: &[(String, u64, serde_json::Value)]) -> String {
    const KEPT: &str =
        "_Kept from the previous RESULTS.md: no run of this task in this reproduction._";
    let mut kept = String::new();
    for section in previous.split("\n## ").skip(1) {
        let task = section.split_whitespace().next().unwrap_or_default();
        if results.iter().any(|(t, _, _)| t == task) {
            continue;
        }
        let (heading, body) = section.split_once('\n').unwrap_or((section, ""));
        let body = body.trim_start_matches('\n');
        let body = body
            .strip_prefix(KEPT)
            .map_or(body, |rest| rest.trim_start_matches('\n'));
        kept += &format!("\n## {heading}\n\n{KEPT}\n\n{}", body.trim_end());
        kept.push('\n');
    }
    kept
}

fn mean_std(values: &[f64]) -> String {
    if values.is_empty() {
        return "—".into();
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    format!("{mean:.4} ± {:.4}", var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_compare_methods_on_the_metric_stage_3_optimised() {
        // Metrics serialise alphabetically: BLEU comes before the exact match that was optimised.
        let run = serde_json::json!({"metric": "exact_match", "methods": [
            {"method": "BOMF", "test": {"loss": 1.0, "metrics": {"bleu": 9.0, "exact_match": 40.0}},
             "validation": {"loss": 1.0, "metrics": {"bleu": 8.0, "exact_match": 50.0}}}
        ]});
        let md = results_markdown(&[("trec".into(), 0, run.clone())]);
        assert!(
            md.contains("| method | test exact_match | validation exact_match |"),
            "{md}"
        );
        assert!(
            md.contains("| BOMF | 40.0000 ± 0.0000 | 50.0000 ± 0.0000 |"),
            "{md}"
        );
        // A run that does not name its metric is compared on its first one.
        let mut unnamed = run;
        unnamed.as_object_mut().unwrap().remove("metric");
        assert_eq!(primary_metric(&unnamed), "bleu");
    }

    #[test]
    fn results_table_has_mean_and_std_per_method() {
        let run = |acc: f64| {
            serde_json::json!({"methods": [
                {"method": "BOMF", "test": {"loss": 1.0, "metrics": {"accuracy": acc}},
                 "validation": {"loss": 1.0, "metrics": {"accuracy": acc}}},
                {"method": "SWA", "test": {"loss": 2.0, "metrics": {"accuracy": 0.5}},
                 "validation": {"loss": 2.0, "metrics": {"accuracy": 0.5}}}
            ]})
        };
        let md = results_markdown(&[
            ("banking77".into(), 0, run(0.6)),
            ("banking77".into(), 1, run(0.7)),
        ]);
        assert!(md.contains("| BOMF | 0.6500 ± 0.0707 |"), "{md}");
        assert!(md.contains("| SWA | 0.5000 ± 0.0000 |"), "{md}");
        assert!(md.contains("## banking77 (2 seeds)"));
        assert!(md.contains("| method | seed 0 | seed 1 |"), "{md}");
        assert!(md.contains("| BOMF | 0.6000 | 0.7000 |"), "{md}");
        assert!(!md.contains("Runs:"), "no provenance, no line: {md}");
        let mut archived = run(0.6);
        archived["provenance"] = serde_json::json!({"commit": "abc1234", "date": "2026-12-07"});
        let md_archived = results_markdown(&[("banking77".into(), 2, archived)]);
        assert!(
            md_archived.contains("Runs: seed 2 at `abc1234` (2026-12-07)."),
            "{md_archived}"
        );

        // Rerunning another task keeps this one's section, marked, once.
        let other = results_markdown(&[("rotten-tomatoes".into(), 0, run(0.4))]);
        let merged =
            other.clone() + &sections_not_rerun(&md, &[("rotten-tomatoes".into(), 0, run(0.4))]);
        assert!(merged.contains("## rotten-tomatoes (1 seed)"), "{merged}");
        assert!(
            merged.contains("## banking77 (2 seeds)\n\n_Kept from"),
            "{merged}"
        );
        assert!(merged.contains("| BOMF | 0.6500 ± 0.0707 |"), "{merged}");
        let again =
            other + &sections_not_rerun(&merged, &[("rotten-tomatoes".into(), 1, run(0.5))]);
        assert_eq!(again.matches("_Kept from").count(), 1, "{again}");
        assert_eq!(again.matches("## banking77").count(), 1, "{again}");
        // A rerun of the task replaces its section.
        let rerun = sections_not_rerun(&merged, &[("banking77".into(), 0, run(0.6))]);
        assert!(!rerun.contains("## banking77"), "{rerun}");
    }
}
