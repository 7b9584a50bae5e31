#!/usr/bin/env python3
"""SymPy peer of benchmarks/bench_diff.cpp: one (family, size) per run, timing diff alone.

  python3 sympy_diff.py nested 10     # d/dx of g(g(...g(x))), g(t) = sin(t) + t**2
  python3 sympy_diff.py chain_sum 100 # all N partials of sum sin(x_i x_{i+1}) exp(x_i/(1+x_{i+1}**2))

Prints "family,size,ms,nodes": the median of a few runs of the differentiation (built outside
the timing) and the distinct subexpressions of the result (SymPy shares equal subtrees, so this
is its DAG size, comparable to Agnesi's node count).
"""
import sys
import time

import sympy


def distinct_nodes(exprs):
    seen = set()
    stack = list(exprs)
    while stack:
        e = stack.pop()
        if e in seen:
            continue
        seen.add(e)
        stack.extend(e.args)
    return len(seen)


def main():
    family, n = sys.argv[1], int(sys.argv[2])
    if family == "nested":
        x = sympy.Symbol("x")
        t = x
        for _ in range(n):
            t = sympy.sin(t) + t**2
        run = lambda: [sympy.diff(t, x)]
    else:
        xs = sympy.symbols(f"x0:{n}")
        f = sympy.Add(*[sympy.sin(xs[i] * xs[i + 1]) * sympy.exp(xs[i] / (1 + xs[i + 1] ** 2))
                        for i in range(n - 1)])
        run = lambda: [sympy.diff(f, xi) for xi in xs]
    times, result = [], None
    budget = time.perf_counter() + 10
    while len(times) < 5 and (not times or time.perf_counter() < budget):
        sympy.core.cache.clear_cache()  # each run starts cold, as a fresh Agnesi Context does
        t0 = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - t0)
    times.sort()
    print(f"{family},{n},{times[len(times) // 2] * 1e3:.4f},{distinct_nodes(result)}")


if __name__ == "__main__":
    main()
