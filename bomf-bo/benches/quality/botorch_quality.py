"""BoTorch's standard qNEHVI loop on the problems of ../../examples/quality.rs.

Same budget and initial design size as the Rust harness: 2(d + 1) scrambled Sobol points,
then `--steps` BO steps, each: ModelListGP of SingleTaskGPs (Standardize) fitted with
fit_gpytorch_mll, qNEHVI (problem's reference point, X_baseline = all inputs,
prune_baseline=True, SobolQMCNormalSampler(128)), optimize_acqf (q=1, num_restarts=10,
raw_samples=512, batch_limit 5, maxiter 200). Problems are BoTorch's own test functions with
negate=True (maximisation), evaluated without noise; torch uses 2 threads.

Prints one JSON line per (problem, seed), the same fields as the Rust example.

    python bomf-bo/benches/quality/botorch_quality.py \
        [--problems branincurrin,zdt1,zdt2,dtlz2_m2,dtlz2_m3] [--seeds 10] [--steps 20]
"""

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

import torch
from botorch.test_functions.multi_objective import DTLZ2, ZDT1, ZDT2, BraninCurrin
from botorch.utils.multi_objective.box_decompositions.dominated import (
    DominatedPartitioning,
)
from botorch.utils.sampling import draw_sobol_samples

# The BO step shared with ../anchor.py lives one directory up.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from botorch_step import qnehvi_candidate  # noqa: E402

PROBLEMS = {
    "branincurrin": lambda: BraninCurrin(negate=True),
    "zdt1": lambda: ZDT1(dim=6, negate=True),
    "zdt2": lambda: ZDT2(dim=6, negate=True),
    "dtlz2_m2": lambda: DTLZ2(dim=6, num_objectives=2, negate=True),
    "dtlz2_m3": lambda: DTLZ2(dim=6, num_objectives=3, negate=True),
}


def hypervolume(problem, y):
    partitioning = DominatedPartitioning(ref_point=problem.ref_point, Y=y)
    return partitioning.compute_hypervolume().item()


def candidate(problem, train_x, train_y):
    return qnehvi_candidate(train_x, train_y, problem.ref_point.tolist(), problem.bounds)


def run(name, seed, steps):
    problem = PROBLEMS[name]().to(torch.double)
    d = problem.dim
    n_initial = 2 * (d + 1)
    torch.manual_seed(seed)
    started = time.perf_counter()
    train_x = draw_sobol_samples(problem.bounds, n=n_initial, q=1, seed=seed).squeeze(1)
    train_y = problem(train_x)
    hvs = [hypervolume(problem, train_y[: i + 1]) for i in range(n_initial)]
    for _ in range(steps):
        x = candidate(problem, train_x, train_y)
        train_x = torch.cat([train_x, x])
        train_y = torch.cat([train_y, problem(x)])
        hvs.append(hypervolume(problem, train_y))
    max_hv = float(problem.max_hv)
    return {
        "impl": "botorch",
        "problem": name,
        "seed": seed,
        "n_initial": n_initial,
        "steps": steps,
        "max_hv": max_hv,
        "hv": hvs,
        "log_hv_diff": math.log10(max(max_hv - hvs[-1], 1e-12)),
        "seconds": time.perf_counter() - started,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default=",".join(PROBLEMS))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--append-to",
        metavar="FILE",
        help="append each run to FILE instead of stdout, skipping (problem, seed, steps) runs "
        "already there: the full protocol takes many hours here, so it resumes across sessions",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    names = args.problems.split(",")
    for name in names:
        if name not in PROBLEMS:
            parser.error(f"unknown problem {name!r}; known: {', '.join(PROBLEMS)}")
    done = set()
    if args.append_to:
        try:
            with open(args.append_to) as f:
                for line in f:
                    if line.strip():
                        r = json.loads(line)
                        done.add((r["problem"], r["seed"], r["steps"]))
        except FileNotFoundError:
            pass
    # Seed-major order: a partial run still covers every problem.
    for seed in range(args.seeds):
        for name in names:
            if (name, seed, args.steps) in done:
                continue
            line = json.dumps(run(name, seed, args.steps))
            if args.append_to:
                with open(args.append_to, "a") as f:
                    f.write(line + "\n")
            else:
                print(line, flush=True)


if __name__ == "__main__":
    main()
