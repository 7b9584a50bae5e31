#!/usr/bin/env bash
# CPU kernels of compiled functions beside hand-written Eigen, NumPy and PyTorch, in one run.
#   benchmarks/compare.sh [--quick] [--all] [BUILD_DIR]      (default: build)
# Builds nothing: expects BUILD_DIR/bin/agnesi-bench (skipped when absent) and
# BUILD_DIR/bin/agnesi-peer-eigen (./scripts/setup.sh builds both; agnesi-peer-eigen-blas, Eigen
# with its products handed to OpenBLAS, also runs the MLP step where it was built). Every implementation runs
# on 2 threads (OMP_NUM_THREADS=2; NumPy's elementwise ops are single-threaded). The STREAM
# triad runs first and last; the larger of the two is the bandwidth bound the "of triad"
# column divides by; their spread and the load average before and after say how noisy the run
# was. The "result" column compares each implementation's checksum with Eigen's.
# --quick: smaller sizes and fewer repetitions, a smoke run (its arrays fit in cache, so rates
# above the triad are expected). --all: the evaluator tier of agnesi-bench on the full sizes
# too. Prints Markdown tables.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=()
all=()
build=build
for a in "$@"; do
    case "$a" in
        --quick) quick=(--quick) ;;
        --all) all=(--all) ;;
        -*) echo "usage: benchmarks/compare.sh [--quick] [--all] [BUILD_DIR]" >&2; exit 2 ;;
        *) build=$a ;;
    esac
done
export OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2
eigen=$build/bin/agnesi-peer-eigen
agnesi=$build/bin/agnesi-bench
if [ ! -x "$eigen" ]; then
    echo "compare.sh: $eigen not found; build first (./scripts/setup.sh)" >&2
    exit 1
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

workloads=(chain_f32 chain_f64 gelu_f32 softmax_f32 logsumexp_f32 bias_relu_f32 logreg_f32
           mlp_step_f32)
load_before=$(cut -d' ' -f1 /proc/loadavg)
"$eigen" "${quick[@]}" --filter triad >"$out/triad_first.tsv" 2>/dev/null
[ -x "$agnesi" ] || echo "compare.sh: $agnesi not found; peers only" >&2
# One workload at a time, every implementation back to back, so that a burst of load from
# elsewhere on the machine falls on all of them alike.
for w in "${workloads[@]}"; do
    if [ -x "$agnesi" ]; then
        "$agnesi" "${quick[@]}" "${all[@]}" --filter "$w" >>"$out/results.tsv" 2>>"$out/check.tsv"
    fi
    "$eigen" "${quick[@]}" --filter "$w" >>"$out/results.tsv" 2>>"$out/check.tsv"
    if [ "$w" = mlp_step_f32 ] && [ -x "$eigen-blas" ]; then
        "$eigen-blas" "${quick[@]}" --filter "$w" >>"$out/results.tsv" 2>>"$out/check.tsv"
    fi
    for py in numpy_cpu torch_cpu; do
        /usr/bin/python3 "benchmarks/peers/$py.py" "${quick[@]}" --filter "$w" \
            >>"$out/results.tsv" 2>>"$out/check.tsv"
    done
done
if [ -x "$agnesi" ]; then
    "$agnesi" --filter compile_mlp_step >>"$out/results.tsv" 2>>"$out/check.tsv"
fi
"$eigen" "${quick[@]}" --filter triad >"$out/triad_last.tsv" 2>/dev/null
load_after=$(cut -d' ' -f1 /proc/loadavg)
echo "$load_before $load_after" >"$out/load.txt"

/usr/bin/python3 - "$out" <<'PY'
import sys
out = sys.argv[1]

def rows(path):
    for line in open(path):
        f = line.rstrip("\n").split("\t")
        if len(f) == 5 and not line.startswith("#"):
            yield f[0], f[1], float(f[2]), float(f[3]), f[4]

load = open(f"{out}/load.txt").read().split()
triads = [r[3] for p in ("triad_first", "triad_last") for r in rows(f"{out}/{p}.tsv")]
bound = max(triads) if triads else float("nan")
results = list(rows(f"{out}/results.tsv"))
results = [r for r in results if r[1] != "stream-triad"]
checks = {}
for line in open(f"{out}/check.tsv"):
    f = line.rstrip("\n").split("\t")
    if len(f) == 4 and f[0] == "check":
        checks[(f[1], f[2])] = float(f[3])
    elif line.strip():
        print(line.rstrip(), file=sys.stderr)

order = ["agnesi-native", "agnesi-evaluator", "agnesi-cuda", "eigen", "eigen-blas", "numpy",
         "torch"]
workloads = []
for r in results:
    if r[0] not in workloads:
        workloads.append(r[0])

def check(w, impl):
    ref, v = checks.get((w, "eigen")), checks.get((w, impl))
    if ref is None or v is None:
        return "—"
    if impl == "eigen":
        return "ref"
    return "ok" if abs(v - ref) <= 1e-4 * max(abs(ref), 1.0) else f"differs ({v:.6g} vs {ref:.6g})"

print(f"STREAM triad (float64, 2 threads): {triads[0]:.1f} GB/s first, {triads[-1]:.1f} GB/s last; "
      f"bound used: {bound:.1f} GB/s" if triads else "STREAM triad: not measured")
print(f"Load average (1 min) before the run: {load[0]}, after: {load[1]} (2 cores)")
print()
print("| workload | implementation | median ms | rate | of triad | speedup vs Eigen | result |")
print("| --- | --- | ---: | ---: | ---: | ---: | --- |")
compile_rows = []
for w in workloads:
    mine = sorted((r for r in results if r[0] == w),
                  key=lambda r: order.index(r[1]) if r[1] in order else len(order))
    if mine and mine[0][4] == "ms":
        compile_rows += mine
        continue
    eig = next((r for r in mine if r[1] == "eigen"), None)
    for _, impl, ms, value, unit in mine:
        of_triad = f"{value / bound:.2f}" if unit == "GB/s" else "—"
        speed = f"{eig[2] / ms:.2f}×" if eig else "—"
        print(f"| {w} | {impl} | {ms:.3f} | {value:.1f} {unit} | {of_triad} | {speed} | "
              f"{check(w, impl)} |")
if compile_rows:
    print()
    print("| compile latency | implementation | ms |")
    print("| --- | --- | ---: |")
    for w, impl, ms, _, _ in compile_rows:
        print(f"| {w} | {impl} | {ms:.1f} |")
PY
