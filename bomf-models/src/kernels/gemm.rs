//! Strided GEMM on `f32` slices through the `gemm` crate (the kernel burn's CPU backend uses),
//! so attention heads and transposed operands are read in place.

use super::zeros;

#[derive(Clone, Copy)]
pub(super) struct GemmShape {
    pub(super) m: usize,
    pub(super) n: usize,
    pub(super) k: usize,
}

/// `dst[m×n] = beta · lhs[m×k] · rhs[k×n]` (or `dst += …` with `accumulate`) on strided views:
/// each operand is `(slice, row_stride, col_stride)` and element `(r, c)` sits at
/// `r · row_stride + c · col_stride`. Single-threaded: callers parallelise over sequences.
pub(super) fn strided_gemm(
    shape: GemmShape,
    dst: (&mut [f32], usize, usize),
    lhs: (&[f32], usize, usize),
    rhs: (&[f32], usize, usize),
    beta: f32,
    accumulate: bool,
) {
    gemm_on(
        gemm::Parallelism::None,
        shape,
        dst,
        lhs,
        rhs,
        beta,
        accumulate,
    );
}

/// `dst[m×n] = lhs · rhs` (or `dst += …` with `accumulate`) for a row-major `dst`, spread over
/// rayon's threads: for one large product (a Linear layer over the whole batch) rather than many
/// small ones. The operands are strided as in [`strided_gemm`].
pub(super) fn parallel_gemm(
    shape: GemmShape,
    dst: &mut [f32],
    lhs: (&[f32], usize, usize),
    rhs: (&[f32], usize, usize),
    accumulate: bool,
) {
    let threads = gemm::Parallelism::Rayon(rayon::current_num_threads());
    gemm_on(threads, shape, (dst, shape.n, 1), lhs, rhs, 1.0, accumulate);
}

/// `lhs · rhs` as a new row-major `[m, n]` buffer, by [`parallel_gemm`].
pub(super) fn parallel_product(
    shape: GemmShape,
    lhs: (&[f32], usize, usize),
    rhs: (&[f32], usize, usize),
) -> Vec<f32> {
    let mut out = zeros(shape.m * shape.n);
    parallel_gemm(shape, &mut out, lhs, rhs, false);
    out
}

/// The GEMM behind [`strided_gemm`] and [`parallel_gemm`].
///
/// Why unsafe: the `gemm` crate (the kernel burn's CPU backend itself uses) takes raw pointers
/// and strides. The asserts below check that every element the strides reach lies inside its
/// slice, which is all `gemm::gemm` needs; `dst` is a unique borrow, so nothing aliases it.
#[allow(unsafe_code)]
fn gemm_on(
    parallelism: gemm::Parallelism,
    GemmShape { m, n, k }: GemmShape,
    (dst, dst_rs, dst_cs): (&mut [f32], usize, usize),
    (lhs, lhs_rs, lhs_cs): (&[f32], usize, usize),
    (rhs, rhs_rs, rhs_cs): (&[f32], usize, usize),
    beta: f32,
    accumulate: bool,
) {
    let reach = |rows: usize, cols: usize, rs: usize, cs: usize| {
        (rows.max(1) - 1) * rs + (cols.max(1) - 1) * cs + 1
    };
    assert!(
        reach(m, n, dst_rs, dst_cs) <= dst.len(),
        "gemm: dst out of bounds"
    );
    assert!(
        reach(m, k, lhs_rs, lhs_cs) <= lhs.len(),
        "gemm: lhs out of bounds"
    );
    assert!(
        reach(k, n, rhs_rs, rhs_cs) <= rhs.len(),
        "gemm: rhs out of bounds"
    );
    let stride = |s: usize| isize::try_from(s).expect("stride fits isize");
    // SAFETY: the asserts above keep every accessed element inside its slice; `dst` is borrowed
    // mutably and the inputs immutably, so the output aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            stride(dst_cs),
            stride(dst_rs),
            accumulate,
            lhs.as_ptr(),
            stride(lhs_cs),
            stride(lhs_rs),
            rhs.as_ptr(),
            stride(rhs_cs),
            stride(rhs_rs),
            1.0,
            beta,
            false,
            false,
            false,
            parallelism,
        );
    }
}
