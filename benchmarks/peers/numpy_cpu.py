#!/usr/bin/env python3
"""NumPy peer of benchmarks/agnesi_bench.cpp: the CPU workloads in NumPy, written with care
(float32 kept float32, outputs and large temporaries preallocated and reused through out=).

  python3 numpy_cpu.py [--quick] [--filter SUBSTR]

Prints workload<TAB>implementation<TAB>median_ms<TAB>value<TAB>unit per workload, and to stderr
check<TAB>workload<TAB>implementation<TAB>checksum (see eigen_cpu.cpp: the inputs are the same
formula in every implementation). NumPy's elementwise ops run on one thread; its products go to
the BLAS NumPy is linked with (OpenBLAS on Debian when libopenblas0 is installed), which takes
its threads from OMP_NUM_THREADS / OPENBLAS_NUM_THREADS. erf comes from SciPy; without SciPy
gelu_f32 is skipped.
"""
import argparse
import sys
import time

import numpy as np

F32 = np.float32


def unit(n, offset=0):
    k = np.arange(offset, offset + n, dtype=np.int64)
    return ((k * 7919) % 10007) / 10007.0


def fill(shape, scale, shift, offset=0, dtype=np.float32):
    n = int(np.prod(shape))
    return (scale * unit(n, offset) + shift).astype(dtype).reshape(shape)


