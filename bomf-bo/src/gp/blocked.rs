//! Cache-blocked dense kernels for large matrices: Cholesky, the inverse from a Cholesky
//! factor, Gram matrices and products with a triangular factor.
//!
//! The plain loops of [`super::linalg`] stream the whole matrix through the cache once per
//! column and, compiled for the baseline x86-64 target, use two-lane vectors: past a few
//! hundred rows they spend their time waiting for memory. Here every `O(n³)` step is cast as
//! blocks of `C −= A Bᵀ` over **rows** of row-major matrices (each entry a dot product of two
//! contiguous rows), computed by a 4×4 register tile with eight lanes per accumulator, inside
//! [`pulp::Arch::dispatch`] so that the loops are compiled for the AVX2 / AVX-512 the CPU has.
//! The lane layout is fixed, so the summation order (and every bit of the result) does not
//! depend on which instruction set runs it.
//!
//! [`super::linalg`] switches to these kernels from [`BLOCKED_MIN_N`] rows on; below, the
//! plain loops are as fast and their results stay bit-identical to earlier releases.

use std::ops::Range;

use pulp::{Simd, WithSimd};
use rayon::prelude::*;

use super::linalg::cholesky_small;

/// Size from which [`super::linalg`] uses the blocked kernels.
pub const BLOCKED_MIN_N: usize = 256;

/// Rows and columns of one block: a block of each operand stays in L2 while it is reused.
const NB: usize = 64;
/// Columns of the dot products one pass of the register tiles covers.
const KC: usize = 256;
/// Accumulator lanes of the register tile.
const LANES: usize = 8;

/// A row-major matrix view: `data[r * ld + k]` is row `r`, column `k`.
#[derive(Clone, Copy)]
pub(crate) struct Rows<'a> {
    pub data: &'a [f64],
    pub ld: usize,
}

impl<'a> Rows<'a> {
    pub fn new(data: &'a [f64], ld: usize) -> Self {
        Self { data, ld }
    }

    #[inline(always)]
    fn row(&self, r: usize, ks: &Range<usize>) -> &'a [f64] {
        &self.data[r * self.ld + ks.start..r * self.ld + ks.end]
    }
}

/// `c[r * ldc + s] += sign · Σ_{k ∈ ks} a[a_rows.start + r, k] · b[b_rows.start + s, k]` for
/// every `r < a_rows.len()`, `s < b_rows.len()`.
pub(crate) struct SubAbt<'a> {
    pub c: &'a mut [f64],
    pub ldc: usize,
    pub a: Rows<'a>,
    pub a_rows: Range<usize>,
    pub b: Rows<'a>,
    pub b_rows: Range<usize>,
    pub ks: Range<usize>,
    pub sign: f64,
}

impl SubAbt<'_> {
    pub fn run(self) {
        if self.ks.is_empty() || self.a_rows.is_empty() || self.b_rows.is_empty() {
            return;
        }
        // Chunks of KC columns: the rows of a tile then stay in L1 while they are reused.
        let SubAbt {
            c,
            ldc,
            a,
            a_rows,
            b,
            b_rows,
            ks,
            sign,
        } = self;
        for k0 in ks.clone().step_by(KC) {
            pulp::Arch::new().dispatch(SubAbt {
                c: &mut *c,
                ldc,
                a,
                a_rows: a_rows.clone(),
                b,
                b_rows: b_rows.clone(),
                ks: k0..(k0 + KC).min(ks.end),
                sign,
            });
        }
    }
}

impl WithSimd for SubAbt<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        // `G` vectors make up the LANES lanes of one dot product. 4×4 tiles fit AVX-512's 32
        // registers; narrower vectors need more accumulators per dot product, so their tiles
        // are smaller. The sums are the same either way.
        match S::F64_LANES {
            8 => self.tiles::<S, 4, 1>(simd),
            4 => self.tiles::<S, 2, 2>(simd),
            2 => self.tiles::<S, 2, 4>(simd),
            _ => self.tiles::<S, 2, 8>(simd),
        }
    }
}

