// The native CPU tier on its own: generated source, the host compiler, the disk cache. Programs
// here are built by a small single-group scheduler (below) so each group kind and each op is
// checked against the reference evaluator without the rest of the runtime.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "agnesi/agnesi.hpp"
#include "agnesi/traverse.hpp"
#include "jit/cpu/codegen.hpp"
#include "jit/cpu/compiler.hpp"
#include "support/float_sample.hpp"

namespace agnesi::jit::cpu {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

// A fresh cache directory for one test, set as AGNESI_CACHE_DIR while it lives.
struct TempCache {
    std::string dir;
    TempCache() {
        char tmpl[] = "/tmp/agnesi-cpu-test-XXXXXX";
        dir = mkdtemp(tmpl);
        setenv("AGNESI_CACHE_DIR", dir.c_str(), 1);
        clear_memory_cache();
    }
    ~TempCache() {
        clear_memory_cache();
        unsetenv("AGNESI_CACHE_DIR");
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
};

// ---- a single-group scheduler ----------------------------------------------------------------

// The program of `root` as one group: elementwise nodes around at most one reduction or
// normalization (nodes above it are its epilogue). Variables are inputs in `vars` order.
Program one_group(const Expr& root, const std::vector<Expr>& vars) {
    Program p;
    Group g;
    std::unordered_map<const Node*, int> value;
    for (const Expr& v : vars) {
        Buffer b;
        b.kind = BufferKind::Input;
        b.dtype = v.dtype();
        b.shape = v.shape();
        b.slot = static_cast<int>(p.inputs.size());
        b.node = v.node();
        p.inputs.push_back(v.node());
        p.buffers.push_back(b);
    }
    std::vector<const Node*> order = post_order(std::vector<const Node*>{root.node()});
    for (const Node* n : order) {
        if (n->info().kind == OpKind::Reduction || n->info().kind == OpKind::AxisNormalize) {
            g.kind =
                n->info().kind == OpKind::Reduction ? GroupKind::Reduce : GroupKind::RowNormalize;
            g.domain = n->operand(0)->shape();
            if (g.kind == GroupKind::Reduce)
                for (auto a : n->ints()) g.axes.push_back(static_cast<int>(a));
            g.reduced_shape = n->shape();
        }
    }
    if (g.kind == GroupKind::Pointwise) g.domain = root.shape();
    for (const Node* n : order) {
        Instr in;
        in.node = n;
        in.dtype = n->dtype();
        in.op = n->op();
        if (n->is_variable()) {
            in.kind = InstrKind::Load;
            for (std::size_t k = 0; k < vars.size(); ++k)
                if (vars[k].node() == n)
                    in.input = static_cast<int>(g.inputs.size()),
                    g.inputs.push_back({static_cast<int>(k), {}, n->shape()});
        } else if (n->op() == Op::Constant) {
            in.kind = InstrKind::Const;
            in.value = n->value();
        } else {
            OpKind k = n->info().kind;
            in.kind = k == OpKind::Reduction       ? InstrKind::Reduce
                      : k == OpKind::AxisNormalize ? InstrKind::Normalize
                                                   : InstrKind::Apply;
            in.compute = in.kind == InstrKind::Apply ? compute_dtype(n) : n->dtype();
            for (const Node* o : n->operands()) in.args[in.nargs++] = value.at(o);
        }
        value[n] = static_cast<int>(g.instrs.size());
        if (in.kind == InstrKind::Reduce || in.kind == InstrKind::Normalize)
            g.reduce_at = static_cast<int>(g.instrs.size());
        g.instrs.push_back(in);
    }
    Buffer out;
    out.kind = BufferKind::Output;
    out.dtype = root.dtype();
    out.shape = root.shape();
    out.node = root.node();
    p.buffers.push_back(out);
    p.outputs.push_back(static_cast<int>(p.buffers.size()) - 1);
    p.num_outputs = 1;
    g.outputs.push_back(
        {value.at(root.node()), {static_cast<int>(p.buffers.size()) - 1, {}, root.shape()}});
    p.groups.push_back(g);
    return p;
}

// One group per root, all in one program (one compiler run), sharing the input buffers.
Program many_groups(const std::vector<Expr>& roots, const std::vector<Expr>& vars) {
    Program p;
    for (const Expr& r : roots) {
        Program q = one_group(r, vars);
        if (p.buffers.empty()) {
            p = q;
            continue;
        }
        Group g = q.groups[0];
        p.buffers.push_back(q.buffers.back());
        g.outputs[0].target.buffer = static_cast<int>(p.buffers.size()) - 1;
        p.outputs.push_back(g.outputs[0].target.buffer);
        p.groups.push_back(g);
    }
    return p;
}

// Strides of `shape` over `domain` (right-aligned; size-1 axes broadcast). When the shape has
// fewer axes than the domain less `dropped`, the dropped (reduced) axes are skipped.
std::vector<std::int64_t> strides_over(const Shape& shape, const std::vector<std::int64_t>& domain,
                                       const std::vector<int>& dropped) {
    std::size_t r = domain.size();
    std::vector<std::int64_t> st(r, 0);
    std::vector<std::size_t> axes;  // domain axes the shape's axes map to
    if (shape.size() + dropped.size() == r && !dropped.empty()) {
        for (std::size_t d = 0; d < r; ++d)
            if (std::find(dropped.begin(), dropped.end(), static_cast<int>(d)) == dropped.end())
                axes.push_back(d);
    } else {
        for (std::size_t d = r - shape.size(); d < r; ++d) axes.push_back(d);
    }
    std::int64_t run = 1;
    for (std::size_t i = shape.size(); i-- > 0;) {
        st[axes[i]] = shape[i] == 1 ? 0 : run;
        run *= shape[i];
    }
    return st;
}

// Runs the one group of `p` from `m` on the tensors of `vars`; returns the output.
Tensor run_group(const Program& p, const Module& m, const std::string& name,
                 const std::vector<Tensor>& args, int threads = 2, int group = 0) {
    const Group& g = p.groups[static_cast<std::size_t>(group)];
    std::vector<std::int64_t> dims(g.domain.begin(), g.domain.end()), edims = dims;
    for (int a : g.axes) edims[static_cast<std::size_t>(a)] = 1;
    Tensor out(p.buffers[g.outputs[0].target.buffer].dtype, g.outputs[0].target.shape);
    std::vector<void*> ptrs;
    std::vector<std::int64_t> strides;
    std::vector<bool> epi(g.inputs.size(), false);
    for (std::size_t i = 0; i < g.instrs.size(); ++i)
        if (g.instrs[i].kind == InstrKind::Load && g.in_epilogue(static_cast<int>(i)))
            epi[static_cast<std::size_t>(g.instrs[i].input)] = true;
    for (std::size_t k = 0; k < g.inputs.size(); ++k) {
        ptrs.push_back(const_cast<void*>(args[static_cast<std::size_t>(g.inputs[k].buffer)].raw()));
        auto st = strides_over(g.inputs[k].shape, epi[k] ? edims : dims, {});
        strides.insert(strides.end(), st.begin(), st.end());
    }
    ptrs.push_back(out.raw());
    auto st = strides_over(out.shape(), edims, g.axes);
    strides.insert(strides.end(), st.begin(), st.end());
    agnesi_group_args a{static_cast<std::int64_t>(dims.size()),
                        dims.data(),
                        edims.data(),
                        ptrs.data(),
                        strides.data(),
                        static_cast<std::int64_t>(g.inputs.size()),
                        1,
                        threads};
    m.function(group_symbol(name, group))(&a);
    return out;
}

// Compiles each root as one group (all in one source) and compares each with the reference
// evaluator: |got - want| <= rel * |want| + abs, NaN where NaN, infinities and zeros exact.
void check(const std::vector<Expr>& roots, const std::vector<Expr>& vars,
           const std::vector<Tensor>& args, double rel = 1e-12, double abs = 0, int threads = 2) {
    Program p = many_groups(roots, vars);
    auto cc = find_compiler();
    ASSERT_TRUE(cc) << "no host compiler";
    BuildResult b = build(generate_source(p, "t"), *cc);
    Bindings bind;
    for (std::size_t k = 0; k < vars.size(); ++k) bind[vars[k].node()->name()] = args[k];
    for (std::size_t r = 0; r < roots.size(); ++r) {
        const Expr& root = roots[r];
        Tensor got = run_group(p, *b.module, "t", args, threads, static_cast<int>(r));
        Tensor want = evaluate(root, bind);
        ASSERT_EQ(got.size(), want.size());
        for (std::int64_t i = 0; i < got.size(); ++i) {
            double x = got.at(i), y = want.at(i);
            if (std::isnan(y)) {
                EXPECT_TRUE(std::isnan(x)) << to_string(root) << " at " << i << ": got " << x;
            } else if (std::isinf(y) || (y == 0 && abs == 0)) {
                EXPECT_EQ(x, y) << to_string(root) << " at " << i;
            } else {
                EXPECT_LE(std::fabs(x - y), rel * std::fabs(y) + abs)
                    << to_string(root) << " at " << i << ": got " << x << ", want " << y;
            }
        }
    }
}
void check(const Expr& root, const std::vector<Expr>& vars, const std::vector<Tensor>& args,
           double rel = 1e-12, double abs = 0, int threads = 2) {
    check(std::vector<Expr>{root}, vars, args, rel, abs, threads);
}

Tensor random_tensor(Shape shape, DType t, double lo, double hi, unsigned seed = 1) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<double> u(lo, hi);
    Tensor x(f64, shape);
    for (std::int64_t i = 0; i < x.size(); ++i) x.data<double>()[i] = u(rng);
    return x.astype(t);
}

// float32: results within 4 ulp of the reference's (libmvec's stated bound), relative.
constexpr double kF32 = 4 * 1.2e-7;

// ---- tests -----------------------------------------------------------------------------------

TEST(JitCpu, FindsACompiler) {
    auto c = find_compiler();
    ASSERT_TRUE(c);
    EXPECT_FALSE(c->version.empty());
    setenv("AGNESI_CXX", "/nonexistent/compiler", 1);
    EXPECT_FALSE(find_compiler());
    unsetenv("AGNESI_CXX");
}

TEST(JitCpu, PointwiseChainMatchesEvaluator) {
    TempCache cache;
    for (DType t : {f64, f32}) {
        Expr x = variable("x", {3000}, t), w = scalar("w", t), b = scalar("b", t);
        Expr e = tanh(x * w + b) * sigmoid(x) + log1p(exp(-abs(x)));
        check(e, {x, w, b},
              {random_tensor({3000}, t, -4, 4), Tensor(0.7).astype(t), Tensor(-0.2).astype(t)},
              t == f64 ? 1e-12 : 4 * kF32, t == f64 ? 1e-15 : 4 * kF32);
    }
}

TEST(JitCpu, LargeDomainRunsInParallelChunks) {
    TempCache cache;
    Expr x = variable("x", {100003}, f32);
    check(exp(x) * 2 + 1, {x}, {random_tensor({100003}, f32, -5, 5)}, kF32 * 2);
}

TEST(JitCpu, SmallStaticDomainsHaveNoOpenMpRegion) {
    // Known sizes below kParMin never run on more than one thread: no region to enter (libgomp
    // spends about a microsecond on one even when its if clause is false). A symbolic size, or a
    // large one, keeps it.
    auto regions = [](const Expr& e, const std::vector<Expr>& in) {
        std::vector<const Node*> in_nodes;
        for (const Expr& v : in) in_nodes.push_back(v.node());
        std::string src = generate_source(schedule({e.node()}, in_nodes, 1, {}), "t");
        std::size_t n = 0;
        for (std::size_t at = src.find("omp parallel"); at != std::string::npos;
             at = src.find("omp parallel", at + 1))
            ++n;
        return n;
    };
    Expr small = variable("x", {64, 511}, f32), large = variable("x", {64, 512}, f32);
    Expr sym = variable("x", {sym_dim("n"), 3}, f32);
    for (auto f :
         {+[](const Expr& x) { return exp(x) * 2 + 1; }, +[](const Expr& x) { return sum(x, {1}); },
          +[](const Expr& x) { return sum(x); }, +[](const Expr& x) { return sum(x, {0}); },
          +[](const Expr& x) { return softmax(x, 1); },
          +[](const Expr& x) { return x - mean(x, {1}, true); }}) {
        SCOPED_TRACE(to_string(f(small)));
        EXPECT_EQ(regions(f(small), {small}), 0u);
        EXPECT_GT(regions(f(large), {large}), 0u);
        EXPECT_GT(regions(f(sym), {sym}), 0u);
    }
    // And the small ones still compute what the reference does.
    TempCache cache;
    Tensor a = random_tensor({64, 511}, f32, -3, 3);
    std::vector<Expr> outs{exp(small) * 2 + 1, sum(small, {1}),   sum(small),
                           sum(small, {0}),    softmax(small, 1), small - mean(small, {1}, true)};
    Function fn = compile({small}, outs, {.backend = Backend::Native});
    std::vector<Tensor> got = fn(a), want = evaluate(outs, {{"x", a}});
    for (std::size_t k = 0; k < outs.size(); ++k)
        for (std::int64_t i = 0; i < want[k].size(); ++i)
            ASSERT_NEAR(got[k].at(i), want[k].at(i), 1e-5 * std::max(1.0, std::abs(want[k].at(i))))
                << to_string(outs[k]) << " at " << i;
}

TEST(JitCpu, BroadcastUsesStridedLoops) {
    TempCache cache;
    Expr x = variable("x", {37, 19}, f64), row = variable("r", {19}, f64),
         col = variable("c", {37, 1}, f64);
    check(x * row + col, {x, row, col},
          {random_tensor({37, 19}, f64, -1, 1, 1), random_tensor({19}, f64, -1, 1, 2),
           random_tensor({37, 1}, f64, -1, 1, 3)});
}

TEST(JitCpu, EveryFloatUnaryOpMatchesEvaluator) {
    TempCache cache;
    for (DType t : {f64, f32}) {
        Expr x = variable("x", {257}, t);
        Tensor a = random_tensor({257}, t, 0.05, 0.95);
        check({-x,
               exp(x),
               log(x),
               sqrt(x),
               sin(x),
               cos(x),
               tan(x),
               asin(x),
               acos(x),
               atan(x),
               sinh(x),
               cosh(x),
               tanh(x),
               asinh(x),
               acosh(x + 1),
               atanh(x),
               abs(x - 0.5),
               sign(x - 0.5),
               log1p(x),
               expm1(x),
               erf(x),
               erfc(x),
               sigmoid(x * 10 - 5),
               softplus(x * 10 - 5),
               relu(x - 0.5),
               floor(x * 10),
               ceil(x * 10)},
              {x}, {a}, t == f64 ? 1e-12 : 8 * kF32);
    }
}

// The prelude's own float32 exp, expm1, log, log1p, tanh and erf against the double-precision
// library functions, in ulp of the correctly rounded float: a strided sample of every float bit
// pattern (all signs and binades, subnormals, infinities, NaNs) plus the edges of each
// function's branches.
TEST(JitCpu, OwnFloatMathIsWithinItsUlpBound) {
    TempCache cache;
    std::vector<float> xs = agnesi::testing::float_sample(
        {0.0f,    -0.0f,   1.0f,   -1.0f,       88.72f,  88.73f, -87.33f,
         -103.9f, -104.1f, 89.5f,  0.625f,      -0.625f, 3.92f,  -3.92f,
         1e-30f,  -1e-30f, 1e-45f, -0.9999999f, 17.0f,   -18.5f, 24.5f});
    const auto n = static_cast<std::int64_t>(xs.size());
    Tensor a = Tensor::from_vector<float>({n}, xs);
    Expr x = variable("x", {n}, f32);
    struct Case {
        Expr e;
        double (*ref)(double);
        double bound;
    };
    std::vector<Case> cases{{exp(x), [](double v) { return std::exp(v); }, 1.5},
                            {expm1(x), [](double v) { return std::expm1(v); }, 1.5},
                            {log(x), [](double v) { return std::log(v); }, 1.5},
                            {log1p(x), [](double v) { return std::log1p(v); }, 1.5},
                            {tanh(x), [](double v) { return std::tanh(v); }, 1.5},
                            {erf(x), [](double v) { return std::erf(v); }, 6.5}};
    std::vector<Expr> roots;
    for (const Case& c : cases) roots.push_back(c.e);
    Program p = many_groups(roots, {x});
    auto cc = find_compiler();
    ASSERT_TRUE(cc) << "no host compiler";
    BuildResult b = build(generate_source(p, "m"), *cc);
    for (std::size_t r = 0; r < cases.size(); ++r) {
        Tensor got = run_group(p, *b.module, "m", {a}, 2, static_cast<int>(r));
        double worst = 0;
        for (std::int64_t i = 0; i < n; ++i) {
            float in = xs[static_cast<std::size_t>(i)], out = got.data<float>()[i];
            double want = cases[r].ref(in);
            auto rounded = static_cast<float>(want);
            if (std::isnan(want) || std::isinf(rounded) || rounded == 0) {
                // NaN where NaN; infinities and zeros exactly, with their sign.
                if (std::isnan(want)) {
                    EXPECT_TRUE(std::isnan(out)) << to_string(roots[r]) << " at x = " << in;
                } else {
                    EXPECT_EQ(out, rounded) << to_string(roots[r]) << " at x = " << in;
                    EXPECT_EQ(std::signbit(out), std::signbit(rounded))
                        << to_string(roots[r]) << " at x = " << in;
                }
                continue;
            }
            int e = 0;
            std::frexp(rounded, &e);
            double ulp = std::ldexp(1.0, std::max(e, -125) - 24);
            double err = std::fabs(static_cast<double>(out) - want) / ulp;
            EXPECT_LE(err, cases[r].bound)
                << to_string(roots[r]) << " at x = " << in << ": got " << out << ", want " << want;
            worst = std::max(worst, err);
        }
        EXPECT_GT(worst, 0.0) << to_string(roots[r]);  // the comparison saw real values
    }
}

TEST(JitCpu, BinaryOpsComparisonsAndWhere) {
    TempCache cache;
    for (DType t : {f64, f32}) {
        Expr x = variable("x", {101}, t), y = variable("y", {101}, t);
        std::vector<Tensor> a{random_tensor({101}, t, 0.1, 2, 4),
                              random_tensor({101}, t, 0.1, 2, 5)};
        check({x + y, x - y, x * y, x / y, pow(x, y), minimum(x, y), maximum(x, y), atan2(x, y),
               where(x < y, x, y), cast(x <= y, t), cast(x > y, t), cast(x >= y, t),
               cast(eq(x, x), t), cast(ne(x, y), t), cast(logical_and(x < 1, y < 1), t),
               cast(logical_or(x < 1, y < 1), t), cast(logical_not(x < y), t)},
              {x, y}, a, t == f64 ? 1e-12 : 4 * kF32);
    }
}

TEST(JitCpu, IntegerAndBoolDtypes) {
    TempCache cache;
    Expr i = variable("i", {50}, i32), j = variable("j", {50}, i64),
         b = variable("b", {50}, boolean);
    std::vector<Tensor> a{random_tensor({50}, i32, -100, 100, 6),
                          random_tensor({50}, i64, -1e6, 1e6, 7),
                          random_tensor({50}, boolean, -1, 1, 8)};
    check({i + i, i * j, -j, abs(i), sign(j), relu(i), minimum(i, j), maximum(i, j),
           cast(i < j, i32), cast(b, i64), where(b, i, j), pow(i, 3 + j * 0),
           cast(cast(j, f32) * 1e12, i64), cast(cast(j, f64) / 7, i32)},
          {i, j, b}, a);
}

TEST(JitCpu, NonFiniteValues) {
    TempCache cache;
    double inf = INFINITY, nan = NAN;
    Tensor a = Tensor::from_vector<double>({8}, {nan, inf, -inf, 0.0, -0.0, 1.0, -1.0, nan});
    Tensor b = Tensor::from_vector<double>({8}, {1.0, nan, 2.0, -inf, inf, nan, 0.0, nan});
    Expr x = variable("x", {8}, f64), y = variable("y", {8}, f64);
    check({minimum(x, y), maximum(x, y), relu(x), sign(x), sigmoid(x), softplus(x), exp(x),
           log1p(x), cast(x, i64), cast(x, i32), cast(x, boolean)},
          {x, y}, {a, b});
}

TEST(JitCpu, ReductionsOverEveryAxisSet) {
    TempCache cache;
    for (DType t : {f64, f32}) {
        Expr x = variable("x", {6, 7, 300}, t);
        Tensor a = random_tensor({6, 7, 300}, t, -3, 3, 9);
        std::vector<Expr> es;
        for (Axes ax : {Axes{1, 2}, Axes{0}, Axes{1}, Axes{0, 2}, Axes{0, 1, 2}})
            for (bool keep : {false, true})
                if (!keep || ax == Axes{1})  // keepdims once
                    for (Expr e : {sum(x * 2, ax, keep), mean(x, ax, keep), amax(x, ax, keep),
                                   amin(exp(x), ax, keep), logsumexp(x, ax, keep),
                                   prod(x * 0.1 + 1, ax, keep)})
                        es.push_back(e);
        check(es, {x}, {a}, t == f64 ? 1e-12 : 16 * kF32);
        // An epilogue after the reduction, with a load of its own.
        Expr s = variable("s", {6, 1, 1}, t);
        check(log(sum(exp(x), {1, 2}, true)) * s, {x, s}, {a, random_tensor({6, 1, 1}, t, 1, 2)},
              t == f64 ? 1e-12 : 16 * kF32);
    }
}

TEST(JitCpu, FullReductionOfALargeVectorIsParallel) {
    TempCache cache;
    Expr x = variable("x", {200001}, f32);
    Tensor a = random_tensor({200001}, f32, -1, 1, 10);
    check({sum(x * x), logsumexp(x), amax(x)}, {x}, {a}, 1e-6);
}

TEST(JitCpu, ReductionsOfNonFiniteRows) {
    TempCache cache;
    double inf = INFINITY, nan = NAN;
    Tensor a = Tensor::from_vector<double>(
        {4, 3}, {-inf, -inf, -inf, 1.0, nan, 2.0, inf, 1.0, -inf, 1.0, 2.0, 3.0});
    Expr x = variable("x", {4, 3}, f64);
    std::vector<Expr> es;
    for (Axes ax : {Axes{1}, Axes{0}})
        for (Expr e : {logsumexp(x, ax), amax(x, ax), amin(x, ax), sum(x, ax), mean(x, ax)})
            es.push_back(e);
    check(es, {x}, {a});
    Expr z = variable("z", {4, 0}, f64);
    check(mean(z, {1}), {z}, {Tensor(f64, {4, 0})});
}

TEST(JitCpu, SoftmaxAndLogSoftmaxRows) {
    TempCache cache;
    for (DType t : {f64, f32}) {
        Expr x = variable("x", {33, 1000}, t), y = variable("y", {33, 1000}, t);
        std::vector<Tensor> a{random_tensor({33, 1000}, t, -10, 10, 11),
                              random_tensor({33, 1000}, t, 0, 1, 12)};
        check({softmax(x * 2) * y, log_softmax(x) + y}, {x, y}, a, t == f64 ? 1e-12 : 16 * kF32);
    }
    double inf = INFINITY;
    Tensor a =
        Tensor::from_vector<double>({3, 3}, {-inf, -inf, -inf, inf, 1.0, 2.0, 0.0, 1.0, 2.0});
    Expr x = variable("x", {3, 3}, f64);
    check({softmax(x), log_softmax(x)}, {x}, {a});
}

TEST(JitCpu, CallsVectorMathFunctions) {
    TempCache cache;
    auto cc = find_compiler();
    if (!cc || cc->clang) GTEST_SKIP() << "vector math through libmvec needs GCC";
    Expr x = variable("x", {8}, f64);
    Program p = one_group(tanh(x) + log1p(exp(x)), {x});
    BuildResult b = build(generate_source(p, "v"), *cc);
    std::ifstream f(b.module->path(), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(f)), {});
    EXPECT_THAT(bytes, HasSubstr("_ZGV"));  // a libmvec vector variant is imported
}

