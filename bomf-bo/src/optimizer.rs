//! The ask/tell [`Optimizer`] (documented there), its settings and state, and the surrogate
//! hook of its BO step.

use serde::{Deserialize, Serialize};

use crate::acquisition::AcquisitionFactory;
use crate::error::{BoError, Result};
use crate::optim::{AcqfOptions, Bounds, Canonicalized, optimize_acqf_with_anchors};
use crate::partitioning::is_non_dominated;
use crate::sampling::{derive_seed, sobol_design};
use crate::space::{Goal, Objective, Space, SpaceConfig};
pub use subset::{GpSubset, MAX_EXACT_GP, MAX_FAILED_PENDING};
pub use surrogate::fit_surrogate_and_build_acquisition;

/// Version of the serialised state; bumped on incompatible changes.
const STATE_VERSION: u32 = 1;

/// The most candidates one ask returns. Each becomes a pending point that every later
/// acquisition conditions on (its cost grows with their number), so a larger batch is refused
/// before anything is allocated for it; ask in several smaller batches instead.
pub const MAX_ASK: usize = 1000;

/// Seed streams (second argument of [`derive_seed`]).
const STREAM_DESIGN: u64 = 1;
const STREAM_ASK: u64 = 2;
/// Seed stream of the GP training subset ([`subset`]).
const STREAM_SUBSET: u64 = 3;

/// Which acquisition function the BO phase maximises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AcquisitionKind {
    /// Log expected improvement (one objective).
    #[serde(rename = "qlogei")]
    QLogEi,
    /// Expected hypervolume improvement over the observed front (noise-free).
    #[serde(rename = "qehvi")]
    QEhvi,
    /// Noisy expected hypervolume improvement (BOMF's choice for fusion).
    #[serde(rename = "qnehvi")]
    QNehvi,
    /// qNEHVI with the LogEI numerics.
    #[serde(rename = "qlognehvi")]
    QLogNehvi,
}

impl AcquisitionKind {
    /// qLogEI for one objective; qNEHVI (the paper's choice) for several.
    pub fn default_for(n_objectives: usize) -> Self {
        if n_objectives == 1 {
            Self::QLogEi
        } else {
            Self::QNehvi
        }
    }

    /// Acquisitions that are exactly zero over much of the space use the non-negative restart
    /// selection rule.
    pub fn is_nonnegative(self) -> bool {
        matches!(self, Self::QEhvi | Self::QNehvi)
    }

    fn check(self, n_objectives: usize) -> Result<()> {
        let ok = match self {
            Self::QLogEi => n_objectives == 1,
            _ => n_objectives >= 2,
        };
        if ok {
            Ok(())
        } else {
            Err(BoError::InvalidInput(format!(
                "acquisition {self:?} does not apply to {n_objectives} objective(s): use qlogei \
                 for one objective and qehvi/qnehvi/qlognehvi for several"
            )))
        }
    }
}

/// Where qEHVI/qNEHVI put the hypervolume reference point when the run sets none
/// ([`Optimizer::with_ref_point`]); re-derived from the observations at every BO step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefPointRule {
    /// BoTorch's `infer_reference_point` on the observed Pareto front: its nadir minus 10 % of
    /// its range. Focuses the search on the front; degenerate while the front is one point
    /// (the margin is then 10 % of that point's own magnitude, e.g. nothing where it is 0).
    #[default]
    Front,
    /// The worst successful observation in each objective, minus 1e-8: optuna-integration's
    /// `BoTorchSampler` rule. Every observation counts, so the whole observed range rewards
    /// improvement.
    Observed,
}

/// GP hyperparameter priors: BoTorch's two `SingleTaskGP` defaults ([`crate::gp::Preset`]).
pub use crate::gp::Preset as GpPreset;

