//! `report/` of a search: `report.md` (the checkpoints, the chosen fusion, every candidate) and
//! the plots `bomf run` draws (the Pareto front when there is one objective of each direction,
//! the hypervolume per evaluation).

use std::fmt::Write as _;

use super::SearchResults;
use super::config::{Direction, SearchConfig};
use crate::error::Result;
use crate::fusion_bo::FusionSearch;
use crate::report::{
    EvalOrigin, FusionPoint, HYPERVOLUME_SVG_FILE, HypervolumeTrace, LabelledPoint,
    PARETO_SVG_FILE, ParetoPlot, REPORT_MARKDOWN_FILE, fmt_num, render_hypervolume_svg,
    render_pareto_svg,
};
use crate::rundir::RunDir;

/// Writes the plots, then `report.md`.
pub fn write(
    run: &RunDir,
    config: &SearchConfig,
    search: &FusionSearch,
    results: &SearchResults,
) -> Result<()> {
    let dir = run.report_dir();
    let mut plots = String::new();
    let trace = HypervolumeTrace {
        per_step: results.hypervolume.clone(),
        initial_design_len: search.records.iter().filter(|r| r.initial).count(),
    };
    let pareto = pareto_plot(config, search, results)
        .map(|plot| render_pareto_svg(&plot))
        .transpose()?;
    let hypervolume = (!trace.per_step.is_empty())
        .then(|| render_hypervolume_svg(&trace))
        .transpose()?;
    let svgs = [
        (PARETO_SVG_FILE, "Pareto front", pareto),
        (
            HYPERVOLUME_SVG_FILE,
            "Hypervolume per evaluation (of the normalised objectives: 0 = the worst checkpoint, \
             1 = the best)",
            hypervolume,
        ),
    ];
    for (file, title, svg) in svgs {
        let Some(svg) = svg else { continue };
        crate::rundir::write_atomic(&dir.join(file), svg.as_bytes())?;
        let _ = writeln!(plots, "### {title}\n\n![{title}]({file})\n");
    }
    let md = markdown(config, search, results) + "## Plots\n\n" + &plots;
    crate::rundir::write_atomic(&dir.join(REPORT_MARKDOWN_FILE), md.as_bytes())?;
    Ok(())
}

/// The (metric, loss) plane of `bomf run`'s plot: the maximised objective up, the minimised
/// one along; `None` unless the search has exactly one of each.
fn pareto_plot(
    config: &SearchConfig,
    search: &FusionSearch,
    results: &SearchResults,
) -> Option<ParetoPlot> {
    let [a, b] = config.objectives.as_slice() else {
        return None;
    };
    let (up, along) = match (a.direction, b.direction) {
        (Direction::Maximize, Direction::Minimize) => (a, b),
        (Direction::Minimize, Direction::Maximize) => (b, a),
        _ => return None,
    };
    let point = |values: &std::collections::BTreeMap<String, f64>| {
        (
            values.get(&up.name).copied(),
            values.get(&along.name).copied(),
        )
    };
    let fusions = search
        .records
        .iter()
        .filter_map(|r| {
            let (metric, loss) = point(&r.validation.as_ref()?.metrics);
            Some(FusionPoint {
                metric: metric?,
                loss: loss?,
                origin: if r.initial {
                    EvalOrigin::InitialDesign
                } else {
                    EvalOrigin::Acquired
                },
            })
        })
        .collect();
    let labelled = |label: &str, values: &std::collections::BTreeMap<String, f64>| {
        let (metric, loss) = point(values);
        Some(LabelledPoint {
            label: label.to_owned(),
            metric: metric?,
            loss: loss?,
        })
    };
    Some(ParetoPlot {
        metric_name: format!("{} (x axis: {})", up.name, along.name),
        higher_metric_is_better: true,
        fusions,
        checkpoints: results
            .checkpoints
            .iter()
            .zip(&results.checkpoint_values)
            .filter_map(|(l, v)| labelled(l, v))
            .collect(),
        baselines: Vec::new(),
        chosen: labelled("chosen", &results.chosen_values),
    })
}

fn markdown(config: &SearchConfig, search: &FusionSearch, results: &SearchResults) -> String {
    let names = config.objective_names();
    let header = |first: &str| {
        let mut h = format!("| {first} |");
        let mut rule = String::from("|---|");
        for o in &config.objectives {
            let arrow = match o.direction {
                Direction::Maximize => "↑",
                Direction::Minimize => "↓",
            };
            let _ = write!(h, " {} {arrow} |", o.name);
            rule.push_str("---:|");
        }
        (h, rule)
    };
    let cells = |values: &std::collections::BTreeMap<String, f64>| {
        names
            .iter()
            .map(|n| fmt_num(values.get(n).copied().unwrap_or(f64::NAN), 4))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let mut md = String::from("# bomf search\n\n");
    let _ = writeln!(
        md,
        "{} checkpoints, {} fusions evaluated ({} failed), {} worker(s); chosen by `{}`.\n",
        results.checkpoints.len(),
        results.evaluations,
        results.failed,
        config.workers,
        serde_json::to_value(config.search.selection)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    );
    md.push_str("## Checkpoints\n\n");
    let (h, rule) = header("Checkpoint");
    let _ = writeln!(md, "{h}\n{rule}");
    for (label, values) in results.checkpoints.iter().zip(&results.checkpoint_values) {
        let _ = writeln!(md, "| {label} | {} |", cells(values));
    }
    md.push_str("\n## Chosen fusion\n\n| Checkpoint | Weight |\n|---|---:|\n");
    for (label, w) in results.checkpoints.iter().zip(&results.chosen_weights) {
        let _ = writeln!(md, "| {label} | {} |", fmt_num(*w, 4));
    }
    let _ = writeln!(md, "\nValues: {}\n", cells(&results.chosen_values));
    md.push_str("## Every fusion\n\n");
    let (h, rule) = header("#");
    let _ = writeln!(md, "{h} Pareto | Weights |\n{rule}:---:|---|");
    for (i, r) in search.records.iter().enumerate() {
        let values = r
            .validation
            .as_ref()
            .map(|e| e.metrics.clone())
            .unwrap_or_default();
        let mark = if i == results.chosen {
            "chosen"
        } else if results.pareto.contains(&i) {
            "✓"
        } else if r.validation.is_none() {
            "failed"
        } else {
            ""
        };
        let weights: Vec<String> = r.weights.iter().map(|w| fmt_num(*w, 3)).collect();
        let _ = writeln!(
            md,
            "| {} | {} | {mark} | [{}] |",
            i + 1,
            cells(&values),
            weights.join(", ")
        );
    }
    md.push('\n');
    md
}