impl SubAbt<'_> {
    #[inline(always)]
    fn tiles<S: Simd, const T: usize, const G: usize>(self, simd: S) {
        debug_assert_eq!(G * S::F64_LANES, LANES);
        let (rows, cols) = (self.a_rows.len(), self.b_rows.len());
        for r0 in (0..rows).step_by(T) {
            let rn = T.min(rows - r0);
            // Missing rows of an edge tile repeat the first one; their sums are discarded.
            let a: [&[f64]; T] = std::array::from_fn(|i| {
                let r = self.a_rows.start + r0 + if i < rn { i } else { 0 };
                self.a.row(r, &self.ks)
            });
            for s0 in (0..cols).step_by(T) {
                let sn = T.min(cols - s0);
                let b: [&[f64]; T] = std::array::from_fn(|j| {
                    let s = self.b_rows.start + s0 + if j < sn { j } else { 0 };
                    self.b.row(s, &self.ks)
                });
                let t = tile::<S, T, G>(simd, &a, &b);
                for (i, t_row) in t.iter().enumerate().take(rn) {
                    let c_row = &mut self.c[(r0 + i) * self.ldc + s0..][..sn];
                    for (c, v) in c_row.iter_mut().zip(t_row) {
                        *c += self.sign * v;
                    }
                }
            }
        }
    }
}

/// The `T × T` dot products of the rows `a[i]` and `b[j]` (all of one length). Each dot
/// product accumulates in [`LANES`] lanes (`G` vectors): lane `l` sums the products at
/// `k ≡ l mod 8` in order, with fused multiply-adds, whatever the vector width, so results
/// do not depend on the instruction set.
#[inline(always)]
fn tile<S: Simd, const T: usize, const G: usize>(
    simd: S,
    a: &[&[f64]; T],
    b: &[&[f64]; T],
) -> [[f64; T]; T] {
    let len = a[0].len();
    let full = len - len % LANES;
    let zero = simd.splat_f64s(0.0);
    let mut acc = [[[zero; G]; T]; T];
    let av: [&[S::f64s]; T] = std::array::from_fn(|i| S::as_simd_f64s(&a[i][..full]).0);
    let bv: [&[S::f64s]; T] = std::array::from_fn(|j| S::as_simd_f64s(&b[j][..full]).0);
    for v0 in (0..full / S::F64_LANES).step_by(G) {
        let x: [[S::f64s; G]; T] = std::array::from_fn(|i| std::array::from_fn(|l| av[i][v0 + l]));
        let y: [[S::f64s; G]; T] = std::array::from_fn(|j| std::array::from_fn(|l| bv[j][v0 + l]));
        for i in 0..T {
            for j in 0..T {
                for l in 0..G {
                    acc[i][j][l] = simd.mul_add_f64s(x[i][l], y[j][l], acc[i][j][l]);
                }
            }
        }
    }
    let mut out = [[0.0; T]; T];
    for i in 0..T {
        for j in 0..T {
            let mut lanes = [0.0f64; LANES];
            for (chunk, v) in lanes.chunks_exact_mut(S::F64_LANES).zip(&acc[i][j]) {
                S::as_mut_simd_f64s(chunk).0[0] = *v;
            }
            let mut s = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
                + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
            for k in full..len {
                s = a[i][k].mul_add(b[j][k], s);
            }
            out[i][j] = s;
        }
    }
    out
}

/// Copy of the block `rows × cols` of the row-major `m` (leading dimension `ld`).
fn copy_block(m: &[f64], ld: usize, rows: &Range<usize>, cols: &Range<usize>) -> Vec<f64> {
    let mut out = Vec::with_capacity(rows.len() * cols.len());
    for r in rows.clone() {
        out.extend_from_slice(&m[r * ld + cols.start..r * ld + cols.end]);
    }
    out
}

fn store_block(m: &mut [f64], ld: usize, rows: &Range<usize>, cols: &Range<usize>, b: &[f64]) {
    let w = cols.len();
    for (i, r) in rows.clone().enumerate() {
        m[r * ld + cols.start..r * ld + cols.end].copy_from_slice(&b[i * w..(i + 1) * w]);
    }
}

fn blocks(n: usize) -> impl Iterator<Item = Range<usize>> {
    (0..n).step_by(NB).map(move |s| s..(s + NB).min(n))
}

