// The `agnesi` command: evaluate, print and simplify expressions from the shell.
//
//   agnesi eval "EXPR" --at x=0.5,y=1.25
//   agnesi print "EXPR" --format text|latex|dot|debug [--types]
//   agnesi simplify "EXPR"
//   agnesi grad "EXPR" --wrt x,y [--format text|latex|dot|debug|stats]
//   agnesi emit "EXPR" --target cuda|cpu [--shape x=1024] [--format stats [--arch sm_90]]
// EXPR is always the argument right after the command, even when it starts with '-'.
#include <fmt/format.h>

#include <algorithm>
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
    "  simplify  print EXPR simplified, on one line\n"
    "  grad      print the simplified derivative of EXPR with respect to each of --wrt x,y,...,\n"
    "            one line per variable (--format text|latex|dot|debug|stats)\n"
    "  emit      print the generated source computing EXPR (--target cuda|cpu); variables\n"
    "            without --shape are arrays of one common length n. With --format stats, what\n"
    "            NVRTC and ptxas make of each CUDA kernel for --arch (registers, spills, size,\n"
    "            compile time); this needs NVRTC, not a GPU\n";

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

// grad: the simplified derivative with respect to each --wrt variable, in the order given.
void print_gradient(const Expr& e, const std::vector<std::string>& wrt_specs,
                    const std::vector<std::string>& shape_specs, const std::string& format,
                    bool types) {
    std::vector<Expr> known = free_variables({e});
    for (const Expr& v : declared_variables(shape_specs)) known.push_back(v);
    std::vector<Expr> wrt;
    for (const std::string& spec : wrt_specs)
        for (const std::string& name : split(spec, ',')) {
            if (name.empty()) continue;
            auto it = std::find_if(known.begin(), known.end(),
                                   [&](const Expr& v) { return v->name() == name; });
            // A name the expression does not use is a float64 scalar: its derivative is 0.
            wrt.push_back(it != known.end() ? *it : scalar(name));
        }
    if (wrt.empty()) throw UsageError("grad: give the variables with --wrt x,y,...");
    std::vector<Expr> ds = grad(e, wrt);
    for (Expr& d : ds) d = simplify(d);
    if (format == "text")
        for (const Expr& d : ds) std::cout << to_string(d) << "\n";
    else if (format == "latex")
        for (const Expr& d : ds) std::cout << to_latex(d) << "\n";
    else if (format == "stats")
        for (const Expr& d : ds) std::cout << count_nodes({d}) << "\n";
    else if (format == "dot")
        std::cout << to_dot(ds);
    else if (format == "debug")
        std::cout << debug_print(ds, {.types = types});
    else
        throw UsageError(fmt::format("--format: unknown format '{}'", format));
}

// `emit --format stats`: a line per CUDA kernel and variant.
void print_kernel_stats(const Expr& e, const std::string& arch) {
    if (arch.rfind("sm_", 0) != 0 || arch.size() < 5 ||
        !std::all_of(arch.begin() + 3, arch.end(), [](char c) { return c >= '0' && c <= '9'; }))
        throw UsageError(fmt::format("--arch: expected sm_NN (sm_80, sm_90, ...), got '{}'", arch));
    std::vector<CudaKernelStats> ks = cuda_kernel_stats({e}, arch);
    std::cout << fmt::format(
        "# CUDA kernels for {}: per thread, registers and bytes of stack and spills; per block, "
        "static shared memory\n",
        arch);
    std::cout << fmt::format("{:<14} {:<14} {:<8} {:>9} {:>6} {:>12} {:>6} {:>7} {:>9}\n", "kernel",
                             "kind", "variant", "registers", "stack", "spills st/ld", "shared",
                             "cubin", "NVRTC ms");
    for (const CudaKernelStats& k : ks)
        std::cout << fmt::format("{:<14} {:<14} {:<8} {:>9} {:>6} {:>12} {:>6} {:>7} {:>9.0f}\n",
                                 k.kernel, k.kind, k.dense ? "dense" : "general", k.registers,
                                 k.stack_bytes,
                                 fmt::format("{}/{}", k.spill_store_bytes, k.spill_load_bytes),
                                 k.shared_bytes, k.cubin_bytes, k.compile_ms);
    if (ks.empty()) std::cout << "(no kernels: matrix products only, through cuBLAS)\n";
}

int run(int argc, char** argv) {
    if (argc < 2) throw UsageError("missing command");
    std::string command = argv[1];
    if (command == "-h" || command == "--help" || command == "help") {
        std::cout << kUsage;
        return 0;
    }
    if (command != "eval" && command != "print" && command != "simplify" && command != "grad" &&
        command != "emit")
        throw UsageError(fmt::format("unknown command '{}'", command));
    if (argc < 3) throw UsageError(fmt::format("{}: missing the expression", command));
    std::string text = argv[2];

    po::options_description opts("options");
    opts.add_options()("shape", po::value<std::vector<std::string>>()->composing(),
                       "declare tensor variables: X=4096x1024,w=1024:float32")(
        "at", po::value<std::vector<std::string>>()->composing(), "values: x=0.5,X=@X.npy")(
        "format", po::value<std::string>()->default_value("text"), "text|latex|dot|debug|stats")(
        "types", po::bool_switch(), "debug format: show dtype and shape")(
        "wrt", po::value<std::vector<std::string>>()->composing(), "grad: variables x,y,...")(
        "target", po::value<std::string>()->default_value("cuda"), "emit: cuda|cpu")(
        "arch", po::value<std::string>()->default_value("sm_90"),
        "emit --format stats: the CUDA architecture (sm_80, sm_90, ...)");
    // `--help` in EXPR's place asks for help ("-h" stays an expression: the negation of h).
    if (text == "--help") {
        std::cout << kUsage << "\n" << opts;
        return 0;
    }
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
    } else if (command == "emit") {
        std::string target = vm["target"].as<std::string>();
        if (target != "cuda" && target != "cpu")
            throw UsageError(fmt::format("--target: expected cuda or cpu, got '{}'", target));
        const std::string format = vm["format"].as<std::string>();
        if (format == "stats") {
            if (target != "cuda")
                throw UsageError("--format stats: reports CUDA kernels (--target cuda)");
            print_kernel_stats(e, vm["arch"].as<std::string>());
        } else if (format == "text") {
            std::cout << emit_source({e}, target == "cuda" ? Target::Cuda : Target::Cpu);
        } else {
            throw UsageError(fmt::format("--format: emit prints text or stats, not '{}'", format));
        }
    } else if (command == "simplify") {
        std::cout << to_string(simplify(e)) << "\n";
    } else if (command == "grad") {
        print_gradient(e, list("wrt"), list("shape"), vm["format"].as<std::string>(),
                       vm["types"].as<bool>());
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
