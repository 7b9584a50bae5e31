"""CuPy peer for benchmarks/compare_gpu.sh: cupy.fuse for the pointwise workloads, CuPy
reductions for the others. Same output format as torch_gpu.py. Needs CuPy and PyTorch (for the
shared timing helper, which uses CUDA events)."""
import sys

try:
    import cupy as cp
except ImportError:
    print("cupy_gpu.py: CuPy is not installed", file=sys.stderr)
    sys.exit(1)

from gpu_workloads import median_ms

ROWS, COLS = 16384, 4096


@cp.fuse()
def chain(x, w, b):
    return cp.tanh(x * w + b) * (1 / (1 + cp.exp(-x))) + cp.log1p(cp.exp(-cp.abs(x)))


@cp.fuse()
def gelu(x):
    return 0.5 * x * (1 + cp.tanh(cp.float32(0.7978845608) * (x + cp.float32(0.044715) * x * x * x)))


@cp.fuse()
def bias_act(x, b):
    return cp.maximum(x + b, cp.float32(0))


def softmax(z):
    m = z.max(axis=1, keepdims=True)
    e = cp.exp(z - m)
    return e / e.sum(axis=1, keepdims=True)


def logsumexp(z):
    m = z.max(axis=1, keepdims=True)
    return (cp.log(cp.exp(z - m).sum(axis=1, keepdims=True)) + m)[:, 0]


def main():
    quick = "--quick" in sys.argv
    q = 16 if quick else 1
    rng = cp.random.default_rng(1)
    x = rng.standard_normal((1 << 26) // q, dtype=cp.float32)
    z = rng.standard_normal((ROWS // q, COLS), dtype=cp.float32)
    b = rng.standard_normal(COLS, dtype=cp.float32)
    w, c = cp.float32(0.5), cp.float32(0.25)
    runs = [
        ("chain", lambda: chain(x, w, c), 8 * x.size),
        ("gelu", lambda: gelu(x), 8 * x.size),
        ("softmax", lambda: softmax(z), 8 * z.size),
        ("logsumexp", lambda: logsumexp(z), 4 * z.size),
        ("bias_act", lambda: bias_act(z, b), 8 * z.size),
    ]
    for name, f, nbytes in runs:
        ms = median_ms(f)
        print(f"{name}\tcupy\t{ms:.4f}\t{nbytes / ms / 1e6:.1f}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
