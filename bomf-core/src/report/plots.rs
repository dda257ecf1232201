//! SVG plots of a run: the Pareto front of validation metric against loss, hypervolume per BO
//! step, and the fine-tuning learning curve. Non-finite or huge values are left out of a plot,
//! never drawn at infinity.

use std::io;
use std::ops::Range;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::{
    EvalOrigin, HypervolumeTrace, LabelledPoint, LearningCurve, ParetoPlot, ReportError, Result,
    pareto_front,
};

const PLOT_SIZE: (u32, u32) = (900, 640);
const FONT: &str = "sans-serif";

// A colour-blind-friendly palette (Okabe–Ito), one colour per kind of point.
const INITIAL_COLOR: RGBColor = RGBColor(153, 153, 153);
const ACQUIRED_COLOR: RGBColor = RGBColor(0, 114, 178);
const FRONT_COLOR: RGBColor = RGBColor(213, 94, 0);
const CHECKPOINT_COLOR: RGBColor = RGBColor(0, 158, 115);
const BASELINE_COLOR: RGBColor = RGBColor(230, 159, 0);
const CHOSEN_COLOR: RGBColor = RGBColor(0, 0, 0);
const TRAIN_COLOR: RGBColor = RGBColor(153, 153, 153);
const VALIDATION_COLOR: RGBColor = RGBColor(0, 114, 178);
const KEPT_COLOR: RGBColor = RGBColor(0, 158, 115);
const BEST_COLOR: RGBColor = RGBColor(213, 94, 0);

type DrawResult = std::result::Result<(), DrawingAreaErrorKind<io::Error>>;
/// The whole SVG plot, or a panel of it.
type Canvas<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Renders into an SVG string: a white canvas, then `draw`; `plot` is named in any error.
fn render_svg(plot: &str, draw: impl FnOnce(&Canvas<'_>) -> DrawResult) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, PLOT_SIZE).into_drawing_area();
        root.fill(&WHITE)
            .and_then(|()| draw(&root))
            .and_then(|()| root.present())
            .map_err(|e| ReportError::Plot {
                plot: plot.to_string(),
                message: e.to_string(),
            })?;
    }
    Ok(svg)
}

/// A chart with `f64` axes, as every plot here draws.
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A line through `points` in `style`, shown in the legend as `label` with a short line.
fn draw_line<'a, 'b: 'a>(
    chart: &mut Chart<'a, 'b>,
    points: Vec<(f64, f64)>,
    style: ShapeStyle,
    label: impl Into<String>,
) -> DrawResult {
    chart
        .draw_series(LineSeries::new(points, style))?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    Ok(())
}

/// The series legend at `position`, in a translucent white box with a black border.
fn draw_legend<'a, 'b: 'a>(
    chart: &mut Chart<'a, 'b>,
    position: SeriesLabelPosition,
    font_size: u32,
) -> DrawResult {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, font_size))
        .draw()
}

/// Larger magnitudes are left out of plots like NaN: no metric or loss worth plotting is
/// that large, and near `f64::MAX` the axis span overflows to infinity, on which plotters'
/// tick search never ends (found by the `plots_never_fail_on_odd_numbers` property test).
const PLOT_LIMIT: f64 = 1e30;

/// Whether `v` can be placed on an axis.
fn plottable(v: f64) -> bool {
    v.is_finite() && v.abs() <= PLOT_LIMIT
}

fn plottable2(x: f64, y: f64) -> bool {
    plottable(x) && plottable(y)
}

/// The points that can be placed on a plot, in order.
fn plottable_xy(points: impl IntoIterator<Item = (f64, f64)>) -> Vec<(f64, f64)> {
    points
        .into_iter()
        .filter(|&(x, y)| plottable2(x, y))
        .collect()
}

/// The labelled points that can be placed on the (loss, metric) plane.
fn plottable_points(points: &[LabelledPoint]) -> Vec<&LabelledPoint> {
    points
        .iter()
        .filter(|p| plottable2(p.loss, p.metric))
        .collect()
}

