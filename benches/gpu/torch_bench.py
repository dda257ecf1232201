#!/usr/bin/env python3
"""PyTorch side of `bomf-models/examples/gpu_bench.rs` (issue 7): the same RoBERTa-base-sized
encoder (random init), the same inputs, the same two measurements:
- `train_step_b32_l128`: forward + cross-entropy + backward + AdamW step, batch 32, length 128;
- `eval_277_l128`: forward over 277 examples of length 128 in batches of 32 (no grad);
- `fusion_host_k10` (f32, eager): θ(w) of 10 checkpoints as the authors' code does it, summed
  on the CPU from state dicts and loaded into the model on the device; `fusion_device_k10`: the
  same with the checkpoints stacked on the device (one matmul per tensor), like bomf's.

    python torch_bench.py [--device cuda|cpu] [--dtype f32|bf16] [--compile] [--tiny]

bf16 runs the model in bfloat16 autocast (weights and optimiser in f32), the usual mixed
precision. `--compile` wraps the model in torch.compile. Prints one JSON line per measurement,
`{"name", "device", "dtype", "impl", "seconds"}` (median after synchronising the device).
"""
import argparse
import json
import statistics
import sys
import time

import torch
from transformers import RobertaConfig, RobertaForSequenceClassification


def config(tiny):
    if tiny:
        layers, hidden, heads, ffn, vocab = 2, 64, 4, 128, 1000
    else:
        layers, hidden, heads, ffn, vocab = 12, 768, 12, 3072, 50265
    return RobertaConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                         num_attention_heads=heads, intermediate_size=ffn, hidden_act="gelu",
                         max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
                         layer_norm_eps=1e-5, num_labels=2)


def batch(rows, length, offset, vocab, device):
    """The ids `gpu_bench.rs` builds: 3 + ((offset·len + i)·7919) mod (vocab − 3)."""
    n = rows * length
    ids = [3 + ((offset * length + i) * 7919) % (vocab - 3) for i in range(n)]
    ids = torch.tensor(ids, dtype=torch.long, device=device).view(rows, length)
    return ids, torch.ones_like(ids)


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    p.add_argument("--compile", action="store_true")
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    a = p.parse_args()
    rows, length, eval_rows = (4, 16, 10) if a.tiny else (32, 128, 277)
    cfg = config(a.tiny)
    torch.manual_seed(0)
    model = RobertaForSequenceClassification(cfg).to(a.device)
    runner = torch.compile(model) if a.compile else model
    autocast = torch.autocast(device_type=a.device.split(":")[0], dtype=torch.bfloat16,
                              enabled=a.dtype == "bf16")
    impl = "pytorch-compile" if a.compile else "pytorch-eager"

    def emit(name, samples):
        print(f"{name}: {samples}", file=sys.stderr)
        print(json.dumps({"name": name, "device": a.device, "dtype": a.dtype, "impl": impl,
                          "seconds": statistics.median(samples)}))

    model.eval()
    eval_batches = [batch(min(rows, eval_rows - b * rows), length, b * rows, cfg.vocab_size, a.device)
                    for b in range((eval_rows + rows - 1) // rows)]
    samples = []
    for i in range(a.warmup + a.repeats):
        start = time.perf_counter()
        with torch.no_grad(), autocast:
            for ids, mask in eval_batches:
                runner(input_ids=ids, attention_mask=mask).logits
        sync(a.device)
        if i >= a.warmup:
            samples.append(time.perf_counter() - start)
    emit(f"eval_{eval_rows}_l{length}", samples)
    if a.dtype == "f32" and not a.compile:
        fusion(cfg, model, a, emit)

    model.train()
    ids, mask = batch(rows, length, 0, cfg.vocab_size, a.device)
    labels = torch.tensor([i % 2 for i in range(rows)], device=a.device)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5, eps=1e-8, weight_decay=0.01)
    samples = []
    for i in range(a.warmup + a.repeats):
        start = time.perf_counter()
        with autocast:
            logits = runner(input_ids=ids, attention_mask=mask).logits
            loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(a.device)
        if i >= a.warmup:
            samples.append(time.perf_counter() - start)
    emit(f"train_step_b{rows}_l{length}", samples)


def fusion(cfg, model, a, emit, k=10):
    checkpoints = []
    for j in range(k):
        torch.manual_seed(100 + j)
        checkpoints.append(RobertaForSequenceClassification(cfg).state_dict())
    weights = [(j + 1) / 55.0 for j in range(k)]
    samples = []
    for i in range(a.warmup + a.repeats):
        start = time.perf_counter()
        fused = {name: sum(w * c[name] for w, c in zip(weights, checkpoints))
                 for name in checkpoints[0]}
        model.load_state_dict(fused)
        sync(a.device)
        if i >= a.warmup:
            samples.append(time.perf_counter() - start)
    emit(f"fusion_host_k{k}", samples)

    stacks = {name: torch.stack([c[name].reshape(-1) for c in checkpoints]).to(a.device)
              for name in checkpoints[0] if checkpoints[0][name].is_floating_point()}
    w = torch.tensor([weights], device=a.device)
    params = dict(model.named_parameters())
    params.update(dict(model.named_buffers()))
    samples = []
    for i in range(a.warmup + a.repeats):
        start = time.perf_counter()
        with torch.no_grad():
            for name, stack in stacks.items():
                if name in params:
                    params[name].copy_((w @ stack).reshape(params[name].shape))
        sync(a.device)
        if i >= a.warmup:
            samples.append(time.perf_counter() - start)
    emit(f"fusion_device_k{k}", samples)


if __name__ == "__main__":
    main()
