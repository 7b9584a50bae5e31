// Logistic regression trained from its math: the loss is written as the textbook cross-entropy,
// its gradient comes from `grad`, and one compiled call is one step of gradient descent (the
// weights are shared variables that the step's updates rewrite).
//
// The data are two Gaussian blobs in the plane, made here with a fixed seed. Prints the loss
// as it falls and the final accuracy; exits 1 if training failed.
#include <cstdio>
#include <random>
#include <vector>

#include "agnesi/agnesi.hpp"
#include "agnesi/jit.hpp"

using namespace agnesi;

int main() {
    // 2 x 500 points: class 0 around (-1, -1), class 1 around (1.5, 1), standard deviation 1.
    const std::int64_t n = 1000;
    std::mt19937 rng(42);
    std::normal_distribution<double> noise(0.0, 1.0);
    std::vector<double> xs(n * 2), ys(n);
    for (std::int64_t i = 0; i < n; ++i) {
        const bool one = i % 2 == 1;
        xs[2 * i] = (one ? 1.5 : -1.0) + noise(rng);
        xs[2 * i + 1] = (one ? 1.0 : -1.0) + noise(rng);
        ys[i] = one ? 1.0 : 0.0;
    }
    Tensor X_data = Tensor::from_vector<double>({n, 2}, xs);
    Tensor y_data = Tensor::from_vector<double>({n}, ys);

    // The model: p = sigmoid(X w + b), and the mean cross-entropy of p against y.
    Expr X = matrix("X", n, 2), y = vector("y", n);
    Expr w = shared("w", Tensor(f64, {2})), b = shared("b", Tensor(0.0));
    Expr p = sigmoid(matmul(X, w) + b);
    Expr loss = -mean(y * log(p) + (1 - y) * log(1 - p));
    auto g = grad(loss, {w, b});

    const double lr = 0.5;
    auto step = compile({X, y}, {loss}, {.updates = {{w, w - lr * g[0]}, {b, b - lr * g[1]}}});
    // A point is classified right when p > 1/2 agrees with its label.
    Expr accuracy = mean(cast(eq(p > 0.5, y > 0.5), f64));
    auto measure = compile({X, y}, {accuracy});
    std::printf("compiled: %s, %d kernels for one step\n", step.backend().c_str(),
                step.stats().groups);

    double first = 0, last = 0;
    for (int epoch = 0; epoch <= 200; ++epoch) {
        auto [l] = step(X_data, y_data);
        last = l.item();
        if (epoch == 0) first = last;
        if (epoch % 20 == 0) std::printf("epoch %3d  loss %.4f\n", epoch, last);
    }
    auto [acc] = measure(X_data, y_data);
    Tensor wv = get_value(w);
    std::printf("w = (%.3f, %.3f), b = %.3f\n", wv.at(0), wv.at(1), get_value(b).item());
    std::printf("accuracy %.1f%%\n", 100 * acc.item());

    if (!(last < 0.6 * first) || acc.item() < 0.9) {
        std::fprintf(stderr, "logistic regression: training failed (loss %.4f -> %.4f)\n", first,
                     last);
        return 1;
    }
    return 0;
}
