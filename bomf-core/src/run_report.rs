//! What a finished run reports: [`report_of`] turns the pipeline's result into the report's
//! plain inputs (plots, tables, chosen weights), and [`results_table`] is the table of methods
//! a front end prints.

use std::fmt::Write;

use crate::pipeline::BomfReport;
use crate::report::{
    ChosenWeights, EvalOrigin, FusionPoint, HypervolumeTrace, LabelledPoint, LearningCurve,
    ParetoPlot, Report, ResultRow, ResultsTable, ValidationPoint,
};
use crate::run_config::RunConfig;

/// The validation and test `metric` and loss of every method, one line each, with a header.
pub fn results_table(report: &BomfReport, metric: &str) -> String {
    let mut out = format!("validation and test {metric} and loss per method:\n");
    let _ = writeln!(
        out,
        "{:<24} {:>10} {:>10} {:>10} {:>10} {:>9}",
        "method", "val", "val loss", "test", "test loss", "seconds"
    );
    let get = |e: &crate::eval::Evaluation| e.metrics.get(metric).copied().unwrap_or(f64::NAN);
    for m in &report.methods {
        let _ = writeln!(
            out,
            "{:<24} {:>10.4} {:>10.4} {:>10.4} {:>10.4} {:>9.0}",
            m.method,
            get(&m.validation),
            m.validation.loss,
            get(&m.test),
            m.test.loss,
            m.seconds
        );
    }
    out
}

/// The report's plain inputs from a pipeline result.
pub fn report_of(report: &BomfReport, metric: &str, config: &RunConfig) -> Report {
    let get = |e: &crate::eval::Evaluation| e.metrics.get(metric).copied().unwrap_or(f64::NAN);
    let fusions = report
        .fusion_records
        .iter()
        .filter_map(|r| {
            r.validation.as_ref().map(|e| FusionPoint {
                metric: get(e),
                loss: e.loss,
                origin: if r.initial {
                    EvalOrigin::InitialDesign
                } else {
                    EvalOrigin::Acquired
                },
            })
        })
        .collect();
    let checkpoints = report
        .kept
        .iter()
        .map(|c| LabelledPoint {
            label: format!("step {}", c.step),
            metric: get(&c.validation),
            loss: c.validation.loss,
        })
        .collect();
    let chosen_method = report.methods.first();
    let baselines = report
        .methods
        .iter()
        .skip(1)
        .map(|m| LabelledPoint {
            label: m.method.clone(),
            metric: get(&m.validation),
            loss: m.validation.loss,
        })
        .collect();
    let n_initial = report.fusion_records.iter().filter(|r| r.initial).count();
    Report {
        title: format!("BOMF run: {}", config.model.path.display()),
        summary: Some(format!(
            "{} checkpoints kept (best validation step {}); {} fusion evaluations; stage times: \
             HPBO {:.0} s, trajectory {:.0} s, fusion BO {:.0} s (evaluation {:.0} s), baselines {:.0} s.",
            report.kept.len(),
            report
                .best_step
                .map_or_else(|| "—".to_string(), |s| s.to_string()),
            report.fusion_records.len(),
            report.times.hpbo,
            report.times.trajectory,
            report.times.fusion_bo,
            report.times.fusion_eval,
            report.times.baselines
        )),
        pareto: Some(ParetoPlot {
            metric_name: metric.to_string(),
            higher_metric_is_better: true,
            fusions,
            checkpoints,
            baselines,
            chosen: chosen_method.map(|m| LabelledPoint {
                label: m.method.clone(),
                metric: get(&m.validation),
                loss: m.validation.loss,
            }),
        }),
        hypervolume: Some(HypervolumeTrace {
            per_step: report.hypervolume.clone(),
            initial_design_len: n_initial,
        }),
        learning_curve: Some(LearningCurve {
            metric_name: metric.to_string(),
            train_loss: Vec::new(),
            validation: report
                .curve
                .iter()
                .map(|(step, e)| ValidationPoint {
                    step: *step as u64,
                    loss: e.loss,
                    metric: get(e),
                })
                .collect(),
            kept_steps: report.kept.iter().map(|c| c.step as u64).collect(),
            best_step: report.best_step.map(|s| s as u64),
        }),
        table: ResultsTable {
            metric_name: metric.to_string(),
            rows: report
                .methods
                .iter()
                .map(|m| ResultRow {
                    method: m.method.clone(),
                    val_metric: get(&m.validation),
                    val_loss: m.validation.loss,
                    test_metric: get(&m.test),
                    test_loss: m.test.loss,
                    wall_seconds: m.seconds,
                    weights: (!m.weights.is_empty()).then(|| m.weights.clone()),
                })
                .collect(),
        },
        chosen: chosen_method.map(|m| ChosenWeights {
            method: m.method.clone(),
            checkpoint_labels: report
                .kept
                .iter()
                .map(|c| format!("step {}", c.step))
                .collect(),
            weights: m.weights.clone(),
        }),
    }
}
