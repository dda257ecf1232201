//! Search spaces: the [`Space`] (documented there), its parameters and objectives, and
//! `SPACE.json`.

use serde::{Deserialize, Serialize};

use crate::error::{BoError, Result};

/// One tuned parameter of a box domain (or one weight of a simplex).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Param {
    pub name: String,
    pub low: f64,
    pub high: f64,
    /// Normalise on a log scale (requires `low > 0`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub log: bool,
    /// Only integer values (requires integer `low` and `high`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub integer: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Param {
    /// A continuous parameter on a linear scale.
    pub fn new(name: impl Into<String>, low: f64, high: f64) -> Self {
        Self {
            name: name.into(),
            low,
            high,
            log: false,
            integer: false,
        }
    }

    /// The same parameter on a log scale.
    pub fn log_scale(mut self) -> Self {
        self.log = true;
        self
    }

    /// The same parameter restricted to integers.
    pub fn integer(mut self) -> Self {
        self.integer = true;
        self
    }

    fn check(&self, at: &str) -> Result<()> {
        let bad = |msg: String| {
            Err(BoError::InvalidInput(format!(
                "{at} ('{}'): {msg}",
                self.name
            )))
        };
        if self.name.trim().is_empty() {
            return Err(BoError::InvalidInput(format!("{at}: name is empty")));
        }
        if !self.low.is_finite() || !self.high.is_finite() {
            return bad(format!(
                "low ({}) and high ({}) must be finite",
                self.low, self.high
            ));
        }
        if self.low >= self.high {
            return bad(format!(
                "low ({}) must be less than high ({})",
                self.low, self.high
            ));
        }
        if !(self.high - self.low).is_finite() {
            return bad(format!(
                "the range [{:e}, {:e}] is too wide: high − low overflows a 64-bit float; \
                 rescale the parameter (or search it on a log scale)",
                self.low, self.high
            ));
        }
        if self.log && self.low <= 0.0 {
            return bad(format!(
                "a log-scale parameter needs low > 0, got low = {}",
                self.low
            ));
        }
        if self.integer && (self.low.fract() != 0.0 || self.high.fract() != 0.0) {
            return bad(format!(
                "an integer parameter needs integer bounds, got [{}, {}]",
                self.low, self.high
            ));
        }
        Ok(())
    }

    /// User value → `[0, 1]`.
    fn normalise(&self, v: f64) -> f64 {
        let u = if self.log {
            (v.ln() - self.low.ln()) / (self.high.ln() - self.low.ln())
        } else {
            (v - self.low) / (self.high - self.low)
        };
        u.clamp(0.0, 1.0)
    }

    /// `[0, 1]` → user value (clamped, then rounded for integer parameters).
    fn denormalise(&self, u: f64) -> f64 {
        let u = if u.is_nan() { 0.5 } else { u.clamp(0.0, 1.0) };
        let v = if u == 0.0 {
            self.low
        } else if u == 1.0 {
            self.high
        } else if self.log {
            (self.low.ln() + u * (self.high.ln() - self.low.ln())).exp()
        } else {
            self.low + u * (self.high - self.low)
        };
        let v = if self.integer { v.round() } else { v };
        v.clamp(self.low, self.high)
    }
}

/// How simplex weights are parameterised by the unit cube (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimplexMap {
    /// BOMF's reference: `x ∈ [0,1]^k`, `w = x/Σx`.
    #[default]
    Normalize,
    /// `z ∈ [0,1]^{k−1}` through Beta-inverse-CDF stick breaking (uniform push-forward).
    StickBreaking,
}

/// The geometry of a [`Space`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Domain {
    /// Independent per-parameter ranges.
    Box,
    /// `k` weights on the probability simplex.
    Simplex { k: usize, map: SimplexMap },
}

