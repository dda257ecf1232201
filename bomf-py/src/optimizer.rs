//! `Optimizer`: bomf-bo's ask/tell loop with numpy arrays, resumable from its JSON state.

use bomf_bo::{AcquisitionKind, GpPreset, Objective, OptimizerSettings, RefPointRule};
use numpy::{PyArray1, PyArray2};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::arrays::{Matrix, rows_arg, to_array2};
use crate::space::Space;
use crate::{BoError, to_py};

/// Bayesian optimisation by ask and tell (bomf-bo's `Optimizer`).
///
/// `objectives`: a dict `{name: "max" | "min"}` or a list of `(name, goal)` pairs. One
/// objective uses qLogEI, several qNEHVI, unless `acquisition` names another (`"qlogei"`,
/// `"qehvi"`, `"qnehvi"`, `"qlognehvi"`). The first `n_initial` points (default
/// `max(d + 1, 5)`) come from a scrambled Sobol design. `gp`: `"rbf_dim_scaled"` (BoTorch
/// >= 0.12's default) or `"matern52_gamma"` (BoTorch <= 0.11's, the BOMF paper's). Without a
/// `ref_point`, qEHVI/qNEHVI derive one at each step by `ref_point_rule`: `"front"` (BoTorch's
/// `infer_reference_point` on the observed front, the default) or `"observed"` (just below the
/// worst successful value of each objective, as optuna-integration's `BoTorchSampler`).
///
/// The state is plain data: `state()` returns it as JSON and `Optimizer.from_state` resumes
/// exactly (the same asks follow); pickling goes through the same JSON.
#[pyclass(module = "bomf_bo")]
#[derive(Debug, Clone)]
pub struct Optimizer {
    inner: bomf_bo::Optimizer,
}

/// The settings `Optimizer(...)` takes by keyword; [`Options::KEYS`] names them.
#[derive(Debug, Default)]
struct Options {
    seed: u64,
    ref_point: Option<Vec<f64>>,
    ref_point_rule: Option<String>,
    n_initial: Option<usize>,
    acquisition: Option<String>,
    gp: Option<String>,
    mc_samples: usize,
    failure_radius: f64,
    max_gp_points: Option<usize>,
    num_restarts: usize,
    raw_samples: usize,
}

impl Options {
    const KEYS: [&str; 11] = [
        "seed",
        "n_initial",
        "acquisition",
        "ref_point",
        "ref_point_rule",
        "gp",
        "mc_samples",
        "failure_radius",
        "max_gp_points",
        "num_restarts",
        "raw_samples",
    ];

    /// The keyword arguments; an unknown one is an error naming the known ones.
    fn from_kwargs(kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let defaults = OptimizerSettings::default();
        let mut o = Options {
            mc_samples: defaults.mc_samples,
            failure_radius: defaults.failure_radius,
            num_restarts: defaults.acqf.num_restarts,
            raw_samples: defaults.acqf.raw_samples,
            ..Options::default()
        };
        let Some(kwargs) = kwargs else {
            return Ok(o);
        };
        for (key, value) in kwargs.iter() {
            let key: String = key.extract()?;
            let bad = |e: PyErr| BoError::new_err(format!("{key}: {e}"));
            match key.as_str() {
                "seed" => o.seed = value.extract().map_err(bad)?,
                "n_initial" => o.n_initial = value.extract().map_err(bad)?,
                "acquisition" => o.acquisition = value.extract().map_err(bad)?,
                "ref_point" => o.ref_point = value.extract().map_err(bad)?,
                "ref_point_rule" => o.ref_point_rule = value.extract().map_err(bad)?,
                "gp" => o.gp = value.extract().map_err(bad)?,
                "mc_samples" => o.mc_samples = value.extract().map_err(bad)?,
                "failure_radius" => o.failure_radius = value.extract().map_err(bad)?,
                "max_gp_points" => o.max_gp_points = value.extract().map_err(bad)?,
                "num_restarts" => o.num_restarts = value.extract().map_err(bad)?,
                "raw_samples" => o.raw_samples = value.extract().map_err(bad)?,
                _ => {
                    return Err(BoError::new_err(format!(
                        "Optimizer: unknown setting {key:?}; the settings are {}",
                        Self::KEYS.join(", ")
                    )));
                }
            }
        }
        Ok(o)
    }

