//! Posterior of the latent function (no observation noise), in user units: pointwise mean and
//! variance with input gradients, joint mean and covariance, and the cached-Cholesky low-rank
//! update of BoTorch's `sample_cached_cholesky` for qNEHVI:
//!
//! ```text
//! Σ = [[Σ_bb, Σ_bx], [Σ_xb, Σ_xx]],  L_bb = chol(Σ_bb) cached
//! L_xb = (L_bb⁻¹ Σ_bx)ᵀ,  L_xx = chol(Σ_xx − L_xb L_xbᵀ)
//! f(X) = μ_x + L_xb ε_b + L_xx ε_x      (ε_b: the baseline's own fixed base samples)
//! ```

use serde::{Deserialize, Serialize};

use super::GaussianProcess;
use super::blocked::{self, BLOCKED_MIN_N};
use super::linalg;
use crate::error::{BoError, Result};

/// Mean and variance at one point, with gradients w.r.t. that point's (user-unit) inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct PointPosterior {
    pub mean: f64,
    pub variance: f64,
    pub mean_grad: Vec<f64>,
    pub variance_grad: Vec<f64>,
}

/// Joint posterior over `q` points: mean (`q`) and covariance (`q × q`, row-major).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JointPosterior {
    pub mean: Vec<f64>,
    pub cov: Vec<f64>,
}

impl GaussianProcess {
    /// Model-space pieces for normalised query points `xq` (`q × d`): `(K(X, xq), L⁻¹K(X, xq))`,
    /// both `n × q`.
    fn cross_terms(&self, xq: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let q = xq.len() / self.d;
        let kxq = self.hyper.kernel.matrix(&self.x, xq, self.d);
        let mut v = kxq.clone();
        linalg::solve_lower_matrix(&self.chol, self.n, &mut v, q);
        (kxq, v)
    }

    /// Posterior means and variances at the points `xs` (user units, row-major).
    pub fn predict(&self, xs: &[f64]) -> Result<(Vec<f64>, Vec<f64>)> {
        let xq = self.normalize_inputs(xs)?;
        let q = xq.len() / self.d;
        let (kxq, v) = self.cross_terms(&xq);
        let s2 = self.y_std * self.y_std;
        let prior_var = self.hyper.kernel.outputscale;
        let mut mean = Vec::with_capacity(q);
        let mut var = Vec::with_capacity(q);
        for j in 0..q {
            let m: f64 = (0..self.n)
                .map(|i| kxq[i * q + j] * self.alpha[i])
                .sum::<f64>()
                + self.hyper.mean;
            let vv: f64 = (0..self.n).map(|i| v[i * q + j] * v[i * q + j]).sum();
            mean.push(m * self.y_std + self.y_mean);
            var.push((prior_var - vv).max(0.0) * s2);
        }
        Ok((mean, var))
    }

    /// Joint posterior mean and covariance over the points `xs` (user units, row-major).
    pub fn posterior_joint(&self, xs: &[f64]) -> Result<JointPosterior> {
        let xq = self.normalize_inputs(xs)?;
        if xq.len() / self.d >= BLOCKED_MIN_N {
            return Ok(self.joint_many(&xq));
        }
        let (kxq, v) = self.cross_terms(&xq);
        Ok(self.joint_from_cross(&xq, &kxq, &v))
    }

    /// [`Self::posterior_joint`] at many normalised points: the cross terms are computed
    /// transposed (`K(xq, X)`, one row per query point), so that the solve and the Gram
    /// matrix `VᵀV` run on contiguous rows in the blocked kernels.
    fn joint_many(&self, xq: &[f64]) -> JointPosterior {
        let (n, d) = (self.n, self.d);
        let q = xq.len() / d;
        let kqx = self.hyper.kernel.matrix(xq, &self.x, d);
        let mean = kqx
            .chunks_exact(n)
            .map(|k| (linalg::dot(k, &self.alpha) + self.hyper.mean) * self.y_std + self.y_mean)
            .collect();
        let mut vt = kqx;
        blocked::solve_lower_rows(&self.chol, n, &mut vt);
        let vtv = blocked::gram_rows(&vt, q, n);
        drop(vt);
        let s2 = self.y_std * self.y_std;
        let mut cov = self.hyper.kernel.matrix(xq, xq, d);
        for (c, v) in cov.iter_mut().zip(&vtv) {
            *c = (*c - v) * s2;
        }
        JointPosterior { mean, cov }
    }

