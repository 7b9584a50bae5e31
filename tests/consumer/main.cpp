#include <agnesi/agnesi.hpp>
#include <iostream>

int main() {
    using namespace agnesi;
    auto x = scalar("x");
    Expr e = sin(x * x) + exp(-x) / 3;
    double v = evaluate(e, {{"x", 0.5}}).item();
    std::cout << to_string(e) << " = " << v << "\n";
    return (parse(to_string(e)) == e && v > 0.449 && v < 0.450) ? 0 : 1;
}
