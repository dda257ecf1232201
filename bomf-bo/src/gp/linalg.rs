//! The little dense linear algebra a GP needs, on row-major `Vec<f64>` matrices: Cholesky with
//! jitter retries and triangular solves. Up to a few hundred rows plain loops are as fast as
//! anything; larger factorisations and inverses use the cache-blocked kernels of
//! `gp::blocked`, which keep the crate free of BLAS too.

use super::blocked::{self, BLOCKED_MIN_N};
use crate::error::{BoError, Result};

/// Jitter schedule of the retries, relative to the mean diagonal (as GPyTorch's
/// `psd_safe_cholesky`: 1e-8 in float64, growing tenfold, up to 6 tries).
const JITTER_START: f64 = 1e-8;
const JITTER_TRIES: usize = 6;

/// In-place lower Cholesky of the `n × n` row-major `a`; the upper triangle is zeroed.
/// Returns `false` (with `a` clobbered) if a pivot is not positive. Large matrices go to the
/// cache-blocked kernel ([`super::blocked`]).
fn cholesky_in_place(a: &mut [f64], n: usize) -> bool {
    if n >= BLOCKED_MIN_N {
        blocked::cholesky_in_place(a, n)
    } else {
        cholesky_small(a, n)
    }
}

/// [`cholesky_in_place`] with plain loops (small matrices, and the diagonal blocks of the
/// blocked kernel).
pub(crate) fn cholesky_small(a: &mut [f64], n: usize) -> bool {
    for j in 0..n {
        // Rows below j are updated against row j, which is final once its diagonal is set.
        let (upto_j, below) = a.split_at_mut((j + 1) * n);
        let row_j = &mut upto_j[j * n..];
        let d = row_j[j] - dot(&row_j[..j], &row_j[..j]);
        if d <= 0.0 || !d.is_finite() {
            return false;
        }
        let d = d.sqrt();
        row_j[j] = d;
        row_j[j + 1..].fill(0.0);
        for row_i in below.chunks_exact_mut(n) {
            row_i[j] = (row_i[j] - dot(&row_i[..j], &row_j[..j])) / d;
        }
    }
    true
}

/// `Σ a_i b_i` with four independent accumulators, so the compiler can vectorise it (a single
/// running sum fixes the order of the additions and keeps it scalar).
#[inline]
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f64; 4];
    let chunks = n / 4;
    for c in 0..chunks {
        for l in 0..4 {
            acc[l] += a[4 * c + l] * b[4 * c + l];
        }
    }
    let mut tail = 0.0;
    for i in 4 * chunks..n {
        tail += a[i] * b[i];
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
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
    if n >= BLOCKED_MIN_N {
        return blocked::solve_lower(l, n, b);
    }
    for i in 0..n {
        b[i] = (b[i] - dot(&l[i * n..i * n + i], &b[..i])) / l[i * n + i];
    }
}

/// Solve `Lᵀ x = b` in place for lower-triangular `L`.
pub fn solve_upper_t(l: &[f64], n: usize, b: &mut [f64]) {
    if n >= BLOCKED_MIN_N {
        return blocked::solve_upper_t(l, n, b);
    }
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
    // Large factors, several columns: the blocked solve on the transposed right-hand sides.
    if n >= BLOCKED_MIN_N && m > 1 {
        let mut rows = blocked::transpose(b, n, m);
        blocked::solve_lower_rows(l, n, &mut rows);
        b.copy_from_slice(&blocked::transpose(&rows, m, n));
        return;
    }
    // A few columns (the acquisition's q new points): one contiguous solve per column. Many
    // columns (raw-sample scoring): row updates across all columns at once.
    if m <= 4 {
        let mut column = vec![0.0; n];
        for j in 0..m {
            for (i, c) in column.iter_mut().enumerate() {
                *c = b[i * m + j];
            }
            solve_lower(l, n, &mut column);
            for (i, c) in column.iter().enumerate() {
                b[i * m + j] = *c;
            }
        }
        return;
    }
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
    if n >= BLOCKED_MIN_N {
        return blocked::cho_inverse(l, n);
    }
    // L⁻¹ row by row. It is lower triangular, so row i only involves columns ≤ i: half the work
    // of solving against a dense identity.
    let mut linv = vec![0.0; n * n];
    for i in 0..n {
        let (head, tail) = linv.split_at_mut(i * n);
        let row_i = &mut tail[..n];
        row_i[i] = 1.0;
        for k in 0..i {
            let lik = l[i * n + k];
            if lik != 0.0 {
                for (a, b) in row_i[..=k].iter_mut().zip(&head[k * n..k * n + k + 1]) {
                    *a -= lik * b;
                }
            }
        }
        let d = l[i * n + i];
        row_i[..=i].iter_mut().for_each(|v| *v /= d);
    }
    // (L⁻¹)ᵀ L⁻¹ = Σ_k r_kᵀ r_k over the rows r_k of L⁻¹ (non-zero in 0..=k): rank-one updates
    // of the lower triangle on contiguous rows, then mirrored.
    let mut inv = vec![0.0; n * n];
    for k in 0..n {
        let r = &linv[k * n..k * n + k + 1];
        for (i, &ri) in r.iter().enumerate() {
            if ri != 0.0 {
                for (o, rj) in inv[i * n..i * n + i + 1].iter_mut().zip(r) {
                    *o += ri * rj;
                }
            }
        }
    }
    for i in 0..n {
        for j in 0..i {
            inv[j * n + i] = inv[i * n + j];
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