TEST(JitCpu, SecondBuildHitsTheCaches) {
    TempCache cache;
    auto cc = find_compiler();
    ASSERT_TRUE(cc);
    Expr x = variable("x", {4}, f64);
    std::string src = generate_source(one_group(exp(x) + 1, {x}), "c");
    BuildResult a = build(src, *cc);
    EXPECT_FALSE(a.stats.cache_hit);
    EXPECT_GT(a.stats.compile_ms, 0);
    BuildResult b = build(src, *cc);
    EXPECT_TRUE(b.stats.memory_hit);
    EXPECT_EQ(a.module, b.module);
    clear_memory_cache();
    BuildResult c = build(src, *cc);
    EXPECT_TRUE(c.stats.cache_hit);
    EXPECT_FALSE(c.stats.memory_hit);
    EXPECT_EQ(c.stats.compile_ms, 0);
    EXPECT_TRUE(fs::exists(cache.dir + "/" + a.stats.key + ".so"));
}

TEST(JitCpu, CorruptOrForeignEntriesAreRebuilt) {
    TempCache cache;
    auto cc = find_compiler();
    ASSERT_TRUE(cc);
    Expr x = variable("x", {5}, f64);
    Program p = one_group(x * 3, {x});
    std::string src = generate_source(p, "k");
    std::string other = generate_source(one_group(x * 4, {x}), "k");
    std::string key = build(src, *cc).stats.key;
    std::string okey = build(other, *cc).stats.key;
    std::string path = cache.dir + "/" + key + ".so";
    Tensor in = Tensor::from_vector<double>({5}, {1, 2, 3, 4, 5});
    auto rewrite = [&](const std::string& bytes) {
        clear_memory_cache();
        fs::remove(path);
        std::ofstream(path, std::ios::binary) << bytes;
        BuildResult r = build(src, *cc);
        EXPECT_FALSE(r.stats.cache_hit);
        EXPECT_EQ(run_group(p, *r.module, "k", {in}).at(4), 15);
    };
    auto good = [&] {
        std::ifstream f(path, std::ios::binary);
        return std::string((std::istreambuf_iterator<char>(f)), {});
    }();
    rewrite(good.substr(0, good.size() / 2));  // truncated
    std::string flipped = good;
    flipped[flipped.size() / 3] ^= 0x55;  // one byte changed
    rewrite(flipped);
    rewrite("not a shared object");
    std::ifstream f(cache.dir + "/" + okey + ".so", std::ios::binary);
    rewrite(std::string((std::istreambuf_iterator<char>(f)), {}));  // another key's entry
}

