// GiNaC peer of benchmarks/bench_diff.cpp: one (family, size) per run, timing diff alone.
//   ginac_diff nested 10 | ginac_diff chain_sum 100
// Prints "family,size,ms,nodes": the median of a few runs and the distinct subexpressions of
// the result (GiNaC shares equal subtrees by reference counting; counted structurally).
#include <ginac/ginac.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <set>
#include <string>
#include <vector>

using namespace GiNaC;

static std::size_t distinct_nodes(const std::vector<ex>& roots) {
    std::set<ex, ex_is_less> seen;
    std::vector<ex> stack(roots);
    while (!stack.empty()) {
        ex e = stack.back();
        stack.pop_back();
        if (!seen.insert(e).second) continue;
        for (std::size_t i = 0; i < e.nops(); ++i) stack.push_back(e.op(i));
    }
    return seen.size();
}

int main(int argc, char** argv) {
    if (argc < 3) return 2;
    std::string family = argv[1];
    int n = std::stoi(argv[2]);
    std::vector<symbol> xs;
    ex f;
    if (family == "nested") {
        xs.emplace_back("x");
        ex t = xs[0];
        for (int i = 0; i < n; ++i) t = sin(t) + pow(t, 2);
        f = t;
    } else {
        for (int i = 0; i < n; ++i) xs.emplace_back("x" + std::to_string(i));
        for (int i = 0; i + 1 < n; ++i)
            f += sin(xs[i] * xs[i + 1]) * exp(xs[i] / (1 + pow(xs[i + 1], 2)));
    }
    std::vector<double> times;
    std::vector<ex> result;
    auto budget = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (times.size() < 5 && (times.empty() || std::chrono::steady_clock::now() < budget)) {
        auto t0 = std::chrono::steady_clock::now();
        result.clear();
        for (const symbol& x : xs) result.push_back(f.diff(x));
        auto t1 = std::chrono::steady_clock::now();
        times.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
    std::sort(times.begin(), times.end());
    std::printf("%s,%d,%.4f,%zu\n", family.c_str(), n, times[times.size() / 2],
                distinct_nodes(result));
}
