//! The report: the Pareto-front computation against its brute-force definition, the SVG plots
//! (valid documents, one marker per point, NaN and empty inputs), and `report.md`.

use std::fs;

use bomf_core::report::{
    self, ChosenWeights, EvalOrigin, FusionPoint, HypervolumeTrace, LabelledPoint, LearningCurve,
    PlotLinks, Report, ReportError, ResultRow, ResultsTable, ValidationPoint, pareto_front,
};
use proptest::prelude::*;

// ---- Pareto front ----

/// The definition, O(n²): `a` dominates `b` when it is no worse in both objectives and
/// strictly better in one (loss down; metric up or down).
fn dominates(a: (f64, f64), b: (f64, f64), higher_is_better: bool) -> bool {
    let metric_no_worse = if higher_is_better {
        a.1 >= b.1
    } else {
        a.1 <= b.1
    };
    let metric_better = if higher_is_better {
        a.1 > b.1
    } else {
        a.1 < b.1
    };
    a.0 <= b.0 && metric_no_worse && (a.0 < b.0 || metric_better)
}

fn brute_force_front(points: &[(f64, f64)], higher_is_better: bool) -> Vec<usize> {
    let finite = |p: (f64, f64)| p.0.is_finite() && p.1.is_finite();
    let mut front: Vec<usize> = (0..points.len())
        .filter(|&i| finite(points[i]))
        .filter(|&i| {
            !(0..points.len())
                .any(|j| finite(points[j]) && dominates(points[j], points[i], higher_is_better))
        })
        .collect();
    front.sort_by(|&a, &b| points[a].0.total_cmp(&points[b].0).then(a.cmp(&b)));
    front
}

#[test]
fn pareto_front_small_cases() {
    // (loss, metric), metric maximised.
    let points = [
        (0.5, 0.80),
        (0.4, 0.70),
        (0.6, 0.90),
        (0.55, 0.75),
        (0.3, 0.60),
    ];
    assert_eq!(pareto_front(&points, true), vec![4, 1, 0, 2]);
    // Metric minimised (an error rate): low loss and low metric wins.
    assert_eq!(pareto_front(&points, false), vec![4]);
    // Exact duplicates of a front point are both kept; NaN points are ignored.
    let points = [
        (0.4, 0.7),
        (0.4, 0.7),
        (f64::NAN, 0.99),
        (0.5, f64::INFINITY),
    ];
    assert_eq!(pareto_front(&points, true), vec![0, 1]);
    assert!(pareto_front(&[], true).is_empty());
}

proptest! {
    #[test]
    fn pareto_front_matches_the_definition(
        // Coarse values make ties (equal losses or metrics) common.
        raw in prop::collection::vec((0u8..8, 0u8..8), 0..40),
        higher_is_better in any::<bool>(),
    ) {
        let points: Vec<(f64, f64)> =
            raw.iter().map(|&(l, m)| (f64::from(l) / 8.0, f64::from(m) / 8.0)).collect();
        let mut fast = pareto_front(&points, higher_is_better);
        // Within equal losses the order may differ; compare as sorted by (loss, index).
        fast.sort_by(|&a, &b| points[a].0.total_cmp(&points[b].0).then(a.cmp(&b)));
        prop_assert_eq!(fast, brute_force_front(&points, higher_is_better));
    }
}

// ---- SVG plots ----