/// A validated search space.
///
/// Search spaces: what the user tunes, and the map between the user's values and the unit cube
/// the GP and the acquisitions work in.
///
/// Two domains:
///
/// - **Box**: one [`Param`] per dimension, each `low ≤ v ≤ high`, optionally on a log scale
///   (learning rates) and/or restricted to integers (batch sizes). A log parameter is normalised
///   as `u = (ln v − ln low) / (ln high − ln low)`, so equal ratios are equal distances.
///   **Integers**: the GP sees the normalised *rounded* values (every observation is told in
///   user space, where it is an integer), and the acquisition is optimised over the continuous
///   relaxation; a candidate is de-normalised and rounded to the nearest integer in
///   `[low, high]` (after the exp for log parameters). Rounding can map two candidates to one
///   point; the [`crate::Optimizer`] then moves on to the next-best restart.
/// - **Simplex**: `k` non-negative weights summing to one (fusion weights over `k`
///   checkpoints). Two parameterisations ([`SimplexMap`]):
///   - [`SimplexMap::Normalize`], BOMF's reference: `x ∈ [0,1]^k`, `w = x / Σx` (`Σx = 0` gives
///     the uniform weights). Simple, but `k` dimensions for a `k−1`-dimensional set: the GP
///     has to learn that the objective is constant along rays, and a uniform design in the cube
///     pushes forward to weights crowded towards the centre of the simplex.
///   - [`SimplexMap::StickBreaking`]: `z ∈ [0,1]^{k−1}`; `v_i = 1 − (1 − z_i)^{1/(k−1−i)}` is
///     the inverse CDF of Beta(1, k−1−i), and `w_i = v_i · Π_{j<i}(1 − v_j)`, `w_{k−1}` the rest.
///     The push-forward of the uniform distribution on the cube is the *uniform* (flat
///     Dirichlet) distribution on the simplex, so Sobol designs and raw samples cover the
///     simplex evenly; the map is smooth and one-to-one on the interior, with an explicit
///     inverse, so every observed weight vector has exactly one point in the GP's input space.
///     (Sorted-uniform spacings are also uniform but `(k−1)!`-to-one and not smooth; the
///     exponential/normalise trick is uniform but keeps `k` dimensions and is many-to-one.)
///     The price: anisotropy (later weights depend on earlier coordinates), and collapsed
///     faces — once `z_i = 1` the later coordinates no longer matter, so a vertex has a whole
///     face of preimages that the GP does not know are equivalent.
///
///   On the synthetic objectives of `tests/optimizer_simplex.rs` (qLogEI, k = 6, 30
///   evaluations, 5 seeds; figures in RESULTS.md), `Normalize` finds better weights both for an
///   interior optimum and near a vertex; hence it stays the default.
///   The comparison that matters (qNEHVI on real checkpoints) remains to be run.
///
/// # Coordinates
///
/// Three sets, and the maps between them (`d` = [`Space::unit_dim`]):
///
/// - the **user space** `U` (values as told and asked; weights `w ∈ Δ^{k−1}`);
/// - the **search cube** `[0,1]^d`, where the acquisition optimiser moves;
/// - the **canonical set** `C = to_unit(U) ⊂ [0,1]^d`, the GP's input space: every told point
///   reaches the GP as `x = to_unit(user)`.
///
/// `from_unit: [0,1]^d → U` is onto but, for a simplex, not one-to-one; `to_unit: U → C` picks
/// one preimage, the *canonical* representative. Their composition is the **canonical map**
///
/// ```text
/// c = to_unit ∘ from_unit : [0,1]^d → C,    c(x) = x for x ∈ C,
/// ```
///
/// a retraction of the cube onto `C` ([`Space::canonical_unit`]):
///
/// - Box: `c(u) = u` (up to rounding of integer parameters; see below);
/// - [`SimplexMap::Normalize`]: `c(u) = u / max_i u_i` (and `c(0) = 1`, the uniform weights),
///   so `C = {x ∈ [0,1]^k : max_i x_i = 1}`, the `k` faces of the cube that touch `1`;
/// - [`SimplexMap::StickBreaking`]: `c(z) = z` on the interior; on a collapsed face
///   (`z_i = 1`) the later coordinates are set to 0.
///
/// The GP is fitted on `C` only, so an acquisition `α` built on it is meaningful on `C` only.
/// For a simplex the optimiser therefore maximises `α ∘ c` over the cube and proposes
/// `x* = c(u*)`, the canonical point where `α` was evaluated and maximised; the gradient it
/// needs is the pull-back `∇(α ∘ c)(u) = J_c(u)ᵀ ∇α(c(u))`. Box domains keep BoTorch's recipe: the acquisition sees
/// `u` itself, i.e. the continuous relaxation for integer parameters.
///
/// [`SpaceConfig`] is the `SPACE.json` file of the CLI, validated with errors that name the
/// offending field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Space {
    params: Vec<Param>,
    domain: Domain,
}

/// Tolerance for a user point on the boundary of a range or the simplex.
const SLACK: f64 = 1e-9;

