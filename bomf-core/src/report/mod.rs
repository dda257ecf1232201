//! The run report: `report.md` with the final table and the chosen weights, plus SVG plots of
//! what BOMF did (the Pareto front of validation metric vs loss, hypervolume per BO step, the
//! fine-tuning learning curve).
//!
//! Inputs are plain structs the pipeline fills in, so the report can be rebuilt from a run
//! directory's files at any time. Non-finite numbers (a diverged run, a metric not computed)
//! never crash a plot: they are left out of plots and shown as "—" in tables.
//!
//! Plots are SVG only: `plotters` is built without font loading (no C libraries), and SVG text
//! is laid out by the viewer, so no font file needs shipping.

mod plots;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::rundir::{self, RunDirError};

pub use plots::{render_hypervolume_svg, render_learning_curve_svg, render_pareto_svg};

/// File names inside the report folder.
pub const REPORT_MARKDOWN_FILE: &str = "report.md";
pub const PARETO_SVG_FILE: &str = "pareto.svg";
pub const HYPERVOLUME_SVG_FILE: &str = "hypervolume.svg";
pub const LEARNING_CURVE_SVG_FILE: &str = "learning_curve.svg";

/// Shown in tables for a missing or non-finite number.
pub const MISSING: &str = "—";

#[derive(Debug, Error)]
pub enum ReportError {
    /// An input that must have content has none (`what` names it).
    #[error("{what} is empty: nothing to report")]
    Empty { what: String },

    /// Inputs that contradict each other (e.g. 3 weights for 4 checkpoint labels).
    #[error("{what}: {message}")]
    InvalidInput { what: String, message: String },

    /// `plotters` failed to draw `plot`.
    #[error("drawing {plot}: {message}")]
    Plot { plot: String, message: String },

    /// Writing a report file failed.
    #[error(transparent)]
    Write(#[from] RunDirError),
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, ReportError>;

/// How a fused model's weights were chosen during Bayesian optimisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EvalOrigin {
    /// A point of the space-filling initial design (e.g. Sobol), before the model guides.
    InitialDesign,
    /// A point the acquisition function asked for.
    Acquired,
}

/// One evaluated fusion: its validation metric and loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FusionPoint {
    pub metric: f64,
    pub loss: f64,
    pub origin: EvalOrigin,
}

/// A named model on the (loss, metric) plane: a checkpoint, a baseline, the chosen fusion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelledPoint {
    pub label: String,
    pub metric: f64,
    pub loss: f64,
}

/// Everything the Pareto plot shows. The x axis is validation loss (lower is better), the y
/// axis the validation metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParetoPlot {
    /// E.g. "accuracy"; used in the axis title.
    pub metric_name: String,
    /// Whether a larger metric is better (accuracy) or worse (an error rate).
    pub higher_metric_is_better: bool,
    /// Every evaluated fusion, in evaluation order.
    pub fusions: Vec<FusionPoint>,
    /// The individual fine-tuning checkpoints.
    pub checkpoints: Vec<LabelledPoint>,
    /// Baselines (best checkpoint, SWA, greedy soup, ...), labelled on the plot.
    pub baselines: Vec<LabelledPoint>,
    /// The model BOMF finally picked.
    pub chosen: Option<LabelledPoint>,
}

/// Hypervolume of the evaluated set after each evaluation (1-based on the plot).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HypervolumeTrace {
    pub per_step: Vec<f64>,
    /// How many of the first steps were the initial design (marked by a vertical line; 0 for
    /// none).
    pub initial_design_len: usize,
}

/// One validation pass during fine-tuning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationPoint {
    pub step: u64,
    pub metric: f64,
    pub loss: f64,
}

/// The fine-tuning trajectory and which checkpoints were kept for fusion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LearningCurve {
    pub metric_name: String,
    /// `(step, training loss)`, typically logged more often than validation.
    pub train_loss: Vec<(u64, f64)>,
    pub validation: Vec<ValidationPoint>,
    /// Steps of the checkpoints kept for fusion (their span is shaded).
    pub kept_steps: Vec<u64>,
    /// Step of the best single checkpoint, if known.
    pub best_step: Option<u64>,
}

