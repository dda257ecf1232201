#!/usr/bin/env python3
"""PyTorch/transformers side of `reviews_finetune.rs`: the same fine-tune on the same split.

MiniLM + a fresh classification head (BertForSequenceClassification) with one output per label
of the dumped split's `labels.json` (fresh/rotten for the Rotten Tomatoes snippets), AdamW with
the reference's settings (betas 0.9/0.98, eps 1e-6, weight decay 0.1 except biases and LayerNorm
weights), constant learning rate after 10% linear warmup, gradient clipping at 1.0, dynamic
padding, max length 128, then accuracy and mean cross-entropy on the validation split, next to the
majority-class rate of that split.

    cargo run -p bomf-core --release --example reviews_finetune -- --dump-split DIR
    python reviews_finetune.py --split DIR --model .bomf/assets/minilm [--lr 5e-5] \
        [--batch 32] [--seed 0] [--epochs 1] [--threads 2]

The last line is JSON like the Rust example's, with "impl": "pytorch".
"""
import argparse
import json
import math
import os
import random
import sys
import time
from collections import Counter

import torch
from transformers import (
    AutoTokenizer,
    BertForSequenceClassification,
    get_constant_schedule_with_warmup,
)


def read(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def batches(rows, tokenizer, batch, max_len, shuffle, rng):
    order = list(range(len(rows)))
    if shuffle:
        rng.shuffle(order)
    for i in range(0, len(order), batch):
        chunk = [rows[j] for j in order[i : i + batch]]
        enc = tokenizer(
            [r["text"] for r in chunk],
            padding=True,
            truncation=True,
            max_length=max_len,
            return_tensors="pt",
        )
        yield enc, torch.tensor([r["label"] for r in chunk])


def evaluate(model, rows, tokenizer, max_len):
    model.eval()
    correct, loss_sum = 0, 0.0
    with torch.no_grad():
        for enc, labels in batches(rows, tokenizer, 64, max_len, False, None):
            logits = model(**enc).logits
            loss_sum += torch.nn.functional.cross_entropy(logits, labels, reduction="sum").item()
            correct += (logits.argmax(-1) == labels).sum().item()
    model.train()
    return correct / len(rows), loss_sum / len(rows)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--split", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-len", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = random.Random(a.seed)

    train = read(os.path.join(a.split, "train.jsonl"))
    val = read(os.path.join(a.split, "validation.jsonl"))
    with open(os.path.join(a.split, "labels.json")) as f:
        labels = json.load(f)
    bad = [r["label"] for r in train + val if not 0 <= r["label"] < len(labels)]
    if bad:
        sys.exit(f"labels.json names {len(labels)} labels, the split has class {bad[0]}")
    counts = Counter(r["label"] for r in val)
    majority = max(counts.values()) / len(val)
    print(f"labels {labels}: train {len(train)} validation {len(val)}; "
          f"majority class of the validation split {majority:.4f}")
    tokenizer = AutoTokenizer.from_pretrained(a.model)
    model = BertForSequenceClassification.from_pretrained(
        a.model,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    model.train()

    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
    decay = [p for n, p in model.named_parameters() if not (n.endswith("bias") or "LayerNorm" in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=a.lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )
    steps_per_epoch = math.ceil(len(train) / a.batch)
    total = steps_per_epoch * a.epochs
    sched = get_constant_schedule_with_warmup(opt, math.ceil(0.1 * total))

    start, step = time.time(), 0
    for _ in range(a.epochs):
        for enc, labels in batches(train, tokenizer, a.batch, a.max_len, True, rng):
            loss = torch.nn.functional.cross_entropy(model(**enc).logits, labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            step += 1
            if step % 50 == 0:
                print(f"step {step}/{total} loss {loss.item():.4f} ({time.time() - start:.0f}s)")
    acc, loss = evaluate(model, val, tokenizer, a.max_len)
    print(f"trained {step} steps in {time.time() - start:.0f}s")
    print(json.dumps({"impl": "pytorch", "lr": a.lr, "batch": a.batch, "seed": a.seed,
                      "steps": step, "accuracy": acc, "loss": loss, "majority": majority}))


if __name__ == "__main__":
    main()
