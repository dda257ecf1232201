"""Optuna samplers backed by bomf-bo: qNEHVI for several objectives, qLogEI for one.

Switching a study is one line::

    from bomf_bo.optuna import QNEHVISampler
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=QNEHVISampler(seed=0))

What the sampler does with each kind of parameter and trial:

- **Relative sampling** (bomf-bo's GP and acquisition) covers every ``FloatDistribution``
  without ``step`` (``log=True`` becomes a log-scale parameter) and every ``IntDistribution``
  with ``step=1`` (integer, optionally log-scale) of the intersection search space.
- **Independent sampling** (``independent_sampler``, default ``RandomSampler``) covers the
  rest: categorical parameters, discretised floats and integers with ``step > 1``, parameters
  that not every finished trial has, and single-valued distributions.
- **Start-up**: the first ``n_startup_trials`` points (default ``max(d + 1, 5)``) come from
  bomf-bo's scrambled Sobol design; running trials count towards it.
- **Running trials** are pending points: the acquisition credits their unknown outcome and no
  new point repeats them.
- **Reference point** (several objectives): ``ref_point=`` in the study's units, else just
  below the worst finished value of each objective (``BoTorchSampler``'s rule;
  ``ref_point_rule="front"`` for BoTorch's ``infer_reference_point`` instead).
- **Failed and pruned trials** are failed evaluations: never fitted, and no later point is
  proposed within ``failure_radius`` of them.
- **Constraints** (``trial.set_constraint`` in Optuna >= 5, or the ``constraints`` system
  attribute older samplers write): a trial violating one (a value > 0) is told as a failed
  evaluation. There is no constraint model: feasible regions are learnt only by avoidance.
- **Several processes** sharing a storage each keep their own bomf-bo state, rebuilt from the
  storage's trials; a sampler object is safe to share between threads (``n_jobs > 1``).

When bomf-bo refuses a step (e.g. every nearby point is pending), the sampler warns with
bomf-bo's message and the trial falls back to the independent sampler.
"""

from __future__ import annotations

import random
import threading
import warnings
from typing import Any, Optional, Sequence

from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from bomf_bo._native import BoError, Optimizer, Param, Space

__all__ = ["QLogEISampler", "QNEHVISampler"]

_TOLD_STATES = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)


def _relative_param(name: str, dist: BaseDistribution) -> Optional[Param]:
    """bomf-bo's parameter for ``dist``, or ``None`` when it is sampled independently."""
    if dist.single():
        return None
    if isinstance(dist, FloatDistribution) and dist.step is None:
        return Param(name, dist.low, dist.high, log=dist.log)
    if isinstance(dist, IntDistribution) and dist.step == 1:
        return Param(name, dist.low, dist.high, log=dist.log, integer=True)
    return None


def _violates_constraints(trial: FrozenTrial) -> bool:
    constraints = getattr(trial, "constraints", None)
    if isinstance(constraints, dict):
        values: Sequence[float] = list(constraints.values())
    else:
        values = trial.system_attrs.get("constraints") or []
    return any(v > 0 for v in values)


class _StudyState:
    """One study's bomf-bo optimiser and which of its trials were told."""

    def __init__(self, key: tuple, optimizer: Optimizer) -> None:
        self.key = key
        self.optimizer = optimizer
        self.told: set[int] = set()