/// Any f64, weighted towards the awkward ones.
fn any_number() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => -2.0f64..2.0,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(f64::MAX),
        1 => Just(-f64::MAX),
        1 => Just(0.0),
        1 => any::<f64>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever numbers the pipeline produces, every plot renders to a valid document.
    #[test]
    fn plots_never_fail_on_odd_numbers(
        values in prop::collection::vec((any_number(), any_number()), 0..12),
        higher_is_better in any::<bool>(),
    ) {
        let plot = report::ParetoPlot {
            metric_name: "accuracy".to_string(),
            higher_metric_is_better: higher_is_better,
            fusions: values.iter().map(|&(m, l)| fusion(m, l, EvalOrigin::Acquired)).collect(),
            checkpoints: values.iter().take(2).map(|&(m, l)| labelled("ckpt", m, l)).collect(),
            baselines: values.iter().skip(2).take(2).map(|&(m, l)| labelled("swa", m, l)).collect(),
            chosen: values.first().map(|&(m, l)| labelled("BOMF", m, l)),
        };
        assert_valid_svg(&report::render_pareto_svg(&plot).unwrap());

        let trace = HypervolumeTrace {
            per_step: values.iter().map(|v| v.0).collect(),
            initial_design_len: values.len() / 2,
        };
        assert_valid_svg(&report::render_hypervolume_svg(&trace).unwrap());

        let curve = LearningCurve {
            metric_name: "f1".to_string(),
            train_loss: values.iter().enumerate().map(|(i, v)| (i as u64 * 10, v.0)).collect(),
            validation: values
                .iter()
                .enumerate()
                .map(|(i, v)| ValidationPoint { step: i as u64 * 20, metric: v.1, loss: v.0 })
                .collect(),
            kept_steps: vec![20, 40],
            best_step: Some(40),
        };
        assert_valid_svg(&report::render_learning_curve_svg(&curve).unwrap());
    }
}