/// Settings of an [`Optimizer`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OptimizerSettings {
    /// `None`: [`AcquisitionKind::default_for`] the number of objectives.
    pub acquisition: Option<AcquisitionKind>,
    /// Number of successful Sobol evaluations before BO starts. `None`:
    /// `max(unit_dim + 1, 5)`.
    pub n_initial: Option<usize>,
    /// Seed of every random choice of the run.
    pub seed: u64,
    pub gp_preset: GpPreset,
    /// Number of QMC samples of the MC acquisitions (BOMF: 128).
    pub mc_samples: usize,
    /// Acquisition optimisation (restarts, raw samples, L-BFGS-B).
    pub acqf: AcqfOptions,
    /// Candidates closer than this (sup-norm, unit cube) to a failed point are rejected.
    pub failure_radius: f64,
    /// Most successful observations the GP is fitted on. A longer history is subsampled around
    /// its Pareto front: every non-dominated observation (the best ones, for one objective),
    /// the next non-dominated layers while they fit in a quarter of the budget, then a seeded
    /// sample of the rest ([`Optimizer::gp_subset`] says when). Sizes whose exact GP would need
    /// more than 4 GiB are refused by [`Optimizer::new`], naming the largest size that fits.
    pub max_gp_points: usize,
    /// The reference point of qEHVI/qNEHVI when none is set.
    pub ref_point_rule: RefPointRule,
}

impl Default for OptimizerSettings {
    fn default() -> Self {
        Self {
            acquisition: None,
            n_initial: None,
            seed: 0,
            gp_preset: GpPreset::default(),
            mc_samples: 128,
            acqf: AcqfOptions::default(),
            failure_radius: 1e-3,
            max_gp_points: MAX_EXACT_GP,
            ref_point_rule: RefPointRule::default(),
        }
    }
}

/// One told evaluation, in user units and directions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub x: Vec<f64>,
    /// Non-finite entries mark a failed evaluation (serialised as `"nan"`, `"inf"`, `"-inf"`).
    #[serde(with = "non_finite")]
    pub y: Vec<f64>,
}

impl Observation {
    /// True when some objective value is NaN or infinite.
    pub fn failed(&self) -> bool {
        self.y.iter().any(|v| !v.is_finite())
    }
}

/// What the surrogate is fitted to: successful observations, inputs in the unit cube,
/// outputs oriented for maximisation.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingData {
    /// Row-major `n × d`: the canonical unit points `to_unit(x)` (in `[0, 1]^d`).
    pub x: Vec<f64>,
    /// Row-major `n × m`, every objective to be maximised.
    pub y: Vec<f64>,
    pub n: usize,
    pub d: usize,
    pub m: usize,
    /// Reference point for hypervolume acquisitions, oriented like `y`; `None` = infer it.
    pub ref_point: Option<Vec<f64>>,
}

/// What the BO step asks of the surrogate.
#[derive(Debug, Clone, PartialEq)]
pub struct AcquisitionRequest {
    pub kind: AcquisitionKind,
    pub gp_preset: GpPreset,
    pub mc_samples: usize,
    /// Seed for hyperparameter restarts and QMC base samples of this step.
    pub seed: u64,
}

/// Fits a surrogate to the data and returns the acquisition to maximise, as a factory that
/// takes pending points (unit cube, row-major).
pub trait SurrogateBuilder {
    fn build<'a>(
        &'a self,
        data: &'a TrainingData,
        request: &AcquisitionRequest,
    ) -> Result<Box<dyn AcquisitionFactory + 'a>>;
}

/// The crate's own surrogate: [`fit_surrogate_and_build_acquisition`].
#[derive(Debug, Clone, Copy, Default)]
pub struct BuiltinSurrogate;

impl SurrogateBuilder for BuiltinSurrogate {
    fn build<'a>(
        &'a self,
        data: &'a TrainingData,
        request: &AcquisitionRequest,
    ) -> Result<Box<dyn AcquisitionFactory + 'a>> {
        fit_surrogate_and_build_acquisition(data, request)
    }
}

