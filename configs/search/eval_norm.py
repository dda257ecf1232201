#!/usr/bin/env python3
"""A 20-line evaluator for `bomf search`, standard library only.

Reads one tensor of the candidate (any safetensors layout, F32/BF16/F16) and prints two
objectives on its last stdout line: `closeness` to a target vector (maximise) and `norm`
(minimise). They disagree, so the search has a front to find. Usage: eval_norm.py MODEL_DIR
"""
import json, pathlib, struct, sys

TENSOR, TARGET = "model.norm.weight", 1.2
DECODE = {"F32": ("<f", 4), "BF16": ("<H", 2), "F16": ("<e", 2)}

for path in sorted(pathlib.Path(sys.argv[1]).glob("*.safetensors")):
    blob = path.read_bytes()
    n = struct.unpack("<Q", blob[:8])[0]
    info = json.loads(blob[8:8 + n]).get(TENSOR)
    if info:
        fmt, size = DECODE[info["dtype"]]
        begin, end = (8 + n + o for o in info["data_offsets"])
        raw = [struct.unpack(fmt, blob[i:i + size])[0] for i in range(begin, end, size)]
        x = [struct.unpack("<f", struct.pack("<I", v << 16))[0] for v in raw] if info["dtype"] == "BF16" else raw
        print(json.dumps({"closeness": -sum((v - TARGET) ** 2 for v in x), "norm": sum(v * v for v in x)}))
        sys.exit(0)
sys.exit(f"{TENSOR} not found in {sys.argv[1]}")