    fn settings(self) -> PyResult<OptimizerSettings> {
        let defaults = OptimizerSettings::default();
        let acqf = bomf_bo::AcqfOptions {
            num_restarts: self.num_restarts,
            raw_samples: self.raw_samples,
            ..defaults.acqf.clone()
        };
        Ok(OptimizerSettings {
            acquisition: self
                .acquisition
                .as_deref()
                .map(|a| parse("acquisition", &ACQUISITIONS, a))
                .transpose()?,
            n_initial: self.n_initial,
            seed: self.seed,
            gp_preset: parse_or_first("gp", &GP_PRESETS, self.gp.as_deref())?,
            mc_samples: self.mc_samples,
            failure_radius: self.failure_radius,
            max_gp_points: self.max_gp_points.unwrap_or(defaults.max_gp_points),
            ref_point_rule: parse_or_first(
                "ref_point_rule",
                &REF_POINT_RULES,
                self.ref_point_rule.as_deref(),
            )?,
            acqf,
        })
    }
}

/// The Python names of each setting's values, the default first: names are parsed and
/// printed from these tables only.
const ACQUISITIONS: [(&str, AcquisitionKind); 4] = [
    ("qlogei", AcquisitionKind::QLogEi),
    ("qehvi", AcquisitionKind::QEhvi),
    ("qnehvi", AcquisitionKind::QNehvi),
    ("qlognehvi", AcquisitionKind::QLogNehvi),
];
const GP_PRESETS: [(&str, GpPreset); 2] = [
    ("rbf_dim_scaled", GpPreset::RbfDimScaled),
    ("matern52_gamma", GpPreset::MaternGamma),
];
const REF_POINT_RULES: [(&str, RefPointRule); 2] = [
    ("front", RefPointRule::Front),
    ("observed", RefPointRule::Observed),
];

/// The value `name` stands for in `table`; an unknown name is an error listing the known ones.
fn parse<T: Copy>(setting: &str, table: &[(&str, T)], name: &str) -> PyResult<T> {
    if let Some((_, value)) = table.iter().find(|(n, _)| *n == name) {
        return Ok(*value);
    }
    let names: Vec<String> = table.iter().map(|(n, _)| format!("{n:?}")).collect();
    let (last, rest) = names.split_last().expect("a table has names");
    Err(BoError::new_err(format!(
        "{setting}: expected {} or {last}, got {name:?}",
        rest.join(", ")
    )))
}

/// [`parse`], with the table's first value when no name is given.
fn parse_or_first<T: Copy>(setting: &str, table: &[(&str, T)], name: Option<&str>) -> PyResult<T> {
    match name {
        Some(n) => parse(setting, table, n),
        None => Ok(table[0].1),
    }
}

