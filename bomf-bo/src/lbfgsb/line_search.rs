//! Step 3 of an iteration: a strong-Wolfe line search along the search direction, kept inside
//! the box.

use super::compact::dot;

/// The line search's problem: `φ(t) = f(P(x + t·d))` from `φ(0) = f0`, `φ'(0) = dg0 < 0`,
/// first trying `step_init`, never beyond `step_max`, with at most `max_evals` evaluations.
pub(super) struct LineSearchProblem<'a> {
    pub(super) x: &'a [f64],
    pub(super) d: &'a [f64],
    pub(super) lower: &'a [f64],
    pub(super) upper: &'a [f64],
    pub(super) f0: f64,
    pub(super) dg0: f64,
    pub(super) step_init: f64,
    pub(super) step_max: f64,
    pub(super) max_evals: usize,
}

pub(super) struct LineSearchOutcome {
    pub(super) accepted: bool,
    pub(super) f: f64,
    pub(super) evaluations: usize,
}

/// One trial point of the line search.
#[derive(Clone, Copy)]
struct Trial {
    step: f64,
    f: f64,
    slope: f64,
}

/// Sufficient-decrease and curvature constants of the strong Wolfe conditions (the Fortran
/// code's).
const C1: f64 = 1e-3;
const C2: f64 = 0.9;

/// Strong-Wolfe line search (Nocedal & Wright, Algorithms 3.5–3.6) on `φ(t) = f(x + t·d)`,
/// `t ∈ (0, step_max]`, with safeguarded cubic interpolation. On success `x_out`/`g_out` hold the
/// accepted point. If the budget runs out, the best point with sufficient decrease is accepted.
pub(super) fn line_search<F>(
    f: &mut F,
    problem: LineSearchProblem<'_>,
    x_out: &mut [f64],
    g_out: &mut [f64],
) -> LineSearchOutcome
where
    F: FnMut(&[f64], &mut [f64]) -> f64,
{
    let mut search = Search {
        f,
        p: &problem,
        x_out,
        g_out,
        evaluations: 0,
        best: None,
    };
    let accepted = match search.bracket() {
        Bracket::Accept(trial) => Some(trial),
        Bracket::Zoom(lo, hi) => search.zoom(lo, hi),
    };
    match accepted {
        Some(trial) => search.done(trial),
        None => search.fall_back(),
    }
}

/// The state of one line search.
struct Search<'s, 'a, F> {
    f: &'s mut F,
    p: &'s LineSearchProblem<'a>,
    x_out: &'s mut [f64],
    g_out: &'s mut [f64],
    evaluations: usize,
    /// The best point with sufficient decrease so far, kept to fall back on.
    best: Option<(Trial, Vec<f64>, Vec<f64>)>,
}

/// Phase 1's result: an acceptable step, or an interval that contains one.
enum Bracket {
    Accept(Trial),
    Zoom(Trial, Trial),
}