/// A range covering every plottable value with a margin, `0..1` when there is none.
///
/// The range is never narrower than a thousandth of the values' magnitude, so a single value
/// or values that differ only in their last digits still get a readable axis.
fn padded_range(values: impl IntoIterator<Item = f64>) -> Range<f64> {
    let (lo, hi) = values
        .into_iter()
        .filter(|&v| plottable(v))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        return 0.0..1.0;
    }
    let magnitude = lo.abs().max(hi.abs());
    let pad = ((hi - lo) * 0.06).max(magnitude * 1e-3).max(1e-6);
    (lo - pad)..(hi + pad)
}

/// Axis labels for counts (steps, evaluations): whole numbers only, no label between them.
fn integer_label(x: &f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        String::new()
    }
}

fn draw_no_data(root: &Canvas<'_>) -> DrawResult {
    let (w, h) = PLOT_SIZE;
    root.draw(&Text::new(
        "no finite data to plot",
        (w as i32 / 2 - 90, h as i32 / 2),
        (FONT, 20).into_font().color(&RED),
    ))
}

/// The Pareto plot as an SVG document.
pub fn render_pareto_svg(plot: &ParetoPlot) -> Result<String> {
    render_svg("the Pareto front", |root| draw_pareto(root, plot))
}

fn draw_pareto(root: &Canvas<'_>, plot: &ParetoPlot) -> DrawResult {
    let labelled = plot
        .checkpoints
        .iter()
        .chain(&plot.baselines)
        .chain(&plot.chosen);
    let all: Vec<(f64, f64)> = plot
        .fusions
        .iter()
        .map(|p| (p.loss, p.metric))
        .chain(labelled.map(|p| (p.loss, p.metric)))
        .filter(|&(x, y)| plottable2(x, y))
        .collect();
    let x_range = padded_range(all.iter().map(|p| p.0));
    let y_range = padded_range(all.iter().map(|p| p.1));
    let direction = if plot.higher_metric_is_better {
        "higher is better"
    } else {
        "lower is better"
    };
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!("Validation {} vs loss", plot.metric_name),
            (FONT, 24),
        )
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(x_range, y_range)?;
    chart
        .configure_mesh()
        .x_desc("validation loss (lower is better)")
        .y_desc(format!("validation {} ({direction})", plot.metric_name))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    if all.is_empty() {
        draw_no_data(root)?;
    }

    for (origin, color, label) in [
        (EvalOrigin::InitialDesign, INITIAL_COLOR, "initial design"),
        (EvalOrigin::Acquired, ACQUIRED_COLOR, "BO-acquired fusion"),
    ] {
        let points: Vec<(f64, f64)> = plot
            .fusions
            .iter()
            .filter(|p| p.origin == origin && plottable2(p.loss, p.metric))
            .map(|p| (p.loss, p.metric))
            .collect();
        if points.is_empty() {
            continue;
        }
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )?
            .label(label)
            .legend(move |(x, y)| Circle::new((x + 10, y), 3, color.filled()));
    }

    let fusion_points: Vec<(f64, f64)> = plot.fusions.iter().map(|p| (p.loss, p.metric)).collect();
    let front: Vec<(f64, f64)> = pareto_front(&fusion_points, plot.higher_metric_is_better)
        .into_iter()
        .map(|i| fusion_points[i])
        .filter(|&(x, y)| plottable2(x, y))
        .collect();
    if !front.is_empty() {
        let style = FRONT_COLOR.stroke_width(2);
        chart.draw_series(LineSeries::new(front.iter().copied(), style))?;
        chart
            .draw_series(front.iter().map(|&p| Circle::new(p, 6, style)))?
            .label("non-dominated fusions")
            .legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (20, 0)], style)
                    + Circle::new((10, 0), 6, style)
            });
    }

    let checkpoints = plottable_points(&plot.checkpoints);
    if !checkpoints.is_empty() {
        let style = CHECKPOINT_COLOR.filled();
        chart
            .draw_series(
                checkpoints
                    .iter()
                    .map(|p| TriangleMarker::new((p.loss, p.metric), 7, style)),
            )?
            .label("fine-tuning checkpoint")
            .legend(move |(x, y)| TriangleMarker::new((x + 10, y), 7, style));
    }

    let baselines = plottable_points(&plot.baselines);
    if !baselines.is_empty() {
        let style = BASELINE_COLOR.filled();
        chart
            .draw_series(baselines.iter().map(|p| {
                EmptyElement::at((p.loss, p.metric))
                    + Rectangle::new([(-5, -5), (5, 5)], style)
                    + Text::new(p.label.clone(), (8, -16), (FONT, 14))
            }))?
            .label("baseline")
            .legend(move |(x, y)| Rectangle::new([(x + 5, y - 5), (x + 15, y + 5)], style));
    }

    if let Some(chosen) = plot
        .chosen
        .as_ref()
        .filter(|p| plottable2(p.loss, p.metric))
    {
        let style = CHOSEN_COLOR.stroke_width(3);
        chart
            .draw_series(std::iter::once(
                EmptyElement::at((chosen.loss, chosen.metric))
                    + Cross::new((0, 0), 9, style)
                    + Circle::new((0, 0), 11, CHOSEN_COLOR.stroke_width(2)),
            ))?
            .label(format!("chosen: {}", chosen.label))
            .legend(move |(x, y)| Cross::new((x + 10, y), 6, style));
    }

    let legend_position = if plot.higher_metric_is_better {
        SeriesLabelPosition::LowerRight
    } else {
        SeriesLabelPosition::UpperRight
    };
    draw_legend(&mut chart, legend_position, 15)
}

