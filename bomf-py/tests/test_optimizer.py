"""bomf_bo's ask/tell surface: shapes, state, pending points, failures and errors."""

import json
import pickle

import numpy as np
import pytest

import bomf_bo
from bomf_bo import BoError, Optimizer, Param, Space


def box():
    return Space(
        [
            Param("x", -2.0, 2.0),
            Param("n", 1, 10, integer=True),
            Param("lr", 1e-5, 1e-1, log=True),
        ]
    )


def f(x):
    x = np.atleast_2d(x)
    return (x[:, 0] - 0.5) ** 2 + 0.05 * x[:, 1] + 0.1 * (np.log10(x[:, 2]) + 3) ** 2


def run(opt, steps):
    for _ in range(steps):
        x = opt.ask()
        opt.tell(x, f(x))
    return opt


def test_ask_returns_points_of_the_space_and_bo_improves_on_the_design():
    opt = Optimizer(box(), {"f": "min"}, seed=3)
    assert opt.acquisition == "qlogei" and opt.n_initial == 5
    run(opt, 5)
    _, y_design = opt.observations
    run(opt, 10)
    x, y = opt.observations
    assert x.shape == (15, 3) and y.shape == (15, 1)
    assert np.all(x[:, 1] == np.round(x[:, 1]))
    assert np.all((x[:, 0] >= -2) & (x[:, 0] <= 2) & (x[:, 2] >= 1e-5) & (x[:, 2] <= 1e-1))
    best_x, best_y = opt.best
    assert best_y[0] == y.min() < y_design.min()
    assert best_y[0] < 0.15


def test_tell_takes_rows_and_checks_them_all_before_recording_any():
    opt = Optimizer(box(), [("f", "min")], seed=0)
    x = opt.ask(3)
    assert x.shape == (3, 3) and opt.pending.shape == (3, 3)
    opt.tell(x[:2], f(x[:2]))  # (n, d) with (n,) values for one objective
    assert opt.pending.shape == (1, 3)
    bad = np.vstack([x[2], [9.0, 1.0, 1e-3]])  # the second row lies outside the box
    with pytest.raises(BoError, match=r"coordinate 0 \('x'\) = 9 is outside \[-2, 2\]"):
        opt.tell(bad, [1.0, 2.0])
    assert opt.observations[0].shape == (2, 3)
    with pytest.raises(BoError, match="2 point\\(s\\) but 3 row"):
        opt.tell(x[:2], [1.0, 2.0, 3.0])
    with pytest.raises(BoError, match=r"expected 3 value\(s\) per row"):
        opt.tell([1.0, 2.0], [1.0])
    opt.tell(x[2], 0.5)  # one point, a scalar value
    assert opt.n_successful == 3 and opt.pending.shape == (0, 3)