/// The ask/tell optimiser: a search space, objectives and settings in; candidates out.
///
/// ```text
/// ask(n)  → n candidates in user space (Sobol initial design, then Bayesian optimisation)
/// tell(x, y) → record one evaluation (y may contain NaN/∞: a failed evaluation)
/// to_json / from_json → stop and resume a run exactly
/// ```
///
/// **Phases.** While fewer than `n_initial` evaluations have succeeded (counting points asked
/// but not yet told), `ask` returns the next points of a scrambled Sobol design in the unit
/// cube, mapped to user space. After that it fits the surrogate to the successful observations
/// and maximises the acquisition (sequential greedy for `n > 1`, each chosen point becoming
/// *pending* for the next). Asked-but-untold points are pending too, so concurrent workers get
/// different points.
/// The observed Pareto-optimal inputs (the best one, for one objective) anchor extra raw
/// candidates of the acquisition optimiser, so that optima on a face of the box next to an
/// incumbent are found ([`crate::optim::optimize_acqf_with_anchors`]).
///
/// **Coordinates.** The GP is fitted on canonical unit points `x = to_unit(user)`; the
/// acquisition `α` built on it is maximised as `α ∘ c`, `c = to_unit ∘ from_unit` the canonical
/// map (for a simplex; a box keeps BoTorch's relaxation), and the proposal is `c(u*)`, the point
/// where `α` was evaluated and maximised ([`Space`], *Coordinates*).
///
/// **Directions.** Objectives with goal `min` are negated internally: the surrogate and the
/// acquisitions always maximise ([`TrainingData`] is in that orientation, and so is its
/// reference point).
///
/// **Failed evaluations** (any non-finite `y`) are recorded but never reach the GP. The rule
/// that keeps them from being proposed again:
/// 1. they are passed to the acquisition as *pending* points, which lowers its value around
///    them (for MC acquisitions, a pending point's unknown outcome already "claims" nearby
///    improvement);
/// 2. a candidate within `failure_radius` (sup-norm in the unit cube) of a failed point, or a
///    duplicate of an observed or pending point (which integer rounding can create), is
///    rejected and the next-best restart is taken; if every restart is rejected, the
///    acquisition is re-optimised with the rejected optimum as an extra pending point (twice at
///    most), and only then is the next unused Sobol point returned.
///
/// **Determinism.** Every random choice is derived from `settings.seed`, the number of `ask`
/// calls so far and the Sobol cursor, all part of the serialised state: a resumed run proposes
/// exactly what the uninterrupted run would have.
///
/// **Surrogate.** The BO branch calls a [`SurrogateBuilder`]; [`Optimizer::ask`] uses
/// [`BuiltinSurrogate`], i.e. [`fit_surrogate_and_build_acquisition`], and
/// [`Optimizer::ask_with`] accepts any other (tests use a cheap analytic one).
///
/// Serialisable: [`Self::to_json`] / [`Self::from_json`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Optimizer {
    version: u32,
    space: Space,
    objectives: Vec<Objective>,
    /// In the objectives' own units and directions.
    ref_point: Option<Vec<f64>>,
    settings: OptimizerSettings,
    /// Every told evaluation, failed ones included, in order.
    observations: Vec<Observation>,
    /// Asked but not yet told (user space).
    pending: Vec<Vec<f64>>,
    /// Index of the next Sobol point of the initial design.
    design_cursor: u32,
    /// Number of `ask` calls that reached the BO branch (seeds each BO step).
    bo_steps: u64,
}

impl Optimizer {
    /// A new run over `space` for `objectives`.
    pub fn new(
        space: Space,
        objectives: Vec<Objective>,
        settings: OptimizerSettings,
    ) -> Result<Self> {
        if objectives.is_empty() {
            return Err(BoError::InvalidInput(
                "objectives: at least one objective is required".into(),
            ));
        }
        let kind = settings
            .acquisition
            .unwrap_or_else(|| AcquisitionKind::default_for(objectives.len()));
        kind.check(objectives.len())?;
        if settings.failure_radius.is_nan() || settings.failure_radius < 0.0 {
            return Err(BoError::InvalidInput(format!(
                "failure_radius must be >= 0, got {}",
                settings.failure_radius
            )));
        }
        if settings.n_initial == Some(0) {
            return Err(BoError::InvalidInput("n_initial must be at least 1".into()));
        }
        subset::check_gp_points(settings.max_gp_points, objectives.len())?;
        settings.acqf.validate()?;
        Ok(Self {
            version: STATE_VERSION,
            space,
            objectives,
            ref_point: None,
            settings,
            observations: Vec::new(),
            pending: Vec::new(),
            design_cursor: 0,
            bo_steps: 0,
        })
    }