// ---------------------------------------------------------------------------------------------
// Hypervolume

/// Hypervolume after each evaluation, as an SVG document.
pub fn render_hypervolume_svg(trace: &HypervolumeTrace) -> Result<String> {
    render_svg("the hypervolume trace", |root| {
        draw_hypervolume(root, trace)
    })
}

fn draw_hypervolume(root: &Canvas<'_>, trace: &HypervolumeTrace) -> DrawResult {
    let points = plottable_xy(
        trace
            .per_step
            .iter()
            .enumerate()
            .map(|(i, &hv)| ((i + 1) as f64, hv)),
    );
    let x_max = trace.per_step.len().max(1) as f64;
    let mut chart = ChartBuilder::on(root)
        .caption("Hypervolume per BO step", (FONT, 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(0.5..x_max + 0.5, padded_range(points.iter().map(|p| p.1)))?;
    chart
        .configure_mesh()
        .x_desc("evaluation (BO step)")
        .y_desc("dominated hypervolume")
        .x_label_formatter(&integer_label)
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    if points.is_empty() {
        draw_no_data(root)?;
        return Ok(());
    }

    if trace.initial_design_len > 0 && trace.initial_design_len < trace.per_step.len() {
        let x = trace.initial_design_len as f64 + 0.5;
        let y = chart.y_range();
        let style = INITIAL_COLOR.stroke_width(2);
        draw_line(
            &mut chart,
            vec![(x, y.start), (x, y.end)],
            style,
            "end of initial design",
        )?;
    }
    let style = ACQUIRED_COLOR.stroke_width(2);
    draw_line(&mut chart, points.clone(), style, "hypervolume")?;
    chart.draw_series(
        points
            .iter()
            .map(|&p| Circle::new(p, 3, ACQUIRED_COLOR.filled())),
    )?;
    draw_legend(&mut chart, SeriesLabelPosition::LowerRight, 15)
}

// ---------------------------------------------------------------------------------------------
// Learning curve

/// Losses (top) and the validation metric (bottom) along fine-tuning, as an SVG document.
pub fn render_learning_curve_svg(curve: &LearningCurve) -> Result<String> {
    render_svg("the learning curve", |root| {
        draw_learning_curve(root, curve)
    })
}

fn draw_learning_curve(root: &Canvas<'_>, curve: &LearningCurve) -> DrawResult {
    let root = root.titled("Fine-tuning learning curve", (FONT, 24))?;
    let panels = root.split_evenly((2, 1));

    let train = plottable_xy(curve.train_loss.iter().map(|&(s, l)| (s as f64, l)));
    let val_loss = plottable_xy(curve.validation.iter().map(|v| (v.step as f64, v.loss)));
    let val_metric = plottable_xy(curve.validation.iter().map(|v| (v.step as f64, v.metric)));
    let x_range = padded_range(
        train
            .iter()
            .chain(&val_loss)
            .chain(&val_metric)
            .map(|p| p.0)
            .chain(curve.kept_steps.iter().map(|&s| s as f64))
            .chain(curve.best_step.map(|s| s as f64)),
    );
    if train.is_empty() && val_loss.is_empty() && val_metric.is_empty() {
        draw_no_data(&root)?;
    }

    let metric_name = format!("validation {}", curve.metric_name);
    // Legends where fine-tuning curves usually leave room: losses start high, metrics low.
    let loss_panel = Panel {
        x_range: x_range.clone(),
        y_desc: "loss",
        legend_position: SeriesLabelPosition::LowerLeft,
        curves: vec![
            Curve {
                label: "training loss",
                points: &train,
                color: TRAIN_COLOR,
            },
            Curve {
                label: "validation loss",
                points: &val_loss,
                color: VALIDATION_COLOR,
            },
        ],
    };
    let metric_panel = Panel {
        x_range,
        y_desc: &metric_name,
        legend_position: SeriesLabelPosition::LowerRight,
        curves: vec![Curve {
            label: &metric_name,
            points: &val_metric,
            color: VALIDATION_COLOR,
        }],
    };
    draw_curve_panel(&panels[0], curve, loss_panel)?;
    draw_curve_panel(&panels[1], curve, metric_panel)?;
    Ok(())
}

/// One line of a learning-curve panel.
struct Curve<'a> {
    label: &'a str,
    points: &'a [(f64, f64)],
    color: RGBColor,
}

/// What differs between the two learning-curve panels.
struct Panel<'a> {
    x_range: Range<f64>,
    y_desc: &'a str,
    legend_position: SeriesLabelPosition,
    curves: Vec<Curve<'a>>,
}