    /// The joint posterior at normalised points `xq` from their [`Self::cross_terms`].
    fn joint_from_cross(&self, xq: &[f64], kxq: &[f64], v: &[f64]) -> JointPosterior {
        let q = xq.len() / self.d;
        let kqq = self.hyper.kernel.matrix(xq, xq, self.d);
        let s2 = self.y_std * self.y_std;
        let mean = (0..q)
            .map(|j| {
                let m: f64 = (0..self.n)
                    .map(|i| kxq[i * q + j] * self.alpha[i])
                    .sum::<f64>()
                    + self.hyper.mean;
                m * self.y_std + self.y_mean
            })
            .collect();
        let mut cov = vec![0.0; q * q];
        for a in 0..q {
            for b in 0..=a {
                let vv: f64 = (0..self.n).map(|i| v[i * q + a] * v[i * q + b]).sum();
                let c = (kqq[a * q + b] - vv) * s2;
                cov[a * q + b] = c;
                cov[b * q + a] = c;
            }
        }
        JointPosterior { mean, cov }
    }

    /// Mean and variance at one point `x` (user units) with their gradients w.r.t. `x`.
    pub fn predict_with_grad(&self, x: &[f64]) -> Result<PointPosterior> {
        let xq = self.normalize_inputs(x)?;
        if xq.len() != self.d {
            return Err(BoError::DimensionMismatch {
                what: "single GP query point".into(),
                expected: self.d,
                got: x.len(),
            });
        }
        let kern = &self.hyper.kernel;
        let inv_l2 = kern.inv_l2();
        let kx: Vec<f64> = self
            .x
            .chunks_exact(self.d)
            .map(|xi| kern.k(&xq, xi, &inv_l2))
            .collect();
        // w = K̃⁻¹ k(X, x): var = s − kᵀw, ∂var/∂x = −2 wᵀ ∂k/∂x (k(x,x) is constant).
        let w = linalg::cho_solve(&self.chol, self.n, &kx);
        let mut mean_grad = vec![0.0; self.d];
        let mut var_grad = vec![0.0; self.d];
        for (i, xi) in self.x.chunks_exact(self.d).enumerate() {
            kern.add_grad_x(&xq, xi, &inv_l2, self.alpha[i], &mut mean_grad);
            kern.add_grad_x(&xq, xi, &inv_l2, -2.0 * w[i], &mut var_grad);
        }
        let s2 = self.y_std * self.y_std;
        let mean = (kx.iter().zip(&self.alpha).map(|(k, a)| k * a).sum::<f64>() + self.hyper.mean)
            * self.y_std
            + self.y_mean;
        let var_model = kern.outputscale - kx.iter().zip(&w).map(|(k, w)| k * w).sum::<f64>();
        let clamped = var_model <= 0.0;
        for k in 0..self.d {
            // Chain rule through the input normalisation.
            mean_grad[k] *= self.y_std / self.input_width[k];
            var_grad[k] = if clamped {
                0.0
            } else {
                var_grad[k] * s2 / self.input_width[k]
            };
        }
        Ok(PointPosterior {
            mean,
            variance: var_model.max(0.0) * s2,
            mean_grad,
            variance_grad: var_grad,
        })
    }
}

