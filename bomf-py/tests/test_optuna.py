"""bomf_bo.optuna: the samplers inside real Optuna studies."""

import warnings

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

import bomf_bo
from bomf_bo.optuna import QLogEISampler, QNEHVISampler

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(autouse=True)
def no_warnings():
    # A fallback to the independent sampler warns: the tests below must not need one.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def branin_currin(trial):
    x0 = trial.suggest_float("x0", 0.0, 1.0)
    x1 = trial.suggest_float("x1", 0.0, 1.0)
    u, v = 15 * x0 - 5, 15 * x1
    branin = (v - 5.1 / (4 * np.pi**2) * u**2 + 5 / np.pi * u - 6) ** 2
    branin += 10 * (1 - 1 / (8 * np.pi)) * np.cos(u) + 10
    x1 = max(x1, 1e-12)
    currin = (1 - np.exp(-1 / (2 * x1))) * (2300 * x0**3 + 1900 * x0**2 + 2092 * x0 + 60)
    currin /= 100 * x0**3 + 500 * x0**2 + 4 * x0 + 20
    return branin, currin


def mixed(trial):
    x = trial.suggest_float("x", -1.0, 1.0)
    lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
    n = trial.suggest_int("n", 1, 16)
    k = trial.suggest_int("k", 2, 64, log=True)
    c = trial.suggest_categorical("c", ["a", "b"])
    s = trial.suggest_float("s", 0.0, 1.0, step=0.25)
    return x**2 + (np.log10(lr) + 3) ** 2 + n / 16 + k / 64 + (c == "b") + s


def hv(study, ref):
    y = np.array([t.values for t in study.trials if t.state == TrialState.COMPLETE])
    return bomf_bo.hypervolume(y, ref, minimize=True)


def test_startup_trials_are_bomf_bo_sobol_design():
    study = optuna.create_study(directions=["minimize"] * 2, sampler=QNEHVISampler(seed=4))
    study.optimize(branin_currin, n_trials=5)
    space = bomf_bo.Space([bomf_bo.Param("x0", 0.0, 1.0), bomf_bo.Param("x1", 0.0, 1.0)])
    design = bomf_bo.Optimizer(space, {"a": "min", "b": "min"}, seed=4).ask(4)
    # Trial 0 comes before any search space is known: the independent sampler draws it.
    got = np.array([[t.params["x0"], t.params["x1"]] for t in study.trials[1:]])
    np.testing.assert_array_equal(got, design)


def test_parameters_kinds_and_fallbacks():
    sampler = QNEHVISampler(seed=0, n_startup_trials=4)
    study = optuna.create_study(sampler=sampler)
    study.optimize(mixed, n_trials=12)
    relative = sampler.infer_relative_search_space(study, study.trials[-1])
    # Categorical and stepped parameters go to the independent sampler.
    assert sorted(relative) == ["k", "lr", "n", "x"]
    for t in study.trials:
        assert isinstance(t.params["n"], int) and 1 <= t.params["n"] <= 16
        assert isinstance(t.params["k"], int) and 2 <= t.params["k"] <= 64
        assert 1e-5 <= t.params["lr"] <= 1e-1 and t.params["c"] in ("a", "b")
        assert t.params["s"] in (0.0, 0.25, 0.5, 0.75, 1.0)
    opt = sampler._state.optimizer
    # The sampler has seen every trial but the last, still running when it last sampled.
    assert opt.acquisition == "qlogei" and opt.n_successful == 11
    assert [p.name for p in opt.space.params] == ["k", "lr", "n", "x"]
    assert [p.log for p in opt.space.params] == [True, True, False, False]


def test_bo_beats_random_search_on_branin_currin():
    ref = [18.0, 6.0]
    sampler = QNEHVISampler(seed=0, ref_point=ref)
    bomf = optuna.create_study(directions=["minimize"] * 2, sampler=sampler)
    bomf.optimize(branin_currin, n_trials=26)
    rand = optuna.create_study(
        directions=["minimize"] * 2, sampler=optuna.samplers.RandomSampler(seed=0)
    )
    rand.optimize(branin_currin, n_trials=26)
    # The largest hypervolume for this reference point is about 59.4.
    assert hv(bomf, ref) > 50.0 > 10.0 > hv(rand, ref)