impl Space {
    /// A box domain over `params`.
    pub fn new_box(params: Vec<Param>) -> Result<Self> {
        if params.is_empty() {
            return Err(BoError::InvalidInput(
                "params: at least one parameter is required".into(),
            ));
        }
        for (i, p) in params.iter().enumerate() {
            p.check(&format!("params[{i}]"))?;
        }
        check_unique_names(params.iter().map(|p| p.name.as_str()), "params")?;
        Ok(Self {
            params,
            domain: Domain::Box,
        })
    }

    /// The probability simplex over `names.len() ≥ 2` weights.
    pub fn simplex(names: Vec<String>, map: SimplexMap) -> Result<Self> {
        if names.len() < 2 {
            return Err(BoError::InvalidInput(format!(
                "params: a simplex needs at least 2 weights, got {}",
                names.len()
            )));
        }
        let params: Vec<Param> = names.into_iter().map(|n| Param::new(n, 0.0, 1.0)).collect();
        for (i, p) in params.iter().enumerate() {
            p.check(&format!("params[{i}]"))?;
        }
        check_unique_names(params.iter().map(|p| p.name.as_str()), "params")?;
        let k = params.len();
        Ok(Self {
            params,
            domain: Domain::Simplex { k, map },
        })
    }

    pub fn params(&self) -> &[Param] {
        &self.params
    }

    pub fn domain(&self) -> Domain {
        self.domain
    }

    /// Number of user-space coordinates.
    pub fn dim(&self) -> usize {
        self.params.len()
    }

    /// Number of unit-cube coordinates the GP sees (`k − 1` for a stick-breaking simplex).
    pub fn unit_dim(&self) -> usize {
        match self.domain {
            Domain::Simplex {
                k,
                map: SimplexMap::StickBreaking,
            } => k - 1,
            _ => self.params.len(),
        }
    }

    /// Check that a user point belongs to the space; the error names the coordinate.
    pub fn check_point(&self, user: &[f64]) -> Result<()> {
        BoError::check_dim("point vs space", self.dim(), user.len())?;
        for (i, (p, &v)) in self.params.iter().zip(user).enumerate() {
            if !v.is_finite() {
                return Err(BoError::InvalidInput(format!(
                    "coordinate {i} ('{}') is not finite: {v}",
                    p.name
                )));
            }
            let slack = SLACK * (p.high - p.low);
            if v < p.low - slack || v > p.high + slack {
                return Err(BoError::InvalidInput(format!(
                    "coordinate {i} ('{}') = {v} is outside [{}, {}]",
                    p.name, p.low, p.high
                )));
            }
            if p.integer && (v - v.round()).abs() > 1e-9 {
                return Err(BoError::InvalidInput(format!(
                    "coordinate {i} ('{}') = {v} must be an integer",
                    p.name
                )));
            }
        }
        if let Domain::Simplex { .. } = self.domain {
            let sum: f64 = user.iter().sum();
            if (sum - 1.0).abs() > 1e-6 {
                return Err(BoError::InvalidInput(format!(
                    "simplex weights must sum to 1, got {sum}"
                )));
            }
        }
        Ok(())
    }

    /// User point → unit cube (after [`Self::check_point`]).
    pub fn to_unit(&self, user: &[f64]) -> Result<Vec<f64>> {
        self.check_point(user)?;
        Ok(match self.domain {
            Domain::Box => self
                .params
                .iter()
                .zip(user)
                .map(|(p, &v)| p.normalise(v))
                .collect(),
            Domain::Simplex { map, .. } => {
                let w = clean_weights(user);
                match map {
                    SimplexMap::Normalize => {
                        let max = w.iter().copied().fold(0.0, f64::max);
                        w.iter().map(|v| v / max).collect()
                    }
                    SimplexMap::StickBreaking => stick_breaking_inverse(&w),
                }
            }
        })
    }

    /// Unit-cube point → user point (coordinates clamped to `[0, 1]`; integers rounded;
    /// simplex weights exactly non-negative and summing to one).
    pub fn from_unit(&self, unit: &[f64]) -> Result<Vec<f64>> {
        BoError::check_dim("unit-cube point vs space", self.unit_dim(), unit.len())?;
        let u: Vec<f64> = unit
            .iter()
            .map(|&v| if v.is_nan() { 0.5 } else { v.clamp(0.0, 1.0) })
            .collect();
        Ok(match self.domain {
            Domain::Box => self
                .params
                .iter()
                .zip(&u)
                .map(|(p, &v)| p.denormalise(v))
                .collect(),
            Domain::Simplex { k, map } => match map {
                SimplexMap::Normalize => {
                    let sum: f64 = u.iter().sum();
                    if sum > 0.0 {
                        u.iter().map(|v| v / sum).collect()
                    } else {
                        vec![1.0 / k as f64; k]
                    }
                }
                SimplexMap::StickBreaking => stick_breaking(&u),
            },
        })
    }