/// The baseline block of a joint posterior, factorised once (qNEHVI's `cache_root`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedBaseline {
    /// Baseline points in model space (`nb × d`).
    pub points: Vec<f64>,
    pub nb: usize,
    /// Posterior mean at the baseline points (user units).
    pub mean: Vec<f64>,
    /// Lower Cholesky factor of the baseline posterior covariance (user units, jittered if
    /// needed).
    pub chol: Vec<f64>,
    /// `L⁻¹ K(X_train, B)` in model space (`n × nb`), reused for every cross-covariance.
    v_b: Vec<f64>,
    /// `K̃⁻¹ K(X_train, B)` (`n × nb`), for the input gradients of the cross-covariance.
    w_b: Vec<f64>,
}

/// The rows of the joint covariance root for `q` new points: `f(X) = mean + L_xb ε_b + L_xx ε_x`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LowRankBlock {
    pub mean: Vec<f64>,
    /// `q × nb`.
    pub l_xb: Vec<f64>,
    /// `q × q`, lower triangular.
    pub l_xx: Vec<f64>,
}

impl CachedBaseline {
    /// Factorise the posterior covariance of `gp` at `baseline` (user units, row-major).
    pub fn new(gp: &GaussianProcess, baseline: &[f64]) -> Result<Self> {
        let points = gp.normalize_inputs(baseline)?;
        let nb = points.len() / gp.d;
        let (k_b, v_b) = gp.cross_terms(&points);
        let joint = gp.joint_from_cross(&points, &k_b, &v_b);
        let (chol, _) = linalg::cholesky_jittered(&joint.cov, nb)?;
        let mut w_b = vec![0.0; gp.n * nb];
        for b in 0..nb {
            let mut col: Vec<f64> = (0..gp.n).map(|i| v_b[i * nb + b]).collect();
            linalg::solve_upper_t(&gp.chol, gp.n, &mut col);
            for (i, c) in col.into_iter().enumerate() {
                w_b[i * nb + b] = c;
            }
        }
        Ok(Self {
            points,
            nb,
            mean: joint.mean,
            chol,
            v_b,
            w_b,
        })
    }

    /// The low-rank extension of the cached root by the new points `x_new` (user units).
    pub fn extend(&self, gp: &GaussianProcess, x_new: &[f64]) -> Result<LowRankBlock> {
        let xq = gp.normalize_inputs(x_new)?;
        let (kxq, v_x) = gp.cross_terms(&xq);
        let joint = gp.joint_from_cross(&xq, &kxq, &v_x);
        self.extend_from(gp, &xq, joint, &v_x)
    }

    /// [`Self::extend`] from the new points' normalised inputs, joint posterior and
    /// `L⁻¹K(X_train, x)` (shared with the gradient, which needs the same pieces).
    fn extend_from(
        &self,
        gp: &GaussianProcess,
        xq: &[f64],
        joint: JointPosterior,
        v_x: &[f64],
    ) -> Result<LowRankBlock> {
        let q = xq.len() / gp.d;
        let nb = self.nb;
        let k_bx = gp.hyper.kernel.matrix(&self.points, xq, gp.d);
        let s2 = gp.y_std * gp.y_std;
        // Σ_bx = (K(B, x) − V_bᵀ V_x) s², nb × q; then Z = L_bb⁻¹ Σ_bx.
        let mut z = vec![0.0; nb * q];
        for b in 0..nb {
            for j in 0..q {
                let vv: f64 = (0..gp.n)
                    .map(|i| self.v_b[i * nb + b] * v_x[i * q + j])
                    .sum();
                z[b * q + j] = (k_bx[b * q + j] - vv) * s2;
            }
        }
        linalg::solve_lower_matrix(&self.chol, nb, &mut z, q);
        let mut l_xb = vec![0.0; q * nb];
        for b in 0..nb {
            for j in 0..q {
                l_xb[j * nb + b] = z[b * q + j];
            }
        }
        let mut schur = joint.cov.clone();
        for a in 0..q {
            for c in 0..q {
                let s: f64 = (0..nb).map(|b| l_xb[a * nb + b] * l_xb[c * nb + b]).sum();
                schur[a * q + c] -= s;
            }
        }
        let (l_xx, _) = linalg::cholesky_jittered(&schur, q)?;
        Ok(LowRankBlock {
            mean: joint.mean,
            l_xb,
            l_xx,
        })
    }
}

