#!/usr/bin/env python3
"""Side-by-side table of `reviews_finetune` runs (bomf, Rust) and `reviews_finetune.py`
(PyTorch/transformers): validation accuracy after one epoch, per recipe and seed, with the mean.

    python bomf-core/examples/reviews_finetune_table.py LOG_DIR [> table.md]

Reads the last JSON line of every `*.log` in LOG_DIR (both programs end with one).
"""
import json
import pathlib
import statistics
import sys
from collections import defaultdict


def last_json(path):
    for line in reversed(path.read_text().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


def main(log_dir):
    runs = defaultdict(dict)
    majority = set()
    for path in sorted(pathlib.Path(log_dir).glob("*.log")):
        r = last_json(path)
        if not r or "accuracy" not in r:
            continue
        # PyTorch batches at random; bomf's default groups lengths (`bucketing`).
        batching = "random" if r["impl"] == "pytorch" or r.get("bucketing") is False else "length-grouped"
        key = (r["lr"], r["batch"], r["impl"], batching)
        runs[key][r["seed"]] = r["accuracy"]
        if r.get("majority") is not None:
            majority.add(round(r["majority"], 4))
    print("| lr | batch | implementation | batches | seed 0 | seed 1 | seed 2 | mean |")
    print("|---|---|---|---|---|---|---|---|")
    for (lr, batch, impl, batching), seeds in sorted(runs.items()):
        cells = [f"{seeds[s]:.3f}" if s in seeds else "-" for s in (0, 1, 2)]
        mean = statistics.mean(seeds.values())
        print(f"| {lr:g} | {batch} | {impl} | {batching} | " + " | ".join(cells) + f" | {mean:.3f} ({len(seeds)}) |")
    if majority:
        # Every run reads the same validation split, so the logs agree on one rate.
        rates = ", ".join(f"{m:.3f}" for m in sorted(majority))
        print(f"\nMajority class of the validation split: {rates}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
