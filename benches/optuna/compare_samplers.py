#!/usr/bin/env python3
"""bomf-bo's Optuna sampler against optuna-integration's BoTorchSampler and Optuna's TPESampler.

Three two-objective minimisation problems from BoTorch's test suite, each with BoTorch's
reference point: BraninCurrin (d = 2, ref (18, 6)), DTLZ2 (d = 6, ref (1.1, 1.1)) and ZDT1
(d = 6, ref (11, 11)). The definitions here are checked against `botorch.test_functions` at
start. Every sampler gets the same study set-up: 2(d + 1) start-up trials (each sampler's own:
Sobol for bomf-bo, random for BoTorchSampler, TPE's random start-up), then `--trials` trials,
`--seeds` seeds, run interleaved (seed, problem, sampler) so that machine drift hits every
column alike. BoTorchSampler takes seconds per trial on a small CPU: `--botorch-minutes` stops
starting its runs after that much wall time (the table says how many seeds each column has,
and the time ratio uses only the (problem, seed) pairs both samplers ran in one invocation,
side by side). Every finished run is written to `--out` at once, so an interrupted comparison
keeps its runs; `--resume` adds to them, skipping the (problem, sampler, seed) already there.

Reported per problem and sampler: the final hypervolume of all trials (mean ± std over seeds,
computed with Optuna's own `compute_hypervolume`, independent of bomf-bo), and the wall time
per trial after start-up (the sampler's proposal; the objectives cost microseconds), the median
over seeds.

Usage (a venv with optuna, optuna-integration, botorch and the bomf-bo wheel):
    python benches/optuna/compare_samplers.py --seeds 10 --trials 30 \
        --out results/optuna/compare_samplers.json
"""
import argparse
import json
import math
import os
import platform
import time
import warnings

import numpy as np
import optuna
from optuna._hypervolume import compute_hypervolume

import bomf_bo
from bomf_bo.optuna import QNEHVISampler


def branin_currin(x):
    u, v = 15 * x[0] - 5, 15 * x[1]
    branin = (v - 5.1 / (4 * math.pi**2) * u**2 + 5 / math.pi * u - 6) ** 2
    branin += 10 * (1 - 1 / (8 * math.pi)) * math.cos(u) + 10
    x1 = max(x[1], 1e-12)
    currin = (1 - math.exp(-1 / (2 * x1))) * (2300 * x[0] ** 3 + 1900 * x[0] ** 2 + 2092 * x[0] + 60)
    currin /= 100 * x[0] ** 3 + 500 * x[0] ** 2 + 4 * x[0] + 20
    return [branin, currin]


def dtlz2(x):
    g = sum((xi - 0.5) ** 2 for xi in x[1:])
    return [(1 + g) * math.cos(x[0] * math.pi / 2), (1 + g) * math.sin(x[0] * math.pi / 2)]


def zdt1(x):
    f1 = x[0]
    g = 1 + 9 / (len(x) - 1) * sum(x[1:])
    return [f1, g * (1 - math.sqrt(f1 / g))]


PROBLEMS = {
    # name: (function, dimension, reference point, largest hypervolume)
    "BraninCurrin": (branin_currin, 2, [18.0, 6.0], 59.36011874867746),
    "DTLZ2": (dtlz2, 6, [1.1, 1.1], 1.1 * 1.1 - math.pi / 4),
    "ZDT1": (zdt1, 6, [11.0, 11.0], 11.0 * 11.0 - 2 / 3),
}


def check_against_botorch():
    """Our problem definitions equal BoTorch's test functions on random points."""
    try:
        import torch
        from botorch.test_functions import multi_objective as mo
    except ImportError:
        print("botorch not importable: problem definitions not cross-checked")
        return
    theirs = {
        "BraninCurrin": mo.BraninCurrin(),
        "DTLZ2": mo.DTLZ2(dim=6, num_objectives=2),
        "ZDT1": mo.ZDT1(dim=6),
    }
    rng = np.random.default_rng(0)
    for name, (f, d, ref, _) in PROBLEMS.items():
        x = rng.random((64, d))
        ours = np.array([f(list(row)) for row in x])
        ref_vals = theirs[name](torch.tensor(x, dtype=torch.float64)).numpy()
        np.testing.assert_allclose(ours, ref_vals, rtol=1e-10, atol=1e-12, err_msg=name)
        assert list(theirs[name].ref_point.numpy()) == ref, name
    print("problem definitions and reference points equal botorch.test_functions'")