/// In-place lower Cholesky of the row-major `n × n` matrix `a` (left-looking by blocks of
/// columns); the strict upper triangle is zeroed. `false` (with `a` clobbered) if a pivot is
/// not positive.
pub(crate) fn cholesky_in_place(a: &mut [f64], n: usize) -> bool {
    for jb in blocks(n) {
        let w = jb.len();
        // Diagonal block: A_JJ − L_J,<J L_J,<Jᵀ, then its own small Cholesky.
        let mut diag = copy_block(a, n, &jb, &jb);
        SubAbt {
            c: &mut diag,
            ldc: w,
            a: Rows::new(a, n),
            a_rows: jb.clone(),
            b: Rows::new(a, n),
            b_rows: jb.clone(),
            ks: 0..jb.start,
            sign: -1.0,
        }
        .run();
        if !cholesky_small(&mut diag, w) {
            return false;
        }
        // Panel below: L_IJ solves L_IJ L_JJᵀ = A_IJ − L_I,<J L_J,<Jᵀ (blocks in parallel).
        let below: Vec<Range<usize>> = blocks(n).filter(|ib| ib.start >= jb.end).collect();
        let shared: &[f64] = a;
        let panels: Vec<Vec<f64>> = below
            .par_iter()
            .map(|ib| {
                let mut panel = copy_block(shared, n, ib, &jb);
                SubAbt {
                    c: &mut panel,
                    ldc: w,
                    a: Rows::new(shared, n),
                    a_rows: ib.clone(),
                    b: Rows::new(shared, n),
                    b_rows: jb.clone(),
                    ks: 0..jb.start,
                    sign: -1.0,
                }
                .run();
                SolveXLt {
                    p: &mut panel,
                    l: &diag,
                    w,
                }
                .run();
                panel
            })
            .collect();
        for (ib, panel) in below.iter().zip(&panels) {
            store_block(a, n, ib, &jb, panel);
        }
        store_block(a, n, &jb, &jb, &diag);
        for r in jb {
            a[r * n + r + 1..(r + 1) * n].fill(0.0);
        }
    }
    true
}

/// Solves `X Lᵀ = P` in place for the `rows × w` block `p`, with `L` the `w × w` lower
/// factor `l`: column `c` of `X` is `(P_c − Σ_{k<c} L_ck X_k) / L_cc`, computed on the
/// transposed block so that each step is a contiguous `axpy` over all rows (the same
/// substitution as row by row, in the same order for every entry).
struct SolveXLt<'a> {
    p: &'a mut [f64],
    l: &'a [f64],
    w: usize,
}

impl SolveXLt<'_> {
    fn run(self) {
        pulp::Arch::new().dispatch(self);
    }
}

impl WithSimd for SolveXLt<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        let w = self.w;
        let rows = self.p.len() / w;
        let mut t = transpose(self.p, rows, w);
        for c in 0..w {
            let (done, rest) = t.split_at_mut(c * rows);
            let col = &mut rest[..rows];
            for k in 0..c {
                let lck = self.l[c * w + k];
                if lck != 0.0 {
                    for (x, y) in col.iter_mut().zip(&done[k * rows..(k + 1) * rows]) {
                        *x -= lck * y;
                    }
                }
            }
            let lcc = self.l[c * w + c];
            col.iter_mut().for_each(|x| *x /= lcc);
        }
        self.p.copy_from_slice(&transpose(&t, w, rows));
    }
}

/// Row-major transpose of the `rows × cols` matrix `m`.
pub(crate) fn transpose(m: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut t = vec![0.0; rows * cols];
    for rb in (0..rows).step_by(NB) {
        for cb in (0..cols).step_by(NB) {
            for r in rb..(rb + NB).min(rows) {
                for c in cb..(cb + NB).min(cols) {
                    t[c * rows + r] = m[r * cols + c];
                }
            }
        }
    }
    t
}

/// `U = L⁻ᵀ` (upper triangular, row-major) of the lower-triangular `n × n` factor `l`.
fn upper_inverse_t(l: &[f64], n: usize) -> Vec<f64> {
    // U Lᵀ = I: U_IJ L_JJᵀ = δ_IJ − Σ_{I ≤ K < J} U_IK L_JKᵀ for J = I, I+1, …: dot products
    // of rows of U and rows of L, then the same triangular solve as the Cholesky panels. A
    // block row of U depends on nothing but itself: the block rows run in parallel.
    let diags: Vec<Vec<f64>> = blocks(n).map(|jb| copy_block(l, n, &jb, &jb)).collect();
    let mut u = vec![0.0; n * n];
    u.par_chunks_mut(NB * n).enumerate().for_each(|(bi, rows)| {
        let ib = bi * NB..(bi * NB + NB).min(n);
        let local = 0..ib.len();
        for (jb, diag) in blocks(n).zip(&diags).filter(|(jb, _)| jb.start >= ib.start) {
            let w = jb.len();
            let mut rhs = vec![0.0; ib.len() * w];
            if jb == ib {
                for i in 0..w {
                    rhs[i * w + i] = 1.0;
                }
            }
            SubAbt {
                c: &mut rhs,
                ldc: w,
                a: Rows::new(rows, n),
                a_rows: local.clone(),
                b: Rows::new(l, n),
                b_rows: jb.clone(),
                ks: ib.start..jb.start,
                sign: -1.0,
            }
            .run();
            SolveXLt {
                p: &mut rhs,
                l: diag,
                w,
            }
            .run();
            store_block(rows, n, &local, &jb, &rhs);
        }
    });
    u
}