    /// The canonical map `c(u) = to_unit(from_unit(u))` (module doc, *Coordinates*): the
    /// unit-cube point the GP will actually see for a candidate `u` (rounded integers; the
    /// canonical representative of a simplex point).
    pub fn canonical_unit(&self, unit: &[f64]) -> Result<Vec<f64>> {
        let user = self.from_unit(unit)?;
        self.to_unit(&user)
    }

    /// Vector–Jacobian product of the canonical map: overwrites `grad`, the gradient
    /// `∇α(c(u))` of a function of the canonical point, with `∇(α ∘ c)(u) = J_c(u)ᵀ ∇α(c(u))`.
    ///
    /// Coordinates that [`Self::from_unit`] clamps (outside `[0, 1]`, or NaN) get 0.
    ///
    /// - Box: the identity (the continuous relaxation of integer parameters).
    /// - [`SimplexMap::Normalize`]: with `M = max_i u_i`, `m` its first index and `g = ∇α(c)`,
    ///   `∂c_j/∂u_i = (δ_ij − c_j δ_im) / M`, so
    ///   `∇(α ∘ c)(u) = (g − ⟨g, c⟩ e_m) / M`. It is orthogonal to `u`, as `α ∘ c` is constant
    ///   along rays. Where several coordinates tie for the maximum, `c` is only piecewise
    ///   smooth; the gradient of the piece `u ↦ u / u_m` with the first tying `m` is returned,
    ///   an element of the Clarke subdifferential. At `u = 0` (where `c` jumps to the uniform
    ///   weights) the gradient is 0.
    /// - [`SimplexMap::StickBreaking`]: `c` is the identity except on a collapsed face: once
    ///   the stick is used up (`z_i = 1`), the later coordinates do not move `c`, and their
    ///   gradient is 0 (the one-sided derivative within the face; `c` is discontinuous across
    ///   it).
    pub(crate) fn canonical_pullback(&self, unit: &[f64], grad: &mut [f64]) -> Result<()> {
        let d = self.unit_dim();
        if unit.len() != d || grad.len() != d {
            return Err(BoError::DimensionMismatch {
                what: "unit-cube point and gradient vs space".into(),
                expected: d,
                got: if unit.len() != d {
                    unit.len()
                } else {
                    grad.len()
                },
            });
        }
        match self.domain {
            Domain::Box => {}
            Domain::Simplex {
                map: SimplexMap::Normalize,
                ..
            } => normalize_pullback(unit, grad),
            Domain::Simplex {
                map: SimplexMap::StickBreaking,
                ..
            } => stick_breaking_pullback(unit, grad),
        }
        for (g, &u) in grad.iter_mut().zip(unit) {
            // The clamp (and NaN → 0.5) of `from_unit` is constant there.
            if !(0.0..=1.0).contains(&u) {
                *g = 0.0;
            }
        }
        Ok(())
    }
}

/// [`Space::canonical_pullback`] for `c(u) = u / max_i u_i` (`u` clamped to the cube).
fn normalize_pullback(u: &[f64], grad: &mut [f64]) {
    let u: Vec<f64> = u
        .iter()
        .map(|&v| if v.is_nan() { 0.5 } else { v.clamp(0.0, 1.0) })
        .collect();
    let (m, max) = u
        .iter()
        .copied()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (i, v)| {
            if v > best.1 { (i, v) } else { best }
        });
    if max <= 0.0 {
        grad.fill(0.0);
        return;
    }
    let g_dot_c: f64 = grad.iter().zip(&u).map(|(g, v)| g * v / max).sum();
    grad[m] -= g_dot_c;
    grad.iter_mut().for_each(|g| *g /= max);
}

/// [`Space::canonical_pullback`] for stick breaking: zero for the coordinates after the stick
/// is used up (the same recursion as [`stick_breaking`]), the identity before.
fn stick_breaking_pullback(z: &[f64], grad: &mut [f64]) {
    let w = stick_breaking(
        &z.iter()
            .map(|&v| if v.is_nan() { 0.5 } else { v.clamp(0.0, 1.0) })
            .collect::<Vec<f64>>(),
    );
    let mut remaining = 1.0_f64;
    for (g, wi) in grad.iter_mut().zip(&w) {
        if remaining <= 0.0 {
            *g = 0.0;
        }
        remaining = (remaining - wi).max(0.0);
    }
}

