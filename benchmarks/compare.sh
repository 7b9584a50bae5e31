#!/usr/bin/env bash
# CPU kernels of compiled functions beside hand-written Eigen, NumPy and PyTorch, in one run.
#   benchmarks/compare.sh [--quick] [--all] [BUILD_DIR]      (default: build)
# Builds nothing: expects BUILD_DIR/bin/agnesi-bench (skipped when absent) and
# BUILD_DIR/bin/agnesi-peer-eigen (./scripts/setup.sh builds both). Every implementation runs
# on 2 threads (OMP_NUM_THREADS=2; NumPy's elementwise ops are single-threaded). The STREAM
# triad runs first and last; the larger of the two is the bandwidth bound the "of triad"
# column divides by, and their spread is one measure of how noisy the run was.
# --quick: smaller sizes and fewer repetitions (a smoke run). --all: the evaluator tier of
# agnesi-bench on the full sizes too. Prints a Markdown table.
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

"$eigen" "${quick[@]}" --filter triad >"$out/triad_first.tsv" 2>/dev/null
if [ -x "$agnesi" ]; then
    "$agnesi" "${quick[@]}" "${all[@]}" >>"$out/results.tsv" 2>>"$out/check.tsv"
else
    echo "compare.sh: $agnesi not found; peers only" >&2
fi
"$eigen" "${quick[@]}" >>"$out/results.tsv" 2>>"$out/check.tsv"
/usr/bin/python3 benchmarks/peers/numpy_cpu.py "${quick[@]}" >>"$out/results.tsv" 2>>"$out/check.tsv"
/usr/bin/python3 benchmarks/peers/torch_cpu.py "${quick[@]}" >>"$out/results.tsv" 2>>"$out/check.tsv"
"$eigen" "${quick[@]}" --filter triad >"$out/triad_last.tsv" 2>/dev/null

/usr/bin/python3 - "$out" <<'PY'
import sys
out = sys.argv[1]

def rows(path):
    for line in open(path):
        f = line.rstrip("\n").split("\t")
        if len(f) == 5 and not line.startswith("#"):
            yield f[0], f[1], float(f[2]), float(f[3]), f[4]

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

order = ["agnesi-native", "agnesi-evaluator", "agnesi-cuda", "eigen", "numpy", "torch"]
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
