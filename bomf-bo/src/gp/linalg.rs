//! The little dense linear algebra a GP needs, on row-major `Vec<f64>` matrices: Cholesky with
//! jitter retries and triangular solves. Sizes are tens to a few hundred, where plain loops
//! are as fast as anything and keep the crate free of BLAS.

use crate::error::{BoError, Result};

/// Jitter schedule of the retries, relative to the mean diagonal (as GPyTorch's
/// `psd_safe_cholesky`: 1e-8 in float64, growing tenfold, up to 6 tries).
const JITTER_START: f64 = 1e-8;
const JITTER_TRIES: usize = 6;

/// In-place lower Cholesky of the `n × n` row-major `a`; the upper triangle is zeroed.
/// Returns `false` (with `a` clobbered) if a pivot is not positive.
fn cholesky_in_place(a: &mut [f64], n: usize) -> bool {
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        if d <= 0.0 || !d.is_finite() {
            return false;
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
        for k in j + 1..n {
            a[j * n + k] = 0.0;
        }
    }
    true
}

/// Lower Cholesky factor of a symmetric `n × n` matrix, adding jitter `ε·mean(diag)·I`
/// (ε = 1e-8, 1e-7, …) when the plain factorisation fails. Returns the factor and the jitter
/// that was added (0 if none).
pub fn cholesky_jittered(a: &[f64], n: usize) -> Result<(Vec<f64>, f64)> {
    let mut l = a.to_vec();
    if cholesky_in_place(&mut l, n) {
        return Ok((l, 0.0));
    }
    let mean_diag = ((0..n).map(|i| a[i * n + i].abs()).sum::<f64>() / n.max(1) as f64).max(1e-300);
    let mut eps = JITTER_START;
    for _ in 0..JITTER_TRIES {
        let jitter = eps * mean_diag;
        l.copy_from_slice(a);
        for i in 0..n {
            l[i * n + i] += jitter;
        }
        if cholesky_in_place(&mut l, n) {
            return Ok((l, jitter));
        }
        eps *= 10.0;
    }
    Err(BoError::NotPositiveDefinite {
        max_jitter: eps / 10.0 * mean_diag,
    })
}

/// Solve `L x = b` in place for lower-triangular `L` (`n × n`), `b` of length `n`.
pub fn solve_lower(l: &[f64], n: usize, b: &mut [f64]) {
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= l[i * n + k] * b[k];
        }
        b[i] = s / l[i * n + i];
    }
}

/// Solve `Lᵀ x = b` in place for lower-triangular `L`.
pub fn solve_upper_t(l: &[f64], n: usize, b: &mut [f64]) {
    for i in (0..n).rev() {
        let mut s = b[i];
        for k in i + 1..n {
            s -= l[k * n + i] * b[k];
        }
        b[i] = s / l[i * n + i];
    }
}

/// Solve `L X = B` for the `n × m` row-major `B` in place (all columns at once).
pub fn solve_lower_matrix(l: &[f64], n: usize, b: &mut [f64], m: usize) {
    for i in 0..n {
        for k in 0..i {
            let lik = l[i * n + k];
            if lik != 0.0 {
                let (head, tail) = b.split_at_mut(i * m);
                let row_k = &head[k * m..k * m + m];
                for (bi, bk) in tail[..m].iter_mut().zip(row_k) {
                    *bi -= lik * bk;
                }
            }
        }
        let d = l[i * n + i];
        for v in &mut b[i * m..i * m + m] {
            *v /= d;
        }
    }
}

/// `(L Lᵀ)⁻¹ b` from a Cholesky factor.
pub fn cho_solve(l: &[f64], n: usize, b: &[f64]) -> Vec<f64> {
    let mut x = b.to_vec();
    solve_lower(l, n, &mut x);
    solve_upper_t(l, n, &mut x);
    x
}

/// `(L Lᵀ)⁻¹` as a dense symmetric matrix.
pub fn cho_inverse(l: &[f64], n: usize) -> Vec<f64> {
    // L⁻¹ column by column, then (L⁻¹)ᵀ L⁻¹.
    let mut linv = vec![0.0; n * n];
    for i in 0..n {
        linv[i * n + i] = 1.0;
    }
    solve_lower_matrix(l, n, &mut linv, n);
    let mut inv = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = 0.0;
            for k in i..n {
                s += linv[k * n + i] * linv[k * n + j];
            }
            inv[i * n + j] = s;
            inv[j * n + i] = s;
        }
    }
    inv
}

/// Forward-mode derivative of the Cholesky factor: given `L` and a symmetric direction `dΣ`
/// (overwritten as scratch), writes `dL = L Φ(L⁻¹ dΣ L⁻ᵀ)`.
pub fn cholesky_tangent(l: &[f64], q: usize, dsigma: &mut [f64], dl: &mut [f64]) {
    // Y = L⁻¹ dΣ; then A = L⁻¹ Yᵀ = L⁻¹ dΣ L⁻ᵀ (dΣ symmetric).
    solve_lower_matrix(l, q, dsigma, q);
    let mut yt = vec![0.0; q * q];
    for a in 0..q {
        for b in 0..q {
            yt[a * q + b] = dsigma[b * q + a];
        }
    }
    solve_lower_matrix(l, q, &mut yt, q);
    // Φ(A): lower triangle, halved diagonal.
    for a in 0..q {
        for b in 0..q {
            yt[a * q + b] = match a.cmp(&b) {
                std::cmp::Ordering::Greater => yt[a * q + b],
                std::cmp::Ordering::Equal => 0.5 * yt[a * q + b],
                std::cmp::Ordering::Less => 0.0,
            };
        }
    }
    for a in 0..q {
        for b in 0..q {
            dl[a * q + b] = (b..=a).map(|c| l[a * q + c] * yt[c * q + b]).sum();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_reconstructs_and_solves() {
        let a = [4.0, 2.0, 0.6, 2.0, 5.0, 1.0, 0.6, 1.0, 3.0];
        let (l, jitter) = cholesky_jittered(&a, 3).unwrap();
        assert_eq!(jitter, 0.0);
        for i in 0..3 {
            for j in 0..3 {
                let s: f64 = (0..3).map(|k| l[i * 3 + k] * l[j * 3 + k]).sum();
                assert!((s - a[i * 3 + j]).abs() < 1e-12);
            }
        }
        let x = cho_solve(&l, 3, &[1.0, 2.0, 3.0]);
        for i in 0..3 {
            let s: f64 = (0..3).map(|k| a[i * 3 + k] * x[k]).sum();
            assert!((s - [1.0, 2.0, 3.0][i]).abs() < 1e-12);
        }
        let inv = cho_inverse(&l, 3);
        for i in 0..3 {
            for j in 0..3 {
                let s: f64 = (0..3).map(|k| a[i * 3 + k] * inv[k * 3 + j]).sum();
                assert!((s - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn singular_matrix_gets_jitter() {
        let a = [1.0, 1.0, 1.0, 1.0];
        let (_, jitter) = cholesky_jittered(&a, 2).unwrap();
        assert!(jitter > 0.0);
        assert!(cholesky_jittered(&[-1.0], 1).is_err());
    }
}