TEST(JitCpu, ConcurrentBuildsOfOneSourceSucceed) {
    TempCache cache;
    auto cc = find_compiler();
    ASSERT_TRUE(cc);
    Expr x = variable("x", {5}, f64);
    Program p = one_group(sqrt(x) + 2, {x});
    std::string src = generate_source(p, "cc");
    // Two processes, each with two threads, build the same new kernel at once.
    pid_t child = fork();
    ASSERT_GE(child, 0);
    bool ok[2] = {false, false};
    auto work = [&](int i) {
        try {
            BuildResult r = build(src, *cc);
            Tensor in = Tensor::from_vector<double>({5}, {0, 1, 4, 9, 16});
            ok[i] = run_group(p, *r.module, "cc", {in}).at(4) == 6;
        } catch (...) {
        }
    };
    std::thread t0(work, 0), t1(work, 1);
    t0.join();
    t1.join();
    if (child == 0) _exit(ok[0] && ok[1] ? 0 : 1);
    int status = 0;
    waitpid(child, &status, 0);
    EXPECT_TRUE(ok[0] && ok[1]);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    for (const auto& e : fs::directory_iterator(cache.dir))
        EXPECT_THAT(e.path().string(), Not(HasSubstr(".tmp"))) << "a temporary file was left";
}

