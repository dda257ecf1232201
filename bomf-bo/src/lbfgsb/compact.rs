//! The limited-memory compact representation `B = θI − W M Wᵀ` (Byrd, Nocedal & Schnabel 1994)
//! and the small dense LU solves it needs.

use std::collections::VecDeque;

/// The last `m` curvature pairs and the scaling `θ`, oldest first.
pub(super) struct Memory {
    capacity: usize,
    pub(super) s: VecDeque<Vec<f64>>,
    pub(super) y: VecDeque<Vec<f64>>,
    pub(super) theta: f64,
}

impl Memory {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            s: VecDeque::new(),
            y: VecDeque::new(),
            theta: 1.0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.s.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.s.is_empty()
    }

    pub(super) fn clear(&mut self) {
        self.s.clear();
        self.y.clear();
        self.theta = 1.0;
    }

    /// Keep the pair only if it carries positive curvature (`sᵀy > ε·yᵀy`), which keeps `B`
    /// positive definite.
    pub(super) fn push(&mut self, s: Vec<f64>, y: Vec<f64>) {
        let sy: f64 = s.iter().zip(&y).map(|(a, b)| a * b).sum();
        let yy: f64 = y.iter().map(|v| v * v).sum();
        if !sy.is_finite() || !yy.is_finite() || sy <= f64::EPSILON * yy {
            return;
        }
        if self.s.len() == self.capacity {
            self.s.pop_front();
            self.y.pop_front();
        }
        self.s.push_back(s);
        self.y.push_back(y);
        self.theta = yy / sy;
    }

    /// The pairs `(s, y)`, oldest first.
    pub(super) fn into_pairs(self) -> Vec<(Vec<f64>, Vec<f64>)> {
        self.s.into_iter().zip(self.y).collect()
    }

    /// Row `i` of `W = [Y, θS]` (length `2k`).
    pub(super) fn w_row(&self, i: usize, out: &mut [f64]) {
        let k = self.len();
        for j in 0..k {
            out[j] = self.y[j][i];
            out[k + j] = self.theta * self.s[j][i];
        }
    }

    /// Entry `(p, q)` of `M⁻¹` rebuilt from the pairs (used once per iteration, `O(m²n)` in all).
    pub(super) fn middle_entry(&self, p: usize, q: usize) -> f64 {
        let k = self.len();
        // L, strictly lower triangular: L_ij = s_iᵀ y_j for i > j.
        let l = |i: usize, j: usize| {
            if i > j {
                dot(&self.s[i], &self.y[j])
            } else {
                0.0
            }
        };
        match (p < k, q < k) {
            (true, true) => {
                if p == q {
                    -dot(&self.s[p], &self.y[p])
                } else {
                    0.0
                }
            }
            (false, true) => l(p - k, q),
            (true, false) => l(q - k, p),
            (false, false) => self.theta * dot(&self.s[p - k], &self.s[q - k]),
        }
    }

    /// LU factors of `M⁻¹ = [[−D, Lᵀ], [L, θSᵀS]]`, so `M·v` is one solve.
    pub(super) fn factor_middle(&self) -> Option<Lu> {
        let k = self.len();
        let n = 2 * k;
        let mut a = vec![0.0; n * n];
        let dot = |u: &[f64], v: &[f64]| u.iter().zip(v).map(|(p, q)| p * q).sum::<f64>();
        for i in 0..k {
            for j in 0..k {
                // Top-left: −D (diagonal of sᵢᵀyᵢ).
                if i == j {
                    a[i * n + j] = -dot(&self.s[i], &self.y[i]);
                }
                // L (strictly lower: sᵢᵀyⱼ for i > j) bottom-left, Lᵀ top-right.
                if i > j {
                    let l = dot(&self.s[i], &self.y[j]);
                    a[(k + i) * n + j] = l;
                    a[j * n + (k + i)] = l;
                }
                // Bottom-right: θ SᵀS.
                a[(k + i) * n + (k + j)] = self.theta * dot(&self.s[i], &self.s[j]);
            }
        }
        Lu::factor(a, n)
    }
}

/// Dense LU factorisation with partial pivoting for the tiny (`2m × 2m`) systems.
pub(super) struct Lu {
    n: usize,
    a: Vec<f64>,
    pivots: Vec<usize>,
}

impl Lu {
    pub(super) fn empty() -> Self {
        Self {
            n: 0,
            a: Vec::new(),
            pivots: Vec::new(),
        }
    }

    pub(super) fn factor(mut a: Vec<f64>, n: usize) -> Option<Self> {
        let scale = a.iter().fold(0.0_f64, |m, v| m.max(v.abs()));
        let mut pivots = vec![0; n];
        for col in 0..n {
            let (p, best) = (col..n)
                .map(|r| (r, a[r * n + col].abs()))
                .fold((col, -1.0), |acc, c| if c.1 > acc.1 { c } else { acc });
            if best.is_nan() || best <= 1e-14 * scale {
                return None;
            }
            pivots[col] = p;
            if p != col {
                for j in 0..n {
                    a.swap(col * n + j, p * n + j);
                }
            }
            let diag = a[col * n + col];
            for r in col + 1..n {
                let factor = a[r * n + col] / diag;
                a[r * n + col] = factor;
                for j in col + 1..n {
                    a[r * n + j] -= factor * a[col * n + j];
                }
            }
        }
        Some(Self { n, a, pivots })
    }

    /// Solve `A z = b` in place.
    pub(super) fn solve(&self, b: &mut [f64]) {
        let n = self.n;
        for col in 0..n {
            b.swap(col, self.pivots[col]);
        }
        // Forward substitution with the unit lower triangle, then back substitution.
        for r in 0..n {
            let row = &self.a[r * n..r * n + r];
            let acc = b[r] - dot(row, &b[..r]);
            b[r] = acc;
        }
        for r in (0..n).rev() {
            let row = &self.a[r * n + r + 1..(r + 1) * n];
            let acc = b[r] - dot(row, &b[r + 1..]);
            b[r] = acc / self.a[r * n + r];
        }
    }
}

pub(super) fn dot(u: &[f64], v: &[f64]) -> f64 {
    u.iter().zip(v).map(|(a, b)| a * b).sum()
}
