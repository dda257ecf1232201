#!/usr/bin/env python3
"""Compares the stage-3 searches of `bomf run` directories that fused the same checkpoints with
different settings (e.g. `fusion.simplex_map = "normalize"` vs `"stick_breaking"`).

    python bomf-core/examples/compare_fusion_runs.py LABEL=RUN_DIR [LABEL=RUN_DIR ...]

Per run: evaluations, hypervolume after K and after all evaluations (the objectives normalised
by the checkpoints' own range, reference point 0, so 1.0 is "as good as the best checkpoint in
both"), the best observed validation metric and lowest loss, and the BOMF rows' test metric.
"""
import json
import pathlib
import sys


def main(args):
    print("| run | evaluations | HV after K | final HV | best val metric | lowest val loss | "
          "BOMF test (posterior mean / highest / knee) |")
    print("|---|---|---|---|---|---|---|")
    for arg in args:
        label, _, path = arg.partition("=")
        r = json.loads((pathlib.Path(path) / "results.json").read_text())
        records = r["fusion_records"]
        k = sum(1 for rec in records if rec.get("initial"))
        hv = r["hypervolume"]
        vals = [rec["validation"] for rec in records if rec.get("validation")]
        metric = next(iter(vals[0]["metrics"]))
        best = max(v["metrics"][metric] for v in vals)
        low = min(v["loss"] for v in vals)
        rows = {m["method"]: m for m in r["methods"]}
        tests = [
            rows.get(f"BOMF ({rule})", {}).get("test", {}).get("metrics", {}).get(metric)
            for rule in ("posterior mean", "highest metric", "knee")
        ]
        tests = " / ".join("-" if t is None else f"{t:.3f}" for t in tests)
        print(f"| {label} | {len(records)} | {hv[k - 1]:.3f} | {hv[-1]:.3f} | {best:.4f} | "
              f"{low:.4f} | {tests} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
