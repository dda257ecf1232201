#!/usr/bin/env python3
"""`bomf search` evaluator on lm-evaluation-harness (`pip install lm_eval`): scores the candidate
folder on one task and prints its metrics as the last stdout line.

    [evaluator]
    command = ["python3", "configs/search/eval_lm_harness.py", "{model}", "arc_easy", "500"]
    [[objectives]]
    name = "acc"
    direction = "maximize"

Usage: eval_lm_harness.py MODEL_DIR TASK [LIMIT]. Each worker's GPU comes in CUDA_VISIBLE_DEVICES.
"""
import json
import sys

import lm_eval

model, task = sys.argv[1], sys.argv[2]
limit = int(sys.argv[3]) if len(sys.argv) > 3 else None
device = "cuda" if __import__("torch").cuda.is_available() else "cpu"
out = lm_eval.simple_evaluate(
    model="hf", model_args=f"pretrained={model},dtype=auto", tasks=[task], limit=limit, device=device
)
metrics = out["results"][task]
print(json.dumps({k.split(",")[0]: v for k, v in metrics.items() if isinstance(v, (int, float))}))
