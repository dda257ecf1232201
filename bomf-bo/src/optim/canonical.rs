//! An acquisition composed with a [`Space`]'s canonical map, so that it is maximised in the
//! coordinates the surrogate is fitted in.
//!
//! The GP of a simplex run is trained on canonical points `x = c(u) ∈ C` only (see
//! [`Space`], *Coordinates*): for [`crate::SimplexMap::Normalize`],
//! `c(u) = u / max_i u_i` and `C` is the set `max_i x_i = 1`. An acquisition `α` built on that
//! GP says nothing reliable off `C`, and the point that is evaluated is `c(u)` anyway, so the
//! optimiser maximises
//!
//! ```text
//! α̃(u) = α(c(u₁), …, c(u_q)),    ∇_{u_i} α̃ = J_c(u_i)ᵀ ∇_{x_i} α(c(u₁), …, c(u_q)),
//! ```
//!
//! over the cube with the usual raw samples, restarts and L-BFGS-B, and the proposal is
//! `x* = c(u*)` with `α(x*) = α̃(u*)`: the canonical point where `α` was evaluated and
//! maximised. (Every canonical point is reached, as `c` is the identity on `C`.)

use crate::acquisition::{Acquisition, nan_on_error};
use crate::error::{BoError, Result};
use crate::space::{Domain, Space};

/// `α ∘ c` for every candidate of a batch (module doc). Pending points, already canonical, are
/// the inner acquisition's business (wrap a [`crate::acquisition::WithPending`]).
pub struct Canonicalized<'a> {
    inner: Box<dyn Acquisition + 'a>,
    space: &'a Space,
}

impl<'a> Canonicalized<'a> {
    /// Compose `inner`, an acquisition on `space`'s canonical unit points, with the canonical
    /// map of `space`.
    pub fn new(inner: Box<dyn Acquisition + 'a>, space: &'a Space) -> Result<Self> {
        BoError::check_dim(
            "acquisition input dimension vs space",
            space.unit_dim(),
            inner.dim(),
        )?;
        Ok(Self { inner, space })
    }

    /// `inner` composed with the canonical map where the space needs it (a simplex), `inner`
    /// itself for a box, whose acquisitions keep BoTorch's continuous relaxation.
    pub fn for_space(
        inner: Box<dyn Acquisition + 'a>,
        space: &'a Space,
    ) -> Result<Box<dyn Acquisition + 'a>> {
        Ok(match space.domain() {
            Domain::Box => inner,
            Domain::Simplex { .. } => Box::new(Self::new(inner, space)?),
        })
    }

    /// The canonical image `c(u_i)` of every row of the batch `x`: where the inner acquisition
    /// is evaluated, and the point to propose for a row that maximised it.
    pub fn canonical(&self, x: &[f64]) -> Result<Vec<f64>> {
        let d = self.inner.dim();
        if d == 0 || !x.len().is_multiple_of(d) {
            return Err(BoError::InvalidInput(format!(
                "a batch must be a row-major q x {d} array, got {} values",
                x.len()
            )));
        }
        let mut out = Vec::with_capacity(x.len());
        for row in x.chunks(d) {
            out.extend(self.space.canonical_unit(row)?);
        }
        Ok(out)
    }
}

impl std::fmt::Debug for Canonicalized<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Canonicalized")
            .field("dim", &self.inner.dim())
            .field("domain", &self.space.domain())
            .finish()
    }
}

