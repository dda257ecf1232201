"""Side-by-side table of the quality runs: median (over seeds) of log10(max_hv - hv) after the
full budget, per problem and implementation (lower is better). Reads the JSON lines written
by ../../examples/quality.rs and botorch_quality.py (any number of files, mixed).

    python bomf-bo/benches/quality/tabulate.py bomf.jsonl botorch.jsonl [> results.md]
"""

import json
import statistics
import sys
from collections import defaultdict


def main(paths):
    runs = defaultdict(list)
    budgets = {}
    for path in paths:
        with open(path) as f:
            for number, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    run = json.loads(line)
                except json.JSONDecodeError as err:
                    sys.exit(f"{path}:{number}: not JSON ({err})")
                runs[(run["problem"], run["impl"])].append(run)
                budgets[run["problem"]] = (run["n_initial"], run["steps"])
    impls = sorted({i for _, i in runs})
    problems = sorted({p for p, _ in runs})
    header = ["problem", "n_init + steps"] + [
        f"{i} log10 HV diff (seeds, s/run)" for i in impls
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for problem in problems:
        n_initial, steps = budgets[problem]
        cells = [problem, f"{n_initial} + {steps}"]
        for impl in impls:
            group = runs.get((problem, impl), [])
            if not group:
                cells.append("-")
                continue
            med = statistics.median(r["log_hv_diff"] for r in group)
            secs = statistics.median(r["seconds"] for r in group)
            cells.append(f"{med:.3f} ({len(group)}, {secs:.2f})")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
