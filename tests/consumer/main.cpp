#include <agnesi/agnesi.hpp>
#include <cmath>
#include <iostream>

int main() {
    using namespace agnesi;
    auto x = scalar("x");
    Expr e = sin(x * x) + exp(-x) / 3;
    double v = evaluate(e, {{"x", 0.5}}).item();
    std::cout << to_string(e) << " = " << v << "\n";
    // A compiled function (the evaluator tier needs no compiler at run time).
    auto f = compile({x}, {e, grad(e, x)}, {.backend = Backend::Evaluator});
    auto out = f(0.5);
    std::cout << "compiled: " << out[0].item() << ", derivative " << out[1].item() << "\n";
    return (parse(to_string(e)) == e && v > 0.449 && v < 0.450 &&
            std::abs(out[0].item() - v) < 1e-12)
               ? 0
               : 1;
}