impl Acquisition for Canonicalized<'_> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    fn value(&self, x: &[f64]) -> f64 {
        match self.canonical(x) {
            Ok(c) => self.inner.value(&c),
            Err(_) => f64::NAN,
        }
    }

    fn value_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        nan_on_error(grad, |grad| {
            let c = self.canonical(x)?;
            let value = self.inner.value_and_grad(&c, grad);
            let d = self.inner.dim();
            for (row, g) in x.chunks(d).zip(grad.chunks_mut(d)) {
                self.space.canonical_pullback(row, g)?;
            }
            Ok(value)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::SimplexMap;

    /// A smooth, asymmetric function of the canonical point.
    struct Wavy;

    impl Acquisition for Wavy {
        fn dim(&self) -> usize {
            3
        }
        fn value(&self, x: &[f64]) -> f64 {
            x.chunks(3)
                .map(|r| (3.0 * r[0]).sin() + r[1] * r[2] - (r[2] - 0.3).powi(2))
                .sum()
        }
        fn value_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
            for (r, g) in x.chunks(3).zip(grad.chunks_mut(3)) {
                g[0] = 3.0 * (3.0 * r[0]).cos();
                g[1] = r[2];
                g[2] = r[1] - 2.0 * (r[2] - 0.3);
            }
            self.value(x)
        }
    }

    fn central_difference(acq: &dyn Acquisition, x: &[f64]) -> Vec<f64> {
        let h = 1e-6;
        (0..x.len())
            .map(|j| {
                let (mut p, mut m) = (x.to_vec(), x.to_vec());
                p[j] += h;
                m[j] -= h;
                (acq.value(&p) - acq.value(&m)) / (2.0 * h)
            })
            .collect()
    }

    #[test]
    fn the_gradient_is_the_chain_rule_through_the_canonical_map() {
        let names = |k: usize| (0..k).map(|i| format!("w{i}")).collect();
        let normalize = Space::simplex(names(3), SimplexMap::Normalize).unwrap();
        let stick = Space::simplex(names(4), SimplexMap::StickBreaking).unwrap();
        // Unique maxima (smooth points of c), a q = 2 batch included.
        for (space, x) in [
            (&normalize, vec![0.2, 0.7, 0.4]),
            (&normalize, vec![0.9, 0.1, 0.35, 0.3, 0.5, 0.45]),
            (&stick, vec![0.3, 0.6, 0.2]),
        ] {
            let acq = Canonicalized::new(Box::new(Wavy), space).unwrap();
            let mut grad = vec![0.0; x.len()];
            let v = acq.value_and_grad(&x, &mut grad);
            assert_eq!(v, Wavy.value(&acq.canonical(&x).unwrap()));
            let fd = central_difference(&acq, &x);
            for (g, f) in grad.iter().zip(&fd) {
                assert!((g - f).abs() < 1e-6, "{x:?}: {grad:?} vs {fd:?}");
            }
        }
        // Normalize: constant along rays, so the gradient is orthogonal to u.
        let u = [0.2, 0.7, 0.4];
        let acq = Canonicalized::new(Box::new(Wavy), &normalize).unwrap();
        let mut grad = [0.0; 3];
        acq.value_and_grad(&u, &mut grad);
        let radial: f64 = grad.iter().zip(u).map(|(g, v)| g * v).sum();
        assert!(radial.abs() < 1e-12, "{radial}");
        // Stick breaking on the collapsed face z_0 = 1: the later coordinates do not matter.
        let stick_acq = Canonicalized::new(Box::new(Wavy), &stick).unwrap();
        let mut grad = [0.0; 3];
        stick_acq.value_and_grad(&[1.0, 0.6, 0.2], &mut grad);
        assert_eq!(&grad[1..], &[0.0, 0.0]);
        assert_eq!(
            stick_acq.value(&[1.0, 0.6, 0.2]),
            stick_acq.value(&[1.0, 0.0, 0.0])
        );
    }

    #[test]
    fn boxes_are_left_alone_and_dimensions_are_checked() {
        let space = Space::new_box(vec![
            crate::space::Param::new("a", 0.0, 1.0),
            crate::space::Param::new("b", 0.0, 1.0),
            crate::space::Param::new("c", 0.0, 1.0),
        ])
        .unwrap();
        let acq = Canonicalized::for_space(Box::new(Wavy), &space).unwrap();
        assert_eq!(acq.value(&[0.1, 0.2, 0.3]), Wavy.value(&[0.1, 0.2, 0.3]));
        let two = Space::simplex(vec!["a".into(), "b".into()], SimplexMap::Normalize).unwrap();
        assert!(Canonicalized::new(Box::new(Wavy), &two).is_err());
    }
}
