//! `bomf_bo._native`: the Python face of `bomf-bo`.
//!
//! A thin layer: every number comes from `bomf-bo`. This crate converts numpy arrays and Python
//! values to the optimiser's inputs, turns [`bomf_bo::BoError`] into the Python exception
//! `bomf_bo.BoError` (a `ValueError`) carrying the Rust message, and releases the GIL while the
//! optimiser works. The Python package around it (`python/bomf_bo`) re-exports these classes and
//! adds the Optuna sampler.

mod arrays;
mod optimizer;
mod space;

use numpy::{PyArray1, PyArray2};
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use arrays::{Matrix, matrix_arg, oriented, to_array2};

create_exception!(
    _native,
    BoError,
    PyValueError,
    "An error reported by bomf-bo (bad input, a dimension mismatch, a failed GP fit, an \
     unreadable state); the message is bomf-bo's."
);

/// A `bomf_bo::BoError` as the Python exception `BoError`, with the Rust message.
pub(crate) fn to_py(err: bomf_bo::BoError) -> PyErr {
    BoError::new_err(err.to_string())
}

/// The hypervolume dominated by the rows of `y` (n × m) and bounded by `ref_point` (m).
///
/// Rows must be better than `ref_point` in every objective to count: larger when maximising
/// (the default), smaller with `minimize=True`.
#[pyfunction]
#[pyo3(signature = (y, ref_point, *, minimize = false))]
fn hypervolume(y: &Bound<'_, PyAny>, ref_point: Vec<f64>, minimize: bool) -> PyResult<f64> {
    let y = matrix_arg(y, "y")?;
    let ys = oriented(&y.data, minimize);
    let reference = oriented(&ref_point, minimize);
    bomf_bo::hypervolume(&ys, y.cols, &reference).map_err(to_py)
}

/// The rows of `y` (n × m) that no other row dominates, deduplicated, in input order.
#[pyfunction]
#[pyo3(signature = (y, *, minimize = false))]
fn pareto_front<'py>(
    py: Python<'py>,
    y: &Bound<'py, PyAny>,
    minimize: bool,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let y = matrix_arg(y, "y")?;
    let idx =
        bomf_bo::non_dominated_indices(&oriented(&y.data, minimize), y.cols).map_err(to_py)?;
    let rows = Matrix::gather(&y, &idx);
    to_array2(py, &rows)
}

/// Row indices (ascending) of the deduplicated non-dominated rows of `y` (n × m).
#[pyfunction]
#[pyo3(signature = (y, *, minimize = false))]
fn non_dominated_indices<'py>(
    py: Python<'py>,
    y: &Bound<'py, PyAny>,
    minimize: bool,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let y = matrix_arg(y, "y")?;
    let idx =
        bomf_bo::non_dominated_indices(&oriented(&y.data, minimize), y.cols).map_err(to_py)?;
    let idx: Vec<i64> = idx.into_iter().map(|i| i as i64).collect();
    Ok(PyArray1::from_vec(py, idx))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("BoError", m.py().get_type::<BoError>())?;
    m.add("MAX_ASK", bomf_bo::MAX_ASK)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<space::Param>()?;
    m.add_class::<space::Space>()?;
    m.add_class::<optimizer::Optimizer>()?;
    m.add_function(wrap_pyfunction!(hypervolume, m)?)?;
    m.add_function(wrap_pyfunction!(pareto_front, m)?)?;
    m.add_function(wrap_pyfunction!(non_dominated_indices, m)?)?;
    Ok(())
}