def test_single_objective_mode_finds_the_minimum():
    study = optuna.create_study(sampler=QLogEISampler(seed=1))
    study.optimize(lambda t: (t.suggest_float("x", -5, 5) - 1.3) ** 2, n_trials=12)
    assert study.best_value < 1e-2
    with pytest.raises(ValueError, match="single-objective"):
        optuna.create_study(directions=["minimize"] * 2, sampler=QLogEISampler()).optimize(
            branin_currin, n_trials=1
        )


def test_running_trials_are_pending():
    sampler = QNEHVISampler(seed=2, n_startup_trials=3)
    study = optuna.create_study(directions=["minimize"] * 2, sampler=sampler)
    study.optimize(branin_currin, n_trials=6)
    running = [study.ask() for _ in range(3)]
    for t in running:
        t.suggest_float("x0", 0.0, 1.0)
        t.suggest_float("x1", 0.0, 1.0)
    params = [(t.params["x0"], t.params["x1"]) for t in running]
    assert len(set(params)) == 3
    # The third trial was sampled with the first two as pending points.
    pending = sampler._state.optimizer.pending
    np.testing.assert_array_equal(pending[:2], np.array(params[:2]))
    for t in running:
        study.tell(t, branin_currin(t))
    study.optimize(branin_currin, n_trials=1)
    assert sampler._state.optimizer.n_successful == 9  # 6 + 3 told; the last one runs


def test_failed_pruned_and_infeasible_trials_are_failures():
    sampler = QNEHVISampler(seed=3, n_startup_trials=3, failure_radius=0.05)
    study = optuna.create_study(sampler=sampler)

    def objective(trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        y = trial.suggest_float("y", 0.0, 1.0)
        if trial.number == 1:
            raise RuntimeError("diverged")
        if trial.number == 2:
            raise optuna.TrialPruned()
        trial.set_constraint("c", 1.0 if trial.number == 3 else -1.0)
        return (x - 0.2) ** 2 + (y - 0.8) ** 2

    study.optimize(objective, n_trials=10, catch=(RuntimeError,))
    states = [t.state for t in study.trials]
    assert states[1] == TrialState.FAIL and states[2] == TrialState.PRUNED
    opt = sampler._state.optimizer
    assert opt.n_failed == 3 and opt.n_successful == 6
    bad = np.array([[t.params["x"], t.params["y"]] for t in study.trials[1:4]])
    later = np.array([[t.params["x"], t.params["y"]] for t in study.trials[4:]])
    for b in bad:
        assert (np.abs(later - b).max(axis=1) > 0.05).all()


def zdt1(trial):
    x = [trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(4)]
    g = 1 + 9 / 3 * sum(x[1:])
    return x[0], g * (1 - np.sqrt(x[0] / g))


def test_default_reference_point_covers_the_observed_range():
    # ZDT1's front lies on a face of the cube; once BO finds its corner (0, 1), that point
    # dominates every other observation, and BoTorch's `infer_reference_point` on a one-point
    # front leaves no room in the first objective. The default rule ("observed") does.
    sampler = QNEHVISampler(seed=0, n_startup_trials=10)
    study = optuna.create_study(directions=["minimize"] * 2, sampler=sampler)
    study.optimize(zdt1, n_trials=30)
    assert sampler._state.optimizer.ref_point_rule == "observed"
    assert hv(study, [11.0, 11.0]) > 119.0  # the largest is 120.33


def test_reference_point_and_acquisition_settings_reach_the_optimizer():
    sampler = QNEHVISampler(seed=0, acquisition="qlognehvi", ref_point=[18.0, 6.0], gp="matern52_gamma")
    study = optuna.create_study(directions=["minimize"] * 2, sampler=sampler)
    study.optimize(branin_currin, n_trials=8)
    opt = sampler._state.optimizer
    assert opt.acquisition == "qlognehvi" and opt.ref_point == [18.0, 6.0]
    front_rule = QNEHVISampler(seed=0, ref_point_rule="front")
    optuna.create_study(directions=["minimize"] * 2, sampler=front_rule).optimize(branin_currin, n_trials=3)
    assert front_rule._state.optimizer.ref_point_rule == "front"
    with pytest.raises(bomf_bo.BoError, match="ref_point_rule"):
        bad = optuna.create_study(directions=["minimize"] * 2, sampler=QNEHVISampler(ref_point_rule="nadir"))
        bad.optimize(branin_currin, n_trials=2)
    with pytest.raises(bomf_bo.BoError, match="acquisition"):
        bad = optuna.create_study(sampler=QNEHVISampler(acquisition="ei"))
        bad.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
