#!/usr/bin/env bash
# The CUDA check, for the minutes a GPU machine is lent: builds with `--features fqgan/cuda`, then
# runs the same short jobs on `cuda` and on `cpu` and prints their times side by side:
# tokenizer training steps, code extraction, FAR training steps, generation, and the C API
# (examples/c/encode_decode.c on "cuda"). Everything else is built and tested on CPU first.
#
#   tools/cuda-check.sh            # from the repository root; needs an NVIDIA driver
#
# Exits non-zero at the first failing step. Output is short enough to paste into a note.
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS=${STEPS:-20}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

echo "== build (release, CUDA feature)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi not found"
cargo build -q --release --workspace --features fqgan/cuda
T=target/release/fqgan-trainer
F=target/release/fqgan

# A labelled folder (two classes) from the example images, for codes and generation.
mkdir -p "$WORK/data/stone" "$WORK/data/photo"
cp examples/images/{brick,gravel,grass}.png "$WORK/data/stone/"
cp examples/images/{astronaut,chelsea,coffee}.png "$WORK/data/photo/"

# seconds DEVICE COMMAND...: runs COMMAND with --device DEVICE, prints the wall time.
seconds() {
    local device=$1
    shift
    local start end
    start=$(date +%s.%N)
    "$@" --device "$device" >"$WORK/last.log" 2>&1 || { cat "$WORK/last.log"; exit 1; }
    end=$(date +%s.%N)
    awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }'
}

row() { printf '%-44s %10s %10s\n' "$@"; }
row "job" "cpu (s)" "cuda (s)"
for device in cpu cuda; do
    D="$WORK/$device"
    mkdir -p "$D"
    times[0]=$(seconds "$device" "$T" train-tokenizer --data "$WORK/data" --preset small-dual-ds8 --out "$D/tok" \
        --steps "$STEPS" --batch-size 8 --image-every 0 --checkpoint-every 1000 --quiet)
    times[1]=$(seconds "$device" "$T" extract-codes --model "$D/tok/tokenizer.safetensors" --data "$WORK/data" \
        --views flip -o "$D/codes.safetensors" --quiet)
    times[2]=$(seconds "$device" "$T" train-far --codes "$D/codes.safetensors" --preset tiny-dual --out "$D/far" \
        --steps "$STEPS" --batch-size 8 --val-every 1000 --checkpoint-every 1000 --quiet)
    times[3]=$(seconds "$device" "$F" generate --labels 0,1 --model "$D/tok/tokenizer.safetensors" \
        --far "$D/far/far.safetensors" -o "$D/grid.png" --seed 7)
    eval "t_$device=(\"\${times[@]}\")"
done
row "train-tokenizer small-dual-ds8, $STEPS steps of 8" "${t_cpu[0]}" "${t_cuda[0]}"
row "extract-codes, 6 images x 2 views" "${t_cpu[1]}" "${t_cuda[1]}"
row "train-far tiny-dual, $STEPS steps of 8" "${t_cpu[2]}" "${t_cuda[2]}"
row "generate 2 images (64 tokens each)" "${t_cpu[3]}" "${t_cuda[3]}"

echo "== C API on cuda (examples/c/encode_decode.c)"
gcc -O2 -Iinclude examples/c/encode_decode.c -Ltarget/release -lfqgan -o "$WORK/encode_decode"
{ printf 'P6\n64 64\n255\n'; head -c $((64 * 64 * 3)) /dev/urandom; } >"$WORK/in.ppm"
LD_LIBRARY_PATH=target/release "$WORK/encode_decode" "$WORK/cuda/tok/tokenizer.safetensors" "$WORK/in.ppm" \
    "$WORK/out.ppm" cuda
echo "cuda check passed"