/// A [`LowRankBlock`] with its derivatives w.r.t. the new points' inputs (user units).
///
/// Moving new point `j` along coordinate `k` (direction `dir = j*d + k`) changes mean `j`,
/// row `j` of `l_xb`, and all of `l_xx`:
/// - `mean_grad[dir] = ∂μ_j/∂x_jk`;
/// - `l_xb_row_grad[dir*nb..(dir+1)*nb] = ∂ l_xb[j, ·]/∂x_jk`;
/// - `l_xx_grad[dir*q*q..(dir+1)*q*q] = ∂ l_xx/∂x_jk`.
#[derive(Debug, Clone, PartialEq)]
pub struct LowRankBlockGrad {
    pub block: LowRankBlock,
    pub mean_grad: Vec<f64>,
    pub l_xb_row_grad: Vec<f64>,
    pub l_xx_grad: Vec<f64>,
}

impl CachedBaseline {
    /// [`CachedBaseline::extend`] plus the input gradients of the block (for analytic qNEHVI
    /// gradients): `L_xb = (L_bb⁻¹ Σ_bx)ᵀ` gives `∂L_xb[j,·] = L_bb⁻¹ ∂Σ_bj`, and `L_xx` is
    /// differentiated through `Σ_xx − L_xb L_xbᵀ` by the forward-mode Cholesky rule.
    pub fn extend_with_grad(
        &self,
        gp: &GaussianProcess,
        x_new: &[f64],
    ) -> Result<LowRankBlockGrad> {
        let xq = gp.normalize_inputs(x_new)?;
        let (kxq, v_x) = gp.cross_terms(&xq);
        let joint = gp.joint_from_cross(&xq, &kxq, &v_x);
        let block = self.extend_from(gp, &xq, joint.clone(), &v_x)?;
        let jp = gp.joint_grad_from(&xq, joint, &v_x);
        let (d, n, nb) = (gp.d, gp.n, self.nb);
        let q = xq.len() / d;
        let inv_l2 = gp.hyper.kernel.inv_l2();
        let s2 = gp.y_std * gp.y_std;
        let mut l_xb_row_grad = vec![0.0; q * d * nb];
        let mut l_xx_grad = vec![0.0; q * d * q * q];
        let mut point = PointKernelGrads::new(n, nb, d);
        let mut ds = vec![0.0; q * q];
        for j in 0..q {
            point.compute(gp, self, &xq[j * d..(j + 1) * d], &inv_l2);
            let (dk_base, reduce) = (&point.dk_base, &point.reduce);
            for k in 0..d {
                let dir = j * d + k;
                let scale = s2 / gp.input_width[k];
                // ∂Σ_bj for every baseline point b, then solve with L_bb.
                let dl = &mut l_xb_row_grad[dir * nb..(dir + 1) * nb];
                for b in 0..nb {
                    dl[b] = (dk_base[b * d + k] - reduce[k * nb + b]) * scale;
                }
                linalg::solve_lower(&self.chol, nb, dl);
                // ∂(Σ_xx − L_xb L_xbᵀ): row/column j only.
                ds.iter_mut().for_each(|v| *v = 0.0);
                let row = &jp.cov_row_grad[dir * q..(dir + 1) * q];
                for c in 0..q {
                    let cross: f64 = dl
                        .iter()
                        .zip(&block.l_xb[c * nb..(c + 1) * nb])
                        .map(|(a, b)| a * b)
                        .sum();
                    let v = if c == j {
                        row[c] - 2.0 * cross
                    } else {
                        row[c] - cross
                    };
                    ds[j * q + c] = v;
                    ds[c * q + j] = v;
                }
                linalg::cholesky_tangent(
                    &block.l_xx,
                    q,
                    &mut ds,
                    &mut l_xx_grad[dir * q * q..(dir + 1) * q * q],
                );
            }
        }
        Ok(LowRankBlockGrad {
            block,
            mean_grad: jp.mean_grad,
            l_xb_row_grad,
            l_xx_grad,
        })
    }
}

