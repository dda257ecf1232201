//! `Param` and `Space`: a box of ranges (linear, log, integer) or a simplex of weights.

use pyo3::prelude::*;

use crate::to_py;

/// One tuned parameter of a box: `low <= value <= high`, optionally on a log scale (requires
/// `low > 0`) and/or restricted to integers (requires integer bounds).
#[pyclass(module = "bomf_bo", frozen, eq, from_py_object)]
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub(crate) inner: bomf_bo::Param,
}

#[pymethods]
impl Param {
    #[new]
    #[pyo3(signature = (name, low, high, *, log = false, integer = false))]
    fn new(name: String, low: f64, high: f64, log: bool, integer: bool) -> Self {
        let mut inner = bomf_bo::Param::new(name, low, high);
        inner.log = log;
        inner.integer = integer;
        Self { inner }
    }

    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }

    #[getter]
    fn low(&self) -> f64 {
        self.inner.low
    }

    #[getter]
    fn high(&self) -> f64 {
        self.inner.high
    }

    #[getter]
    fn log(&self) -> bool {
        self.inner.log
    }

    #[getter]
    fn integer(&self) -> bool {
        self.inner.integer
    }

    fn __repr__(&self) -> String {
        let p = &self.inner;
        format!(
            "Param({:?}, {:?}, {:?}, log={}, integer={})",
            p.name,
            p.low,
            p.high,
            py_bool(p.log),
            py_bool(p.integer)
        )
    }
}

fn py_bool(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

/// A validated search space: `Space([Param, ...])` for a box, `Space.simplex(names)` for
/// weights on the probability simplex (checkpoint fusion).
#[pyclass(module = "bomf_bo", frozen, from_py_object)]
#[derive(Debug, Clone)]
pub struct Space {
    pub(crate) inner: bomf_bo::Space,
}

#[pymethods]
impl Space {
    #[new]
    fn new(params: Vec<Param>) -> PyResult<Self> {
        let params = params.into_iter().map(|p| p.inner).collect();
        let inner = bomf_bo::Space::new_box(params).map_err(to_py)?;
        Ok(Self { inner })
    }

    /// `len(names) >= 2` non-negative weights summing to one. `map`: `"normalize"` (BOMF's
    /// `w = x / sum(x)`, the default) or `"stick_breaking"` (k - 1 coordinates whose uniform
    /// distribution is uniform on the simplex).
    #[staticmethod]
    #[pyo3(signature = (names, *, map = "normalize"))]
    fn simplex(names: Vec<String>, map: &str) -> PyResult<Self> {
        let map = match map {
            "normalize" => bomf_bo::SimplexMap::Normalize,
            "stick_breaking" => bomf_bo::SimplexMap::StickBreaking,
            other => {
                return Err(crate::BoError::new_err(format!(
                    "map: expected \"normalize\" or \"stick_breaking\", got {other:?}"
                )));
            }
        };
        let inner = bomf_bo::Space::simplex(names, map).map_err(to_py)?;
        Ok(Self { inner })
    }

    /// The parameters, in coordinate order.
    #[getter]
    fn params(&self) -> Vec<Param> {
        self.inner
            .params()
            .iter()
            .map(|p| Param { inner: p.clone() })
            .collect()
    }

    /// The parameter names, in coordinate order.
    #[getter]
    fn names(&self) -> Vec<String> {
        self.inner.params().iter().map(|p| p.name.clone()).collect()
    }

    /// Number of coordinates of a point.
    #[getter]
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    /// `"box"` or `"simplex"`.
    #[getter]
    fn domain(&self) -> &'static str {
        match self.inner.domain() {
            bomf_bo::Domain::Box => "box",
            bomf_bo::Domain::Simplex { .. } => "simplex",
        }
    }

    /// Raises `BoError` naming the coordinate when `x` is not a point of the space.
    fn check_point(&self, x: Vec<f64>) -> PyResult<()> {
        self.inner.check_point(&x).map_err(to_py)
    }

    fn __len__(&self) -> usize {
        self.inner.dim()
    }

    fn __repr__(&self) -> String {
        match self.inner.domain() {
            bomf_bo::Domain::Box => {
                let params: Vec<String> = self.params().iter().map(Param::__repr__).collect();
                format!("Space([{}])", params.join(", "))
            }
            bomf_bo::Domain::Simplex { map, .. } => {
                let map = match map {
                    bomf_bo::SimplexMap::Normalize => "normalize",
                    bomf_bo::SimplexMap::StickBreaking => "stick_breaking",
                };
                format!("Space.simplex({:?}, map={map:?})", self.names())
            }
        }
    }
}