/// The minimal checks of a plotters SVG document: the root element, closed, and every text
/// element closed.
fn assert_valid_svg(svg: &str) {
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
    assert!(svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
    assert!(!svg.contains("NaN"), "a NaN coordinate leaked into the SVG");
}

fn count(svg: &str, tag: &str) -> usize {
    svg.matches(tag).count()
}

fn labelled(label: &str, metric: f64, loss: f64) -> LabelledPoint {
    LabelledPoint {
        label: label.to_string(),
        metric,
        loss,
    }
}

fn fusion(metric: f64, loss: f64, origin: EvalOrigin) -> FusionPoint {
    FusionPoint {
        metric,
        loss,
        origin,
    }
}

/// A Pareto plot of `fusions` alone: no checkpoints, baselines or chosen fusion.
fn fusions_plot(
    metric_name: &str,
    higher_metric_is_better: bool,
    fusions: Vec<FusionPoint>,
) -> report::ParetoPlot {
    report::ParetoPlot {
        metric_name: metric_name.to_string(),
        higher_metric_is_better,
        fusions,
        checkpoints: vec![],
        baselines: vec![],
        chosen: None,
    }
}

fn sample_pareto() -> report::ParetoPlot {
    let mut fusions = Vec::new();
    for i in 0..6 {
        let t = f64::from(i) / 5.0;
        fusions.push(fusion(
            0.70 + 0.1 * t,
            0.60 - 0.1 * t,
            EvalOrigin::InitialDesign,
        ));
    }
    for i in 0..10 {
        let t = f64::from(i) / 9.0;
        fusions.push(fusion(
            0.78 + 0.05 * t,
            0.45 + 0.04 * (t - 0.5).powi(2),
            EvalOrigin::Acquired,
        ));
    }
    report::ParetoPlot {
        metric_name: "accuracy".to_string(),
        higher_metric_is_better: true,
        fusions,
        checkpoints: (0..5)
            .map(|k| {
                labelled(
                    &format!("step {}", 100 * (k + 1)),
                    0.72 + 0.01 * f64::from(k),
                    0.55,
                )
            })
            .collect(),
        baselines: vec![
            labelled("best checkpoint", 0.76, 0.52),
            labelled("greedy soup", 0.79, 0.49),
        ],
        chosen: Some(labelled("BOMF", 0.83, 0.46)),
    }
}

#[test]
fn pareto_svg_shows_every_series_with_a_legend() {
    let plot = sample_pareto();
    let svg = report::render_pareto_svg(&plot).unwrap();
    assert_valid_svg(&svg);
    for label in [
        "initial design",
        "BO-acquired fusion",
        "non-dominated fusions",
        "fine-tuning checkpoint",
        "baseline",
        "best checkpoint",
        "greedy soup",
        "chosen: BOMF",
        "validation accuracy",
    ] {
        assert!(svg.contains(label), "missing `{label}`");
    }
    // Triangles are only the checkpoints: one per checkpoint plus the legend's.
    assert_eq!(count(&svg, "<polygon"), plot.checkpoints.len() + 1);
}

#[test]
fn pareto_svg_draws_one_marker_per_finite_fusion() {
    let base = sample_pareto();
    let circles = count(&report::render_pareto_svg(&base).unwrap(), "<circle");

    // A dominated extra fusion adds exactly its own dot (the front is unchanged).
    let mut more = base.clone();
    more.fusions.push(fusion(0.60, 0.90, EvalOrigin::Acquired));
    assert_eq!(
        count(&report::render_pareto_svg(&more).unwrap(), "<circle"),
        circles + 1
    );

    // A NaN fusion, checkpoint or baseline is skipped, not drawn and not a crash.
    let mut with_nan = base.clone();
    with_nan
        .fusions
        .push(fusion(f64::NAN, 0.5, EvalOrigin::Acquired));
    with_nan
        .checkpoints
        .push(labelled("diverged", 0.5, f64::INFINITY));
    with_nan.baselines.push(labelled("swa", f64::NAN, f64::NAN));
    let svg = report::render_pareto_svg(&with_nan).unwrap();
    assert_valid_svg(&svg);
    assert_eq!(count(&svg, "<circle"), circles);
    assert_eq!(count(&svg, "<polygon"), base.checkpoints.len() + 1);
    assert!(!svg.contains("swa"));
}

#[test]
fn pareto_svg_of_nothing_is_valid_and_says_so() {
    let empty = fusions_plot("f1", true, vec![]);
    let svg = report::render_pareto_svg(&empty).unwrap();
    assert_valid_svg(&svg);
    assert!(svg.contains("no finite data to plot"));
    assert_eq!(count(&svg, "<circle"), 0);

    let all_nan = report::ParetoPlot {
        fusions: vec![fusion(f64::NAN, f64::NAN, EvalOrigin::Acquired)],
        chosen: Some(labelled("BOMF", f64::NAN, 0.3)),
        ..empty
    };
    let svg = report::render_pareto_svg(&all_nan).unwrap();
    assert_valid_svg(&svg);
    assert!(svg.contains("no finite data to plot"));
}

#[test]
fn pareto_svg_with_a_single_point_has_a_usable_range() {
    let single = fusions_plot(
        "accuracy",
        false,
        vec![fusion(0.5, 0.5, EvalOrigin::Acquired)],
    );
    let svg = report::render_pareto_svg(&single).unwrap();
    assert_valid_svg(&svg);
    assert!(svg.contains("lower is better"));
}

#[test]
fn pareto_svg_survives_huge_values_and_hairline_ranges() {
    // Near f64::MAX the axis span overflows to infinity, on which plotters' tick search once
    // spun forever (huge values are now skipped); spans near the float spacing must render too.
    for (a, b) in [
        ((f64::MAX, -f64::MAX), (0.5, 0.5)),
        ((1.0, 0.8), (1.0 + 1e-15, 0.8 + 1e-15)),
        ((1e12, 1e12), (1e12 + 1e-3, 1e12)),
    ] {
        let fusions = vec![
            fusion(a.1, a.0, EvalOrigin::Acquired),
            fusion(b.1, b.0, EvalOrigin::Acquired),
        ];
        let plot = fusions_plot("accuracy", true, fusions);
        assert_valid_svg(&report::render_pareto_svg(&plot).unwrap());
    }
}

#[test]
fn hypervolume_svg_has_one_dot_per_finite_step() {
    let trace = HypervolumeTrace {
        per_step: vec![0.1, 0.2, 0.2, f64::NAN, 0.35, 0.4, 0.41],
        initial_design_len: 3,
    };
    let svg = report::render_hypervolume_svg(&trace).unwrap();
    assert_valid_svg(&svg);
    assert_eq!(count(&svg, "<circle"), 6);
    assert!(svg.contains("end of initial design"));
    assert!(svg.contains("Hypervolume per BO step"));

    let empty = HypervolumeTrace {
        per_step: vec![],
        initial_design_len: 0,
    };
    let svg = report::render_hypervolume_svg(&empty).unwrap();
    assert_valid_svg(&svg);
    assert!(svg.contains("no finite data to plot"));
}

fn sample_curve() -> LearningCurve {
    LearningCurve {
        metric_name: "accuracy".to_string(),
        train_loss: (1..=40)
            .map(|s| (s * 10, 1.0 / (1.0 + s as f64 * 0.1)))
            .collect(),
        validation: (1..=8)
            .map(|i| ValidationPoint {
                step: i * 50,
                metric: 0.6 + 0.03 * i as f64,
                loss: 0.9 - 0.05 * i as f64,
            })
            .collect(),
        kept_steps: vec![250, 300, 350, 400],
        best_step: Some(300),
    }
}

#[test]
fn learning_curve_svg_marks_the_kept_window_and_best_step() {
    let svg = report::render_learning_curve_svg(&sample_curve()).unwrap();
    assert_valid_svg(&svg);
    for label in [
        "training loss",
        "validation loss",
        "validation accuracy",
        "kept checkpoints",
        "best checkpoint (step 300)",
        "Fine-tuning learning curve",
    ] {
        assert!(svg.contains(label), "missing `{label}`");
    }
}

#[test]
fn learning_curve_tolerates_nan_and_empty_inputs() {
    let mut curve = sample_curve();
    curve.train_loss.push((410, f64::NAN));
    curve.validation.push(ValidationPoint {
        step: 450,
        metric: f64::NAN,
        loss: f64::INFINITY,
    });
    assert_valid_svg(&report::render_learning_curve_svg(&curve).unwrap());

    let empty = LearningCurve {
        metric_name: "accuracy".to_string(),
        train_loss: vec![],
        validation: vec![],
        kept_steps: vec![],
        best_step: None,
    };
    let svg = report::render_learning_curve_svg(&empty).unwrap();
    assert_valid_svg(&svg);
    assert!(svg.contains("no finite data to plot"));
}

// ---- Markdown ----

fn row(method: &str, val_metric: f64, weights: Option<Vec<f64>>) -> ResultRow {
    ResultRow {
        method: method.to_string(),
        val_metric,
        val_loss: 0.45,
        test_metric: val_metric - 0.01,
        test_loss: 0.5,
        wall_seconds: 12.34,
        weights,
    }
}

fn sample_table() -> ResultsTable {
    ResultsTable {
        metric_name: "accuracy".to_string(),
        rows: vec![
            row("BOMF", 0.8312, Some(vec![0.1, 0.2, 0.7])),
            row("best checkpoint", 0.8001, None),
            row("SWA", f64::NAN, Some(vec![1.0 / 3.0; 3])),
            row("greedy | soup", 0.81, Some(vec![0.5, 0.5, 0.0])),
        ],
    }
}

/// The table's body rows (after the header and the alignment line).
fn body_rows(md: &str) -> Vec<&str> {
    md.lines()
        .filter(|l| {
            l.starts_with("| ") && !l.starts_with("| Method") && !l.starts_with("| Checkpoint")
        })
        .collect()
}

#[test]
fn markdown_table_has_one_row_per_method() {
    let table = sample_table();
    let md = report::markdown_table(&table).unwrap();
    assert!(md.starts_with(
        "| Method | Val accuracy | Val loss | Test accuracy | Test loss | Wall time (s) | Weights |\n|---|"
    ));
    let rows = body_rows(&md);
    assert_eq!(rows.len(), table.rows.len());
    assert_eq!(
        rows[0],
        "| BOMF | 0.8312 | 0.4500 | 0.8212 | 0.5000 | 12.3 | [0.100, 0.200, 0.700] |"
    );
    assert_eq!(
        rows[1],
        "| best checkpoint | 0.8001 | 0.4500 | 0.7901 | 0.5000 | 12.3 | — |"
    );
    // NaN shows as a dash, and so does NaN − 0.01.
    assert!(
        rows[2].starts_with("| SWA | — | 0.4500 | — |"),
        "{}",
        rows[2]
    );
    // A `|` in a name cannot break the table.
    assert!(rows[3].starts_with("| greedy \\| soup |"), "{}", rows[3]);
    for r in rows {
        // 7 columns → 8 unescaped pipes.
        assert_eq!(r.replace("\\|", "").matches('|').count(), 8, "{r}");
    }
}

#[test]
fn empty_table_is_an_error() {
    let table = ResultsTable {
        metric_name: "accuracy".to_string(),
        rows: vec![],
    };
    let err = report::markdown_table(&table).unwrap_err();
    assert!(matches!(err, ReportError::Empty { .. }), "{err:?}");
    assert!(err.to_string().contains("results table"));
}

fn sample_report() -> Report {
    Report {
        title: "BOMF on multiemo".to_string(),
        summary: Some("MiniLM, 3 seeds, 20 BO steps.".to_string()),
        table: sample_table(),
        chosen: Some(ChosenWeights {
            method: "BOMF".to_string(),
            checkpoint_labels: vec!["step 250".into(), "step 300".into(), "step 350".into()],
            weights: vec![0.1, 0.2, 0.7],
        }),
        pareto: Some(sample_pareto()),
        hypervolume: Some(HypervolumeTrace {
            per_step: vec![0.1, 0.2, 0.3],
            initial_design_len: 1,
        }),
        learning_curve: Some(sample_curve()),
    }
}

#[test]
fn markdown_report_has_title_table_weights_and_links() {
    let report = sample_report();
    let links = PlotLinks {
        pareto: Some("pareto.svg".into()),
        hypervolume: None,
        learning_curve: Some("learning_curve.svg".into()),
    };
    let md = report::render_markdown(&report, &links).unwrap();
    assert!(md.starts_with("# BOMF on multiemo\n\nMiniLM, 3 seeds, 20 BO steps.\n"));
    assert!(md.contains("## Results"));
    assert!(md.contains("## Chosen model: BOMF"));
    assert!(md.contains("| step 300 | 0.2000 |"));
    assert!(md.contains("Sum of weights: 1.0000"));
    assert!(md.contains("![Pareto front](pareto.svg)"));
    assert!(md.contains("![Learning curve](learning_curve.svg)"));
    assert!(!md.contains("hypervolume.svg"));
    // One results row per method, plus one weights row per checkpoint.
    assert_eq!(body_rows(&md).len(), report.table.rows.len() + 3);
}

#[test]
fn chosen_weights_must_match_their_labels() {
    let mut report = sample_report();
    report.chosen = Some(ChosenWeights {
        method: "BOMF".to_string(),
        checkpoint_labels: vec!["a".into(), "b".into()],
        weights: vec![0.2, 0.3, 0.5],
    });
    let err = report::render_markdown(&report, &PlotLinks::default()).unwrap_err();
    assert!(matches!(err, ReportError::InvalidInput { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("3 weights but 2 checkpoint labels")
    );

    // Without labels, checkpoints are numbered.
    report.chosen = Some(ChosenWeights {
        method: "BOMF".to_string(),
        checkpoint_labels: vec![],
        weights: vec![0.25, 0.75],
    });
    let md = report::render_markdown(&report, &PlotLinks::default()).unwrap();
    assert!(md.contains("| checkpoint 2 | 0.7500 |"));
    assert!(!md.contains("## Plots"));
}

#[test]
fn write_report_creates_every_file() {
    let tmp = tempfile::tempdir().unwrap();
    // To look at the plots: BOMF_SAMPLE_REPORT_DIR=/some/dir cargo test -p bomf-core --test report
    let dir = std::env::var_os("BOMF_SAMPLE_REPORT_DIR")
        .map_or_else(|| tmp.path().join("report"), std::path::PathBuf::from);
    let files = report::write_report(&dir, &sample_report()).unwrap();
    assert_eq!(files.markdown, dir.join("report.md"));
    assert_eq!(files.plots.len(), 3);
    let md = fs::read_to_string(&files.markdown).unwrap();
    for plot in &files.plots {
        assert_valid_svg(&fs::read_to_string(plot).unwrap());
        let name = plot.file_name().unwrap().to_string_lossy();
        assert!(
            md.contains(&format!("]({name})")),
            "report.md does not link {name}"
        );
    }
    let names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp.")), "{names:?}");

    // Only the plots given are drawn.
    let mut table_only = sample_report();
    table_only.pareto = None;
    table_only.hypervolume = None;
    table_only.learning_curve = None;
    let other = tmp.path().join("table_only");
    let files = report::write_report(&other, &table_only).unwrap();
    assert!(files.plots.is_empty());
    assert_eq!(fs::read_dir(&other).unwrap().count(), 1);
}

#[test]
fn fmt_num_shows_missing_values_as_a_dash() {
    assert_eq!(report::fmt_num(0.12345, 3), "0.123");
    assert_eq!(report::fmt_num(f64::NAN, 3), report::MISSING);
    assert_eq!(report::fmt_num(f64::NEG_INFINITY, 1), "—");
}
