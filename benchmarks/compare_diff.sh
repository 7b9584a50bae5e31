#!/usr/bin/env bash
# Differentiation speed and result size, Agnesi beside SymPy and GiNaC, in one run.
#   benchmarks/compare_diff.sh [BUILD_DIR]        (default: build)
# Needs python3-sympy and libginac-dev (scripts/setup.sh installs them). Families (see
# bench_diff.cpp): nested g(g(...g(x))) with g(t) = sin(t) + t^2, d/dx; chain_sum
# f = sum_i sin(x_i x_{i+1}) exp(x_i/(1+x_{i+1}^2)), all N partials. Peers run one size per
# process under `timeout 60`; a size is skipped when the previous size's time, grown by the
# family's growth (x2 per level of nesting, N^2 for N partials), would pass 60 s.
# Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

cmake --build "$build" --target agnesi_bench_diff -j1 >/dev/null
g++ -O2 -std=c++17 benchmarks/peers/ginac_diff.cpp -o "$out/ginac_diff" \
    $(pkg-config --cflags --libs ginac)

"$build/bin/agnesi_bench_diff" --benchmark_repetitions=3 --benchmark_report_aggregates_only \
    --benchmark_format=csv >"$out/agnesi.csv" 2>/dev/null

python3 - "$out" <<'PY'
import csv, subprocess, sys
out = sys.argv[1]
sizes = {"nested": [10, 20, 100, 1000], "chain_sum": [10, 100, 1000, 10000, 100000]}
# Time growth from one size to the next, used only to skip runs that would pass 60 s:
# the tree-based chain rule doubles per level of nesting; N partials of an N-term sum is N^2.
def growth(family, a, b):
    return 2.0 ** (b - a) if family == "nested" else (b / a) ** 2

ours = {}
for row in csv.reader(open(f"{out}/agnesi.csv")):
    if not row or not row[0].strip('"').startswith("BM_Grad") or "_median" not in row[0]:
        continue
    name = row[0].strip('"').split("/")
    family = "nested" if name[0] == "BM_GradNested" else "chain_sum"
    ours[(family, int(name[1]))] = row
hdr = None
for row in csv.reader(open(f"{out}/agnesi.csv")):
    if row and row[0] == "name":
        hdr = row
        break
col = {h: i for i, h in enumerate(hdr)}

def peer(cmd, family):
    res, prev = {}, None
    for n in sizes[family]:
        if prev and prev[1] * growth(family, prev[0], n) > 60e3:
            res[n] = None
            continue
        try:
            p = subprocess.run(cmd + [family, str(n)], capture_output=True, text=True, timeout=60)
            _, _, ms, nodes = p.stdout.strip().split(",")
            res[n] = (float(ms), int(nodes))
            prev = (n, float(ms))
        except (subprocess.TimeoutExpired, ValueError):
            res[n] = None
            prev = (n, 60e3)
    return res

print("| family | size | agnesi ms | sympy ms | ginac ms | agnesi nodes | sympy nodes | ginac nodes "
      "| sympy / agnesi | ginac / agnesi |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for family in sizes:
    sp = peer(["/usr/bin/python3", "benchmarks/peers/sympy_diff.py"], family)
    gn = peer([f"{out}/ginac_diff"], family)
    for n in sizes[family]:
        r = ours[(family, n)]
        ms = float(r[col["real_time"]])
        nodes = int(float(r[col["nodes"]]))
        f = lambda v, i: "skipped (>60 s)" if v is None else (f"{v[0]:.3f}" if i == 0 else str(v[1]))
        ratio = lambda v: "—" if v is None else f"{v[0] / ms:.0f}×"
        print(f"| {family} | {n} | {ms:.3f} | {f(sp[n], 0)} | {f(gn[n], 0)} | {nodes} | "
              f"{f(sp[n], 1) if sp[n] else '—'} | {f(gn[n], 1) if gn[n] else '—'} | "
              f"{ratio(sp[n])} | {ratio(gn[n])} |")
PY