def make_sampler(kind, seed, n_startup):
    if kind == "bomf":
        return QNEHVISampler(seed=seed, n_startup_trials=n_startup)
    if kind == "bomf-front":
        # The reference point by BoTorch's `infer_reference_point` on the observed front.
        return QNEHVISampler(seed=seed, n_startup_trials=n_startup, ref_point_rule="front")
    if kind == "bomf-matern":
        # The BOMF paper's GP (BoTorch <= 0.11's default): Matérn-5/2 with Gamma priors.
        return QNEHVISampler(seed=seed, n_startup_trials=n_startup, gp="matern52_gamma")
    if kind == "bomf-20x1024":
        # BoTorchSampler's acquisition optimiser effort for several objectives.
        return QNEHVISampler(seed=seed, n_startup_trials=n_startup, num_restarts=20, raw_samples=1024)
    if kind == "bomf-log":
        # qLogNEHVI, the log-smoothed qNEHVI (BoTorchSampler uses qLogEHVI).
        return QNEHVISampler(seed=seed, n_startup_trials=n_startup, acquisition="qlognehvi")
    if kind == "botorch":
        from optuna_integration import BoTorchSampler

        return BoTorchSampler(seed=seed, n_startup_trials=n_startup)
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup)
    raise ValueError(kind)


def run_one(problem, kind, seed, trials):
    f, d, ref, _ = PROBLEMS[problem]
    n_startup = 2 * (d + 1)

    def objective(trial):
        return f([trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(d)])

    study = optuna.create_study(
        directions=["minimize", "minimize"], sampler=make_sampler(kind, seed, n_startup)
    )
    study.optimize(objective, n_trials=n_startup)
    start = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    per_trial = (time.perf_counter() - start) / trials
    values = np.array([t.values for t in study.trials])
    better = values[(values < np.array(ref)).all(axis=1)]
    hv = compute_hypervolume(better, np.array(ref)) if len(better) else 0.0
    # bomf-bo's own hypervolume must agree with Optuna's.
    assert math.isclose(bomf_bo.hypervolume(values, ref, minimize=True), hv, rel_tol=1e-9, abs_tol=1e-12)
    return {"problem": problem, "sampler": kind, "seed": seed, "hv": hv, "s_per_trial": per_trial}


def seeds_of(runs, name, kind):
    return [r for r in runs if r["problem"] == name and r["sampler"] == kind]


def time_ratio(runs, name):
    """Mean BoTorchSampler time over mean bomf time, on the (problem, seed) pairs both ran in
    the same invocation."""
    bomf = {(r["seed"], r.get("invocation")): r["s_per_trial"] for r in seeds_of(runs, name, "bomf")}
    botorch = {(r["seed"], r.get("invocation")): r["s_per_trial"] for r in seeds_of(runs, name, "botorch")}
    both = sorted(set(bomf) & set(botorch))
    if not both:
        return "–"
    return f"{np.mean([botorch[s] for s in both]) / np.mean([bomf[s] for s in both]):.0f}× ({len(both)})"


