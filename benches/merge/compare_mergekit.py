#!/usr/bin/env python3
"""Streamed fusion side by side: `bomf fuse --stream` against mergekit's `linear` merge of the same
K checkpoints of a SmolLM2-135M-shaped model (LLaMA architecture, bfloat16, transformers'
safetensors layout), one run on one machine.

Prints wall time and peak resident memory of each tool (each run in its own process, measured
with getrusage of that child alone), their ratios, and the largest difference between the two
outputs (mergekit computes in float32 too; both round once to bfloat16).

Usage: python compare_mergekit.py --bomf target/release/bomf [--k 8] [--work /tmp/bomf-merge]
Needs torch, transformers and mergekit (pip install mergekit==0.1.5) in this Python.
"""
import argparse
import json
import pathlib
import resource
import shutil
import subprocess
import sys
import time

SMOLLM2_135M = dict(
    vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
    num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
    rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=True,
)


def make_checkpoints(work, k):
    """K bf16 checkpoints: one random SmolLM2-shaped model, each perturbed differently."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    dirs = [work / f"checkpoint-{i}" for i in range(k)]
    if all((d / "model.safetensors").exists() for d in dirs):
        return dirs
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**SMOLLM2_135M)).to(torch.bfloat16)
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    for i, d in enumerate(dirs):
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(base[n] + 0.01 * torch.randn_like(p))
        model.save_pretrained(d, safe_serialization=True, max_shard_size="10GB")
    return dirs


def measured(cmd):
    """Runs `cmd` in a fresh Python child that reports the wall time and peak RSS of `cmd` alone."""
    probe = (
        "import resource, subprocess, sys, time, json\n"
        "t = time.perf_counter(); r = subprocess.run(sys.argv[1:]); w = time.perf_counter() - t\n"
        "m = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(json.dumps({'rc': r.returncode, 'wall_s': w, 'peak_rss_mb': m / 1024}))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe, *cmd], capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        sys.exit(f"{cmd[0]} failed:\n{out.stderr[-3000:]}")
    return result


def max_difference(a, b):
    import torch
    from safetensors.torch import load_file

    def load(folder):
        tensors = {}
        for f in sorted(folder.glob("*.safetensors")):
            tensors.update(load_file(f))
        return tensors

    ta, tb = load(a), load(b)
    assert ta.keys() == tb.keys(), "the outputs hold different tensors"
    ulp = max((ta[n].float() - tb[n].float()).abs().max().item() for n in ta)
    differing = sum(int((ta[n] != tb[n]).sum()) for n in ta)
    total = sum(t.numel() for t in ta.values())
    return ulp, differing, total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bomf", required=True)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--work", default="/tmp/bomf-merge")
    args = ap.parse_args()
    work = pathlib.Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    dirs = make_checkpoints(work, args.k)
    weights = [round(1.0 / args.k, 6)] * (args.k - 1)
    weights.append(round(1.0 - sum(weights), 6))
    config = {
        "merge_method": "linear",
        "dtype": "bfloat16",
        "parameters": {"normalize": False},
        "models": [{"model": str(d), "parameters": {"weight": w}} for d, w in zip(dirs, weights)],
    }
    (work / "linear.yml").write_text(json.dumps(config))
    rows = {}
    for name, out, cmd in [
        ("bomf fuse --stream", work / "out-bomf", [args.bomf, "fuse", "--stream", "--force",
         "--checkpoints", *map(str, dirs), "--weights", ",".join(map(str, weights)),
         "--out", str(work / "out-bomf")]),
        ("mergekit linear", work / "out-mergekit", [str(pathlib.Path(sys.executable).parent / "mergekit-yaml"), str(work / "linear.yml"),
         str(work / "out-mergekit"), "--lazy-unpickle", "--out-shard-size", "10B"]),
    ]:
        shutil.rmtree(out, ignore_errors=True)
        rows[name] = measured(cmd)
    ulp, differing, total = max_difference(work / "out-bomf", work / "out-mergekit")
    size_mb = sum(f.stat().st_size for f in dirs[0].glob("*.safetensors")) / 2**20
    print(f"K = {args.k} checkpoints of {size_mb:.0f} MB (bfloat16, SmolLM2-135M shape)\n")
    print("| tool | wall (s) | peak RSS (MB) |\n|---|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['wall_s']:.2f} | {r['peak_rss_mb']:.0f} |")
    b, m = rows["bomf fuse --stream"], rows["mergekit linear"]
    print(f"\nmergekit / bomf: wall {m['wall_s'] / b['wall_s']:.1f}x, peak RSS {m['peak_rss_mb'] / b['peak_rss_mb']:.1f}x")
    print(f"outputs: {differing} of {total} values differ, largest difference {ulp:.3g}")


if __name__ == "__main__":
    main()
