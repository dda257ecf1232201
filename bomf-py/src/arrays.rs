//! numpy arrays in and out: row-major matrices of `f64`, with the shape rules every method
//! shares (one point may be given as a 1-D array, one objective's values as a scalar).

use numpy::{AllowTypeChange, PyArray2, PyArrayLikeDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::BoError;

/// A row-major `rows × cols` matrix.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f64>,
}

impl Matrix {
    pub fn from_rows(cols: usize, rows: &[Vec<f64>]) -> Self {
        Self {
            rows: rows.len(),
            cols,
            data: rows.concat(),
        }
    }

    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// The rows `idx` of `m`, in that order.
    pub fn gather(m: &Matrix, idx: &[usize]) -> Matrix {
        let data = idx.iter().flat_map(|&i| m.row(i).iter().copied()).collect();
        Matrix {
            rows: idx.len(),
            cols: m.cols,
            data,
        }
    }
}

/// `obj` (anything `numpy.asarray(obj, dtype=float)` accepts) as `(shape, values)`.
fn array_like(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<(Vec<usize>, Vec<f64>)> {
    let array: PyArrayLikeDyn<'_, f64, AllowTypeChange> = obj
        .extract()
        .map_err(|e| BoError::new_err(format!("{what}: expected an array of numbers ({e})")))?;
    let shape = array.shape().to_vec();
    let values = array.as_array().iter().copied().collect();
    Ok((shape, values))
}

/// A 2-D array, or a 1-D array as one row.
pub(crate) fn matrix_arg(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Matrix> {
    let (shape, data) = array_like(obj, what)?;
    match shape[..] {
        [cols] => Ok(Matrix {
            rows: 1,
            cols,
            data,
        }),
        [rows, cols] => Ok(Matrix { rows, cols, data }),
        _ => Err(BoError::new_err(format!(
            "{what}: expected a 1-D or 2-D array, got shape {shape:?}"
        ))),
    }
}

/// Rows of exactly `cols` columns: a 2-D `n × cols` array, a 1-D array of `cols` values (one
/// row), and where `cols == 1` also a scalar or a 1-D array of `n` values (one per row).
pub(crate) fn rows_arg(obj: &Bound<'_, PyAny>, what: &str, cols: usize) -> PyResult<Matrix> {
    let (shape, data) = array_like(obj, what)?;
    let rows = match shape[..] {
        [] if cols == 1 => 1,
        [n] if n == cols => 1,
        [n] if cols == 1 => n,
        [n, c] if c == cols => n,
        _ => {
            return Err(BoError::new_err(format!(
                "{what}: expected {cols} value(s) per row (shape (n, {cols}) or ({cols},)), got \
                 shape {shape:?}"
            )));
        }
    };
    Ok(Matrix { rows, cols, data })
}

/// A matrix as a new 2-D numpy array.
pub(crate) fn to_array2<'py>(py: Python<'py>, m: &Matrix) -> PyResult<Bound<'py, PyArray2<f64>>> {
    numpy::PyArray1::from_slice(py, &m.data)
        .reshape([m.rows, m.cols])
        .map_err(|e| BoError::new_err(format!("array of shape ({}, {}): {e}", m.rows, m.cols)))
}

/// `values` negated when `minimize` (bomf-bo's Pareto functions maximise).
pub(crate) fn oriented(values: &[f64], minimize: bool) -> Vec<f64> {
    if minimize {
        values.iter().map(|v| -v).collect()
    } else {
        values.to_vec()
    }
}
