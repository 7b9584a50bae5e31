// A two-layer perceptron trained from its math: relu hidden layer, softmax output, mean
// cross-entropy loss; `grad` gives the gradients of all four parameters and one compiled call
// is one step of gradient descent (the parameters are shared variables the step updates).
//
// The data are three interleaved spirals in the plane (100 points each), made here with a
// fixed seed: no straight line separates them, so the hidden layer has to earn its keep.
// Prints the loss as it falls and the final accuracy; exits 1 if training failed.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "agnesi/agnesi.hpp"
#include "agnesi/jit.hpp"

using namespace agnesi;

namespace {

Tensor randn(Shape shape, double scale, std::mt19937& rng) {
    std::normal_distribution<double> normal(0.0, scale);
    Tensor t(f64, std::move(shape));
    for (std::int64_t i = 0; i < t.size(); ++i) t.data<double>()[i] = normal(rng);
    return t;
}

}  // namespace

int main() {
    const std::int64_t per_class = 100, classes = 3, n = per_class * classes, hidden = 64;
    std::mt19937 rng(7);

    // Spiral k: radius r from 0 to 1, angle from 4k to 4(k + 1) radians plus noise.
    std::normal_distribution<double> noise(0.0, 0.2);
    std::vector<double> xs(n * 2), ys(n * classes, 0.0);
    for (std::int64_t k = 0; k < classes; ++k) {
        for (std::int64_t j = 0; j < per_class; ++j) {
            const std::int64_t i = k * per_class + j;
            const double r = static_cast<double>(j) / (per_class - 1);
            const double t = 4.0 * k + 4.0 * r + noise(rng);
            xs[2 * i] = r * std::sin(t);
            xs[2 * i + 1] = r * std::cos(t);
            ys[i * classes + k] = 1.0;
        }
    }
    Tensor X_data = Tensor::from_vector<double>({n, 2}, xs);
    Tensor Y_data = Tensor::from_vector<double>({n, classes}, ys);

    // The model.
    Expr X = matrix("X", n, 2), Y = matrix("Y", n, classes);
    Expr W1 = shared("W1", randn({2, hidden}, 1.0, rng));
    Expr b1 = shared("b1", Tensor(f64, {hidden}));
    Expr W2 = shared("W2", randn({hidden, classes}, 0.1, rng));
    Expr b2 = shared("b2", Tensor(f64, {classes}));
    Expr h = relu(matmul(X, W1) + b1);
    Expr logits = matmul(h, W2) + b2;
    Expr loss = mean(cross_entropy(softmax(logits), Y));

    // One step of gradient descent on all four parameters.
    const double lr = 1.0;
    auto g = grad(loss, {W1, b1, W2, b2});
    auto step = compile({X, Y}, {loss},
                        {.updates = {{W1, W1 - lr * g[0]},
                                     {b1, b1 - lr * g[1]},
                                     {W2, W2 - lr * g[2]},
                                     {b2, b2 - lr * g[3]}}});
    // A point is classified right when its own class's logit is the largest.
    Expr right = sum(Y * logits, {1}) >= amax(logits, {1});
    auto measure = compile({X, Y}, {mean(cast(right, f64))});
    std::printf("compiled: %s, %d kernels for one step\n", step.backend().c_str(),
                step.stats().groups);

    double first = 0, last = 0;
    for (int epoch = 0; epoch <= 1000; ++epoch) {
        auto [l] = step(X_data, Y_data);
        last = l.item();
        if (epoch == 0) first = last;
        if (epoch % 100 == 0) std::printf("epoch %4d  loss %.4f\n", epoch, last);
    }
    auto [acc] = measure(X_data, Y_data);
    std::printf("accuracy %.1f%% (chance: 33.3%%)\n", 100 * acc.item());

    if (!(last < 0.5 * first) || acc.item() < 0.9) {
        std::fprintf(stderr, "mlp: training failed (loss %.4f -> %.4f)\n", first, last);
        return 1;
    }
    return 0;
}
