// Prints, for each expression of a corpus file, its size before and after simplify().
//   agnesi_simplify_sizes benchmarks/data/simplify_corpus.txt
// Size is the number of operations in tree form (leaves count 0), SymPy's count_ops measure.
#include <fstream>
#include <iostream>
#include <unordered_map>

#include "agnesi/agnesi.hpp"

using namespace agnesi;

namespace {
double tree_ops(const Expr& e) {
    std::unordered_map<const Node*, double> ops;
    for (const Node* n : post_order(e)) {
        double s = n->arity() ? 1 : 0;
        for (const Node* o : n->operands()) s += ops[o];
        ops[n] = s;
    }
    return ops[e.node()];
}
}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::cerr << "usage: agnesi_simplify_sizes CORPUS\n";
        return 2;
    }
    std::ifstream in(argv[1]);
    if (!in) {
        std::cerr << "cannot read " << argv[1] << "\n";
        return 1;
    }
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') continue;
        try {
            Expr e = parse(line);
            Expr s = simplify(e);
            std::cout << line << "\t" << tree_ops(e) << "\t" << tree_ops(s) << "\t" << to_string(s)
                      << "\n";
        } catch (const Error& err) {
            std::cout << line << "\terror\terror\t" << err.what() << "\n";
        }
    }
    return 0;
}