fn check_unique_names<'a>(names: impl Iterator<Item = &'a str>, what: &str) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(BoError::InvalidInput(format!(
                "{what}: the name '{name}' appears more than once"
            )));
        }
    }
    Ok(())
}

/// Weights clipped at zero and renormalised (user points may carry rounding noise).
fn clean_weights(w: &[f64]) -> Vec<f64> {
    let clipped: Vec<f64> = w.iter().map(|v| v.max(0.0)).collect();
    let sum: f64 = clipped.iter().sum();
    clipped.iter().map(|v| v / sum).collect()
}

/// `z ∈ [0,1]^{k−1}` → `w ∈ Δ^{k−1}`, uniform push-forward (see the module doc).
pub fn stick_breaking(z: &[f64]) -> Vec<f64> {
    let k = z.len() + 1;
    let mut w = Vec::with_capacity(k);
    let mut remaining = 1.0_f64;
    for (i, &zi) in z.iter().enumerate() {
        let b = (k - 1 - i) as f64;
        // v = 1 − (1 − z)^{1/b}, computed without cancellation for small z.
        let v = -((-zi).ln_1p() / b).exp_m1();
        let wi = remaining * v.clamp(0.0, 1.0);
        w.push(wi);
        remaining = (remaining - wi).max(0.0);
    }
    w.push(remaining);
    w
}

/// Inverse of [`stick_breaking`] (for weights with zero remaining mass the later coordinates
/// are set to 0, one of the many preimages of that boundary point).
pub fn stick_breaking_inverse(w: &[f64]) -> Vec<f64> {
    let k = w.len();
    let mut z = Vec::with_capacity(k - 1);
    let mut remaining = 1.0_f64;
    for (i, &wi) in w.iter().take(k - 1).enumerate() {
        let b = (k - 1 - i) as f64;
        let v = if remaining > 0.0 {
            (wi / remaining).clamp(0.0, 1.0)
        } else {
            0.0
        };
        z.push((-(b * (-v).ln_1p()).exp_m1()).clamp(0.0, 1.0));
        remaining = (remaining - wi).max(0.0);
    }
    z
}

/// Optimisation direction of one objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Goal {
    Max,
    Min,
}

/// One objective: a name and whether larger or smaller is better.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Objective {
    pub name: String,
    pub goal: Goal,
}

impl Objective {
    pub fn maximize(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            goal: Goal::Max,
        }
    }

    pub fn minimize(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            goal: Goal::Min,
        }
    }
}

/// The `domain` field of `SPACE.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DomainKind {
    #[default]
    Box,
    Simplex,
}

/// The CLI's `SPACE.json`:
///
/// ```json
/// {"params": [{"name": "lr", "low": 1e-6, "high": 1e-4, "log": true},
///             {"name": "bs", "low": 4, "high": 32, "integer": true}],
///  "objectives": [{"name": "acc", "goal": "max"}, {"name": "loss", "goal": "min"}],
///  "ref_point": [0.5, 2.0],
///  "domain": "box"}
/// ```
///
/// `ref_point` is optional and given in the objectives' own units and directions. For
/// `"domain": "simplex"` every param is a weight with `low = 0`, `high = 1`, no `log` or
/// `integer`; the optional `"simplex_map"` is `"normalize"` (default, BOMF's reference) or
/// `"stick_breaking"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpaceConfig {
    pub params: Vec<Param>,
    pub objectives: Vec<Objective>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ref_point: Option<Vec<f64>>,
    #[serde(default)]
    pub domain: DomainKind,
    #[serde(default)]
    pub simplex_map: SimplexMap,
}