class QNEHVISampler(BaseSampler):
    """bomf-bo's Bayesian optimisation as an Optuna sampler.

    Several objectives: qNEHVI (the BOMF paper's acquisition), one GP per objective. One
    objective: qLogEI. ``acquisition`` picks another (``"qehvi"``, ``"qlognehvi"``).

    Args:
        n_startup_trials: Sobol points before BO; default ``max(d + 1, 5)``.
        seed: seed of bomf-bo's design, GP fits and acquisition optimisation (and of the
            default independent sampler); ``None`` draws one.
        acquisition: ``None`` (qLogEI or qNEHVI by the number of objectives), ``"qlogei"``,
            ``"qehvi"``, ``"qnehvi"`` or ``"qlognehvi"``.
        ref_point: hypervolume reference point in the study's own units and directions;
            ``None`` derives one at each step by ``ref_point_rule``.
        ref_point_rule: ``"observed"`` (default; just below the worst finished value of each
            objective, ``BoTorchSampler``'s rule) or ``"front"`` (BoTorch's
            ``infer_reference_point``: the observed front's nadir minus 10 % of its range,
            degenerate while the front is a single point).
        gp: ``"rbf_dim_scaled"`` (BoTorch >= 0.12's default) or ``"matern52_gamma"``.
        mc_samples: QMC samples of the acquisition.
        failure_radius: no point is proposed within this sup-norm distance (unit cube) of a
            failed, pruned or infeasible trial.
        num_restarts, raw_samples: the acquisition optimiser's effort: ``raw_samples`` Sobol
            points are scored and ``num_restarts`` of them refined by L-BFGS-B (BoTorch's
            ``optimize_acqf``; ``BoTorchSampler`` uses 20 and 1024 for several objectives).
        independent_sampler: for the parameters bomf-bo does not model.
    """

    _single_objective_only = False

    def __init__(
        self,
        *,
        n_startup_trials: Optional[int] = None,
        seed: Optional[int] = None,
        acquisition: Optional[str] = None,
        ref_point: Optional[Sequence[float]] = None,
        ref_point_rule: str = "observed",
        gp: Optional[str] = None,
        mc_samples: int = 128,
        failure_radius: float = 1e-3,
        num_restarts: int = 10,
        raw_samples: int = 512,
        independent_sampler: Optional[BaseSampler] = None,
    ) -> None:
        self._seed = seed if seed is not None else random.SystemRandom().randrange(2**63)
        self._settings: dict[str, Any] = {
            "n_initial": n_startup_trials,
            "acquisition": acquisition,
            "ref_point": None if ref_point is None else list(ref_point),
            "ref_point_rule": ref_point_rule,
            "gp": gp,
            "mc_samples": mc_samples,
            "failure_radius": failure_radius,
            "num_restarts": num_restarts,
            "raw_samples": raw_samples,
        }
        self._independent_sampler = independent_sampler or RandomSampler(seed=seed)
        self._search_space = IntersectionSearchSpace()
        self._state: Optional[_StudyState] = None
        self._lock = threading.Lock()

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        if self._single_objective_only and study._is_multi_objective():
            raise ValueError(f"{type(self).__name__} needs a single-objective study")
        space = self._search_space.calculate(study)
        return {
            name: dist
            for name, dist in sorted(space.items())
            if _relative_param(name, dist) is not None
        }

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        names = sorted(search_space)
        with self._lock:
            state = self._sync(study, names, search_space)
            running = [
                [t.params[n] for n in names]
                for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                if t.number != trial.number and all(n in t.params for n in names)
            ]
            opt = state.optimizer
            opt.clear_pending()
            try:
                x = opt.ask(1, pending=running if running else None)[0]
            except BoError as err:
                warnings.warn(
                    f"bomf-bo could not propose trial {trial.number} ({err}); its parameters "
                    "come from the independent sampler",
                    stacklevel=2,
                )
                return {}
        return {
            n: int(round(v)) if isinstance(search_space[n], IntDistribution) else float(v)
            for n, v in zip(names, x)
        }

    def _sync(
        self, study: Study, names: list[str], search_space: dict[str, BaseDistribution]
    ) -> _StudyState:
        """The study's optimiser, told every finished trial it has not seen yet."""
        directions = tuple(d == StudyDirection.MAXIMIZE for d in study.directions)
        key = (study._study_id, tuple((n, repr(search_space[n])) for n in names), directions)
        if self._state is None or self._state.key != key:
            params = [_relative_param(n, search_space[n]) for n in names]
            objectives = [
                (f"objective_{i}", "max" if maximize else "min")
                for i, maximize in enumerate(directions)
            ]
            settings = {k: v for k, v in self._settings.items() if v is not None}
            optimizer = Optimizer(Space(params), objectives, seed=self._seed, **settings)
            self._state = _StudyState(key, optimizer)
        state = self._state
        for t in study.get_trials(deepcopy=False, states=_TOLD_STATES):
            if t.number in state.told:
                continue
            if not all(t.distributions.get(n) == search_space[n] for n in names):
                continue
            x = [t.params[n] for n in names]
            if t.state == TrialState.COMPLETE and not _violates_constraints(t):
                state.optimizer.tell(x, list(t.values))
            else:
                state.optimizer.failed(x)
            state.told.add(t.number)
        return state

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._independent_sampler.sample_independent(
            study, trial, param_name, param_distribution
        )

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._independent_sampler.before_trial(study, trial)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Optional[Sequence[float]],
    ) -> None:
        self._independent_sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._independent_sampler.reseed_rng()


class QLogEISampler(QNEHVISampler):
    """:class:`QNEHVISampler` for single-objective studies only (qLogEI); a multi-objective
    study is refused."""

    _single_objective_only = True