/// For one new point `x_j`: `∂k(x_j, ·)/∂x_j` at the training and the baseline points
/// (`n × d` and `nb × d`), and `reduce[k][b] = Σ_i ∂k(x_j, x_i)/∂x_jk · w_b[i, b]` (`d × nb`).
struct PointKernelGrads {
    dk_train: Vec<f64>,
    dk_base: Vec<f64>,
    reduce: Vec<f64>,
}

impl PointKernelGrads {
    fn new(n: usize, nb: usize, d: usize) -> Self {
        Self {
            dk_train: vec![0.0; n * d],
            dk_base: vec![0.0; nb * d],
            reduce: vec![0.0; d * nb],
        }
    }

    fn compute(&mut self, gp: &GaussianProcess, base: &CachedBaseline, xj: &[f64], inv_l2: &[f64]) {
        let (d, n, nb) = (gp.d, gp.n, base.nb);
        let kern = &gp.hyper.kernel;
        self.dk_train.fill(0.0);
        for (xi, g) in gp.x.chunks_exact(d).zip(self.dk_train.chunks_exact_mut(d)) {
            kern.add_grad_x(xj, xi, inv_l2, 1.0, g);
        }
        self.dk_base.fill(0.0);
        for (pb, g) in base
            .points
            .chunks_exact(d)
            .zip(self.dk_base.chunks_exact_mut(d))
        {
            kern.add_grad_x(xj, pb, inv_l2, 1.0, g);
        }
        self.reduce.fill(0.0);
        for i in 0..n {
            let w_row = &base.w_b[i * nb..(i + 1) * nb];
            for k in 0..d {
                let g = self.dk_train[i * d + k];
                if g != 0.0 {
                    for (r, w) in self.reduce[k * nb..(k + 1) * nb].iter_mut().zip(w_row) {
                        *r += g * w;
                    }
                }
            }
        }
    }
}

impl LowRankBlock {
    /// One joint sample of `f` at the new points: `mean + L_xb ε_b + L_xx ε_x`.
    pub fn sample(&self, eps_b: &[f64], eps_x: &[f64], out: &mut [f64]) {
        let q = self.mean.len();
        let nb = eps_b.len();
        for (a, o) in out.iter_mut().enumerate().take(q) {
            let from_b: f64 = self.l_xb[a * nb..(a + 1) * nb]
                .iter()
                .zip(eps_b)
                .map(|(l, e)| l * e)
                .sum();
            let from_x: f64 = self.l_xx[a * q..a * q + a + 1]
                .iter()
                .zip(eps_x)
                .map(|(l, e)| l * e)
                .sum();
            *o = self.mean[a] + from_b + from_x;
        }
    }
}

/// A joint posterior with its derivatives w.r.t. the inputs of the query points.
///
/// Moving point `j` along coordinate `k` changes only mean `j` and row/column `j` of the
/// covariance, so the derivatives are stored compactly:
/// - `mean_grad[j*d + k] = ∂μ_j/∂x_jk`;
/// - `cov_row_grad[(j*d + k)*q + b] = ∂Σ_jb/∂x_jk` (the diagonal entry `b = j` is the full
///   derivative of `Σ_jj`; by symmetry `∂Σ_bj` is the same number).
#[derive(Debug, Clone, PartialEq)]
pub struct JointPosteriorGrad {
    pub joint: JointPosterior,
    pub mean_grad: Vec<f64>,
    pub cov_row_grad: Vec<f64>,
}