impl<F> Search<'_, '_, F>
where
    F: FnMut(&[f64], &mut [f64]) -> f64,
{
    /// `φ` and its slope at `step` (infinite value, NaN slope where not finite).
    fn evaluate(&mut self, step: f64) -> Trial {
        let p = self.p;
        for (i, xi) in self.x_out.iter_mut().enumerate() {
            *xi = (p.x[i] + step * p.d[i]).clamp(p.lower[i], p.upper[i]);
        }
        let value = (self.f)(self.x_out, self.g_out);
        self.evaluations += 1;
        let slope = dot(self.g_out, p.d);
        if value.is_finite() && slope.is_finite() && self.g_out.iter().all(|v| v.is_finite()) {
            Trial {
                step,
                f: value,
                slope,
            }
        } else {
            Trial {
                step,
                f: f64::INFINITY,
                slope: f64::NAN,
            }
        }
    }

    fn armijo(&self, t: &Trial) -> bool {
        t.f <= self.p.f0 + C1 * t.step * self.p.dg0
    }

    fn curvature(&self, t: &Trial) -> bool {
        t.slope.abs() <= -C2 * self.p.dg0
    }

    /// Keep `trial` (the point just evaluated, which has sufficient decrease) if it is the best.
    fn record(&mut self, trial: Trial) {
        if self.best.as_ref().is_none_or(|b| trial.f < b.0.f) {
            self.best = Some((trial, self.x_out.to_vec(), self.g_out.to_vec()));
        }
    }

    /// Phase 1: grow the step from `step_init` until it is acceptable or brackets an
    /// acceptable one.
    fn bracket(&mut self) -> Bracket {
        let mut previous = Trial {
            step: 0.0,
            f: self.p.f0,
            slope: self.p.dg0,
        };
        let mut step = self.p.step_init;
        loop {
            let trial = self.evaluate(step);
            if !self.armijo(&trial) || (self.evaluations > 1 && trial.f >= previous.f) {
                return Bracket::Zoom(previous, trial);
            }
            self.record(trial);
            if self.curvature(&trial) {
                return Bracket::Accept(trial);
            }
            if trial.slope >= 0.0 {
                return Bracket::Zoom(trial, previous);
            }
            if step >= self.p.step_max || self.evaluations >= self.p.max_evals {
                // Sufficient decrease at the largest feasible step: accept it.
                return Bracket::Accept(trial);
            }
            previous = trial;
            step = (4.0 * step).min(self.p.step_max);
        }
    }

    /// Phase 2: zoom inside `[lo, hi]`; `lo` always satisfies sufficient decrease.
    fn zoom(&mut self, mut lo: Trial, mut hi: Trial) -> Option<Trial> {
        while self.evaluations < self.p.max_evals {
            let width = (hi.step - lo.step).abs();
            if width <= 1e-14 * hi.step.abs().max(lo.step.abs()).max(1e-300) {
                break;
            }
            let trial = self.evaluate(interpolate(&lo, &hi));
            if !self.armijo(&trial) || trial.f >= lo.f {
                hi = trial;
            } else {
                self.record(trial);
                if self.curvature(&trial) {
                    return Some(trial);
                }
                if trial.slope * (hi.step - lo.step) >= 0.0 {
                    hi = lo;
                }
                lo = trial;
            }
        }
        None
    }

    fn done(&self, trial: Trial) -> LineSearchOutcome {
        LineSearchOutcome {
            accepted: true,
            f: trial.f,
            evaluations: self.evaluations,
        }
    }

    /// No step met both conditions: the best one with sufficient decrease, if any.
    fn fall_back(&mut self) -> LineSearchOutcome {
        match self.best.take() {
            Some((trial, xb, gb)) => {
                self.x_out.copy_from_slice(&xb);
                self.g_out.copy_from_slice(&gb);
                self.done(trial)
            }
            None => LineSearchOutcome {
                accepted: false,
                f: self.p.f0,
                evaluations: self.evaluations,
            },
        }
    }
}

/// Minimiser of the cubic through two trial points (values and slopes), kept in the middle 80 %
/// of the interval; bisection when the data are not finite or the cubic has no minimiser.
fn interpolate(a: &Trial, b: &Trial) -> f64 {
    let (lo, hi) = if a.step < b.step { (a, b) } else { (b, a) };
    let width = hi.step - lo.step;
    let safe_lo = lo.step + 0.1 * width;
    let safe_hi = hi.step - 0.1 * width;
    let bisect = 0.5 * (lo.step + hi.step);
    if !(lo.f.is_finite() && hi.f.is_finite() && lo.slope.is_finite() && hi.slope.is_finite()) {
        // Only the lower end is trustworthy: fit a quadratic through its value and slope and
        // the upper end's value when that is finite, else bisect.
        if lo.f.is_finite() && lo.slope.is_finite() && hi.f.is_finite() {
            let curvature = (hi.f - lo.f - lo.slope * width) / (width * width);
            if curvature > 0.0 {
                let t = lo.step - lo.slope / (2.0 * curvature);
                return t.clamp(safe_lo, safe_hi);
            }
        }
        return bisect;
    }
    let d1 = lo.slope + hi.slope - 3.0 * (lo.f - hi.f) / (lo.step - hi.step);
    let disc = d1 * d1 - lo.slope * hi.slope;
    if disc < 0.0 {
        return bisect;
    }
    let d2 = disc.sqrt();
    let t = hi.step - width * (hi.slope + d2 - d1) / (hi.slope - lo.slope + 2.0 * d2);
    if t.is_finite() {
        t.clamp(safe_lo, safe_hi)
    } else {
        bisect
    }
}
