// A first look at Agnesi: build an expression, print it in every format, evaluate it.
#include <iostream>

#include "agnesi/agnesi.hpp"

using namespace agnesi;

int main() {
    // A scalar expression with a shared subexpression (x*x is one node, used twice).
    auto x = scalar("x");
    Expr t = x * x;
    Expr e = sin(t) + exp(-x) / 3 + sqrt(t + 1);

    std::cout << "text:   " << to_string(e) << "\n";
    std::cout << "latex:  " << to_latex(e) << "\n";
    std::cout << "debug (shared nodes once):\n" << debug_print(e, {.types = true});
    std::cout << "dot:\n" << to_dot(e);
    std::cout << "e(x = 0.5) = " << format_tensor(evaluate(e, {{"x", 0.5}})) << "\n";

    // The same expression, parsed from text, is the same node.
    std::cout << "parsed back to the same node: " << std::boolalpha << (parse(to_string(e)) == e)
              << "\n\n";

    // A tensor expression: a softmax classifier's loss over a batch.
    auto X = matrix("X", 4, 3), W = matrix("W", 3, 2), Y = matrix("Y", 4, 2);
    Expr loss = mean(cross_entropy(softmax(matmul(X, W), 1), Y));
    std::cout << "loss:   " << to_string(loss) << "\n";
    std::cout << "latex:  " << to_latex(loss) << "\n";

    Tensor Xv = Tensor::from_vector<double>({4, 3}, {1, 0, 2, 0, 1, 1, 2, 1, 0, 1, 1, 1});
    Tensor Wv = Tensor::from_vector<double>({3, 2}, {0.5, -0.5, 0.25, 0.75, -1, 1});
    Tensor Yv = Tensor::from_vector<double>({4, 2}, {1, 0, 0, 1, 1, 0, 0, 1});
    Tensor l = evaluate(loss, {{"X", Xv}, {"W", Wv}, {"Y", Yv}});
    std::cout << "loss value: " << format_tensor(l) << "\n";
    std::cout << "simplified: " << to_string(simplify(parse("1/3 + 1/6 + x*2^3"))) << "\n";
    return 0;
}
