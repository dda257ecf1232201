#!/usr/bin/env bash
# Issue 7's device check, as ONE script for a 15-minute device session. Run it from the
# repository root on the GPU machine; results go to $OUT (the device tool brings them back).
#
# Before the session, on the development machine (CPU only; ~30 min the first time):
#   CUDARC_CUDA_VERSION=13000 cargo build --release -p bomf-models --example gpu_bench \
#       --features bomf-models/cuda
#   mkdir -p target/gpu && cp target/release/examples/gpu_bench target/gpu/
# then: device run with carry ["target/gpu"], command "bash benches/gpu/run.sh", timeout ~480 s.
#
# Done here: throughput side by side (item 2 of the issue). Still to add: parity of the tiny
# fixtures CUDA vs CPU (item 1), stage 3 on the GPU (item 3), reproduce --device cuda:0 (item 4).
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
