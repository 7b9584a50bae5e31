"""GPU peers for benchmarks/compare_gpu.sh: PyTorch eager, torch.compile (Inductor) and a
device-to-device copy (the bandwidth bound), on the workloads of agnesi-bench --device cuda.

Prints one line per workload and implementation, as agnesi-bench does:
    workload<TAB>implementation<TAB>median_ms<TAB>GB/s or GFLOP/s
GB/s counts the bytes a fused kernel must move (inputs read once, outputs written once).
"""
import sys

import torch

from gpu_workloads import WORKLOADS, median_ms


def main():
    if not torch.cuda.is_available():
        print("torch_gpu.py: no CUDA device visible to PyTorch", file=sys.stderr)
        sys.exit(1)
    quick = "--quick" in sys.argv
    dev = torch.device("cuda")
    # The bandwidth bound: a device-to-device copy of 2^28 bytes.
    src = torch.empty(1 << 26, dtype=torch.float32, device=dev)
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src))
    print(f"copy\td2d\t{ms:.4f}\t{2 * src.numel() * 4 / ms / 1e6:.1f}")
    for w in WORKLOADS:
        args = w.make(torch, dev, quick)
        fn = w.torch
        for impl, f in (("torch-eager", fn), ("torch-compile", torch.compile(fn))):
            try:
                ms = median_ms(lambda: f(*args))
            except Exception as e:  # a peer that fails is reported, not fatal
                print(f"{w.name}\t{impl}\tfailed: {type(e).__name__}: {e}".replace("\n", " "))
                continue
            print(f"{w.name}\t{impl}\t{ms:.4f}\t{w.rate(args, ms):.1f}")
        sys.stdout.flush()
    # The host's cost of one small call (1024 values) with a wait for it, timed on the host as
    # agnesi-bench's call_overhead is.
    x = torch.randn(1024, device=dev)
    small = lambda v: v * 2 + 1
    for impl, f in (("torch-eager", small), ("torch-compile", torch.compile(small))):
        ms = host_median_ms(lambda: (f(x), torch.cuda.synchronize()))
        print(f"call_overhead\t{impl}\t{ms:.4f}\t{ms * 1000:.3f}\tus")
        # Without a wait per call (PyTorch's calls return once launched): blocks of 2000 calls
        # and one wait, as agnesi-bench times agnesi-cuda-async.
        def block():
            for _ in range(2000):
                f(x)
            torch.cuda.synchronize()
        ms = host_median_ms(block, reps=7, warmup=1) / 2000
        print(f"call_overhead\t{impl}-async\t{ms:.4f}\t{ms * 1000:.3f}\tus")


def host_median_ms(f, reps=200, warmup=5):
    import time

    for _ in range(warmup):
        f()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return times[len(times) // 2]


if __name__ == "__main__":
    main()