/// `sign · A Bᵀ` (`rows_a × rows_b`, row-major) over the block pairs `(I, J)` of rows of `a`
/// and `b` for which `span(I, J)` gives the columns to sum (`None`: the block stays zero);
/// block rows in parallel.
fn blocked_abt(
    a: Rows,
    rows_a: usize,
    b: Rows,
    rows_b: usize,
    span: impl Fn(&Range<usize>, &Range<usize>) -> Option<Range<usize>> + Sync,
) -> Vec<f64> {
    let mut out = vec![0.0; rows_a * rows_b];
    if rows_b == 0 {
        return out;
    }
    out.par_chunks_mut(NB * rows_b)
        .enumerate()
        .for_each(|(bi, panel)| {
            let ib = bi * NB..(bi * NB + NB).min(rows_a);
            for jb in blocks(rows_b) {
                if let Some(ks) = span(&ib, &jb) {
                    SubAbt {
                        c: &mut panel[jb.start..],
                        ldc: rows_b,
                        a,
                        a_rows: ib.clone(),
                        b,
                        b_rows: jb,
                        ks,
                        sign: 1.0,
                    }
                    .run();
                }
            }
        });
    out
}

/// Copies the lower triangle of the symmetric `n × n` matrix `m` onto its upper one.
fn mirror_lower(m: &mut [f64], n: usize) {
    for i in 0..n {
        for j in 0..i {
            m[j * n + i] = m[i * n + j];
        }
    }
}

/// `(L Lᵀ)⁻¹` as a dense symmetric matrix, from the lower Cholesky factor `l`.
pub(crate) fn cho_inverse(l: &[f64], n: usize) -> Vec<f64> {
    // K⁻¹ = L⁻ᵀ L⁻¹ = U Uᵀ with U = L⁻ᵀ upper triangular: entry (i, j) is the dot product of
    // rows i and j of U, which are zero before column max(i, j).
    let u = upper_inverse_t(l, n);
    let rows = Rows::new(&u, n);
    let mut inv = blocked_abt(rows, n, rows, n, |ib, jb| {
        (jb.start <= ib.start).then_some(ib.start..n)
    });
    mirror_lower(&mut inv, n);
    inv
}

/// The Gram matrix `A Aᵀ` (`rows × rows`, symmetric) of the rows of the row-major
/// `rows × len` matrix `a`.
pub(crate) fn gram_rows(a: &[f64], rows: usize, len: usize) -> Vec<f64> {
    let view = Rows::new(a, len);
    let mut out = blocked_abt(view, rows, view, rows, |ib, jb| {
        (jb.start <= ib.start).then_some(0..len)
    });
    mirror_lower(&mut out, rows);
    out
}

/// `E Lᵀ` for the `s × n` matrix `e` (rows of a [`Rows`] view) and the lower-triangular
/// `n × n` factor `l`, as a row-major `s × n` matrix: row `k` is `L e_k` (the correlated draw
/// of the base sample `e_k`).
pub(crate) fn times_lower_t(e: Rows, s: usize, l: &[f64], n: usize) -> Vec<f64> {
    // Row i of L is zero past column i.
    blocked_abt(e, s, Rows::new(l, n), n, |_, ib| Some(0..ib.end))
}

/// `L⁻¹ b_r` for every row `b_r` of the row-major `q × n` matrix `b` (overwritten), with `l`
/// the lower-triangular `n × n` factor: `B L⁻ᵀ`, by blocks of columns as the Cholesky panels.
pub(crate) fn solve_lower_rows(l: &[f64], n: usize, b: &mut [f64]) {
    b.par_chunks_mut(NB * n)
        .for_each(|chunk| solve_lower_rows_serial(l, n, chunk));
}

fn solve_lower_rows_serial(l: &[f64], n: usize, b: &mut [f64]) {
    let q = b.len() / n;
    let all = 0..q;
    for ib in blocks(n) {
        let w = ib.len();
        let mut c = copy_block(b, n, &all, &ib);
        SubAbt {
            c: &mut c,
            ldc: w,
            a: Rows::new(b, n),
            a_rows: all.clone(),
            b: Rows::new(l, n),
            b_rows: ib.clone(),
            ks: 0..ib.start,
            sign: -1.0,
        }
        .run();
        let diag = copy_block(l, n, &ib, &ib);
        SolveXLt {
            p: &mut c,
            l: &diag,
            w,
        }
        .run();
        store_block(b, n, &all, &ib, &c);
    }
}