    /// A new run from a validated `SPACE.json`.
    pub fn from_config(config: &SpaceConfig, settings: OptimizerSettings) -> Result<Self> {
        config.validate()?;
        let opt = Self::new(config.space()?, config.objectives.clone(), settings)?;
        match &config.ref_point {
            Some(r) => opt.with_ref_point(r.clone()),
            None => Ok(opt),
        }
    }

    /// Set the reference point (objectives' own units and directions).
    pub fn with_ref_point(mut self, ref_point: Vec<f64>) -> Result<Self> {
        BoError::check_dim(
            "ref_point vs objectives",
            self.objectives.len(),
            ref_point.len(),
        )?;
        if ref_point.iter().any(|v| !v.is_finite()) {
            return Err(BoError::InvalidInput(format!(
                "ref_point must be finite, got {ref_point:?}"
            )));
        }
        self.ref_point = Some(ref_point);
        Ok(self)
    }

    pub fn space(&self) -> &Space {
        &self.space
    }

    /// The reference point set by [`Self::with_ref_point`] (objectives' own units and
    /// directions); `None`: qEHVI/qNEHVI infer one from the observed front at each step.
    pub fn ref_point(&self) -> Option<&[f64]> {
        self.ref_point.as_deref()
    }

    pub fn objectives(&self) -> &[Objective] {
        &self.objectives
    }

    pub fn settings(&self) -> &OptimizerSettings {
        &self.settings
    }

    /// Every told evaluation, in order (failed ones included).
    pub fn observations(&self) -> &[Observation] {
        &self.observations
    }

    /// Points asked but not yet told.
    pub fn pending(&self) -> &[Vec<f64>] {
        &self.pending
    }

    /// Marks `x` (user units, inside the space) as being evaluated elsewhere, as an ask would:
    /// the next asks treat it as pending (no candidate repeats it, and MC acquisitions credit
    /// its unknown outcome) until it is told. For workers that asked in another process.
    pub fn add_pending(&mut self, x: &[f64]) -> Result<()> {
        self.space.check_point(x)?;
        self.pending.push(x.to_vec());
        Ok(())
    }

    /// Forget the asked-but-untold points (e.g. workers that died).
    pub fn clear_pending(&mut self) {
        self.pending.clear();
    }

    pub fn n_successful(&self) -> usize {
        self.observations.iter().filter(|o| !o.failed()).count()
    }

    pub fn n_failed(&self) -> usize {
        self.observations.iter().filter(|o| o.failed()).count()
    }

    /// The acquisition this run uses.
    pub fn acquisition_kind(&self) -> AcquisitionKind {
        self.settings
            .acquisition
            .unwrap_or_else(|| AcquisitionKind::default_for(self.objectives.len()))
    }

    /// Size of the initial Sobol design.
    pub fn n_initial(&self) -> usize {
        self.settings
            .n_initial
            .unwrap_or_else(|| (self.space.unit_dim() + 1).max(5))
    }

    /// Record one evaluation. `x` must lie in the space (user units); `y` has one value per
    /// objective, in the objective's own direction; NaN/∞ marks a failure. A pending point
    /// equal to `x` is no longer pending.
    pub fn tell(&mut self, x: &[f64], y: &[f64]) -> Result<()> {
        self.space.check_point(x)?;
        BoError::check_dim(
            "objective values vs objectives",
            self.objectives.len(),
            y.len(),
        )?;
        let unit = self.space.to_unit(x)?;
        let mut matched = None;
        for (i, p) in self.pending.iter().enumerate() {
            if sup_distance(&self.space.to_unit(p)?, &unit) <= DUPLICATE_TOL {
                matched = Some(i);
                break;
            }
        }
        if let Some(i) = matched {
            self.pending.remove(i);
        }
        self.observations.push(Observation {
            x: x.to_vec(),
            y: y.to_vec(),
        });
        Ok(())
    }

