// Hand-written Eigen 3.4 + OpenMP peer of benchmarks/agnesi_bench.cpp: the CPU workloads as a
// careful user would write them (parallel over row blocks or chunks, outputs allocated once,
// intermediates kept in cache), plus a STREAM-style triad that measures the bandwidth bound.
//
//   agnesi-peer-eigen [--quick] [--filter SUBSTR]
//
// Built twice: agnesi-peer-eigen with Eigen's own products, and, where OpenBLAS is found,
// agnesi-peer-eigen-blas with EIGEN_USE_BLAS (compare.sh runs it for the MLP step).
//
// Prints one line per workload: workload<TAB>implementation<TAB>median_ms<TAB>value<TAB>unit,
// and to stderr `check<TAB>workload<TAB>implementation<TAB>checksum` so that compare.sh can
// confirm every implementation computed the same thing (inputs are the same formula everywhere,
// see fill()). Threads: OMP_NUM_THREADS, 2 when it is unset.
#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numbers>
#include <string>
#include <unsupported/Eigen/SpecialFunctions>
#include <vector>

#ifndef AGNESI_PEER_NAME
#define AGNESI_PEER_NAME "eigen"
#endif

namespace {

// "eigen" for Eigen's own products; "eigen-blas" when built with EIGEN_USE_BLAS, which hands
// them to a BLAS (OpenBLAS here).
constexpr const char* kImpl = AGNESI_PEER_NAME;

template <class T>
using Vec = Eigen::Array<T, Eigen::Dynamic, 1>;
template <class T>
using Mat = Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowF = Eigen::Matrix<float, 1, Eigen::Dynamic>;
using ColF = Eigen::Matrix<float, Eigen::Dynamic, 1>;

struct Config {
    bool quick = false;
    std::string filter;
    int warmup() const { return quick ? 1 : 2; }
    int reps() const { return quick ? 5 : 10; }
};

// The input formula every implementation shares: k-th value in [0, 1).
double unit(std::int64_t k) {
    return static_cast<double>((k * 7919) % 10007) / 10007.0;
}

// Writes scale * unit(k + offset) + shift into a, in parallel with the schedule the kernels use
// (so pages are first touched by the thread that later reads them).
template <class T>
void fill(T* a, std::int64_t n, double scale, double shift, std::int64_t offset = 0) {
#pragma omp parallel for schedule(static)
    for (std::int64_t k = 0; k < n; ++k) a[k] = static_cast<T>(scale * unit(k + offset) + shift);
}

template <class F>
double median_ms(const Config& cfg, F&& f) {
    for (int i = 0; i < cfg.warmup(); ++i) f();
    std::vector<double> t;
    for (int i = 0; i < cfg.reps(); ++i) {
        auto t0 = std::chrono::steady_clock::now();
        f();
        auto t1 = std::chrono::steady_clock::now();
        t.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

void report(const char* workload, const char* impl, double ms, double value, const char* unit) {
    std::printf("%s\t%s\t%.4f\t%.3f\t%s\n", workload, impl, ms, value, unit);
    std::fflush(stdout);
}
void check(const char* workload, const char* impl, double checksum) {
    std::fprintf(stderr, "check\t%s\t%s\t%.9g\n", workload, impl, checksum);
}
double gbps(double bytes, double ms) {
    return bytes / (ms * 1e6);
}

constexpr std::int64_t kChunk = 16384;  // elements per task: a few L1/L2-sized tiles

// y = tanh(x*w + b)*sigmoid(x) + log1p(exp(-abs(x))), one pass over chunks.
template <class T>
void chain(const Config& cfg, const char* name) {
    const std::int64_t n = cfg.quick ? (1 << 20) : (1 << 24);
    Vec<T> x(n), y(n);
    fill(x.data(), n, 8.0, -4.0);
    fill(y.data(), n, 0.0, 0.0);
    const T w = T(0.5), b = T(0.1);
    double ms = median_ms(cfg, [&] {
#pragma omp parallel for schedule(static)
        for (std::int64_t i = 0; i < n; i += kChunk) {
            const std::int64_t len = std::min(kChunk, n - i);
            auto xs = x.segment(i, len);
            y.segment(i, len) = (xs * w + b).tanh() * xs.logistic() + (-xs.abs()).exp().log1p();
        }
    });
    report(name, kImpl, ms, gbps(2.0 * n * sizeof(T), ms), "GB/s");
    check(name, kImpl, y.template cast<double>().sum());
}

void gelu(const Config& cfg) {
    const std::int64_t rows = cfg.quick ? 512 : 4096, cols = 1024, n = rows * cols;
    Vec<float> x(n), y(n);
    fill(x.data(), n, 6.0, -3.0);
    fill(y.data(), n, 0.0, 0.0);
    const float r = static_cast<float>(1.0 / std::numbers::sqrt2);
    double ms = median_ms(cfg, [&] {
#pragma omp parallel for schedule(static)
        for (std::int64_t i = 0; i < n; i += kChunk) {
            const std::int64_t len = std::min(kChunk, n - i);
            auto xs = x.segment(i, len);
            y.segment(i, len) = 0.5f * xs * (1.0f + (xs * r).erf());
        }
    });
    report("gelu_f32", kImpl, ms, gbps(2.0 * n * 4, ms), "GB/s");
    check("gelu_f32", kImpl, y.cast<double>().sum());
}

void softmax(const Config& cfg) {
    const std::int64_t rows = cfg.quick ? 512 : 4096, cols = 1024;
    Mat<float> x(rows, cols), y(rows, cols);
    fill(x.data(), rows * cols, 10.0, -5.0);
    fill(y.data(), rows * cols, 0.0, 0.0);
    double ms = median_ms(cfg, [&] {
#pragma omp parallel for schedule(static)
        for (std::int64_t i = 0; i < rows; ++i) {
            const float m = x.row(i).maxCoeff();
            y.row(i) = (x.row(i) - m).exp();
            y.row(i) *= 1.0f / y.row(i).sum();
        }
    });
    report("softmax_f32", kImpl, ms, gbps(2.0 * rows * cols * 4, ms), "GB/s");
    check("softmax_f32", kImpl, y.cast<double>().sum());
}

// Layer norm with gain and bias: two passes over each row (mean, then the centred sum of
// squares), then the output.
void layer_norm(const Config& cfg) {
    const std::int64_t rows = cfg.quick ? 512 : 4096, cols = 1024;
    Mat<float> x(rows, cols), y(rows, cols);
    Eigen::Array<float, 1, Eigen::Dynamic> g(cols), b(cols);
    fill(x.data(), rows * cols, 10.0, -5.0);
    fill(y.data(), rows * cols, 0.0, 0.0);
    fill(g.data(), cols, 1.0, 0.5, 3);
    fill(b.data(), cols, 1.0, -0.5, 4);
    double ms = median_ms(cfg, [&] {
#pragma omp parallel for schedule(static)
        for (std::int64_t i = 0; i < rows; ++i) {
            const float m = x.row(i).mean();
            const float v = (x.row(i) - m).square().mean();
            y.row(i) = (x.row(i) - m) * (1.0f / std::sqrt(v + 1e-5f)) * g + b;
        }
    });
    report("layer_norm_f32", kImpl, ms, gbps(2.0 * rows * cols * 4, ms), "GB/s");
    check("layer_norm_f32", kImpl, y.cast<double>().sum());
}

void logsumexp(const Config& cfg) {
    const std::int64_t rows = cfg.quick ? 512 : 4096, cols = 1024;
    Mat<float> x(rows, cols);
    Vec<float> y(rows);
    fill(x.data(), rows * cols, 10.0, -5.0);
    double ms = median_ms(cfg, [&] {
#pragma omp parallel for schedule(static)
        for (std::int64_t i = 0; i < rows; ++i) {
            const float m = x.row(i).maxCoeff();
            y(i) = m + std::log((x.row(i) - m).exp().sum());
        }
    });
    report("logsumexp_f32", kImpl, ms, gbps(rows * cols * 4.0 + rows * 4.0, ms), "GB/s");
    check("logsumexp_f32", kImpl, y.cast<double>().sum());
}

void bias_relu(const Config& cfg) {
    const std::int64_t rows = cfg.quick ? 512 : 4096, cols = 1024;
    Mat<float> x(rows, cols), y(rows, cols);
    Eigen::Array<float, 1, Eigen::Dynamic> b(cols);
    fill(x.data(), rows * cols, 2.0, -1.0);
    fill(y.data(), rows * cols, 0.0, 0.0);
    fill(b.data(), cols, 1.0, -0.5, 1);
    constexpr std::int64_t kRows = 16;
    double ms = median_ms(cfg, [&] {
#pragma omp parallel for schedule(static)
        for (std::int64_t i = 0; i < rows; i += kRows) {
            const std::int64_t len = std::min(kRows, rows - i);
            y.middleRows(i, len) = (x.middleRows(i, len).rowwise() + b).max(0.0f);
        }
    });
    report("bias_relu_f32", kImpl, ms, gbps(2.0 * rows * cols * 4, ms), "GB/s");
    check("bias_relu_f32", kImpl, y.cast<double>().sum());
}

// Loss and gradient fused over row blocks: each block of X is read once, while in cache, for
// both z = Xw + b and the block's share of X^T (sigmoid(z) - y).
void logreg(const Config& cfg) {
    const std::int64_t n = cfg.quick ? 8192 : 65536, d = 256;
    MatF X(n, d);
    ColF y(n), w(d), gw(d);
    fill(X.data(), n * d, 1.0, -0.5);
    for (std::int64_t i = 0; i < n; ++i) y(i) = i % 3 == 0 ? 1.0f : 0.0f;
    fill(w.data(), d, 0.1, -0.05, 5);
    const float b = 0.1f;
    float loss = 0, gb = 0;
    constexpr std::int64_t kRows = 256;  // 256 x 256 floats: 256 KiB, fits L2
    double ms = median_ms(cfg, [&] {
        const int threads = omp_get_max_threads();
        std::vector<ColF> part_gw(threads, ColF::Zero(d));
        std::vector<double> part_loss(threads, 0.0), part_gb(threads, 0.0);
#pragma omp parallel
        {
            const int t = omp_get_thread_num();
            ColF z(kRows);
#pragma omp for schedule(static)
            for (std::int64_t i = 0; i < n; i += kRows) {
                const std::int64_t len = std::min(kRows, n - i);
                auto Xb = X.middleRows(i, len);
                auto zb = z.head(len);
                zb.noalias() = Xb * w;
                zb.array() += b;
                auto yb = y.segment(i, len).array();
                // softplus(z) = max(z, 0) + log1p(exp(-|z|))
                part_loss[t] +=
                    (zb.array().max(0.0f) + (-zb.array().abs()).exp().log1p() - yb * zb.array())
                        .sum();
                zb.array() = zb.array().logistic() - yb;
                part_gb[t] += zb.sum();
                part_gw[t].noalias() += Xb.transpose() * zb;
            }
        }
        gw.setZero();
        double l = 0, g = 0;
        for (int t = 0; t < threads; ++t) {
            gw += part_gw[t];
            l += part_loss[t];
            g += part_gb[t];
        }
        gw /= static_cast<float>(n);
        loss = static_cast<float>(l / n);
        gb = static_cast<float>(g / n);
    });
    report("logreg_f32", kImpl, ms, gbps(n * d * 4.0, ms), "GB/s");
    check("logreg_f32", kImpl, loss + gw.cast<double>().sum() + gb);
}

// One SGD step of a 784-1024-10 MLP with softmax cross-entropy, batch 512. Products go to
// Eigen's GEMM (parallel with OpenMP); the elementwise work is parallel over rows.
void mlp_step(const Config& cfg) {
    const std::int64_t batch = 512, in = 784, hidden = 1024, out = 10;
    const float lr = 0.01f;
    MatF X(batch, in), Y = MatF::Zero(batch, out), W1(in, hidden), W2(hidden, out);
    RowF b1(hidden), b2(out);
    fill(X.data(), batch * in, 1.0, 0.0);
    fill(W1.data(), in * hidden, 0.05, -0.025, 1);
    fill(W2.data(), hidden * out, 0.1, -0.05, 2);
    b1.setConstant(0.01f);
    b2.setZero();
    for (std::int64_t i = 0; i < batch; ++i) Y(i, i % out) = 1.0f;
    MatF H(batch, hidden), L(batch, out), dH(batch, hidden), gW1(in, hidden), gW2(hidden, out);
    std::vector<float> losses;
    double ms = median_ms(cfg, [&] {
        H.noalias() = X * W1;
#pragma omp parallel for schedule(static)
        for (std::int64_t i = 0; i < batch; ++i) H.row(i) = (H.row(i) + b1).cwiseMax(0.0f);
        L.noalias() = H * W2;
        L.rowwise() += b2;
        // dL = (softmax(L) - Y) / batch; loss = mean(logsumexp(L) - <Y, L>)
        double loss = 0;
        for (std::int64_t i = 0; i < batch; ++i) {
            const float m = L.row(i).maxCoeff();
            auto e = (L.row(i).array() - m).exp();
            const float s = e.sum();
            loss += m + std::log(s) - L.row(i).dot(Y.row(i));
            L.row(i) = (e / s - Y.row(i).array()) / static_cast<float>(batch);
        }
        losses.push_back(static_cast<float>(loss / batch));
        gW2.noalias() = H.transpose() * L;
        const RowF gb2 = L.colwise().sum();
        dH.noalias() = L * W2.transpose();
#pragma omp parallel for schedule(static)
        for (std::int64_t i = 0; i < batch; ++i)
            dH.row(i) = (H.row(i).array() > 0.0f).select(dH.row(i), 0.0f);
        gW1.noalias() = X.transpose() * dH;
        const RowF gb1 = dH.colwise().sum();
        W1 -= lr * gW1;
        b1 -= lr * gb1;
        W2 -= lr * gW2;
        b2 -= lr * gb2;
    });
    // Forward and the two backward products of each layer, as usually counted (the first
    // layer's input gradient is not needed, so no implementation computes it).
    const double flops = 2.0 * (batch * in * hidden + batch * hidden * out) * 3;
    report("mlp_step_f32", kImpl, ms, flops / (ms * 1e6), "GFLOP/s");
    check("mlp_step_f32", kImpl, losses.front());
}

// STREAM triad a = b + s*c in float64; counts the three arrays moved.
void triad(const Config& cfg) {
    const std::int64_t n = cfg.quick ? (1 << 22) : (1 << 25);
    std::vector<double> a(n), b(n), c(n);
    fill(a.data(), n, 0.0, 0.0);
    fill(b.data(), n, 1.0, 0.0);
    fill(c.data(), n, 1.0, 0.0, 3);
    const double s = 3.0;
    double* pa = a.data();
    const double* pb = b.data();
    const double* pc = c.data();
    double ms = median_ms(cfg, [&] {
#pragma omp parallel for schedule(static)
        for (std::int64_t i = 0; i < n; ++i) pa[i] = pb[i] + s * pc[i];
    });
    report("triad_f64", "stream-triad", ms, gbps(3.0 * n * 8, ms), "GB/s");
}

// The cost of one call of a tiny function (y = x*2 + 1 over 1024 float32 values), written as
// a plain function: the floor for the libraries' cost per call. Blocks of calls are timed whole.
__attribute__((noinline)) void scale_add(const Vec<float>& x, Vec<float>& y) {
    y = x * 2.0f + 1.0f;
}

void call_overhead(const Config& cfg) {
    Vec<float> x(1024), y(1024);
    fill(x.data(), 1024, 1.0, 0.0);
    const int calls = cfg.quick ? 200 : 2000;
    double ms = median_ms(cfg,
                          [&] {
                              for (int i = 0; i < calls; ++i) {
                                  scale_add(x, y);
                                  asm volatile("" : : "r"(y.data()) : "memory");
                              }
                          }) /
                calls;
    report("call_overhead", kImpl, ms, ms * 1000, "us");
    check("call_overhead", kImpl, y.cast<double>().sum());
}

}  // namespace

int main(int argc, char** argv) {
    Config cfg;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--quick") {
            cfg.quick = true;
        } else if (a == "--filter" && i + 1 < argc) {
            cfg.filter = argv[++i];
        } else {
            std::fprintf(stderr, "usage: agnesi-peer-eigen [--quick] [--filter SUBSTR]\n");
            return 2;
        }
    }
    if (!std::getenv("OMP_NUM_THREADS")) omp_set_num_threads(2);
    auto want = [&](const char* name) {
        return cfg.filter.empty() || std::strstr(name, cfg.filter.c_str());
    };
    if (want("triad_f64")) triad(cfg);
    if (want("chain_f32")) chain<float>(cfg, "chain_f32");
    if (want("chain_f64")) chain<double>(cfg, "chain_f64");
    if (want("gelu_f32")) gelu(cfg);
    if (want("softmax_f32")) softmax(cfg);
    if (want("logsumexp_f32")) logsumexp(cfg);
    if (want("layer_norm_f32")) layer_norm(cfg);
    if (want("bias_relu_f32")) bias_relu(cfg);
    if (want("logreg_f32")) logreg(cfg);
    if (want("mlp_step_f32")) mlp_step(cfg);
    if (want("call_overhead")) call_overhead(cfg);
    return 0;
}
