#!/usr/bin/env python3
"""`bomf search` evaluator on lm-evaluation-harness (`pip install lm_eval`): scores the candidate
folder on one task and prints the task's metrics as the last stdout line.

    [evaluator]
    command = ["python3", "configs/search/eval_lm_harness.py", "{model}", "mmlu_local", "200"]
    [[objectives]]
    name = "acc"
    direction = "maximize"

Usage: eval_lm_harness.py MODEL_DIR TASK [LIMIT [MODEL_ARGS]]. Tasks in configs/search/lm_eval_tasks/ (e.g.
`mmlu_local`, on the MMLU questions the assets install) run offline; the harness's own tasks need
the Hugging Face hub. Each worker's GPU comes in CUDA_VISIBLE_DEVICES.
"""
import json
import pathlib
import sys

import lm_eval
import torch
from lm_eval.tasks import TaskManager

model, task = sys.argv[1], sys.argv[2]
limit = int(sys.argv[3]) if len(sys.argv) > 3 else None
# More `model_args` for the harness's HF model, e.g. ",prefix_token_id=0" for a tokenizer
# without BOS/EOS tokens.
extra = sys.argv[4] if len(sys.argv) > 4 else ""
tasks = TaskManager(include_path=str(pathlib.Path(__file__).parent / "lm_eval_tasks"))
out = lm_eval.simple_evaluate(
    model="hf",
    model_args=f"pretrained={model},dtype=auto{extra}",
    tasks=[task],
    limit=limit,
    device="cuda" if torch.cuda.is_available() else "cpu",
    task_manager=tasks,
)
metrics = out["results"][task]
print(json.dumps({k.split(",")[0]: v for k, v in metrics.items() if isinstance(v, (int, float))}))
