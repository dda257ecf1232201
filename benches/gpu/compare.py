"""CUDA against CPU for run.sh's CLI outputs in OUT: eval loss/metrics (<= 1e-3), greedy
generations (identical), and the validation results of a whole tiny `bomf run`.

Usage: python3 benches/gpu/compare.py OUT_DIR  (prints one line per check, PASS/FAIL)."""

import json
import pathlib
import sys

out = pathlib.Path(sys.argv[1])
failed = 0


def report(name, ok, detail):
    global failed
    failed += not ok
    print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}")


def load(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return e


for model in ["a", "roberta"]:
    cpu, gpu = load(out / f"eval-{model}-cpu.json"), load(out / f"eval-{model}-cuda.json")
    if isinstance(cpu, Exception) or isinstance(gpu, Exception):
        report(f"eval {model}", False, f"missing output ({cpu if isinstance(cpu, Exception) else gpu})")
        continue
    diffs = {"loss": abs(cpu["loss"] - gpu["loss"])}
    diffs.update({k: abs(v - gpu["metrics"][k]) for k, v in cpu["metrics"].items()})
    report(f"eval {model}", max(diffs.values()) <= 1e-3, diffs)

try:
    cpu = (out / "predict-llama-cpu.jsonl").read_text().splitlines()
    gpu = (out / "predict-llama-cuda.jsonl").read_text().splitlines()
    same = sum(a == b for a, b in zip(cpu, gpu))
    report("greedy llama", len(cpu) == len(gpu) and same == len(cpu), f"{same}/{len(cpu)} identical")
except OSError as e:
    report("greedy llama", False, e)

cpu, gpu = load(out / "run-cpu/results.json"), load(out / "run-cuda/results.json")
if isinstance(cpu, Exception) or isinstance(gpu, Exception):
    report("bomf run", False, "missing results.json")
else:
    rows = {m["method"]: m for m in cpu["methods"]}
    for m in gpu["methods"]:
        c = rows.get(m["method"])
        if c is None:
            continue
        d = abs(c["validation"]["loss"] - m["validation"]["loss"])
        # Training amplifies float differences; a loose bound says "the same run", not bit-equality.
        report(f"run {m['method']}", d <= 5e-2, f"validation loss cpu {c['validation']['loss']:.4f} cuda {m['validation']['loss']:.4f}")
sys.exit(1 if failed else 0)
