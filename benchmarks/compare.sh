#!/usr/bin/env bash
# CPU kernels of compiled functions beside hand-written Eigen, NumPy and PyTorch, in one run.
#   benchmarks/compare.sh [--quick] [--all] [--rounds N] [BUILD_DIR]      (default: build)
# Builds nothing: expects BUILD_DIR/bin/agnesi-bench (skipped when absent) and
# BUILD_DIR/bin/agnesi-peer-eigen (./scripts/setup.sh builds both; agnesi-peer-eigen-blas, Eigen
# with its products handed to OpenBLAS, also runs the MLP step where it was built). Every implementation runs
# on 2 threads (OMP_NUM_THREADS=2; NumPy's elementwise ops are single-threaded). The STREAM
# triad runs first and last (best of N rounds each); the larger of the two is the bandwidth
# bound the "of triad" column divides by; their spread and the load average before and after say how noisy the run
# was. The "result" column compares each implementation's checksum with Eigen's.
# --quick: smaller sizes and fewer repetitions, a smoke run (its arrays fit in cache, so rates
# above the triad are expected). --all: the evaluator tier of agnesi-bench on the full sizes
# too. --rounds N (default 3): every workload runs N rounds, the implementations back to back in
# each; the table shows each implementation's best round (the least disturbed by other load on
# a shared machine) and the spread of its rounds. Prints Markdown tables.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=()
all=()
build=build
rounds=3
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=(--quick) ;;
        --all) all=(--all) ;;
        --rounds) rounds=$2; shift ;;
        -*) echo "usage: benchmarks/compare.sh [--quick] [--all] [--rounds N] [BUILD_DIR]" >&2
            exit 2 ;;
        *) build=$1 ;;
    esac
    shift
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

workloads=(chain_f32 chain_f64 gelu_f32 softmax_f32 logsumexp_f32 layer_norm_f32 bias_relu_f32
           logreg_f32 mlp_step_f32 call_overhead)
load_before=$(cut -d' ' -f1 /proc/loadavg)
for ((round = 0; round < rounds; round++)); do
    "$eigen" "${quick[@]}" --filter triad >>"$out/triad_first.tsv" 2>/dev/null
done
[ -x "$agnesi" ] || echo "compare.sh: $agnesi not found; peers only" >&2
# One workload at a time, every implementation back to back, so that a burst of load from
# elsewhere on the machine falls on all of them alike.
for w in "${workloads[@]}"; do
  for ((round = 0; round < rounds; round++)); do
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
done
if [ -x "$agnesi" ]; then
    "$agnesi" --filter compile_mlp_step >>"$out/results.tsv" 2>>"$out/check.tsv"
fi
for ((round = 0; round < rounds; round++)); do
    "$eigen" "${quick[@]}" --filter triad >>"$out/triad_last.tsv" 2>/dev/null
done
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
first = [r[3] for r in rows(f"{out}/triad_first.tsv")]
last = [r[3] for r in rows(f"{out}/triad_last.tsv")]
triads = [max(first), max(last)] if first and last else []
bound = max(triads) if triads else float("nan")
# Best round per (workload, implementation), with the slowest round's time for the spread.
best, worst = {}, {}
for r in rows(f"{out}/results.tsv"):
    if r[1] == "stream-triad":
        continue
    key = (r[0], r[1])
    if key not in best or r[2] < best[key][2]:
        best[key] = r
    worst[key] = max(worst.get(key, 0.0), r[2])
results = list(best.values())
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
print("| workload | implementation | median ms | slowest round | rate | of triad | speedup vs Eigen | result |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
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
        print(f"| {w} | {impl} | {ms:.3f} | {worst[(w, impl)]:.3f} | {value:.1f} {unit} | "
              f"{of_triad} | {speed} | {check(w, impl)} |")
if compile_rows:
    print()
    print("| compile latency | implementation | ms |")
    print("| --- | --- | ---: |")
    for w, impl, ms, _, _ in compile_rows:
        print(f"| {w} | {impl} | {ms:.1f} |")
PY
