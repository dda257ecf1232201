"""Check that ../../examples/quality.rs defines the problems as BoTorch does.

Reads the JSON lines of `cargo run --release -p bomf-bo --example quality -- --check-points`
(on stdin) and compares each value and max_hv with BoTorch's test functions (minimisation,
negate=False). Exits non-zero on any mismatch.

    cargo run --release -p bomf-bo --example quality -- --check-points \\
        | python bomf-bo/benches/quality/check_problems.py
"""

import json
import sys

import torch
from botorch.test_functions.multi_objective import DTLZ2, ZDT1, ZDT2, BraninCurrin

PROBLEMS = {
    "branincurrin": lambda: BraninCurrin(),
    "zdt1": lambda: ZDT1(dim=6),
    "zdt2": lambda: ZDT2(dim=6),
    "dtlz2_m2": lambda: DTLZ2(dim=6, num_objectives=2),
    "dtlz2_m3": lambda: DTLZ2(dim=6, num_objectives=3),
}


def main():
    failures = 0
    for line in sys.stdin:
        line = line.strip()
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        problem = PROBLEMS[record["problem"]]().to(torch.double)
        x = torch.tensor([p["x"] for p in record["points"]], dtype=torch.double)
        ours = torch.tensor([p["f"] for p in record["points"]], dtype=torch.double)
        theirs = problem(x)
        ok = torch.allclose(ours, theirs, rtol=1e-12, atol=1e-12)
        hv_ok = abs(record["max_hv"] - float(problem.max_hv)) < 1e-9
        print(f"{record['problem']:<13} values {'ok' if ok else 'MISMATCH'}, "
              f"max_hv {'ok' if hv_ok else 'MISMATCH'} ({record['max_hv']} vs {float(problem.max_hv)})")
        failures += (not ok) + (not hv_ok)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
