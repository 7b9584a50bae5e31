#!/usr/bin/env python3
"""PyTorch (CPU) peer of benchmarks/agnesi_bench.cpp: the CPU workloads as a PyTorch user writes
them (torch's fused library ops where they exist, autograd for the gradients), on 2 threads.

  python3 torch_cpu.py [--quick] [--filter SUBSTR]

Prints workload<TAB>implementation<TAB>median_ms<TAB>value<TAB>unit per workload, and to stderr
check<TAB>workload<TAB>implementation<TAB>checksum (inputs as in eigen_cpu.cpp). Prints nothing
and exits 0 when torch cannot be imported.
"""
import argparse
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    sys.exit(0)


def fill(shape, scale, shift, offset=0, dtype=torch.float32):
    n = 1
    for s in shape:
        n *= s
    k = torch.arange(offset, offset + n, dtype=torch.int64)
    u = ((k * 7919) % 10007).double() / 10007.0
    return (scale * u + shift).to(dtype).reshape(shape)


class Bench:
    def __init__(self, quick, name="torch"):
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


def checksum(t):
    return float(t.double().sum())


def chain(b, dtype, workload):
    n = 1 << 20 if b.quick else 1 << 24
    x = fill((n,), 8.0, -4.0, dtype=dtype)
    w, c = 0.5, 0.1
    out = [None]

    def run():
        y = torch.tanh(x * w + c).mul_(torch.sigmoid(x))
        out[0] = y.add_(torch.log1p(torch.exp(-x.abs())))

    ms = b.median_ms(run)
    b.report(workload, ms, gbps(2.0 * n * x.element_size(), ms), "GB/s", checksum(out[0]))


def unary(b, workload, scale, shift, f):
    rows, cols = (512 if b.quick else 4096), 1024
    x = fill((rows, cols), scale, shift)
    out = [None]

    def run():
        out[0] = f(x)

    ms = b.median_ms(run)
    b.report(workload, ms, gbps(2.0 * x.numel() * 4, ms), "GB/s", checksum(out[0]))


def logsumexp(b):
    rows, cols = (512 if b.quick else 4096), 1024
    x = fill((rows, cols), 10.0, -5.0)
    out = [None]

    def run():
        out[0] = torch.logsumexp(x, dim=1)

    ms = b.median_ms(run)
    b.report("logsumexp_f32", ms, gbps(x.numel() * 4.0 + rows * 4.0, ms), "GB/s",
             checksum(out[0]))


def layer_norm(b):
    rows, cols = (512 if b.quick else 4096), 1024
    x = fill((rows, cols), 10.0, -5.0)
    g = fill((cols,), 1.0, 0.5, offset=3)
    bias = fill((cols,), 1.0, -0.5, offset=4)
    out = [None]

    def run():
        out[0] = F.layer_norm(x, (cols,), g, bias, eps=1e-5)

    ms = b.median_ms(run)
    b.report("layer_norm_f32", ms, gbps(2.0 * x.numel() * 4, ms), "GB/s", checksum(out[0]))


def bias_relu(b):
    rows, cols = (512 if b.quick else 4096), 1024
    x = fill((rows, cols), 2.0, -1.0)
    bias = fill((cols,), 1.0, -0.5, offset=1)
    out = [None]

    def run():
        out[0] = torch.add(x, bias).relu_()

    ms = b.median_ms(run)
    b.report("bias_relu_f32", ms, gbps(2.0 * x.numel() * 4, ms), "GB/s", checksum(out[0]))


def logreg(b):
    n, d = (8192 if b.quick else 65536), 256
    X = fill((n, d), 1.0, -0.5)
    y = (torch.arange(n) % 3 == 0).float()
    w = fill((d,), 0.1, -0.05, offset=5).requires_grad_()
    bias = torch.tensor(0.1, requires_grad=True)
    out = [None]

    def run():
        w.grad = None
        bias.grad = None
        z = X @ w + bias
        loss = (F.softplus(z) - y * z).mean()
        loss.backward()
        out[0] = (loss.item(), w.grad, bias.grad)

    ms = b.median_ms(run)
    loss, gw, gb = out[0]
    b.report("logreg_f32", ms, gbps(n * d * 4.0, ms), "GB/s", loss + checksum(gw) + float(gb))


def mlp_step(b):
    batch, n_in, hidden, n_out = 512, 784, 1024, 10
    lr = 0.01
    X = fill((batch, n_in), 1.0, 0.0)
    W1 = fill((n_in, hidden), 0.05, -0.025, offset=1).requires_grad_()
    W2 = fill((hidden, n_out), 0.1, -0.05, offset=2).requires_grad_()
    b1 = torch.full((hidden,), 0.01).requires_grad_()
    b2 = torch.zeros(n_out).requires_grad_()
    Y = torch.zeros(batch, n_out)
    Y[torch.arange(batch), torch.arange(batch) % n_out] = 1
    params = [W1, b1, W2, b2]
    losses = []

    def run():
        for p in params:
            p.grad = None
        h = torch.relu(X @ W1 + b1)
        logits = h @ W2 + b2
        loss = -(Y * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
        loss.backward()
        with torch.no_grad():
            for p in params:
                p.sub_(lr * p.grad)
        losses.append(loss.item())

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
            out[0] = x * 2 + 1

    ms = b.median_ms(run) / calls
    b.report("call_overhead", ms, ms * 1000, "us", checksum(out[0]))

def main():
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--filter", default="")
    a = p.parse_args()
    torch.set_num_threads(2)
    b = Bench(a.quick)
    work = [("chain_f32", lambda: chain(b, torch.float32, "chain_f32")),
            ("chain_f64", lambda: chain(b, torch.float64, "chain_f64")),
            ("gelu_f32", lambda: unary(b, "gelu_f32", 6.0, -3.0, F.gelu)),
            ("softmax_f32", lambda: unary(b, "softmax_f32", 10.0, -5.0,
                                          lambda x: torch.softmax(x, dim=1))),
            ("logsumexp_f32", lambda: logsumexp(b)),
            ("layer_norm_f32", lambda: layer_norm(b)),
            ("bias_relu_f32", lambda: bias_relu(b)),
            ("logreg_f32", lambda: logreg(b)),
            ("mlp_step_f32", lambda: mlp_step(b)),
            ("call_overhead", lambda: call_overhead(b))]
    with torch.inference_mode(False):
        for name, run in work:
            if a.filter in name:
                run()


if __name__ == "__main__":
    main()
