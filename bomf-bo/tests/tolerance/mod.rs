//! Assertions that a value (or each value of a slice) is within `atol + rtol·|want|` of the
//! reference, naming what is compared when it is not.
//!
//! Shared by the integration tests (`mod tolerance;`) and the crate's unit tests (`#[path]` in
//! `src/lib.rs`).

#[track_caller]
pub fn close(got: f64, want: f64, rtol: f64, atol: f64, what: &str) {
    assert!(
        (got - want).abs() <= atol + rtol * want.abs(),
        "{what}: got {got:e}, want {want:e}"
    );
}

#[track_caller]
pub fn close_all(got: &[f64], want: &[f64], rtol: f64, atol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= atol + rtol * w.abs(),
            "{what}[{i}]: got {g:e}, want {w:e}"
        );
    }
}
