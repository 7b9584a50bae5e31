"""SymPy's simplify on the same corpus: prints expr, ops before, ops after, result (tab-separated).

Run with Debian's interpreter: /usr/bin/python3 benchmarks/peers/sympy_simplify.py CORPUS
"""
import sys

import sympy as sp
from sympy.parsing.sympy_parser import parse_expr

x = sp.Symbol("x", real=True)
LOCALS = {
    "sigmoid": lambda t: 1 / (1 + sp.exp(-t)),
    "softplus": lambda t: sp.log(1 + sp.exp(t)),
    "relu": lambda t: sp.Max(t, 0),
    "log1p": lambda t: sp.log(1 + t),
    "expm1": lambda t: sp.exp(t) - 1,
    "abs": sp.Abs,
    "min": sp.Min,
    "max": sp.Max,
    "where": lambda c, a, b: sp.Piecewise((a, c), (b, True)),
    "pi": sp.pi,
    "e": sp.E,
}
# Agnesi's variables are real; so are SymPy's here.
for name in "abcxyz":
    LOCALS[name] = sp.Symbol(name, real=True)


def main(path):
    for line in open(path):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            e = parse_expr(line.replace("^", "**"), local_dict=LOCALS)
            s = sp.simplify(e)
            print(f"{line}\t{sp.count_ops(e)}\t{sp.count_ops(s)}\t{s}")
        except Exception as err:  # a peer's failure is a result too
            print(f"{line}\terror\terror\t{type(err).__name__}")


if __name__ == "__main__":
    main(sys.argv[1])
