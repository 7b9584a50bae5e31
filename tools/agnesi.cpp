// The `agnesi` command: evaluate, print and simplify expressions from the shell.
//
//   agnesi eval "EXPR" --at x=0.5,y=1.25
//   agnesi print "EXPR" --format text|latex|dot|debug [--types]
//   agnesi simplify "EXPR"
// EXPR is always the argument right after the command, even when it starts with '-'.
#include <fmt/format.h>

#include <boost/program_options.hpp>
#include <charconv>
#include <cstdio>
#include <iostream>
#include <map>

#include "agnesi/agnesi.hpp"

namespace po = boost::program_options;
using namespace agnesi;

namespace {

constexpr const char* kUsage =
    "usage: agnesi COMMAND \"EXPR\" [options]\n"
    "commands:\n"
    "  eval      evaluate EXPR (values with --at)\n"
    "  print     print EXPR (--format text|latex|dot|debug)\n"
    "  simplify  print EXPR simplified, on one line\n";

struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start <= s.size()) {
        auto end = s.find(sep, start);
        if (end == std::string::npos) end = s.size();
        out.push_back(s.substr(start, end - start));
        start = end + 1;
    }
    return out;
}

// --shape X=4096x1024,w=1024:float32,n=batchx3
std::vector<Expr> declared_variables(const std::vector<std::string>& specs) {
    std::vector<Expr> vars;
    for (const std::string& spec : specs) {
        for (const std::string& item : split(spec, ',')) {
            if (item.empty()) continue;
            auto eq = item.find('=');
            if (eq == std::string::npos || eq == 0)
                throw UsageError(fmt::format("--shape: expected NAME=DIMS, got '{}'", item));
            std::string name = item.substr(0, eq);
            std::string dims = item.substr(eq + 1);
            DType dtype = f64;
            if (auto colon = dims.find(':'); colon != std::string::npos) {
                auto t = parse_dtype(dims.substr(colon + 1));
                if (!t) throw UsageError(fmt::format("--shape: unknown dtype in '{}'", item));
                dtype = *t;
                dims = dims.substr(0, colon);
            }
            Shape shape;
            if (!dims.empty()) {
                for (const std::string& d : split(dims, 'x')) {
                    Dim v = 0;
                    auto [p, ec] = std::from_chars(d.data(), d.data() + d.size(), v);
                    if (ec == std::errc() && p == d.data() + d.size() && v >= 0)
                        shape.push_back(v);
                    else if (!d.empty() && std::isalpha(static_cast<unsigned char>(d[0])))
                        shape.push_back(sym_dim(d));
                    else
                        throw UsageError(fmt::format("--shape: bad size '{}' in '{}'", d, item));
                }
            }
            vars.push_back(variable(name, shape, dtype));
        }
    }
    return vars;
}

double parse_double(const std::string& s, const std::string& name) {
    if (s == "nan") return std::numeric_limits<double>::quiet_NaN();
    if (s == "inf" || s == "+inf") return std::numeric_limits<double>::infinity();
    if (s == "-inf") return -std::numeric_limits<double>::infinity();
    char* end = nullptr;
    double v = std::strtod(s.c_str(), &end);
    if (s.empty() || end != s.c_str() + s.size())
        throw UsageError(fmt::format("--at: the value of '{}' is not a number: '{}'", name, s));
    return v;
}

// --at x=0.5,y=1.25,X=@data.npy (a number fills a tensor variable)
Bindings bindings(const std::vector<std::string>& specs, const std::vector<Expr>& used) {
    std::map<std::string, std::string> given;
    for (const std::string& spec : specs)
        for (const std::string& item : split(spec, ',')) {
            if (item.empty()) continue;
            auto eq = item.find('=');
            if (eq == std::string::npos || eq == 0)
                throw UsageError(fmt::format("--at: expected NAME=VALUE, got '{}'", item));
            given[item.substr(0, eq)] = item.substr(eq + 1);
        }
    Bindings b;
    for (const Expr& v : used) {
        const std::string& name = v->name();
        auto it = given.find(name);
        if (it == given.end())
            throw ValueError(
                fmt::format("no value for variable '{}' (give one with --at {}=...)", name, name));
        if (!it->second.empty() && it->second[0] == '@') {
            b[name] = Tensor::load_npy(it->second.substr(1));
            continue;
        }
        double x = parse_double(it->second, name);
        if (v.rank() == 0) {
            b[name] = Tensor(x);
            continue;
        }
        if (!is_static(v.shape()))
            throw UsageError(
                fmt::format("--at: '{}' has a symbolic shape; give it a .npy file", name));
        Tensor t(f64, v.shape());
        for (std::int64_t i = 0; i < t.size(); ++i) t.data<double>()[i] = x;
        b[name] = v.dtype() == f64 ? t : t.astype(v.dtype());
    }
    return b;
}

int run(int argc, char** argv) {
    if (argc < 2) throw UsageError("missing command");
    std::string command = argv[1];
    if (command == "-h" || command == "--help" || command == "help") {
        std::cout << kUsage;
        return 0;
    }
    if (command != "eval" && command != "print" && command != "simplify")
        throw UsageError(fmt::format("unknown command '{}'", command));
    if (argc < 3) throw UsageError(fmt::format("{}: missing the expression", command));
    std::string text = argv[2];

    po::options_description opts("options");
    opts.add_options()("shape", po::value<std::vector<std::string>>()->composing(),
                       "declare tensor variables: X=4096x1024,w=1024:float32")(
        "at", po::value<std::vector<std::string>>()->composing(), "values: x=0.5,X=@X.npy")(
        "format", po::value<std::string>()->default_value("text"), "text|latex|dot|debug")(
        "types", po::bool_switch(), "debug format: show dtype and shape");
    po::variables_map vm;
    // Everything after EXPR is options; EXPR itself is never read as one (the parser skips the
    // first element it is given, as it would a program name, and that element is EXPR).
    po::store(po::command_line_parser(argc - 2, argv + 2)
                  .options(opts)
                  .style(po::command_line_style::unix_style)
                  .run(),
              vm);
    po::notify(vm);
    auto list = [&](const char* k) {
        return vm.count(k) ? vm[k].as<std::vector<std::string>>() : std::vector<std::string>{};
    };

    Expr e = parse(text, declared_variables(list("shape")));
    if (command == "eval") {
        Tensor t = evaluate(e, bindings(list("at"), free_variables({e})));
        std::cout << format_tensor(t) << "\n";
    } else if (command == "simplify") {
        std::cout << to_string(simplify(e)) << "\n";
    } else {
        std::string format = vm["format"].as<std::string>();
        if (format == "text")
            std::cout << to_string(e) << "\n";
        else if (format == "latex")
            std::cout << to_latex(e) << "\n";
        else if (format == "dot")
            std::cout << to_dot(e);
        else if (format == "debug")
            std::cout << debug_print(e, {.types = vm["types"].as<bool>()});
        else
            throw UsageError(fmt::format("--format: unknown format '{}'", format));
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const ParseError& e) {
        std::cerr << "agnesi: error: " << e.what() << "\n" << e.caret() << "\n";
    } catch (const UsageError& e) {
        std::cerr << "agnesi: " << e.what() << "\n" << kUsage;
        return 2;
    } catch (const po::error& e) {
        std::cerr << "agnesi: " << e.what() << "\n" << kUsage;
        return 2;
    } catch (const Error& e) {
        std::cerr << "agnesi: error: " << e.what() << "\n";
    } catch (const std::exception& e) {
        std::cerr << "agnesi: error: " << e.what() << "\n";
    }
    return 1;
}
