#!/usr/bin/env bash
# Result sizes of Agnesi's simplify against SymPy's simplify (Debian python3-sympy) on one corpus,
# in the same run. Prints one row per expression and a summary line.
#   benchmarks/compare_simplify.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
corpus=benchmarks/data/simplify_corpus.txt
ours=$(mktemp) theirs=$(mktemp)
trap 'rm -f "$ours" "$theirs"' EXIT
"$build/bin/agnesi_simplify_sizes" "$corpus" > "$ours"
/usr/bin/python3 benchmarks/peers/sympy_simplify.py "$corpus" > "$theirs"
paste "$ours" "$theirs" | awk -F'\t' '
BEGIN { printf "%-34s %8s %8s  %-28s %s\n", "expression", "agnesi", "sympy", "agnesi result", "sympy result" }
{
    a = $3; s = $7
    printf "%-34s %8s %8s  %-28s %s\n", substr($1, 1, 34), a, s, substr($4, 1, 28), $8
    if (a == "error" || s == "error") { err++; next }
    if (a + 0 < s + 0) smaller++; else if (a + 0 == s + 0) equal++; else larger++
    n++
}
END { printf "\n%d expressions: Agnesi smaller %d, equal %d, larger %d (errors %d)\n", n, smaller, equal, larger, err }'