    /// `n` new candidates in user space, with the built-in surrogate.
    pub fn ask(&mut self, n: usize) -> Result<Vec<Vec<f64>>> {
        self.ask_with(n, &BuiltinSurrogate)
    }

    /// `n` new candidates in user space, with `surrogate` for the BO phase. The candidates
    /// become pending until told.
    pub fn ask_with(
        &mut self,
        n: usize,
        surrogate: &dyn SurrogateBuilder,
    ) -> Result<Vec<Vec<f64>>> {
        if n > MAX_ASK {
            return Err(BoError::InvalidInput(format!(
                "asked for {n} candidates at once; one ask proposes at most {MAX_ASK} (each \
                 becomes a pending point of every later acquisition): ask in smaller batches"
            )));
        }
        // Work on a copy so a failed ask leaves the state untouched.
        let mut next = self.clone();
        let out = next.ask_inner(n, surrogate)?;
        *self = next;
        Ok(out)
    }

    fn ask_inner(&mut self, n: usize, surrogate: &dyn SurrogateBuilder) -> Result<Vec<Vec<f64>>> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n && self.n_successful() + self.pending.len() < self.n_initial() {
            let point = self.next_design_point()?;
            self.pending.push(point.clone());
            out.push(point);
        }
        if out.len() == n {
            return Ok(out);
        }
        if self.n_successful() < 2 {
            // Too few successes to fit anything: keep sampling the design.
            while out.len() < n {
                let point = self.next_design_point()?;
                self.pending.push(point.clone());
                out.push(point);
            }
            return Ok(out);
        }