impl JointPosteriorGrad {
    /// Adds `∂A/∂x` (`q × d`) to `grad` for a scalar `A(μ, L)` of the posterior mean and the
    /// covariance root `l = chol(Σ)` (`q × q`), given the adjoints `g_mean = ∂A/∂μ` and
    /// `g_l = ∂A/∂L` (lower triangle used): the backward pass of the MC acquisitions.
    pub(crate) fn backprop_through_root(
        &self,
        l: &[f64],
        d: usize,
        g_mean: &[f64],
        g_l: &[f64],
        grad: &mut [f64],
    ) {
        let q = g_mean.len();
        let mut dsigma = vec![0.0; q * q];
        let mut dl = vec![0.0; q * q];
        for j in 0..q {
            for k in 0..d {
                let dir = j * d + k;
                let row = &self.cov_row_grad[dir * q..(dir + 1) * q];
                dsigma.fill(0.0);
                for b in 0..q {
                    dsigma[j * q + b] = row[b];
                    dsigma[b * q + j] = row[b];
                }
                linalg::cholesky_tangent(l, q, &mut dsigma, &mut dl);
                let from_l: f64 = g_l.iter().zip(&dl).map(|(a, b)| a * b).sum();
                grad[dir] += g_mean[j] * self.mean_grad[dir] + from_l;
            }
        }
    }
}

impl GaussianProcess {
    /// [`GaussianProcess::posterior_joint`] plus the input gradients of the mean and
    /// covariance (for analytic gradients of MC acquisitions).
    pub(crate) fn posterior_joint_with_grad(&self, xs: &[f64]) -> Result<JointPosteriorGrad> {
        let xq = self.normalize_inputs(xs)?;
        let (kxq, v) = self.cross_terms(&xq);
        let joint = self.joint_from_cross(&xq, &kxq, &v);
        Ok(self.joint_grad_from(&xq, joint, &v))
    }

    /// [`Self::posterior_joint_with_grad`] from normalised inputs, the joint posterior and
    /// `v = L⁻¹K(X_train, xq)` (`n × q`).
    fn joint_grad_from(&self, xq: &[f64], joint: JointPosterior, v: &[f64]) -> JointPosteriorGrad {
        let (d, n) = (self.d, self.n);
        let q = xq.len() / d;
        let kern = &self.hyper.kernel;
        let inv_l2 = kern.inv_l2();
        // w_b = K̃⁻¹ k(X, x_b) = L⁻ᵀ v_b, columns of an n × q matrix stored per point.
        let w: Vec<Vec<f64>> = (0..q)
            .map(|b| {
                let mut col: Vec<f64> = (0..n).map(|i| v[i * q + b]).collect();
                linalg::solve_upper_t(&self.chol, n, &mut col);
                col
            })
            .collect();
        let s2 = self.y_std * self.y_std;
        let mut mean_grad = vec![0.0; q * d];
        let mut cov_row_grad = vec![0.0; q * d * q];
        let mut dk_train = vec![0.0; n * d]; // ∂k(x_j, x_i)/∂x_j for every training point i
        for j in 0..q {
            let xj = &xq[j * d..(j + 1) * d];
            dk_train.iter_mut().for_each(|v| *v = 0.0);
            for (i, xi) in self.x.chunks_exact(d).enumerate() {
                kern.add_grad_x(xj, xi, &inv_l2, 1.0, &mut dk_train[i * d..(i + 1) * d]);
            }
            for k in 0..d {
                let scale = 1.0 / self.input_width[k];
                let dmu: f64 = (0..n).map(|i| dk_train[i * d + k] * self.alpha[i]).sum();
                mean_grad[j * d + k] = dmu * self.y_std * scale;
                for b in 0..q {
                    let reduce: f64 = (0..n).map(|i| dk_train[i * d + k] * w[b][i]).sum();
                    let val = if b == j {
                        -2.0 * reduce
                    } else {
                        let xb = &xq[b * d..(b + 1) * d];
                        kern.grad_x_coord(xj, xb, &inv_l2, k) - reduce
                    };
                    cov_row_grad[(j * d + k) * q + b] = val * s2 * scale;
                }
            }
        }
        JointPosteriorGrad {
            joint,
            mean_grad,
            cov_row_grad,
        }
    }
}