TEST(JitCpu, UserNamesNeverReachTheSourceUnescaped) {
    TempCache cache;
    fs::remove("/tmp/pwned");
    std::string evil = "x; system(\"touch /tmp/pwned\")";
    Expr x = variable(evil, {3}, f64);
    std::string fname = "f\"); system(\"touch /tmp/pwned\"); //\n";
    Program p = one_group(x * 2, {x});
    std::string src = generate_source(p, fname);
    EXPECT_THAT(src, Not(HasSubstr("system(")));
    EXPECT_THAT(src, Not(HasSubstr("pwned\"")));
    EXPECT_THAT(src, HasSubstr("x__system__touch__tmp_pwned__"));
    auto cc = find_compiler();
    ASSERT_TRUE(cc);
    BuildResult b = build(src, *cc);
    Tensor got = run_group(p, *b.module, fname, {Tensor::from_vector<double>({3}, {1, 2, 3})});
    EXPECT_EQ(got.at(2), 6);
    EXPECT_FALSE(fs::exists("/tmp/pwned"));
}

TEST(JitCpu, CompilerErrorsCarryTheLogAndNumberedSource) {
    TempCache cache;
    auto cc = find_compiler();
    ASSERT_TRUE(cc);
    try {
        build("this is not C++\n", *cc);
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("error"));
        EXPECT_THAT(e.what(), HasSubstr("    1  this is not C++"));
    }
}

}  // namespace
}  // namespace agnesi::jit::cpu