def table(runs, kinds):
    """Two Markdown tables: final hypervolume per sampler, then seconds per trial (the median over
    seeds, robust to a run slowed by something else on the machine) and the paired time ratio."""
    hv_lines = [
        "| problem (d) | max HV | " + " | ".join(kinds) + " |",
        "|---|---:|" + "---:|" * len(kinds),
    ]
    time_lines = [
        "| problem (d) | " + " | ".join(kinds) + " | BoTorch ÷ bomf time (pairs) |",
        "|---|" + "---:|" * (len(kinds) + 1),
    ]
    for name, (_, d, _, max_hv) in PROBLEMS.items():
        cells, tcells = [], []
        for k in kinds:
            hv = np.array([r["hv"] for r in seeds_of(runs, name, k)])
            t = np.array([r["s_per_trial"] for r in seeds_of(runs, name, k)])
            if len(hv) == 0:
                cells.append("–")
                tcells.append("–")
                continue
            std = hv.std(ddof=1) if len(hv) > 1 else 0.0
            cells.append(f"{hv.mean():.4g} ± {std:.2g} ({len(hv)})")
            tcells.append(f"{np.median(t):.3g}")
        hv_lines.append(f"| {name} ({d}) | {max_hv:.4g} | " + " | ".join(cells) + " |")
        time_lines.append(f"| {name} ({d}) | " + " | ".join(tcells) + f" | {time_ratio(runs, name)} |")
    return "\n".join(hv_lines) + "\n\nSeconds per trial after start-up (median over seeds):\n\n" + "\n".join(time_lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--trials", type=int, default=30, help="trials after the 2(d+1) start-up")
    ap.add_argument("--samplers", default="bomf,botorch,tpe",
                    help="of bomf, bomf-front (ref_point_rule=front), bomf-matern (gp=matern52_gamma), "
                    "bomf-20x1024 (num_restarts=20, raw_samples=1024), bomf-log (qLogNEHVI), botorch, tpe")
    ap.add_argument("--problems", default=",".join(PROBLEMS))
    ap.add_argument("--botorch-minutes", type=float, default=float("inf"),
                    help="start no BoTorchSampler run after this many minutes")
    ap.add_argument("--out", help="write every run (as it finishes) and the table as JSON here")
    ap.add_argument("--resume", action="store_true", help="keep the runs already in --out")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    check_against_botorch()
    kinds = args.samplers.split(",")
    meta = {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d"),
        "versions": {"optuna": optuna.__version__, "bomf_bo": bomf_bo.__version__},
        "seeds": args.seeds,
        "trials_after_startup": args.trials,
    }
    if "botorch" in kinds:
        import botorch
        import optuna_integration

        meta["versions"]["botorch"] = botorch.__version__
        meta["versions"]["optuna_integration"] = optuna_integration.__version__
        # BoTorchSampler's qLogEHVI at its fastest: the fused C++ kernel (JIT-compiled once;
        # needs a C++ compiler and `ninja` on PATH), else BoTorch's pure-PyTorch fallback.
        from botorch.acquisition.multi_objective import logei

        logei._try_load_fused_kernel()
        meta["botorch_fused_qlogehvi_kernel"] = logei._C is not None
        print(f"BoTorch's fused qLogEHVI kernel loaded: {logei._C is not None}")
    runs = []
    if args.resume and args.out and os.path.exists(args.out):
        with open(args.out) as fh:
            previous = json.load(fh)
        runs = previous["runs"]
        for key, value in previous["meta"].items():
            if key == "versions":
                meta["versions"] = {**value, **meta["versions"]}
            elif key not in ("date",):
                meta.setdefault(key, value)
    done = {(r["problem"], r["sampler"], r["seed"]) for r in runs}
    invocation = time.strftime("%Y-%m-%dT%H:%M:%S")
    began = time.perf_counter()
    for seed in range(args.seeds):
        for problem in args.problems.split(","):
            for kind in kinds:
                if kind == "botorch" and time.perf_counter() - began > 60 * args.botorch_minutes:
                    continue
                if (problem, kind, seed) in done:
                    continue
                r = run_one(problem, kind, seed, args.trials)
                r["invocation"] = invocation
                runs.append(r)
                print(f"{problem:13s} seed {seed} {kind:8s} HV {r['hv']:.5g}  {r['s_per_trial']:.4f} s/trial", flush=True)
                save(args.out, meta, runs, kinds)
    print(table(runs, sorted({r["sampler"] for r in runs}, key=ORDER.index)))


ORDER = ["bomf", "bomf-front", "bomf-matern", "bomf-20x1024", "bomf-log", "botorch", "tpe"]


def save(out, meta, runs, kinds):
    if not out:
        return
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out + ".tmp", "w") as fh:
        kinds = sorted({r["sampler"] for r in runs}, key=ORDER.index)
        json.dump({"meta": meta, "runs": runs, "table": table(runs, kinds)}, fh, indent=1)
    os.replace(out + ".tmp", out)

if __name__ == "__main__":
    main()