def test_state_round_trip_resumes_exactly():
    opt = run(Optimizer(box(), {"f": "min"}, seed=11), 7)
    state = opt.state()
    resumed = Optimizer.from_state(state)
    assert resumed.state() == state
    np.testing.assert_array_equal(resumed.ask(2), opt.ask(2))
    pickled = pickle.loads(pickle.dumps(opt))
    np.testing.assert_array_equal(pickled.pending, opt.pending)
    np.testing.assert_array_equal(pickled.ask(), opt.ask())
    with pytest.raises(BoError, match="state"):
        Optimizer.from_state(state[: len(state) // 2])


def test_acquisition_optimiser_effort_is_a_setting_kept_in_the_state():
    opt = run(Optimizer(box(), {"f": "min"}, seed=3, num_restarts=4, raw_samples=64), 7)
    acqf = json.loads(opt.state())["settings"]["acqf"]
    assert (acqf["num_restarts"], acqf["raw_samples"]) == (4, 64)
    assert json.loads(Optimizer.from_state(opt.state()).state())["settings"]["acqf"] == acqf
    with pytest.raises(BoError, match="1 <= num_restarts <= raw_samples"):
        Optimizer(box(), {"f": "min"}, num_restarts=8, raw_samples=4)
    with pytest.raises(BoError, match="1 <= num_restarts <= raw_samples"):
        Optimizer(box(), {"f": "min"}, num_restarts=0)


def test_pending_points_are_never_proposed_again():
    opt = run(Optimizer(box(), {"f": "min"}, seed=5), 6)
    elsewhere = opt.ask(2)
    opt.clear_pending()
    assert opt.pending.shape == (0, 3)
    x = opt.ask(3, pending=elsewhere)
    pending = opt.pending
    assert pending.shape == (5, 3)
    np.testing.assert_array_equal(pending[:2], elsewhere)
    for row in x:
        assert not np.any(np.all(np.isclose(row, elsewhere), axis=1))
    opt.add_pending([0.1, 2, 1e-3])
    assert opt.pending.shape == (6, 3)
    with pytest.raises(BoError, match="outside"):
        opt.add_pending([0.1, 11, 1e-3])
    assert opt.pending.shape == (6, 3)


def test_failures_are_recorded_and_avoided():
    opt = Optimizer(box(), {"f": "min"}, seed=2, failure_radius=0.2)
    x = opt.ask(4)
    opt.failed(x[:2])
    opt.tell(x[2:], [[np.nan], [np.inf]])  # NaN and infinity also mark failures
    assert opt.n_failed == 4 and opt.n_successful == 0
    run(opt, 8)
    xs, ys = opt.observations
    assert np.isnan(ys[:2]).all() and np.isinf(ys[3]).all()
    unit = (xs - [-2, 1, 0]) / [4, 9, 1]
    unit[:, 2] = (np.log(xs[:, 2]) - np.log(1e-5)) / (np.log(1e-1) - np.log(1e-5))
    for failed in unit[:4]:
        dist = np.abs(unit[4:] - failed).max(axis=1)
        assert (dist > 0.2).all()


def test_multi_objective_defaults_and_pareto_indices():
    space = Space([Param("a", 0.0, 1.0), Param("b", 0.0, 1.0)])
    opt = Optimizer(space, {"acc": "max", "loss": "min"}, seed=1, ref_point=[0.0, 2.0])
    assert opt.acquisition == "qnehvi" and opt.ref_point == [0.0, 2.0]
    assert opt.ref_point_rule == "front"
    assert Optimizer(space, {"a": "max", "b": "min"}, ref_point_rule="observed").ref_point_rule == "observed"
    assert opt.objectives == [("acc", "max"), ("loss", "min")]
    for _ in range(8):
        x = opt.ask()
        opt.tell(x, np.column_stack([x[:, 0], x[:, 1] + (1 - x[:, 0]) ** 2]))
    _, y = opt.observations
    front = set(opt.pareto_indices())
    for i in range(len(y)):
        dominated = any(
            y[j, 0] >= y[i, 0] and y[j, 1] <= y[i, 1] and (y[j] != y[i]).any()
            for j in range(len(y))
        )
        assert (i not in front) == dominated


def test_simplex_points_are_weights():
    opt = Optimizer(Space.simplex(["a", "b", "c"], map="stick_breaking"), {"m": "max"}, seed=0)
    w = opt.ask(4)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
    assert (w >= 0).all() and opt.space.domain == "simplex"


def test_hypervolume_and_pareto_front_match_brute_force():
    rng = np.random.default_rng(0)
    y = rng.random((40, 2))
    ref = np.array([1.1, 1.1])
    mask = np.array(
        [not any((y[j] <= y[i]).all() and (y[j] < y[i]).any() for j in range(40)) for i in range(40)]
    )
    front = bomf_bo.pareto_front(y, minimize=True)
    np.testing.assert_array_equal(front, y[mask])
    np.testing.assert_array_equal(bomf_bo.non_dominated_indices(y, minimize=True), np.flatnonzero(mask))
    # 2-D hypervolume by a sweep over the front sorted on the first objective.
    pts = y[mask][np.argsort(y[mask][:, 0])]
    expected = sum((ref[0] - p[0]) * (prev - p[1]) for p, prev in zip(pts, np.r_[ref[1], pts[:-1, 1]]))
    assert bomf_bo.hypervolume(y, ref, minimize=True) == pytest.approx(expected, rel=1e-12)
    assert bomf_bo.hypervolume(-y, -ref) == pytest.approx(expected, rel=1e-12)


def test_errors_carry_bomf_bo_messages():
    with pytest.raises(BoError, match="log"):
        Space([Param("lr", 0.0, 1.0, log=True)])
    with pytest.raises(BoError, match="unknown setting \"sed\""):
        Optimizer(box(), {"f": "min"}, sed=1)
    with pytest.raises(BoError, match="goal \"up\""):
        Optimizer(box(), {"f": "up"})
    with pytest.raises(BoError, match="does not apply to 2 objective"):
        Optimizer(box(), {"f": "min", "g": "min"}, acquisition="qlogei")
    with pytest.raises(BoError, match="at most 1000"):
        Optimizer(box(), {"f": "min"}).ask(1001)
    with pytest.raises(BoError, match="array of numbers"):
        Optimizer(box(), {"f": "min"}).tell("abc", 1.0)
    assert issubclass(BoError, ValueError)