class Bench:
    def __init__(self, quick, name="numpy"):
        self.quick = quick
        self.name = name
        self.warmup = 1 if quick else 2
        self.reps = 5 if quick else 10

    def median_ms(self, f):
        for _ in range(self.warmup):
            f()
        times = []
        for _ in range(self.reps):
            t0 = time.perf_counter()
            f()
            times.append((time.perf_counter() - t0) * 1e3)
        times.sort()
        return times[len(times) // 2]

    def report(self, workload, ms, value, unit_name, checksum):
        print(f"{workload}\t{self.name}\t{ms:.4f}\t{value:.3f}\t{unit_name}", flush=True)
        print(f"check\t{workload}\t{self.name}\t{checksum:.9g}", file=sys.stderr, flush=True)


def gbps(nbytes, ms):
    return nbytes / (ms * 1e6)


def chain(b, dtype, workload):
    n = 1 << 20 if b.quick else 1 << 24
    x = fill((n,), 8.0, -4.0, dtype=dtype)
    w, c = dtype(0.5), dtype(0.1)
    one = dtype(1)
    y, t = np.empty_like(x), np.empty_like(x)

    def run():
        # tanh(x*w + c) * sigmoid(x) + log1p(exp(-abs(x)))
        np.multiply(x, w, out=y)
        np.add(y, c, out=y)
        np.tanh(y, out=y)
        np.negative(x, out=t)
        np.exp(t, out=t)
        np.add(t, one, out=t)
        np.divide(y, t, out=y)
        np.abs(x, out=t)
        np.negative(t, out=t)
        np.exp(t, out=t)
        np.log1p(t, out=t)
        np.add(y, t, out=y)

    ms = b.median_ms(run)
    b.report(workload, ms, gbps(2.0 * n * x.itemsize, ms), "GB/s", float(y.sum(dtype=np.float64)))


def gelu(b):
    try:
        from scipy.special import erf
    except ImportError:
        print("numpy_cpu.py: no SciPy, gelu_f32 skipped", file=sys.stderr)
        return
    rows, cols = (512 if b.quick else 4096), 1024
    x = fill((rows, cols), 6.0, -3.0)
    y = np.empty_like(x)
    r, half, one = F32(np.sqrt(0.5)), F32(0.5), F32(1)

    def run():
        np.multiply(x, r, out=y)
        erf(y, out=y)
        np.add(y, one, out=y)
        np.multiply(y, x, out=y)
        np.multiply(y, half, out=y)

    ms = b.median_ms(run)
    b.report("gelu_f32", ms, gbps(2.0 * x.size * 4, ms), "GB/s", float(y.sum(dtype=np.float64)))


def softmax(b):
    rows, cols = (512 if b.quick else 4096), 1024
    x = fill((rows, cols), 10.0, -5.0)
    y = np.empty_like(x)

    def run():
        np.subtract(x, x.max(axis=1, keepdims=True), out=y)
        np.exp(y, out=y)
        np.divide(y, y.sum(axis=1, keepdims=True), out=y)

    ms = b.median_ms(run)
    b.report("softmax_f32", ms, gbps(2.0 * x.size * 4, ms), "GB/s",
             float(y.sum(dtype=np.float64)))


def layer_norm(b):
    rows, cols = (512 if b.quick else 4096), 1024
    x = fill((rows, cols), 10.0, -5.0)
    g = fill((cols,), 1.0, 0.5, offset=3)
    bias = fill((cols,), 1.0, -0.5, offset=4)
    y = np.empty_like(x)
    t = np.empty_like(x)

    def run():
        np.subtract(x, x.mean(axis=1, keepdims=True), out=y)
        np.multiply(y, y, out=t)
        np.divide(y, np.sqrt(t.mean(axis=1, keepdims=True) + F32(1e-5)), out=y)
        np.multiply(y, g, out=y)
        np.add(y, bias, out=y)

    ms = b.median_ms(run)
    b.report("layer_norm_f32", ms, gbps(2.0 * x.size * 4, ms), "GB/s",
             float(y.sum(dtype=np.float64)))


def logsumexp(b):
    rows, cols = (512 if b.quick else 4096), 1024
    x = fill((rows, cols), 10.0, -5.0)
    t = np.empty_like(x)
    out = [None]

    def run():
        m = x.max(axis=1, keepdims=True)
        np.subtract(x, m, out=t)
        np.exp(t, out=t)
        out[0] = np.log(t.sum(axis=1)) + m[:, 0]

    ms = b.median_ms(run)
    b.report("logsumexp_f32", ms, gbps(x.size * 4.0 + rows * 4.0, ms), "GB/s",
             float(out[0].sum(dtype=np.float64)))


def bias_relu(b):
    rows, cols = (512 if b.quick else 4096), 1024
    x = fill((rows, cols), 2.0, -1.0)
    bias = fill((cols,), 1.0, -0.5, offset=1)
    y = np.empty_like(x)
    zero = F32(0)

    def run():
        np.add(x, bias, out=y)
        np.maximum(y, zero, out=y)

    ms = b.median_ms(run)
    b.report("bias_relu_f32", ms, gbps(2.0 * x.size * 4, ms), "GB/s",
             float(y.sum(dtype=np.float64)))


def logreg(b):
    n, d = (8192 if b.quick else 65536), 256
    X = fill((n, d), 1.0, -0.5)
    y = (np.arange(n) % 3 == 0).astype(np.float32)
    w = fill((d,), 0.1, -0.05, offset=5)
    bias = F32(0.1)
    nf = F32(n)
    out = [None]

    def run():
        z = X @ w
        z += bias
        # softplus(z) - y*z, with softplus(z) = logaddexp(0, z)
        loss = (np.logaddexp(F32(0), z) - y * z).sum(dtype=np.float64) / n
        s = F32(1) / (F32(1) + np.exp(-z)) - y
        gw = (X.T @ s) / nf
        gb = s.sum(dtype=np.float64) / n
        out[0] = (loss, gw, gb)

    ms = b.median_ms(run)
    loss, gw, gb = out[0]
    b.report("logreg_f32", ms, gbps(n * d * 4.0, ms), "GB/s",
             float(loss + gw.sum(dtype=np.float64) + gb))


def mlp_step(b):
    batch, n_in, hidden, n_out = 512, 784, 1024, 10
    lr = F32(0.01)
    X = fill((batch, n_in), 1.0, 0.0)
    W1 = fill((n_in, hidden), 0.05, -0.025, offset=1)
    W2 = fill((hidden, n_out), 0.1, -0.05, offset=2)
    b1 = np.full(hidden, 0.01, dtype=np.float32)
    b2 = np.zeros(n_out, dtype=np.float32)
    Y = np.zeros((batch, n_out), dtype=np.float32)
    Y[np.arange(batch), np.arange(batch) % n_out] = 1
    H = np.empty((batch, hidden), dtype=np.float32)
    bf = F32(batch)
    losses = []

    def run():
        np.matmul(X, W1, out=H)
        np.add(H, b1, out=H)
        np.maximum(H, F32(0), out=H)
        L = H @ W2 + b2
        m = L.max(axis=1, keepdims=True)
        e = np.exp(L - m)
        s = e.sum(axis=1, keepdims=True)
        losses.append(float((m[:, 0] + np.log(s[:, 0]) - (Y * L).sum(axis=1)).mean()))
        dL = (e / s - Y) / bf
        gW2 = H.T @ dL
        gb2 = dL.sum(axis=0)
        dH = dL @ W2.T
        np.multiply(dH, H > 0, out=dH)
        gW1 = X.T @ dH
        gb1 = dH.sum(axis=0)
        for p, g in ((W1, gW1), (b1, gb1), (W2, gW2), (b2, gb2)):
            np.subtract(p, lr * g, out=p)

    ms = b.median_ms(run)
    # Forward and the two backward products of each layer, as eigen_cpu.cpp counts them.
    flops = 2.0 * (batch * n_in * hidden + batch * hidden * n_out) * 3
    b.report("mlp_step_f32", ms, flops / (ms * 1e6), "GFLOP/s", losses[0])


def call_overhead(b):
    # The cost of one call on 1024 values, timed over blocks of calls.
    x = fill((1024,), 1.0, 0.0)
    calls = 200 if b.quick else 2000
    out = [None]

    def run():
        for _ in range(calls):
            out[0] = x * np.float32(2) + np.float32(1)

    ms = b.median_ms(run) / calls
    b.report("call_overhead", ms, ms * 1000, "us", float(out[0].astype(np.float64).sum()))

def main():
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--filter", default="")
    a = p.parse_args()
    b = Bench(a.quick)
    work = [("chain_f32", lambda: chain(b, np.float32, "chain_f32")),
            ("chain_f64", lambda: chain(b, np.float64, "chain_f64")),
            ("gelu_f32", lambda: gelu(b)),
            ("softmax_f32", lambda: softmax(b)),
            ("logsumexp_f32", lambda: logsumexp(b)),
            ("layer_norm_f32", lambda: layer_norm(b)),
            ("bias_relu_f32", lambda: bias_relu(b)),
            ("logreg_f32", lambda: logreg(b)),
            ("mlp_step_f32", lambda: mlp_step(b)),
            ("call_overhead", lambda: call_overhead(b))]
    for name, run in work:
        if a.filter in name:
            run()


if __name__ == "__main__":
    main()