impl SpaceConfig {
    /// Parse and validate `SPACE.json` text. Errors carry serde's line and column, or the
    /// name of the invalid field.
    pub fn from_json(text: &str) -> Result<Self> {
        let config: Self = serde_json::from_str(text)
            .map_err(|e| BoError::InvalidInput(format!("space JSON: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// Check everything [`Self::space`] and the optimiser rely on.
    pub fn validate(&self) -> Result<()> {
        self.space()?;
        if self.objectives.is_empty() {
            return Err(BoError::InvalidInput(
                "objectives: at least one objective is required".into(),
            ));
        }
        for (i, o) in self.objectives.iter().enumerate() {
            if o.name.trim().is_empty() {
                return Err(BoError::InvalidInput(format!(
                    "objectives[{i}]: name is empty"
                )));
            }
        }
        check_unique_names(
            self.objectives.iter().map(|o| o.name.as_str()),
            "objectives",
        )?;
        if let Some(r) = &self.ref_point {
            BoError::check_dim("ref_point vs objectives", self.objectives.len(), r.len())?;
            if let Some(i) = r.iter().position(|v| !v.is_finite()) {
                return Err(BoError::InvalidInput(format!(
                    "ref_point[{i}] is not finite: {}",
                    r[i]
                )));
            }
        }
        Ok(())
    }

    /// The [`Space`] this file describes.
    pub fn space(&self) -> Result<Space> {
        match self.domain {
            DomainKind::Box => Space::new_box(self.params.clone()),
            DomainKind::Simplex => {
                for (i, p) in self.params.iter().enumerate() {
                    if p.low != 0.0 || p.high != 1.0 || p.log || p.integer {
                        return Err(BoError::InvalidInput(format!(
                            "params[{i}] ('{}'): simplex weights must have low = 0, high = 1 and \
                             no log/integer flag",
                            p.name
                        )));
                    }
                }
                Space::simplex(
                    self.params.iter().map(|p| p.name.clone()).collect(),
                    self.simplex_map,
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn log_integer_round_trip() {
        let s = Space::new_box(vec![
            Param::new("lr", 1e-6, 1e-4).log_scale(),
            Param::new("bs", 4.0, 128.0).log_scale().integer(),
        ])
        .unwrap();
        let u = s.to_unit(&[1e-5, 32.0]).unwrap();
        assert!((u[0] - 0.5).abs() < 1e-12);
        assert!((u[1] - (32f64.ln() - 4f64.ln()) / (128f64.ln() - 4f64.ln())).abs() < 1e-12);
        let back = s.from_unit(&u).unwrap();
        assert!((back[0] - 1e-5).abs() < 1e-18);
        assert_eq!(back[1], 32.0);
        assert_eq!(s.from_unit(&[0.0, 1.0]).unwrap(), vec![1e-6, 128.0]);
    }

    #[test]
    fn stick_breaking_is_inverted() {
        let z = [0.1, 0.7, 0.3, 0.95];
        let w = stick_breaking(&z);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        let z2 = stick_breaking_inverse(&w);
        for (a, b) in z.iter().zip(&z2) {
            assert!((a - b).abs() < 1e-12);
        }
    }

    #[test]
    fn simplex_zero_sum_and_representatives() {
        let s = Space::simplex(
            vec!["a".into(), "b".into(), "c".into()],
            SimplexMap::Normalize,
        )
        .unwrap();
        assert_eq!(s.from_unit(&[0.0, 0.0, 0.0]).unwrap(), vec![1.0 / 3.0; 3]);
        // The representative of w in the cube is w / max(w).
        assert_eq!(s.to_unit(&[0.5, 0.25, 0.25]).unwrap(), vec![1.0, 0.5, 0.5]);
        let sb = Space::simplex(vec!["a".into(), "b".into()], SimplexMap::StickBreaking).unwrap();
        assert_eq!(sb.from_unit(&[0.0]).unwrap(), vec![0.0, 1.0]);
        assert_eq!(sb.from_unit(&[1.0]).unwrap(), vec![1.0, 0.0]);
        // Vertex of the simplex: later stick coordinates are arbitrary, we choose 0.
        assert_eq!(stick_breaking_inverse(&[1.0, 0.0, 0.0]), vec![1.0, 0.0]);
    }

    proptest! {
        #[test]
        fn stick_breaking_round_trip(z in proptest::collection::vec(0.0f64..1.0, 1..12)) {
            let w = stick_breaking(&z);
            prop_assert!(w.iter().all(|v| *v >= 0.0));
            prop_assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            // Invertible where the remaining stick is not numerically exhausted.
            let remaining_ok = w.last().copied().unwrap_or(0.0) > 1e-6;
            if remaining_ok {
                let z2 = stick_breaking_inverse(&w);
                for (a, b) in z.iter().zip(&z2) {
                    prop_assert!((a - b).abs() < 1e-6, "{z:?} {z2:?}");
                }
            }
        }
    }
}