/// One method's line in the final table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRow {
    pub method: String,
    pub val_metric: f64,
    pub val_loss: f64,
    pub test_metric: f64,
    pub test_loss: f64,
    pub wall_seconds: f64,
    /// Fusion weights, for methods that fuse checkpoints.
    pub weights: Option<Vec<f64>>,
}

/// The final comparison: one row per method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultsTable {
    pub metric_name: String,
    pub rows: Vec<ResultRow>,
}

/// The weights of the chosen fusion, one per checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChosenWeights {
    pub method: String,
    /// One label per weight (e.g. "step 1200"); empty means "checkpoint 1..K".
    pub checkpoint_labels: Vec<String>,
    pub weights: Vec<f64>,
}

/// Everything in a report. Absent plots are simply not drawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub title: String,
    /// Free text under the title (e.g. the task, model and budgets).
    pub summary: Option<String>,
    pub table: ResultsTable,
    pub chosen: Option<ChosenWeights>,
    pub pareto: Option<ParetoPlot>,
    pub hypervolume: Option<HypervolumeTrace>,
    pub learning_curve: Option<LearningCurve>,
}

/// What [`write_report`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportFiles {
    pub markdown: PathBuf,
    pub plots: Vec<PathBuf>,
}

/// Writes the report's SVGs and `report.md` into `dir` (created if missing), each atomically,
/// so an interrupted report never leaves a half-written file.
pub fn write_report(dir: &Path, report: &Report) -> Result<ReportFiles> {
    let mut plots = Vec::new();
    let mut links = PlotLinks::default();
    if let Some(pareto) = &report.pareto {
        let path = dir.join(PARETO_SVG_FILE);
        rundir::write_atomic(&path, render_pareto_svg(pareto)?.as_bytes())?;
        links.pareto = Some(PARETO_SVG_FILE.to_string());
        plots.push(path);
    }
    if let Some(trace) = &report.hypervolume {
        let path = dir.join(HYPERVOLUME_SVG_FILE);
        rundir::write_atomic(&path, render_hypervolume_svg(trace)?.as_bytes())?;
        links.hypervolume = Some(HYPERVOLUME_SVG_FILE.to_string());
        plots.push(path);
    }
    if let Some(curve) = &report.learning_curve {
        let path = dir.join(LEARNING_CURVE_SVG_FILE);
        rundir::write_atomic(&path, render_learning_curve_svg(curve)?.as_bytes())?;
        links.learning_curve = Some(LEARNING_CURVE_SVG_FILE.to_string());
        plots.push(path);
    }
    let markdown = dir.join(REPORT_MARKDOWN_FILE);
    rundir::write_atomic(&markdown, render_markdown(report, &links)?.as_bytes())?;
    Ok(ReportFiles { markdown, plots })
}

/// Relative links from `report.md` to the plots that exist.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlotLinks {
    pub pareto: Option<String>,
    pub hypervolume: Option<String>,
    pub learning_curve: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Markdown

/// `report.md`: title, summary, the results table, the chosen weights, the plots.
pub fn render_markdown(report: &Report, links: &PlotLinks) -> Result<String> {
    let mut md = String::new();
    // `write!` to a String cannot fail; the results are ignored on purpose below.
    let _ = writeln!(md, "# {}\n", one_line(&report.title));
    if let Some(summary) = &report.summary {
        let _ = writeln!(md, "{}\n", summary.trim_end());
    }
    md.push_str("## Results\n\n");
    md.push_str(&markdown_table(&report.table)?);
    md.push('\n');

    if let Some(chosen) = &report.chosen {
        md.push_str(&chosen_weights_markdown(chosen)?);
        md.push('\n');
    }

    let plots = [
        (
            &links.pareto,
            "Pareto front",
            "Every evaluated fusion on the validation (loss, metric) plane; the non-dominated \
             ones are connected, with the checkpoints, the baselines and the chosen model marked.",
        ),
        (
            &links.hypervolume,
            "Hypervolume per BO step",
            "Hypervolume dominated by the fusions evaluated so far, after each evaluation.",
        ),
        (
            &links.learning_curve,
            "Learning curve",
            "Training and validation loss and the validation metric during fine-tuning; the \
             shaded span holds the checkpoints kept for fusion.",
        ),
    ];
    if plots.iter().any(|(link, _, _)| link.is_some()) {
        md.push_str("## Plots\n\n");
        for (link, title, caption) in plots {
            if let Some(link) = link {
                let _ = writeln!(md, "### {title}\n\n{caption}\n\n![{title}]({link})\n");
            }
        }
    }
    Ok(md)
}