/// The name of `value` in `table`.
fn name_of<T: PartialEq>(table: &[(&'static str, T)], value: T) -> &'static str {
    table
        .iter()
        .find(|(_, v)| *v == value)
        .map_or("?", |(n, _)| n)
}

/// `{name: goal}` or `[(name, goal), ...]` as bomf-bo objectives.
fn objectives_arg(obj: &Bound<'_, PyAny>) -> PyResult<Vec<Objective>> {
    let pairs: Vec<(String, String)> = match obj.cast::<PyDict>() {
        Ok(dict) => dict.items().extract()?,
        Err(_) => obj.extract().map_err(|_| {
            BoError::new_err(
                "objectives: expected a dict {name: \"max\" | \"min\"} or a list of (name, goal) \
                 pairs",
            )
        })?,
    };
    pairs
        .into_iter()
        .map(|(name, goal)| match goal.as_str() {
            "max" | "maximize" => Ok(Objective::maximize(name)),
            "min" | "minimize" => Ok(Objective::minimize(name)),
            other => Err(BoError::new_err(format!(
                "objectives: '{name}' has goal {other:?}; expected \"max\" or \"min\""
            ))),
        })
        .collect()
}

impl Optimizer {
    /// `self` with `f` applied to a copy, kept only when `f` succeeds: a bad row or a failed
    /// ask leaves the optimiser as it was.
    fn transact<T>(
        &mut self,
        f: impl FnOnce(&mut bomf_bo::Optimizer) -> PyResult<T>,
    ) -> PyResult<T> {
        let mut next = self.inner.clone();
        let out = f(&mut next)?;
        self.inner = next;
        Ok(out)
    }

    fn points(&self, x: &Bound<'_, PyAny>, what: &str) -> PyResult<Matrix> {
        rows_arg(x, what, self.inner.space().dim())
    }
}

#[pymethods]
impl Optimizer {
    #[new]
    #[pyo3(signature = (space, objectives, **settings))]
    fn new(
        space: &Space,
        objectives: &Bound<'_, PyAny>,
        settings: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let options = Options::from_kwargs(settings)?;
        let ref_point = options.ref_point.clone();
        let objectives = objectives_arg(objectives)?;
        let mut inner =
            bomf_bo::Optimizer::new(space.inner.clone(), objectives, options.settings()?)
                .map_err(to_py)?;
        if let Some(r) = ref_point {
            inner = inner.with_ref_point(r).map_err(to_py)?;
        }
        Ok(Self { inner })
    }

    /// `n` new points, an `(n, d)` array; they stay pending until told. `pending`: points
    /// being evaluated elsewhere (an `(p, d)` array or one point), added to the pending points
    /// first, as `add_pending` does. The GIL is released while the optimiser works.
    #[pyo3(signature = (n = 1, pending = None))]
    fn ask<'py>(
        &mut self,
        py: Python<'py>,
        n: usize,
        pending: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let pending = pending.map(|p| self.points(p, "pending")).transpose()?;
        let d = self.inner.space().dim();
        let points = self.transact(|opt| {
            if let Some(p) = &pending {
                for i in 0..p.rows {
                    opt.add_pending(p.row(i)).map_err(to_py)?;
                }
            }
            py.detach(|| opt.ask(n)).map_err(to_py)
        })?;
        to_array2(py, &Matrix::from_rows(d, &points))
    }

    /// Record evaluations: `x` one point `(d,)` or rows `(n, d)`, `y` their objective values
    /// `(m,)` / `(n, m)` (a scalar or `(n,)` for one objective), each in its objective's own
    /// direction. NaN or infinity marks a failed evaluation. All rows are checked before any
    /// is recorded.
    fn tell(&mut self, x: &Bound<'_, PyAny>, y: &Bound<'_, PyAny>) -> PyResult<()> {
        let x = self.points(x, "x")?;
        let y = rows_arg(y, "y", self.inner.objectives().len())?;
        if x.rows != y.rows {
            return Err(BoError::new_err(format!(
                "tell: {} point(s) but {} row(s) of objective values",
                x.rows, y.rows
            )));
        }
        self.transact(|opt| {
            for i in 0..x.rows {
                opt.tell(x.row(i), y.row(i)).map_err(to_py)?;
            }
            Ok(())
        })
    }

    /// Record failed evaluations of `x` (one point or rows): they are never fitted, and no
    /// later point is proposed within `failure_radius` of them.
    fn failed(&mut self, x: &Bound<'_, PyAny>) -> PyResult<()> {
        let x = self.points(x, "x")?;
        let nan = vec![f64::NAN; self.inner.objectives().len()];
        self.transact(|opt| {
            for i in 0..x.rows {
                opt.tell(x.row(i), &nan).map_err(to_py)?;
            }
            Ok(())
        })
    }

    /// Mark points (one or rows) as being evaluated elsewhere until they are told.
    fn add_pending(&mut self, x: &Bound<'_, PyAny>) -> PyResult<()> {
        let x = self.points(x, "x")?;
        self.transact(|opt| {
            for i in 0..x.rows {
                opt.add_pending(x.row(i)).map_err(to_py)?;
            }
            Ok(())
        })
    }

    /// Forget every pending point (e.g. workers that died).
    fn clear_pending(&mut self) {
        self.inner.clear_pending();
    }

    /// Asked (or added) but not yet told, a `(p, d)` array.
    #[getter]
    fn pending<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        to_array2(
            py,
            &Matrix::from_rows(self.inner.space().dim(), self.inner.pending()),
        )
    }

    /// Every told evaluation in order, failed ones included: `(X (n, d), Y (n, m))`.
    #[getter]
    fn observations<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let obs = self.inner.observations();
        let xs: Vec<Vec<f64>> = obs.iter().map(|o| o.x.clone()).collect();
        let ys: Vec<Vec<f64>> = obs.iter().map(|o| o.y.clone()).collect();
        let x = to_array2(py, &Matrix::from_rows(self.inner.space().dim(), &xs))?;
        let y = to_array2(py, &Matrix::from_rows(self.inner.objectives().len(), &ys))?;
        PyTuple::new(py, [x, y])
    }

    /// The best successful `(x, y)` of a single-objective run, else `None`.
    #[getter]
    fn best<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        self.inner
            .best()
            .map(|o| {
                let x = PyArray1::from_slice(py, &o.x);
                let y = PyArray1::from_slice(py, &o.y);
                PyTuple::new(py, [x, y])
            })
            .transpose()
    }

    /// Indices into `observations` of the successful evaluations no other one dominates.
    fn pareto_indices(&self) -> Vec<usize> {
        self.inner.pareto_indices()
    }

    #[getter]
    fn space(&self) -> Space {
        Space {
            inner: self.inner.space().clone(),
        }
    }

    /// `[(name, "max" | "min"), ...]`.
    #[getter]
    fn objectives(&self) -> Vec<(String, &'static str)> {
        self.inner
            .objectives()
            .iter()
            .map(|o| {
                let goal = match o.goal {
                    bomf_bo::Goal::Max => "max",
                    bomf_bo::Goal::Min => "min",
                };
                (o.name.clone(), goal)
            })
            .collect()
    }

    #[getter]
    fn ref_point(&self) -> Option<Vec<f64>> {
        self.inner.ref_point().map(<[f64]>::to_vec)
    }

    #[getter]
    fn acquisition(&self) -> &'static str {
        name_of(&ACQUISITIONS, self.inner.acquisition_kind())
    }

    /// Size of the Sobol design before BO starts.
    #[getter]
    fn n_initial(&self) -> usize {
        self.inner.n_initial()
    }

    #[getter]
    fn n_successful(&self) -> usize {
        self.inner.n_successful()
    }

    #[getter]
    fn n_failed(&self) -> usize {
        self.inner.n_failed()
    }

    /// `"front"` or `"observed"`: how the reference point is derived when none is set.
    #[getter]
    fn ref_point_rule(&self) -> &'static str {
        name_of(&REF_POINT_RULES, self.inner.settings().ref_point_rule)
    }

    /// The whole state as JSON (the format `bomf bo` and the Rust optimiser resume from).
    fn state(&self) -> PyResult<String> {
        self.inner.to_json().map_err(to_py)
    }

    /// Resume from `state()`'s output.
    #[staticmethod]
    fn from_state(state: &str) -> PyResult<Self> {
        let inner = bomf_bo::Optimizer::from_json(state).map_err(to_py)?;
        Ok(Self { inner })
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        let from_state = py.get_type::<Self>().getattr("from_state")?;
        Ok((from_state, (self.state()?,)))
    }

    fn __repr__(&self) -> String {
        format!(
            "Optimizer(dim={}, objectives={:?}, acquisition={:?}, observations={}, pending={})",
            self.inner.space().dim(),
            self.objectives(),
            self.acquisition(),
            self.inner.observations().len(),
            self.inner.pending().len()
        )
    }
}
