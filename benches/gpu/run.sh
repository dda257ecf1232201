#!/usr/bin/env bash
# Issue 7's device check, as ONE script for a 15-minute device session. Run it from the
# repository root on the GPU machine; results go to $OUT (the device tool brings them back).
#
# Before the session, on the development machine (CPU only; ~30 min the first time):
#   CUDARC_CUDA_VERSION=13000 cargo build --release -p bomf-models --example gpu_bench \
#       --features bomf-models/cuda
#   CUDARC_CUDA_VERSION=13000 cargo build --release -p bomf-cli --features cuda
#   mkdir -p target/gpu && cp target/release/examples/gpu_bench target/release/bomf target/gpu/
# then: device run with carry ["target/gpu"], command "bash benches/gpu/run.sh", timeout ~480 s.
#
# Done here: the CLI on CUDA against the CPU on the tiny fixtures (`compare.py`: eval loss and
# metrics of BERT/RoBERTa classifiers, greedy generations of the tiny LLaMA, a whole `bomf run`),
# and throughput side by side (item 2 of the issue).
set -u
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/run.log"; }

# cudarc loads libnvrtc at run time; the machine's Python ships it in a wheel.
NVRTC=$(find / -name 'libnvrtc.so.13*' 2>/dev/null | head -1)
if [[ -n $NVRTC ]]; then
    export LD_LIBRARY_PATH="$(dirname "$NVRTC"):${LD_LIBRARY_PATH:-}"
fi
log "nvrtc: ${NVRTC:-not found}"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1

BOMF=${BOMF:-target/gpu/bomf}
GPU=${GPU:-cuda:0} # GPU=cpu BOMF=target/release/bomf OUT=/tmp/g bash benches/gpu/run.sh: a dry run
if [[ -x $BOMF ]]; then
    TINY=bomf-cli/tests/fixtures/tiny
    GEN=bomf-cli/tests/fixtures/tiny_gen
    for pair in "cpu cpu" "$GPU cuda"; do
        read -r dev tag <<< "$pair"
        for m in a roberta; do
            log "bomf eval $m on $dev"
            timeout 60 "$BOMF" eval --model $TINY/$m --file $TINY/eval.jsonl --device $dev \
                > "$OUT/eval-$m-$tag.json" 2>> "$OUT/cli.err" || log "eval $m $dev failed ($?)"
        done
        log "bomf predict llama on $dev"
        timeout 60 "$BOMF" predict --model $GEN/llama --input $GEN/predict.jsonl \
            --out "$OUT/predict-llama-$tag.jsonl" --device $dev 2>> "$OUT/cli.err" ||
            log "predict llama $dev failed ($?)"
        log "bomf run (tiny) on $dev"
        sed "s#@TINY@#$PWD/$TINY#g" benches/gpu/tiny_run.toml > "$OUT/tiny_run.toml"
        start=$(date +%s%N)
        timeout 120 "$BOMF" run "$OUT/tiny_run.toml" --out "$OUT/run-$tag" --device $dev \
            > "$OUT/run-$tag.txt" 2>> "$OUT/cli.err" || log "run $dev failed ($?)"
        log "run on $dev took $((($(date +%s%N) - start) / 1000000)) ms"
        rm -rf "$OUT/run-$tag/checkpoints" "$OUT/run-$tag/fused"
    done
    python3 benches/gpu/compare.py "$OUT" | tee -a "$OUT/run.log"
fi
[[ $GPU == cpu ]] && exit 0

BIN=target/gpu/gpu_bench
for dtype in f32 bf16; do
    log "bomf gpu_bench $dtype"
    timeout 150 "$BIN" --device cuda --dtype "$dtype" >> "$OUT/bomf.jsonl" 2>> "$OUT/bomf.err" ||
        log "bomf $dtype failed (exit $?)"
done
for dtype in f32 bf16; do
    log "pytorch eager $dtype"
    timeout 120 python3 benches/gpu/torch_bench.py --dtype "$dtype" >> "$OUT/torch.jsonl" \
        2>> "$OUT/torch.err" || log "pytorch $dtype failed (exit $?)"
done
log "pytorch compile bf16"
timeout 150 python3 benches/gpu/torch_bench.py --dtype bf16 --compile >> "$OUT/torch.jsonl" \
    2>> "$OUT/torch.err" || log "torch.compile failed (exit $?)"
log "done"
