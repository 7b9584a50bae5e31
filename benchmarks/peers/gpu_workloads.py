"""The GPU workloads of issue 6, written once for the PyTorch and CuPy peers (xp is torch or
cupy; both spell these functions alike or are adapted below). Sizes are the GPU sizes; --quick
divides them by 16.
"""

def median_ms(f, reps=20, warmup=3):
    import torch

    for _ in range(warmup):
        f()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        f()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


class Workload:
    def __init__(self, name, make, torch_fn, nbytes=None, flops=None):
        self.name, self.make, self.torch = name, make, torch_fn
        self.nbytes, self.flops = nbytes, flops

    def rate(self, args, ms):
        if self.flops:
            return self.flops(args) / ms / 1e6  # GFLOP/s
        return self.nbytes(args) / ms / 1e6  # GB/s


def _vec(xp, dev, n):
    import torch

    return torch.randn(n, device=dev, dtype=torch.float32)


def _mat(dev, r, c):
    import torch

    return torch.randn(r, c, device=dev, dtype=torch.float32)


def chain(x, w, b):
    import torch

    return torch.tanh(x * w + b) * torch.sigmoid(x) + torch.log1p(torch.exp(-torch.abs(x)))


def gelu(x):
    import torch

    return 0.5 * x * (1 + torch.tanh(0.7978845608 * (x + 0.044715 * x * x * x)))


def softmax(z):
    import torch

    return torch.softmax(z, dim=1)


def logsumexp(z):
    import torch

    return torch.logsumexp(z, dim=1)


def layer_norm(x, g, b):
    import torch

    m = x.mean(dim=1, keepdim=True)
    v = ((x - m) ** 2).mean(dim=1, keepdim=True)
    return (x - m) / torch.sqrt(v + 1e-5) * g + b


def bias_act(x, b):
    import torch

    return torch.relu(x + b)


def linear_relu(X, W, b):
    import torch

    return torch.relu(X @ W + b)


def logreg(X, y, w):
    import torch

    z = X @ w
    loss = torch.nn.functional.softplus(-y * z).mean()
    g = X.T @ (-y * torch.sigmoid(-y * z)) / X.shape[0]
    return loss, g


def mlp_step(X, Y, W1, b1, W2, b2):
    import torch

    h = torch.relu(X @ W1 + b1)
    logits = h @ W2 + b2
    p = torch.softmax(logits, dim=1)
    n = X.shape[0]
    loss = -(Y * torch.log_softmax(logits, dim=1)).sum() / n
    d2 = (p - Y) / n
    gW2, gb2 = h.T @ d2, d2.sum(0)
    dh = (d2 @ W2.T) * (h > 0)
    gW1, gb1 = X.T @ dh, dh.sum(0)
    return loss, W1 - 0.1 * gW1, b1 - 0.1 * gb1, W2 - 0.1 * gW2, b2 - 0.1 * gb2


def _n(quick, n):
    return n // 16 if quick else n


def _mk_chain(xp, dev, q):
    import torch

    return (_vec(xp, dev, _n(q, 1 << 26)), torch.tensor(0.5, device=dev), torch.tensor(0.25, device=dev))


ROWS, COLS = 16384, 4096
WORKLOADS = [
    Workload("chain", _mk_chain, chain, nbytes=lambda a: 8 * a[0].numel()),
    Workload("gelu", lambda xp, d, q: (_vec(xp, d, _n(q, 1 << 26)),), gelu,
             nbytes=lambda a: 8 * a[0].numel()),
    Workload("softmax", lambda xp, d, q: (_mat(d, _n(q, ROWS), COLS),), softmax,
             nbytes=lambda a: 8 * a[0].numel()),
    Workload("logsumexp", lambda xp, d, q: (_mat(d, _n(q, ROWS), COLS),), logsumexp,
             nbytes=lambda a: 4 * a[0].numel()),
    Workload("layer_norm",
             lambda xp, d, q: (_mat(d, _n(q, ROWS), COLS), _vec(xp, d, COLS), _vec(xp, d, COLS)),
             layer_norm, nbytes=lambda a: 8 * a[0].numel()),
    Workload("bias_act", lambda xp, d, q: (_mat(d, _n(q, ROWS), COLS), _vec(xp, d, COLS)), bias_act,
             nbytes=lambda a: 8 * a[0].numel()),
    Workload("linear_relu",
             lambda xp, d, q: (_mat(d, _n(q, 8192), 1024), _mat(d, 1024, 1024) * 0.03,
                               _vec(xp, d, 1024)),
             linear_relu, flops=lambda a: 2 * a[0].shape[0] * 1024 * 1024),
    Workload("logreg",
             lambda xp, d, q: (_mat(d, _n(q, 1 << 20), 256),
                               _vec(xp, d, _n(q, 1 << 20)).sign(), _vec(xp, d, 256)),
             logreg, nbytes=lambda a: 4 * a[0].numel()),
    Workload("mlp_step",
             lambda xp, d, q: (_mat(d, _n(q, 4096), 784), _mat(d, _n(q, 4096), 10).softmax(1),
                               _mat(d, 784, 1024) * 0.03, _vec(xp, d, 1024) * 0,
                               _mat(d, 1024, 10) * 0.03, _vec(xp, d, 10) * 0),
             mlp_step,
             flops=lambda a: 6 * a[0].shape[0] * (784 * 1024 + 1024 * 10)),
]