/// Forward substitution `L x = b` in place for one right-hand side (large `n`): the same
/// algorithm as [`super::linalg::solve_lower`], with eight-lane dot products compiled for the
/// CPU's vector width.
pub(crate) fn solve_lower(l: &[f64], n: usize, b: &mut [f64]) {
    pulp::Arch::new().dispatch(Substitution {
        l,
        n,
        b,
        upper: false,
    });
}

/// Back substitution `Lᵀ x = b` in place for one right-hand side (large `n`), by columns of
/// `Lᵀ` (rows of `L`): once `x_i` is known, it is removed from every earlier equation with a
/// contiguous `axpy` over row `i` of `L`, instead of reading `L` a column at a time.
pub(crate) fn solve_upper_t(l: &[f64], n: usize, b: &mut [f64]) {
    pulp::Arch::new().dispatch(Substitution {
        l,
        n,
        b,
        upper: true,
    });
}

/// [`solve_lower`] (`upper: false`) or [`solve_upper_t`] (`upper: true`).
struct Substitution<'a> {
    l: &'a [f64],
    n: usize,
    b: &'a mut [f64],
    upper: bool,
}

impl WithSimd for Substitution<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let (l, n, b) = (self.l, self.n, self.b);
        if self.upper {
            for i in (0..n).rev() {
                let xi = b[i] / l[i * n + i];
                b[i] = xi;
                for (bk, lik) in b[..i].iter_mut().zip(&l[i * n..i * n + i]) {
                    *bk -= xi * lik;
                }
            }
        } else {
            for i in 0..n {
                let dot = match S::F64_LANES {
                    8 => tile::<S, 1, 1>(simd, &[&l[i * n..i * n + i]], &[&b[..i]]),
                    4 => tile::<S, 1, 2>(simd, &[&l[i * n..i * n + i]], &[&b[..i]]),
                    2 => tile::<S, 1, 4>(simd, &[&l[i * n..i * n + i]], &[&b[..i]]),
                    _ => tile::<S, 1, 8>(simd, &[&l[i * n..i * n + i]], &[&b[..i]]),
                };
                b[i] = (b[i] - dot[0][0]) / l[i * n + i];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spd(n: usize) -> Vec<f64> {
        // A Gram matrix of smooth features plus a diagonal: well conditioned and dense.
        let f: Vec<f64> = (0..n * n)
            .map(|i| ((i * 7919 % 1009) as f64 / 1009.0 - 0.5) * 0.1)
            .collect();
        let mut a = gram_rows(&f, n, n);
        for i in 0..n {
            a[i * n + i] += 1.0 + (i % 5) as f64 * 0.1;
        }
        a
    }

    #[test]
    fn blocked_cholesky_and_inverse_match_the_plain_loops() {
        for n in [1, 5, 63, 64, 65, 130, 300] {
            let a = spd(n);
            let mut blocked = a.clone();
            assert!(cholesky_in_place(&mut blocked, n));
            let mut plain = a.clone();
            assert!(cholesky_small(&mut plain, n));
            for (x, y) in blocked.iter().zip(&plain) {
                assert!((x - y).abs() < 1e-12, "n = {n}: {x} vs {y}");
            }
            let inv = cho_inverse(&blocked, n);
            for i in 0..n {
                for j in 0..n {
                    let s: f64 = (0..n).map(|k| a[i * n + k] * inv[k * n + j]).sum();
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!((s - want).abs() < 1e-10, "n = {n}: ({i}, {j}) = {s}");
                }
            }
        }
    }

    #[test]
    fn lower_products_match_direct_sums() {
        let (s, n) = (70, 67);
        let a = spd(n);
        let mut l = a.clone();
        assert!(cholesky_in_place(&mut l, n));
        let e: Vec<f64> = (0..s * n).map(|i| ((i * 31 % 17) as f64) - 8.0).collect();
        let out = times_lower_t(Rows::new(&e, n), s, &l, n);
        for k in 0..s {
            for i in 0..n {
                let want: f64 = (0..=i).map(|j| l[i * n + j] * e[k * n + j]).sum();
                assert!((out[k * n + i] - want).abs() < 1e-9);
            }
        }
        let mut rows = e.clone();
        solve_lower_rows(&l, n, &mut rows);
        for k in 0..s {
            for i in 0..n {
                let back: f64 = (0..=i).map(|j| l[i * n + j] * rows[k * n + j]).sum();
                assert!((back - e[k * n + i]).abs() < 1e-9);
            }
        }
        assert!(!cholesky_in_place(&mut [-1.0], 1));
    }
}