/// One panel of the learning curve: the kept-checkpoint span shaded, the kept steps and the
/// best step as vertical lines, then the curves.
fn draw_curve_panel(area: &Canvas<'_>, curve: &LearningCurve, panel: Panel<'_>) -> DrawResult {
    let Panel {
        x_range,
        y_desc,
        legend_position,
        curves,
    } = panel;
    let y_range = padded_range(curves.iter().flat_map(|c| c.points.iter().map(|p| p.1)));
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(72)
        .build_cartesian_2d(x_range, y_range.clone())?;
    chart
        .configure_mesh()
        .x_desc("training step")
        .y_desc(y_desc)
        .x_label_formatter(&integer_label)
        .light_line_style(WHITE.mix(0.0))
        .draw()?;

    let kept: Vec<f64> = curve.kept_steps.iter().map(|&s| s as f64).collect();
    if let (Some(lo), Some(hi)) = (
        kept.iter().copied().reduce(f64::min),
        kept.iter().copied().reduce(f64::max),
    ) {
        let shade = KEPT_COLOR.mix(0.15).filled();
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(lo, y_range.start), (hi, y_range.end)],
                shade,
            )))?
            .label("kept checkpoints")
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], shade));
        let line = KEPT_COLOR.mix(0.6).stroke_width(1);
        chart.draw_series(
            kept.iter()
                .map(|&s| PathElement::new(vec![(s, y_range.start), (s, y_range.end)], line)),
        )?;
    }
    if let Some(best_step) = curve.best_step {
        let best = best_step as f64;
        draw_line(
            &mut chart,
            vec![(best, y_range.start), (best, y_range.end)],
            BEST_COLOR.stroke_width(2),
            format!("best checkpoint (step {best_step})"),
        )?;
    }
    for &Curve {
        label,
        points,
        color,
    } in &curves
    {
        if points.is_empty() {
            continue;
        }
        draw_line(&mut chart, points.to_vec(), color.stroke_width(2), label)?;
    }
    draw_legend(&mut chart, legend_position, 14)
}
