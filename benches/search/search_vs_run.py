#!/usr/bin/env python3
"""`bomf search` against `bomf run`'s own stage 3, on the same checkpoints, seed and budget.

From a finished `bomf run` folder (a classifier task), the kept checkpoints are laid out as a
Hugging Face Trainer output (`checkpoint-<step>/` with the weights and the fused model's config
and tokenizer files), and `bomf search` runs on them with `bomf eval` (one thread) as its external
evaluator on the run's validation split: once with one worker, once with two. Prints the final
hypervolume of each against the run's stage 3, whether the checkpoints' evaluations agree, and
the wall-time ratio of one worker to two. The run's stage 3 is also rerun with this `bomf`
(`bomf run --resume` on a copy holding the checkpoints and stage 1 only), so that the comparison
is between one binary's two front ends: with one worker the two searches must propose the same
points.

Usage: python3 search_vs_run.py --bomf target/release/bomf --run runs/reproduce/rotten-tomatoes-seed0
"""
import argparse
import json
import os
import pathlib
import shutil
import subprocess
import time
import tomllib


def trainer_layout(run, out):
    manifest = json.loads((run / "checkpoints/manifest.json").read_text())
    side = [f for f in (run / "fused").iterdir() if f.is_file() and f.suffix != ".safetensors"]
    for c in manifest["checkpoints"]:
        folder = out / f"checkpoint-{c['step']}"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / "model.safetensors"
        if not target.exists():
            os.link(run / "checkpoints" / c["file"], target)
        for f in side:
            shutil.copy(f, folder / f.name)
    return manifest["checkpoints"]


def search(bomf, work, run, config, workers):
    metric = json.loads((run / "results.json").read_text())["metric"]
    evaluator = [
        "env", "RAYON_NUM_THREADS=1", bomf, "eval", "--model", "{model}", "--data",
        str(run / "config.toml"), "--split", "validation",
        "--max-len", str(config["model"].get("max_len", 128)),
        "--batch-size", str(config["train"].get("eval_batch_size", 32)),
    ]
    fusion = config.get("fusion", {})
    text = (
        f"checkpoints = [{json.dumps(str(work / 'trainer'))}]\nworkers = {workers}\n\n"
        f"[evaluator]\ncommand = {json.dumps(evaluator)}\n\n"
        f"[[objectives]]\nname = {json.dumps(metric)}\ndirection = \"maximize\"\n\n"
        "[[objectives]]\nname = \"loss\"\ndirection = \"minimize\"\n\n"
        f"[search]\nbudget = {fusion.get('budget', 20)}\nseed = {fusion.get('seed', config.get('seed', 0))}\n"
    )
    path = work / f"search-{workers}.toml"
    path.write_text(text)
    out = work / f"run-{workers}"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    subprocess.run([bomf, "search", str(path), "--out", str(out)], check=True,
                   stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    return wall, json.loads((out / "results.json").read_text())


def rerun_stage3(bomf, run, work):
    """`bomf run --resume` on a copy of the run without its stage-3 state: stages 1 and 2 are
    kept, stage 3 and the baselines are redone by this binary."""
    copy = work / "rerun"
    shutil.rmtree(copy, ignore_errors=True)
    (copy / "state").mkdir(parents=True)
    shutil.copytree(run / "checkpoints", copy / "checkpoints")
    for rel in ["config.toml", "inputs.json", "state/hpbo.json", "state/hpbo-full.json"]:
        if (run / rel).exists():
            shutil.copy(run / rel, copy / rel)
    subprocess.run([bomf, "run", str(copy / "config.toml"), "--out", str(copy), "--resume"],
                   check=True, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return json.loads((copy / "results.json").read_text())


def same_points(rerun, work):
    records = [json.loads(l) for l in (work / "run-1/evaluations.jsonl").read_text().splitlines()]
    fusions = [r["weights"] for r in records if r["checkpoint"] is None]
    ours = [r["weights"] for r in rerun["fusion_records"]]
    return sum(
        all(abs(x - y) < 1e-12 for x, y in zip(a, b)) for a, b in zip(ours, fusions)
    ), len(ours)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bomf", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--work", default="/tmp/bomf-search-vs-run")
    args = ap.parse_args()
    run, work = pathlib.Path(args.run).resolve(), pathlib.Path(args.work)
    bomf = str(pathlib.Path(args.bomf).resolve())
    config = tomllib.loads((run / "config.toml").read_text())
    kept = trainer_layout(run, work / "trainer")
    stage3 = json.loads((run / "results.json").read_text())
    rows = {w: search(bomf, work, run, config, w) for w in (1, 2)}
    rerun = rerun_stage3(bomf, run, work)
    metric = stage3["metric"]
    print(f"{run.name}: K = {len(kept)}, budget {len(stage3['hypervolume'])}\n")
    print("| | final hypervolume | wall (s) |\n|---|---:|---:|")
    print(f"| bomf run, stage 3 as archived (its own binary) | {stage3['hypervolume'][-1]:.4f} | |")
    print(f"| bomf run, stage 3 rerun by this binary (built-in evaluator) | {rerun['hypervolume'][-1]:.4f} | |")
    for w, (wall, r) in rows.items():
        print(f"| bomf search, bomf eval as a command, {w} worker(s) | {r['hypervolume'][-1]:.4f} | {wall:.1f} |")
    agree = all(
        abs(v[metric] - c["validation"]["metrics"][metric]) < 1e-9
        and abs(v["loss"] - c["validation"]["loss"]) < 1e-6
        for v, c in zip(rows[1][1]["checkpoint_values"], kept)
    )
    print(f"\ncheckpoint evaluations equal the run's: {agree}")
    same, total = same_points(rerun, work)
    print(f"points proposed identically by bomf run (rerun) and bomf search (1 worker): {same} of {total}")
    print(f"speed-up of 2 workers over 1: {rows[1][0] / rows[2][0]:.2f}x")


if __name__ == "__main__":
    main()
