"""BoTorch side of the qNEHVI step anchor (see ../examples/bench_anchor.rs for the Rust side).

One BO step at BOMF's sizes, timed end to end: fit a ModelListGP of two SingleTaskGPs
(Standardize outcome transform, fit_gpytorch_mll), build qNEHVI (reference point, X_baseline =
every observation, prune_baseline=True, SobolQMCNormalSampler(128)) and run optimize_acqf
(q=1, num_restarts=10, raw_samples=512, batch_limit 5, maxiter 200). K = 10 inputs in
[0, 1]^10, two objectives, n = 10 / 30 / 60 observations.

The data is the same fixed formula as the Rust example: x_ij = frac((i + 1) * frac(sqrt(p_j)))
over the first ten primes, maximised objectives -sum (x - 0.3)^2 and -sum (x - 0.7)^2,
reference point [-3, -3]. Torch uses 2 threads, double precision.

Prints one JSON line per size: {"name": "qnehvi_step_k10_n30", "seconds": <median of reps>}.

    python bomf-bo/benches/anchor.py [--reps 3]   (default: $BOMF_BENCH_REPS, else 3)
"""

import argparse
import json
import math
import os
import statistics
import time
import warnings

import torch
from botorch_step import qnehvi_candidate

K = 10
PRIMES = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]
SIZES = [10, 30, 60]
REF_POINT = [-3.0, -3.0]


def design(n):
    """The first n points of the shared design (additive recurrence over sqrt of primes)."""
    alphas = [math.sqrt(p) % 1.0 for p in PRIMES]
    return torch.tensor(
        [[((i + 1) * a) % 1.0 for a in alphas] for i in range(n)], dtype=torch.double
    )


def objectives(x):
    f1 = -((x - 0.3) ** 2).sum(-1)
    f2 = -((x - 0.7) ** 2).sum(-1)
    return torch.stack([f1, f2], dim=-1)


def step(train_x, train_y):
    """One qNEHVI BO step (fit + acquisition + optimisation); returns the candidate."""
    bounds = torch.stack([torch.zeros(K), torch.ones(K)])
    return qnehvi_candidate(train_x, train_y, REF_POINT, bounds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=int(os.environ.get("BOMF_BENCH_REPS", "3")))
    args = parser.parse_args()
    torch.set_num_threads(2)
    warnings.filterwarnings("ignore")
    for n in SIZES:
        train_x = design(n)
        train_y = objectives(train_x)
        times = []
        for rep in range(args.reps):
            torch.manual_seed(rep)
            started = time.perf_counter()
            step(train_x, train_y)
            times.append(time.perf_counter() - started)
        print(
            json.dumps({"name": f"qnehvi_step_k{K}_n{n}", "seconds": statistics.median(times)}),
            flush=True,
        )


if __name__ == "__main__":
    main()