        let data = self.surrogate_data()?;
        let step_seed = derive_seed(derive_seed(self.settings.seed, STREAM_ASK), self.bo_steps);
        self.bo_steps += 1;
        let kind = self.acquisition_kind();
        let request = AcquisitionRequest {
            kind,
            gp_preset: self.settings.gp_preset,
            mc_samples: self.settings.mc_samples,
            seed: step_seed,
        };
        let factory = surrogate.build(&data, &request)?;
        // Pending for the acquisition: asked-but-untold points and the latest failed points.
        let mut pending_unit = Vec::new();
        for p in &self.pending {
            pending_unit.extend(self.space.to_unit(p)?);
        }
        let failed: Vec<&Observation> = self.observations.iter().filter(|o| o.failed()).collect();
        for o in &failed[failed.len().saturating_sub(MAX_FAILED_PENDING)..] {
            pending_unit.extend(self.space.to_unit(&o.x)?);
        }
        // The incumbents (observed Pareto-optimal inputs, or the best one) anchor extra raw
        // candidates: acquisition optima next to them on a face of the box are otherwise
        // hard to reach (see `optimize_acqf_with_anchors`).
        let mut anchors = Vec::new();
        if self.settings.acqf.anchor_incumbents {
            for i in self.pareto_indices() {
                anchors.extend(self.space.to_unit(&self.observations[i].x)?);
            }
        }
        let mut options = self.settings.acqf.clone();
        options.nonnegative = options.nonnegative || kind.is_nonnegative();
        let remaining = n - out.len();
        for i in 0..remaining {
            let seeds = |attempt: usize| derive_seed(step_seed, (1 + i * 8 + attempt) as u64);
            let chosen =
                self.propose(factory.as_ref(), &pending_unit, &anchors, &options, seeds)?;
            let point = match chosen {
                Some(unit) => self.space.from_unit(&unit)?,
                None => self.next_design_point()?,
            };
            pending_unit.extend(self.space.to_unit(&point)?);
            self.pending.push(point.clone());
            out.push(point);
        }
        Ok(out)
    }

    /// One BO candidate, a canonical unit point (GP coordinates), or `None` when every restart
    /// of every attempt is rejected ([`Self::is_acceptable`]). Attempt `a` optimises with the
    /// seed `seeds(a)`.
    ///
    /// The acquisition `α` is maximised as `α ∘ c` over the cube, `c` the canonical map
    /// ([`Canonicalized`]; the identity for a box), and the candidate is `c(u*)`: exactly the
    /// point where `α` was evaluated, in the coordinates the GP was fitted in.
    ///
    /// Rejected optima (duplicates, neighbours of failures) join the pending points for a
    /// re-optimisation, which lowers the acquisition around them: BO then moves next to a
    /// boundary optimum it has already evaluated instead of giving up.
    fn propose(
        &self,
        factory: &dyn AcquisitionFactory,
        pending_unit: &[f64],
        anchors: &[f64],
        options: &AcqfOptions,
        seeds: impl Fn(usize) -> u64,
    ) -> Result<Option<Vec<f64>>> {
        let bounds = Bounds::unit(self.space.unit_dim());
        let mut rejected: Vec<f64> = Vec::new();
        for attempt in 0..=REOPTIMISE_ATTEMPTS {
            let mut step_pending = pending_unit.to_vec();
            step_pending.extend_from_slice(&rejected);
            let acq = Canonicalized::for_space(factory.build(&step_pending)?, &self.space)?;
            let options = AcqfOptions {
                seed: seeds(attempt),
                ..options.clone()
            };
            let result = optimize_acqf_with_anchors(acq.as_ref(), 1, &bounds, &options, anchors)?;
            for candidate in &result.candidates {
                // For a simplex, the map `acq` applied before evaluating `α`: the very point
                // whose value `candidate.value` is.
                let canonical = self.space.canonical_unit(&candidate.x)?;
                if self.is_acceptable(&canonical)? {
                    return Ok(Some(canonical));
                }
            }
            rejected.extend(self.space.canonical_unit(&result.best().x)?);
        }
        Ok(None)
    }

    /// The surrogate's data: successful observations, unit-cube inputs, maximisation outputs.
    pub fn training_data(&self) -> Result<TrainingData> {
        let d = self.space.unit_dim();
        let m = self.objectives.len();
        let mut x = Vec::new();
        let mut y = Vec::new();
        let mut n = 0;
        for o in self.observations.iter().filter(|o| !o.failed()) {
            x.extend(self.space.to_unit(&o.x)?);
            y.extend(self.oriented(&o.y));
            n += 1;
        }
        let ref_point = match (&self.ref_point, self.settings.ref_point_rule) {
            (Some(r), _) => Some(self.oriented(r)),
            (None, RefPointRule::Observed) if n > 0 => Some(observed_worst(&y, m)),
            (None, _) => None,
        };
        Ok(TrainingData {
            x,
            y,
            n,
            d,
            m,
            ref_point,
        })
    }

    /// Objective values flipped so that larger is better for every objective.
    fn oriented(&self, y: &[f64]) -> Vec<f64> {
        y.iter()
            .zip(&self.objectives)
            .map(|(v, o)| match o.goal {
                Goal::Max => *v,
                Goal::Min => -*v,
            })
            .collect()
    }

    /// The best successful observation of a single-objective run (by its goal).
    pub fn best(&self) -> Option<&Observation> {
        if self.objectives.len() != 1 {
            return None;
        }
        self.observations
            .iter()
            .filter(|o| !o.failed())
            .max_by(|a, b| self.oriented(&a.y)[0].total_cmp(&self.oriented(&b.y)[0]))
    }

    /// Indices (into [`Self::observations`]) of the successful observations that no other
    /// successful observation dominates.
    pub fn pareto_indices(&self) -> Vec<usize> {
        let (idx, ys): (Vec<usize>, Vec<Vec<f64>>) = self
            .observations
            .iter()
            .enumerate()
            .filter(|(_, o)| !o.failed())
            .map(|(i, o)| (i, self.oriented(&o.y)))
            .unzip();
        let flat: Vec<f64> = ys.concat();
        // Sort-based (O(n log n)); duplicates are all kept, as none dominates another.
        let mask = is_non_dominated(&flat, self.objectives.len(), false).unwrap_or_default();
        idx.into_iter()
            .zip(mask)
            .filter_map(|(i, keep)| keep.then_some(i))
            .collect()
    }

    /// A candidate (canonical unit point) is acceptable unless it duplicates an observed or
    /// pending point or lies within `failure_radius` of a failed one.
    fn is_acceptable(&self, unit: &[f64]) -> Result<bool> {
        for o in &self.observations {
            let dist = sup_distance(&self.space.to_unit(&o.x)?, unit);
            let radius = if o.failed() {
                self.settings.failure_radius.max(DUPLICATE_TOL)
            } else {
                DUPLICATE_TOL
            };
            if dist <= radius {
                return Ok(false);
            }
        }
        for p in &self.pending {
            if sup_distance(&self.space.to_unit(p)?, unit) <= DUPLICATE_TOL {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The next acceptable point of the scrambled Sobol design, in user space.
    fn next_design_point(&mut self) -> Result<Vec<f64>> {
        let d = self.space.unit_dim();
        let seed = derive_seed(self.settings.seed, STREAM_DESIGN);
        let limit = crate::sampling::MAX_SOBOL_POINTS as u32;
        // Draw the design in blocks so that skipping points stays cheap.
        while self.design_cursor < limit {
            let end = (self.design_cursor.saturating_add(64)).min(limit);
            let block = sobol_design(end as usize, d, seed)?;
            while self.design_cursor < end {
                let i = self.design_cursor as usize;
                self.design_cursor += 1;
                let canonical = self.space.canonical_unit(&block[i * d..(i + 1) * d])?;
                if self.is_acceptable(&canonical)? {
                    return self.space.from_unit(&canonical);
                }
            }
        }
        Err(BoError::InvalidInput(format!(
            "no new point left to propose: all {limit} Sobol points are observed, pending or \
             next to failures (is the integer grid exhausted?)"
        )))
    }

    /// The whole state as JSON.
    pub fn to_json(&self) -> Result<String> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// Resume from [`Self::to_json`]'s output.
    pub fn from_json(text: &str) -> Result<Self> {
        let state: Self = serde_json::from_str(text)?;
        if state.version != STATE_VERSION {
            return Err(BoError::InvalidInput(format!(
                "optimizer state version {} is not supported (expected {STATE_VERSION})",
                state.version
            )));
        }
        // Re-validate what `new` checks, in case the file was edited by hand.
        let checked = Self::new(
            state.space.clone(),
            state.objectives.clone(),
            state.settings.clone(),
        )?;
        if let Some(r) = &state.ref_point {
            checked.with_ref_point(r.clone())?;
        }
        for (i, o) in state.observations.iter().enumerate() {
            state
                .space
                .check_point(&o.x)
                .map_err(|e| BoError::InvalidInput(format!("observations[{i}]: {e}")))?;
            if o.y.len() != state.objectives.len() {
                return Err(BoError::InvalidInput(format!(
                    "observations[{i}]: {} objective values for {} objectives",
                    o.y.len(),
                    state.objectives.len()
                )));
            }
        }
        Ok(state)
    }
}

/// Re-optimisations with the rejected optima as pending points before falling back to the
/// Sobol design.
const REOPTIMISE_ATTEMPTS: usize = 2;

/// Two unit-cube points closer than this (sup-norm) are the same point.
const DUPLICATE_TOL: f64 = 1e-9;

fn sup_distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f64::max)
}

/// [`RefPointRule::Observed`]: per objective, the smallest of the `n × m` maximisation-oriented
/// values `y`, minus 1e-8.
fn observed_worst(y: &[f64], m: usize) -> Vec<f64> {
    (0..m)
        .map(|j| {
            let worst = y
                .iter()
                .skip(j)
                .step_by(m)
                .copied()
                .fold(f64::INFINITY, f64::min);
            worst - 1e-8
        })
        .collect()
}

mod non_finite;
mod subset;
mod surrogate;
