#!/usr/bin/env python3
"""PyTorch anchor for the MiniLM encoder benchmarks (the Rust side is `examples/bench_anchor.rs`).

Measures, on the CPU with a fixed thread count, the same two things on the same inputs:
- `minilm_forward_b32_l64`: eval-mode forward of a 2-label `BertForSequenceClassification`,
- `smollm2_greedy_32_tokens`: SmolLM2-135M loaded from the same GGUF file (`gguf_file=`,
  dequantised to f32) generating exactly 32 tokens greedily after `The capital of France is`
  (skipped when the file or the `gguf` package is absent),
- `minilm_train_step_b32_l64`: train-mode forward + cross-entropy + backward + AdamW step.

The batch is 32 rows padded to the longest row (64 tokens: dynamic padding), rows shortened by
`(row * 7) % 24` tokens, ids `1000 + (row * 131 + pos * 17) % 20000` -- exactly what the Rust side
builds. Prints one JSON line per measurement, `{"name": ..., "seconds": median}`, on stdout; the
details (threads, every sample) go to stderr. `cargo xtask bench` pairs the lines by name.

Usage: python anchor.py [--assets DIR] [--threads 2] [--repeats 7]
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

BATCH = 32
SEQ_LEN = 64


def assets_dir(cli_value):
    if cli_value:
        return Path(cli_value)
    if os.environ.get("BOMF_ASSETS"):
        return Path(os.environ["BOMF_ASSETS"])
    return Path(__file__).resolve().parents[2] / ".bomf" / "assets"


def make_batch(torch):
    ids, mask = [], []
    for row in range(BATCH):
        length = SEQ_LEN - (row * 7) % 24
        ids.append([1000 + (row * 131 + pos * 17) % 20000 if pos < length else 0 for pos in range(SEQ_LEN)])
        mask.append([1 if pos < length else 0 for pos in range(SEQ_LEN)])
    # Dynamic padding: trim to the longest row (here the full 64).
    longest = max(sum(m) for m in mask)
    ids = torch.tensor([r[:longest] for r in ids], dtype=torch.long)
    mask = torch.tensor([r[:longest] for r in mask], dtype=torch.long)
    labels = torch.tensor([i % 2 for i in range(BATCH)], dtype=torch.long)
    return ids, mask, labels


def timed(fn, warmup, repeats):
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(repeats):
        cpu_start = time.process_time()
        start = time.perf_counter()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
    return wall, cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", help="assets folder holding minilm/ (default: BOMF_ASSETS or <workspace>/.bomf/assets)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=int(os.environ.get("BOMF_BENCH_REPS", "7")))
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()

    import torch
    from transformers import BertForSequenceClassification

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model_dir = assets_dir(args.assets) / "minilm"
    if not (model_dir / "model.safetensors").is_file():
        sys.exit(f"MiniLM not found in {model_dir} (set BOMF_ASSETS or pass --assets)")
    model = BertForSequenceClassification.from_pretrained(str(model_dir), num_labels=2)
    ids, mask, labels = make_batch(torch)
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"cpu capability {torch.backends.cpu.get_cpu_capability()}, "
        f"attention {model.config._attn_implementation}",
        file=sys.stderr,
    )

    model.eval()

    def forward():
        with torch.inference_mode():
            model(input_ids=ids, attention_mask=mask).logits.sum().item()

    results = {"minilm_forward_b32_l64": timed(forward, args.warmup, args.repeats)}

    smollm2 = model_dir.parent / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    try:
        import gguf  # noqa: F401  (transformers needs it for `gguf_file=`)
    except ImportError:
        gguf = None
    if smollm2.is_file() and gguf is not None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(smollm2.parent), gguf_file=smollm2.name)
        decoder = AutoModelForCausalLM.from_pretrained(
            str(smollm2.parent), gguf_file=smollm2.name, torch_dtype=torch.float32
        ).eval()
        prompt = tokenizer("The capital of France is", return_tensors="pt", add_special_tokens=False).input_ids

        def generate():
            with torch.inference_mode():
                out = decoder.generate(prompt, max_new_tokens=32, min_new_tokens=32, do_sample=False)
            assert out.shape[1] - prompt.shape[1] == 32

        results["smollm2_greedy_32_tokens"] = timed(generate, args.warmup, args.repeats)
        del decoder
    else:
        print(f"skipped smollm2_greedy_32_tokens: {smollm2} or the gguf package is missing", file=sys.stderr)

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, eps=1e-8, weight_decay=0.01)

    def train_step():
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    results["minilm_train_step_b32_l64"] = timed(train_step, args.warmup, args.repeats)

    for name, (wall, cpu) in results.items():
        # CPU seconds (all threads) are a steadier yardstick than wall time on a shared machine.
        print(
            f"{name}: wall " + ", ".join(f"{s:.3f}" for s in wall) + " | cpu " + ", ".join(f"{s:.3f}" for s in cpu),
            file=sys.stderr,
        )
        print(json.dumps({"name": name, "seconds": statistics.median(wall)}), flush=True)


if __name__ == "__main__":
    main()