/// The final table, one row per method, non-finite numbers as "—".
pub fn markdown_table(table: &ResultsTable) -> Result<String> {
    if table.rows.is_empty() {
        return Err(ReportError::Empty {
            what: "results table".to_string(),
        });
    }
    let metric = one_line(&table.metric_name);
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| Method | Val {metric} | Val loss | Test {metric} | Test loss | Wall time (s) | Weights |"
    );
    md.push_str("|---|---:|---:|---:|---:|---:|---|\n");
    for row in &table.rows {
        let weights = row.weights.as_deref().map_or(MISSING.to_string(), |w| {
            let parts: Vec<String> = w.iter().map(|&x| fmt_num(x, 3)).collect();
            format!("[{}]", parts.join(", "))
        });
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            one_line(&row.method),
            fmt_num(row.val_metric, 4),
            fmt_num(row.val_loss, 4),
            fmt_num(row.test_metric, 4),
            fmt_num(row.test_loss, 4),
            fmt_num(row.wall_seconds, 1),
            weights
        );
    }
    Ok(md)
}

fn chosen_weights_markdown(chosen: &ChosenWeights) -> Result<String> {
    if chosen.weights.is_empty() {
        return Err(ReportError::Empty {
            what: "chosen weights".to_string(),
        });
    }
    if !chosen.checkpoint_labels.is_empty()
        && chosen.checkpoint_labels.len() != chosen.weights.len()
    {
        return Err(ReportError::InvalidInput {
            what: "chosen weights".to_string(),
            message: format!(
                "{} weights but {} checkpoint labels",
                chosen.weights.len(),
                chosen.checkpoint_labels.len()
            ),
        });
    }
    let mut md = String::new();
    let _ = writeln!(md, "## Chosen model: {}\n", one_line(&chosen.method));
    md.push_str("| Checkpoint | Weight |\n|---|---:|\n");
    for (k, &w) in chosen.weights.iter().enumerate() {
        let label = chosen
            .checkpoint_labels
            .get(k)
            .map_or(format!("checkpoint {}", k + 1), |l| one_line(l));
        let _ = writeln!(md, "| {label} | {} |", fmt_num(w, 4));
    }
    let sum: f64 = chosen.weights.iter().sum();
    let _ = writeln!(md, "\nSum of weights: {}", fmt_num(sum, 4));
    Ok(md)
}

/// `x` with `decimals` digits, or "—" when it is NaN or infinite.
pub fn fmt_num(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        format!("{x:.decimals$}")
    } else {
        MISSING.to_string()
    }
}

/// Makes free text safe inside a markdown table cell or heading.
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ").replace('|', "\\|")
}

// ---------------------------------------------------------------------------------------------
// Pareto front

/// Indices of the non-dominated points among `(loss, metric)` pairs, sorted by loss. Loss is
/// minimised; the metric is maximised when `higher_metric_is_better`, minimised otherwise.
/// A point is dominated when another is at least as good in both and better in one; exact
/// duplicates of a non-dominated point are all kept. Non-finite points are ignored.
pub fn pareto_front(points: &[(f64, f64)], higher_metric_is_better: bool) -> Vec<usize> {
    // Turn "better metric" into "larger score" so one sweep serves both directions.
    let score = |m: f64| if higher_metric_is_better { m } else { -m };
    let mut order: Vec<usize> = (0..points.len())
        .filter(|&i| points[i].0.is_finite() && points[i].1.is_finite())
        .collect();
    // By loss ascending, then best metric first: a point is non-dominated exactly when its
    // score beats every point before it (or ties the kept point it duplicates).
    order.sort_by(|&a, &b| {
        points[a]
            .0
            .total_cmp(&points[b].0)
            .then(score(points[b].1).total_cmp(&score(points[a].1)))
    });
    let mut front: Vec<usize> = Vec::new();
    for i in order {
        let (loss, metric) = points[i];
        let keep = match front.last() {
            None => true,
            Some(&j) => {
                let (best_loss, best_metric) = points[j];
                score(metric) > score(best_metric) || (loss == best_loss && metric == best_metric)
            }
        };
        if keep {
            front.push(i);
        }
    }
    front
}
