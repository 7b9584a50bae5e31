#!/usr/bin/env bash
# Agnesi on the GPU beside PyTorch eager, torch.compile (Inductor) and CuPy, in one session, with
# a device-to-device copy as the bandwidth bound.
#   benchmarks/compare_gpu.sh [BUILD_DIR] [--quick]      (default: build)
# Workloads (issue 6, GPU sizes, float32): pointwise chain and gelu (n = 2^26), row softmax and
# logsumexp, layer norm and bias+activation (16384 x 4096), logistic-regression loss and gradient
# (2^20 x 256), a layer relu(X W + b) (8192 x 1024 x 1024, cuBLASLt's epilogue), MLP training step
# (batch 4096, 784-1024-10). Each line of the table gives the
# median time, the rate (GB/s of the bytes a fused kernel must move, or GFLOP/s), the fraction of
# the copy bandwidth, and the time relative to torch.compile.
# Needs an NVIDIA GPU with its driver; PyTorch and CuPy are used where installed.
set -euo pipefail
cd "$(dirname "$0")/.."
build=build
quick=""
for a in "$@"; do
    case "$a" in
        --quick) quick=--quick ;;
        *) build=$a ;;
    esac
done

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "compare_gpu.sh: no NVIDIA GPU or driver on this machine (nvidia-smi finds none);" \
         "run it on a machine with a GPU." >&2
    exit 1
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
device=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -n1)
echo "device: $device; date: $(date -u +%Y-%m-%d)"

if [[ -x "$build/bin/agnesi-bench" ]]; then
    "$build/bin/agnesi-bench" --device cuda $quick >"$out/agnesi.tsv" || \
        echo "compare_gpu.sh: agnesi-bench --device cuda failed" >&2
else
    echo "compare_gpu.sh: $build/bin/agnesi-bench not built; Agnesi's rows are missing" >&2
    : >"$out/agnesi.tsv"
fi
export PYTHONPATH="$PWD/benchmarks/peers${PYTHONPATH:+:$PYTHONPATH}"
if python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    python3 benchmarks/peers/torch_gpu.py $quick >"$out/torch.tsv" || true
    python3 benchmarks/peers/cupy_gpu.py $quick >"$out/cupy.tsv" || true
else
    echo "compare_gpu.sh: PyTorch with CUDA is not installed; no peers and no copy bound" >&2
    : >"$out/torch.tsv"
    : >"$out/cupy.tsv"
fi

python3 - "$out" <<'PY'
import sys
out = sys.argv[1]
rows, order = {}, []
for f in ("agnesi.tsv", "torch.tsv", "cupy.tsv"):
    for line in open(f"{out}/{f}"):
        p = line.rstrip("\n").split("\t")
        if len(p) < 3:
            continue
        w, impl = p[0], p[1]
        try:
            ms = float(p[2])
        except ValueError:
            rows[(w, impl)] = (None, None, p[2])
            continue
        rate = float(p[3]) if len(p) > 3 else None
        unit = p[4] if len(p) > 4 else ("GFLOP/s" if w in ("mlp_step", "linear_relu") else "GB/s")
        rows[(w, impl)] = (ms, rate, unit)
        if w not in order and w != "copy":
            order.append(w)
copy = rows.get(("copy", "d2d"), (None, None, "GB/s"))[1]
if copy:
    print(f"copy bandwidth (device-to-device): {copy:.0f} GB/s\n")
print("| workload | implementation | median ms | rate | of copy bw | vs torch.compile |")
print("|---|---|---:|---:|---:|---:|")
for w in order:
    ref = rows.get((w, "torch-compile"), (None,))[0]
    for (ww, impl), (ms, rate, note) in rows.items():
        if ww != w:
            continue
        if ms is None:
            print(f"| {w} | {impl} | {note} | | | |")
            continue
        unit = note
        frac = f"{rate / copy:.2f}" if copy and rate and unit == "GB/s" else ""
        rel = f"{ms / ref:.2f}x" if ref else ""
        print(f"| {w} | {impl} | {ms:.3f} | {rate:.0f} {unit} | {frac} | {rel} |")
PY
