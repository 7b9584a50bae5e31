// The CUDA backend: generated kernels compile with NVRTC for sm_80 and sm_90 everywhere; on a
// machine with a GPU they agree with the reference evaluator (skipped, with the reason, without).
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <optional>
#include <random>
#include <regex>
#include <sstream>

#include "agnesi/agnesi.hpp"
#include "jit/cuda/codegen.hpp"
#include "jit/cuda/plan.hpp"
#include "jit/scalar_emit.hpp"
#include "jit/schedule.hpp"
#include "support/float_sample.hpp"
#include "support/jit_check.hpp"
#ifdef AGNESI_WITH_CUDA
#include "jit/cuda/executor.hpp"
#include "jit/cuda/nvrtc.hpp"
#endif

namespace agnesi {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

struct Case {
    std::string name;
    std::vector<Expr> inputs;
    std::vector<Expr> outputs;
    // Half-widths of the inputs' uniform random values, one per input; empty: 2 for all.
    std::vector<double> ranges{};
};

jit::Program program_of(const Case& c) {
    std::vector<Expr> roots = simplify(c.outputs);
    std::vector<const Node*> rn, in;
    for (const Expr& r : roots) rn.push_back(r.node());
    for (const Expr& v : c.inputs) in.push_back(v.node());
    return jit::schedule(rn, in, static_cast<int>(roots.size()), {});
}

Case mlp_step(DType dt, std::int64_t batch) {
    auto X = variable("X", {batch, 784}, dt), Y = variable("Y", {batch, 10}, dt);
    auto W1 = variable("W1", {784, 1024}, dt), b1 = variable("b1", {1024}, dt);
    auto W2 = variable("W2", {1024, 10}, dt), b2 = variable("b2", {10}, dt);
    Expr h = relu(matmul(X, W1) + b1);
    Expr logits = matmul(h, W2) + b2;
    // The mean cross-entropy, written as one sum: mean(sum(., {1})) currently leaves a view of a
    // constant in its gradient, which the scheduler does not store.
    Expr loss = -sum(Y * log_softmax(logits)) / double(batch);
    std::vector<Expr> gs = grad(loss, {W1, b1, W2, b2});
    std::vector<Expr> outs{loss};
    std::vector<Expr> params{W1, b1, W2, b2};
    for (std::size_t i = 0; i < gs.size(); ++i) outs.push_back(params[i] - 0.1 * gs[i]);
    // Weights of a network's scale: with inputs in [-2, 2], logits of thousands make the softmax
    // one-hot except in rows where two nearly tie, and there float32 gives the step only to 5e-5
    // (the reference evaluator's own float32 error against float64), so any other order of the
    // matrix products' sums would miss the tolerance.
    return {"mlp_step", {X, Y, W1, b1, W2, b2}, outs, {2, 2, 0.1, 0.5, 0.2, 0.5}};
}

// Every kind of group the backend generates.
std::vector<Case> corpus() {
    std::vector<Case> cs;
    for (DType dt : {f32, f64}) {
        std::string t(dtype_name(dt));
        auto x = matrix("x", 5, 7, dt), w = vector("w", 7, dt), b = scalar("b", dt);
        cs.push_back(
            {"chain_" + t, {x, w, b}, {tanh(x * w + b) * sigmoid(x) + log1p(exp(-abs(x)))}});
        // Every elementwise op.
        auto u = vector("u", 16, dt), v = vector("v", 16, dt);
        std::vector<Expr> outs;
        for (std::size_t i = 0; i < kNumOps; ++i) {
            auto op = static_cast<Op>(i);
            const OpInfo& info = op_info(op);
            if (info.kind != OpKind::Elementwise || op == Op::Cast) continue;
            std::vector<Expr> args = info.type == TypeRule::Logical
                                         ? std::vector<Expr>{u > 0, v < 0}
                                     : op == Op::Where ? std::vector<Expr>{u > v, u, v}
                                                       : std::vector<Expr>{u, v};
            args.resize(static_cast<std::size_t>(info.arity));
            outs.push_back(elementwise(op, args));
        }
        outs.push_back(cast(u, i32) + cast(v, i64));
        outs.push_back(cast(u > v, dt) * 2);
        cs.push_back({"every_op_" + t, {u, v}, outs});
        auto T = tensor("T", {3, 4, 5}, dt);
        std::vector<Expr> reds;
        for (Op op : {Op::Sum, Op::Mean, Op::Prod, Op::ReduceMax, Op::ReduceMin, Op::Logsumexp})
            for (Axes axes : {Axes{0}, Axes{1}, Axes{2}, Axes{0, 2}, Axes{1, 2}, Axes{}})
                reds.push_back(sqrt(abs(reduce(op, exp(T) - 1, axes, true))) + 1);
        cs.push_back({"reductions_" + t, {T}, reds});
        auto z = matrix("z", 6, 9, dt);
        cs.push_back({"softmax_" + t,
                      {z},
                      {softmax(z), log_softmax(z * 2), logsumexp(z, {1}), softmax(z, 0)}});
        auto g = vector("g", 9, dt);
        Expr d = z - mean(z, {1}, true);
        cs.push_back({"layer_norm_" + t, {z, g}, {d / sqrt(mean(d * d, {1}, true) + 1e-5) * g}});
        // Passes over a row by different reductions: max, min, sum, then the row.
        Expr sh = z - amax(z, {1}, true);
        cs.push_back(
            {"row_passes_" + t, {z}, {sh * sum(sh * sh, {1}, true) + amin(sh, {1}, true) * 0.5}});
        cs.push_back({"row_reduce_" + t,
                      {z, g},
                      {z / sqrt(mean(z * z, {1}, true) + 1e-6) * g, z - amax(z, {1}, true),
                       exp(z - logsumexp(z, {1}, true))}});
        auto A = matrix("A", 8, 4, dt), B = matrix("B", 4, 3, dt), c = vector("c", 3, dt);
        cs.push_back(
            {"matmul_epilogue_" + t, {A, B, c}, {relu(matmul(A, B) + c), matmul(transpose(A), A)}});
    }
    auto k = vector("k", 4, i32), y = vector("y", 4, i64);
    cs.push_back({"integers",
                  {k, y},
                  {k * 3 - y, pow(y, Expr(2)), sum(k), amax(y), abs(-k), where(k > 0, k, y)}});
    // A long body over int32 and float32 slots, in the by-4 loop shared by both by-4 modes.
    auto ki = vector("ki", 12, i32), xf = vector("xf", 12, f32);
    cs.push_back({"long_body_int32_float32",
                  {ki, xf},
                  {exp(cast(ki, f32) * 0.25) * tanh(xf) + sigmoid(xf) * cast(ki, f32)}});
    cs.push_back(mlp_step(f32, 128));
    return cs;
}

Tensor random_tensor(DType dt, const Shape& shape, std::mt19937& rng, double range = 2) {
    Tensor t(f64, shape);
    std::uniform_real_distribution<double> u(-range, range);
    for (std::int64_t i = 0; i < t.size(); ++i) t.data<double>()[i] = u(rng);
    return t.astype(dt);
}

TEST(CudaCodegen, ScalarConstantsAreExact) {
    using jit::constant_literal;
    EXPECT_EQ(constant_literal(Number(2), f64), "(2.0)");
    EXPECT_EQ(constant_literal(Number::from_double(0.1), f64), "(0.10000000000000001)");
    EXPECT_EQ(constant_literal(Number::from_double(0.1), f32), "(0.100000001f)");
    EXPECT_EQ(constant_literal(Number::inf(), f32), "agnesi_inf_f()");
    EXPECT_EQ(constant_literal(-Number::inf(), f64), "-agnesi_inf_d()");
    EXPECT_EQ(constant_literal(Number::nan(), f64), "agnesi_nan_d()");
    EXPECT_EQ(constant_literal(Number(-7), i32), "((int32_t)-7)");
    EXPECT_EQ(constant_literal(Number(1), DType::Bool), "true");
    EXPECT_EQ(jit::convert_expr("v1", f64, i32), "agnesi_to_i32(v1)");
    EXPECT_EQ(jit::convert_expr("v1", f32, DType::Bool), "(v1 != 0)");
    EXPECT_EQ(jit::convert_expr("v1", i32, f32), "((float)v1)");
}

TEST(CudaCodegen, PureElementwiseExpressionIsOneKernel) {
    auto x = scalar("x"), y = scalar("y");
    std::string src = emit_source({sin(x) * y + exp(x) / (1 + y * y)}, Target::Cuda);
    std::regex global("__global__");
    auto n =
        std::distance(std::sregex_iterator(src.begin(), src.end(), global), std::sregex_iterator());
    EXPECT_EQ(n, 1) << src;
    EXPECT_THAT(src, HasSubstr("extern \"C\" __global__"));
    EXPECT_THAT(src, Not(HasSubstr("#include")));
}

TEST(CudaCodegen, ExponentsOfSquaresAndCubesAreNotEmitted) {
    // x^2 and x^3 are products, so their exponents are read by no statement and not declared;
    // the exponent 4 (a call to pow) is.
    auto x = scalar("x"), y = scalar("y");
    for (Target t : {Target::Cuda, Target::Cpu}) {
        std::string src = emit_source({pow(x, 3.0) + pow(y, 2.0) + pow(x, 4.0)}, t, false);
        EXPECT_THAT(src, HasSubstr("(v0 * v0 * v0)")) << src;
        EXPECT_THAT(src, Not(HasSubstr("= (2"))) << src;
        EXPECT_THAT(src, Not(HasSubstr("= (3"))) << src;
        EXPECT_THAT(src, HasSubstr("= (4")) << src;
    }
}

TEST(CudaCodegen, RowSoftmaxIsOneKernel) {
    auto z = matrix("z", 16384, 4096, f32);
    std::string src = emit_source({softmax(z)}, Target::Cuda);
    std::regex global("__global__");
    EXPECT_EQ(
        std::distance(std::sregex_iterator(src.begin(), src.end(), global), std::sregex_iterator()),
        1);
}

TEST(CudaCodegen, EveryCorpusGroupGetsOneKernel) {
    for (const Case& c : corpus()) {
        jit::Program p = program_of(c);
        std::string src = jit::cuda::generate_cuda_source(p, c.name);
        for (std::size_t gi = 0; gi < p.groups.size(); ++gi) {
            const jit::Group& g = p.groups[gi];
            bool rows = g.kind == jit::GroupKind::Reduce ||
                        g.kind == jit::GroupKind::RowNormalize ||
                        g.kind == jit::GroupKind::RowReduce;
            std::string k = fmt::format("void __launch_bounds__({}) {}(", rows ? 1024 : 256,
                                        jit::cuda::cuda_kernel_name(c.name, gi));
            EXPECT_EQ(src.find(k) != std::string::npos, jit::cuda::has_kernel(p.groups[gi]))
                << c.name << " group " << gi;
        }
    }
}

TEST(CudaCodegen, NamesFromUserInputAreSanitized) {
    jit::Program p = program_of({"n", {vector("x", 3)}, {vector("x", 3) * 2}});
    std::string src = jit::cuda::generate_cuda_source(p, "evil */ name\n#define");
    EXPECT_THAT(src, Not(HasSubstr("evil */")));
    EXPECT_THAT(src, HasSubstr("agnesi_evil____name__define_g0"));
}

// ---- the kernels on the CPU (Backend::EmulatedCuda), everywhere ------------------------------

// Runs every corpus case on random inputs through `run` and checks its outputs against the
// reference evaluator (float32 within 2e-5 relative, float64 within 1e-12).
void expect_corpus_agrees(
    const std::function<std::vector<Tensor>(const Case&, const std::vector<Tensor>&)>& run) {
    std::mt19937 rng(3);
    for (const Case& c : corpus()) {
        SCOPED_TRACE(c.name);
        Bindings at;
        std::vector<Tensor> args;
        for (std::size_t k = 0; k < c.inputs.size(); ++k) {
            const Expr& v = c.inputs[k];
            Tensor t = random_tensor(v.dtype(), v.shape(), rng, c.ranges.empty() ? 2 : c.ranges[k]);
            at[v->name()] = t;
            args.push_back(t);
        }
        std::vector<Tensor> got = run(c, args);
        std::vector<Tensor> want = evaluate(c.outputs, at);
        ASSERT_EQ(got.size(), want.size());
        for (std::size_t i = 0; i < got.size(); ++i) {
            double tol = c.outputs[i].dtype() == f32 ? 2e-5 : 1e-12;
            EXPECT_TRUE(testing::tensors_close(got[i], want[i], tol))
                << "output " << i << ": " << to_string(c.outputs[i]);
        }
    }
}

TEST(CudaEmulator, CorpusAgreesWithTheReferenceEvaluator) {
    expect_corpus_agrees([](const Case& c, const std::vector<Tensor>& args) {
        Function f =
            compile(c.inputs, c.outputs, {.backend = Backend::EmulatedCuda, .name = c.name});
        EXPECT_THAT(f.source(), HasSubstr("__global__"));
        return f.call(args);
    });
}

// Each float32 function against the double-precision library function, in ulp of the exact
// result: a strided sample of every float bit pattern (all signs and binades, subnormals,
// infinities, NaNs) and each function's edges. The bounds are CUDA's stated maximum errors
// (CUDA C++ Programming Guide, single-precision functions; sigmoid is this library's
// `(x >= 0 ? 1 : z) / (1 + z)`, `z = exp(-|x|)`: exp's 2 ulp, and 1 for the sum and the
// division) plus half an ulp: CUDA states them from the correctly rounded result, which is
// itself up to half an ulp from the exact one (expm1f reaches 1.06 ulp from the exact result
// on an H200). On the CPU the emulator runs the same kernels on the host's math library, whose
// float functions (glibc's) are held to the same bounds.
void expect_float_functions_within_cuda_bounds(const CompileOptions& options) {
    std::vector<float> xs = agnesi::testing::float_sample(
        {0.0f, -0.0f, 1.0f, -1.0f, 88.72f, 88.73f, -87.33f, -103.9f, -104.1f, 1e-30f, -1e-30f,
         1e-45f, -0.9999999f, 17.0f, -18.5f, 1e4f, -1e4f, 1e30f});
    const auto n = static_cast<std::int64_t>(xs.size());
    Expr x = variable("x", {n}, f32);
    struct Fn {
        Expr e;
        double (*ref)(double);
        double bound;
    };
    const std::vector<Fn> fns{
        {exp(x), [](double v) { return std::exp(v); }, 2},
        {expm1(x), [](double v) { return std::expm1(v); }, 1},
        {log(x), [](double v) { return std::log(v); }, 1},
        {log1p(x), [](double v) { return std::log1p(v); }, 1},
        {sqrt(x), [](double v) { return std::sqrt(v); }, 0},
        {sin(x), [](double v) { return std::sin(v); }, 2},
        {cos(x), [](double v) { return std::cos(v); }, 2},
        {tanh(x), [](double v) { return std::tanh(v); }, 2},
        {erf(x), [](double v) { return std::erf(v); }, 2},
        {sigmoid(x),
         [](double v) { return v >= 0 ? 1 / (1 + std::exp(-v)) : std::exp(v) / (1 + std::exp(v)); },
         3}};
    std::vector<Expr> outs;
    for (const Fn& f : fns) outs.push_back(f.e);
    Function fn = compile({x}, outs, options);
    std::vector<Tensor> got = fn.call({Tensor::from_vector<float>({n}, xs)});
    ASSERT_EQ(got.size(), fns.size());
    for (std::size_t r = 0; r < fns.size(); ++r) {
        SCOPED_TRACE(to_string(fns[r].e));
        double worst = 0;
        int failures = 0;
        for (std::int64_t i = 0; i < n && failures < 5; ++i) {
            const float in = xs[static_cast<std::size_t>(i)], out = got[r].data<float>()[i];
            const double want = fns[r].ref(in);
            bool ok = true;
            double err = 0;
            if (std::isnan(want)) {
                ok = std::isnan(out);
            } else if (std::isinf(want) || want == 0) {
                ok = out == want && std::signbit(out) == std::signbit(want);
            } else if (std::isinf(out)) {
                ok = out == static_cast<float>(want);  // overflowed in rounding too
            } else {
                int e = 0;
                std::frexp(want, &e);
                err = std::fabs(static_cast<double>(out) - want) /
                      std::ldexp(1.0, std::max(e, -125) - 24);
                ok = err <= fns[r].bound + 0.5;
                worst = std::max(worst, err);
            }
            if (!ok) {
                ++failures;
                ADD_FAILURE() << "at x = " << in << ": got " << out << ", want " << want << " ("
                              << err << " ulp)";
            }
        }
        EXPECT_GT(worst, 0.0);  // the comparison saw real values
        std::cout << to_string(fns[r].e) << ": at most " << worst << " ulp\n";
    }
}

TEST(CudaEmulator, Float32FunctionsWithinCudaUlpBounds) {
    expect_float_functions_within_cuda_bounds({.backend = Backend::EmulatedCuda});
}

#ifdef AGNESI_WITH_CUDA

bool have_nvrtc() {
    return jit::cuda::nvrtc_status().available;
}

class CudaCompile : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaCompile, EveryCorpusKernelCompilesToCubin) {
    if (!have_nvrtc()) GTEST_SKIP() << jit::cuda::nvrtc_status().reason;
    jit::cuda::NvrtcOptions o;
    o.arch = GetParam();
    o.use_cache = false;
    // All kernels of all cases, general and dense, compiled in parallel as a function's kernels
    // are.
    std::vector<std::string> sources;
    std::vector<std::vector<std::string>> extra;
    for (const Case& c : corpus()) {
        jit::Program p = program_of(c);
        for (std::size_t gi = 0; gi < p.groups.size(); ++gi)
            for (int variant : {0, 1}) {
                sources.push_back(jit::cuda::generate_cuda_group_source(p, c.name, gi));
                extra.push_back(jit::cuda::variant_options(variant));
            }
    }
    try {
        auto results = jit::cuda::nvrtc_compile_all(sources, "corpus", o, 0, extra);
        for (std::size_t i = 0; i < sources.size(); ++i) {
            if (!sources[i].empty()) {
                EXPECT_GT(results[i].cubin->size(), 0u) << sources[i];
            }
        }
    } catch (const CompileError& e) {
        ADD_FAILURE() << e.what();
    }
}

INSTANTIATE_TEST_SUITE_P(Arch, CudaCompile, ::testing::Values("sm_80", "sm_90"));

TEST(CudaCompile, WholeFunctionSourceCompilesAsOneModule) {
    if (!have_nvrtc()) GTEST_SKIP() << jit::cuda::nvrtc_status().reason;
    jit::cuda::NvrtcOptions o;
    o.use_cache = false;
    Case c = mlp_step(f32, 64);
    std::string src = jit::cuda::generate_cuda_source(program_of(c), "mlp");
    EXPECT_NO_THROW(jit::cuda::nvrtc_compile(src, "mlp", o));
}

TEST(CudaCompile, BenchmarkedKernelsSpillNoRegisters) {
    // What ptxas reports for sm_90: the kernels of the GPU benchmarks' row workloads and of the
    // MLP step, both variants, keep every value in registers. A row held in registers that
    // outgrew them would spill to local memory here first.
    if (!have_nvrtc()) GTEST_SKIP() << jit::cuda::nvrtc_status().reason;
    auto z = matrix("z", 16384, 4096, f32), g = vector("g", 4096, f32);
    auto bb = vector("bb", 4096, f32), s = matrix("s", 4096, 128, f32);
    Expr d = z - mean(z, {1}, true);
    std::vector<Case> cases{
        {"softmax", {z}, {softmax(z, 1)}},
        {"log_softmax_rows_of_128", {s}, {s - logsumexp(s, {1}, true)}},
        {"logsumexp", {z}, {logsumexp(z, {1})}},
        {"layer_norm", {z, g, bb}, {d / sqrt(mean(d * d, {1}, true) + 1e-5) * g + bb}},
        mlp_step(f32, 4096)};
    for (const Case& c : cases)
        for (int variant : {0, 1}) {
            jit::cuda::NvrtcOptions o;
            o.arch = "sm_90";
            o.use_cache = false;
            o.extra = jit::cuda::variant_options(variant);
            o.extra.push_back("--ptxas-options=-v");
            std::string src = jit::cuda::generate_cuda_source(program_of(c), c.name);
            auto r = jit::cuda::nvrtc_compile(src, c.name, o);
            SCOPED_TRACE(c.name + (variant ? " dense" : " general") + "\n" + r.log);
            int kernels = 0;
            std::istringstream lines(r.log);
            for (std::string line; std::getline(lines, line);) {
                if (line.find("spill stores") == std::string::npos) continue;
                EXPECT_NE(line.find(" 0 bytes spill stores, 0 bytes spill loads"),
                          std::string::npos)
                    << line;
                ++kernels;
            }
            EXPECT_GE(kernels, 1);
        }
}

TEST(CudaCompile, KernelStatsReportWhatPtxasMakesOfEachKernel) {
    // cuda_kernel_stats: a line per kernel and variant, with ptxas's figures. A softmax over rows
    // of 128 float32 values, then a sum of its columns, are two kernels; a bare matrix product
    // has none (cuBLAS computes it).
    if (!have_nvrtc()) GTEST_SKIP() << jit::cuda::nvrtc_status().reason;
    auto s = matrix("ks", 4096, 128, f32);
    std::vector<CudaKernelStats> ks = cuda_kernel_stats({sum(softmax(s, 1) * s, {0})}, "sm_90");
    ASSERT_EQ(ks.size(), 4u);
    for (std::size_t i = 0; i < ks.size(); ++i) {
        const CudaKernelStats& k = ks[i];
        SCOPED_TRACE(k.kernel + (k.dense ? " dense" : " general"));
        EXPECT_EQ(k.dense, i % 2 == 1);
        EXPECT_EQ(k.kernel, jit::cuda::cuda_kernel_name("f", k.group));
        EXPECT_GT(k.registers, 0);
        EXPECT_LE(k.registers, 64);  // blocks of up to 1024 threads
        EXPECT_EQ(k.spill_store_bytes, 0);
        EXPECT_EQ(k.spill_load_bytes, 0);
        EXPECT_GT(k.shared_bytes, 0);  // a block's partial results
        EXPECT_GT(k.cubin_bytes, 1000u);
        EXPECT_GT(k.compile_ms, 0.0);
    }
    EXPECT_NE(ks[0].group, ks[2].group);
    EXPECT_EQ(ks[0].kind, "row-normalize");
    EXPECT_EQ(ks[2].kind, "reduce");
    auto a = matrix("ka", 64, 32, f32), b = matrix("kb", 32, 16, f32);
    EXPECT_TRUE(cuda_kernel_stats({matmul(a, b)}).empty());
}

TEST(CudaCompile, EvictFirstPointwiseAccessesCompile) {
    // The options AGNESI_CUDA_STREAMING sets (evict-first 16-byte loads and stores) give kernels
    // NVRTC compiles, for float32 and int32 values, in both variants.
    if (!have_nvrtc()) GTEST_SKIP() << jit::cuda::nvrtc_status().reason;
    auto x = vector("x", 1 << 20, f32), b = vector("b", 64, f32);
    auto X = matrix("X", 4096, 64, f32), k = vector("k", 1 << 20, i32);
    std::vector<Case> cases{
        {"gelu", {x}, {0.5 * x * (1.0 + tanh(0.79788 * (x + 0.044715 * x * x * x)))}},
        {"bias_relu", {X, b}, {relu(X + b)}},
        {"ints", {k}, {k * 3 + 1}}};
    for (const Case& c : cases)
        for (const char* arch : {"sm_80", "sm_90"})
            for (int variant : {0, 1}) {
                jit::cuda::NvrtcOptions o;
                o.arch = arch;
                o.use_cache = false;
                o.extra = jit::cuda::variant_options(variant);
                o.extra.push_back("-DAGNESI_STREAM_LOADS");
                o.extra.push_back("-DAGNESI_STREAM_STORES");
                std::string src = jit::cuda::generate_cuda_source(program_of(c), c.name);
                SCOPED_TRACE(fmt::format("{} {} variant {}", c.name, arch, variant));
                auto r = jit::cuda::nvrtc_compile(src, c.name, o);
                ASSERT_TRUE(r.cubin);
                EXPECT_GT(r.cubin->size(), 0u);
            }
}

TEST(CudaCompile, ErrorsShowTheSourceLine) {
    if (!have_nvrtc()) GTEST_SKIP() << jit::cuda::nvrtc_status().reason;
    std::string src = "extern \"C\" __global__ void k(float* p) {\n    p[0] = undefined_name;\n}\n";
    jit::cuda::NvrtcOptions o;
    o.use_cache = false;
    try {
        jit::cuda::nvrtc_compile(src, "broken", o);
        FAIL() << "expected a CompileError";
    } catch (const CompileError& e) {
        std::string msg = e.what();
        EXPECT_THAT(msg, HasSubstr("NVRTC could not compile 'broken' for sm_80"));
        EXPECT_THAT(msg, HasSubstr("undefined_name"));
        EXPECT_THAT(msg, HasSubstr(">    2 |     p[0] = undefined_name;")) << msg;
        EXPECT_THAT(msg, HasSubstr("     1 | extern")) << msg;
        EXPECT_EQ(e.source(), src);
    }
}

TEST(CudaCompile, ErrorsNameTheGroupAndWhatItComputes) {
    if (!have_nvrtc()) GTEST_SKIP() << jit::cuda::nvrtc_status().reason;
    auto x = matrix("x", 4, 8, f32);
    Case c{"named", {x}, {tanh(x) + 1, softmax(x * 3, 1)}};
    jit::Program p = program_of(c);
    ASSERT_EQ(p.groups.size(), 2u);
    auto computes = [&](std::size_t gi) {
        const jit::Group& g = p.groups[gi];
        return to_string(Expr(g.instrs.at(static_cast<std::size_t>(g.outputs.at(0).instr)).node));
    };
    // Group 1's kernel renamed to a number: NVRTC fails on a line of that group's code.
    std::string src = jit::cuda::generate_cuda_source(p, c.name);
    jit::cuda::NvrtcOptions o;
    o.use_cache = false;
    o.extra = {"-D" + jit::cuda::cuda_kernel_name(c.name, 1) + "=1"};
    try {
        jit::cuda::nvrtc_compile(src, c.name, o);
        FAIL() << "expected a CompileError";
    } catch (const CompileError& e) {
        CompileError named = jit::cuda::with_failing_groups(e, p);
        std::string msg = named.what();
        EXPECT_THAT(msg,
                    HasSubstr("in group 1 (" + std::string(jit::group_kind_name(p.groups[1].kind)) +
                              " over (4, 8)), which computes:\n    " + computes(1) + "\n"))
            << msg;
        EXPECT_THAT(msg, Not(HasSubstr("in group 0"))) << msg;
        EXPECT_THAT(msg, Not(HasSubstr(computes(0)))) << msg;
        // The first line is NVRTC's summary; the source, its failing line marked, follows.
        EXPECT_EQ(msg.substr(0, msg.find('\n')), std::string(e.what()).substr(0, msg.find('\n')));
        EXPECT_THAT(msg, HasSubstr("generated source:"));
        EXPECT_EQ(named.source(), src);
    }
    // A log that marks no line of a group's code leaves the error as it was.
    CompileError plain("summary", "k(3): error: something", src);
    EXPECT_EQ(std::string(jit::cuda::with_failing_groups(plain, p).what()), "summary");
}

TEST(CudaCompile, DiskCacheHitsAndRebuildsCorruptEntries) {
    if (!have_nvrtc()) GTEST_SKIP() << jit::cuda::nvrtc_status().reason;
    auto dir = std::filesystem::temp_directory_path() /
               ("agnesi_cuda_cache_test_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    ::setenv("AGNESI_CACHE_DIR", dir.c_str(), 1);
    std::string src = "extern \"C\" __global__ void k(float* p) { p[threadIdx.x] *= 2.0f; }\n";
    jit::cuda::clear_memory_cache();
    auto cold = jit::cuda::nvrtc_compile(src, "cached");
    EXPECT_FALSE(cold.cache_hit);
    jit::cuda::clear_memory_cache();
    auto warm = jit::cuda::nvrtc_compile(src, "cached");
    EXPECT_TRUE(warm.disk_hit);
    EXPECT_EQ(*warm.cubin, *cold.cubin);
    // Corrupt the entry: it is detected, compiled again and rewritten.
    for (const auto& f : std::filesystem::directory_iterator(dir / "cuda")) {
        std::fstream io(f.path(), std::ios::in | std::ios::out | std::ios::binary);
        io.seekp(-8, std::ios::end);
        io.write("garbage!", 8);
    }
    jit::cuda::clear_memory_cache();
    auto rebuilt = jit::cuda::nvrtc_compile(src, "cached");
    EXPECT_FALSE(rebuilt.cache_hit);
    EXPECT_EQ(*rebuilt.cubin, *cold.cubin);
    jit::cuda::clear_memory_cache();
    EXPECT_TRUE(jit::cuda::nvrtc_compile(src, "cached").disk_hit);
    ::unsetenv("AGNESI_CACHE_DIR");
    std::filesystem::remove_all(dir);
}

TEST(CudaCompile, CubinsAreCachedBesideNativeCode) {
    // In cuda/ of AGNESI_CACHE_DIR, else of $XDG_CACHE_HOME/agnesi, else of ~/.cache/agnesi.
    auto saved = [](const char* name) {
        const char* v = std::getenv(name);
        return v ? std::optional<std::string>(v) : std::nullopt;
    };
    auto restore = [](const char* name, const std::optional<std::string>& v) {
        if (v)
            ::setenv(name, v->c_str(), 1);
        else
            ::unsetenv(name);
    };
    const auto cache = saved("AGNESI_CACHE_DIR"), xdg = saved("XDG_CACHE_HOME"),
               home = saved("HOME");
    ::setenv("AGNESI_CACHE_DIR", "/c", 1);
    ::setenv("XDG_CACHE_HOME", "/x", 1);
    ::setenv("HOME", "/h", 1);
    EXPECT_EQ(jit::cuda::cuda_cache_dir(), "/c/cuda");
    ::unsetenv("AGNESI_CACHE_DIR");
    EXPECT_EQ(jit::cuda::cuda_cache_dir(), "/x/agnesi/cuda");
    ::unsetenv("XDG_CACHE_HOME");
    EXPECT_EQ(jit::cuda::cuda_cache_dir(), "/h/.cache/agnesi/cuda");
    restore("AGNESI_CACHE_DIR", cache);
    restore("XDG_CACHE_HOME", xdg);
    restore("HOME", home);
}

// The arguments of group `gi` of `p` for plan_launch, every slot at `buf`.
struct PlanArgs {
    std::vector<std::int64_t> dims, edims, strides;
    std::vector<void*> ptrs;
    agnesi_group_args a{};
    PlanArgs(const jit::Program& p, std::size_t gi, void* buf) {
        const jit::Group& g = p.groups[gi];
        jit::DimEnv env;
        Shape d = jit::concrete(g.domain, env), e = jit::concrete(g.epilogue_domain(), env);
        dims.assign(d.begin(), d.end());
        edims.assign(e.begin(), e.end());
        std::vector<bool> epi = jit::cuda::epilogue_inputs(g);
        auto add = [&](const jit::Access& acc, bool ep) {
            auto r = jit::resolve_in_group(p, g, acc, ep, env);
            strides.insert(strides.end(), r.strides.begin(), r.strides.end());
            ptrs.push_back(buf);
        };
        for (std::size_t k = 0; k < g.inputs.size(); ++k) add(g.inputs[k], epi[k]);
        for (const auto& o : g.outputs) add(o.target, true);
        a.rank = static_cast<std::int64_t>(dims.size());
        a.dims = dims.data();
        a.edims = edims.data();
        a.ptrs = ptrs.data();
        a.strides = strides.data();
        a.num_inputs = static_cast<std::int64_t>(g.inputs.size());
        a.num_outputs = static_cast<std::int64_t>(g.outputs.size());
    }
};

TEST(CudaLaunch, PlansFlatVectorizedStridedAndReductionLaunches) {
    auto x = matrix("px", 64, 512, f32), b = vector("pb", 512, f32);
    jit::Program p = program_of({"plan", {x, b}, {exp(x) + b, sum(x, {1}), sum(x, {0})}});
    alignas(16) static float buf[8];
    for (std::size_t gi = 0; gi < p.groups.size(); ++gi) {
        const jit::Group& g = p.groups[gi];
        PlanArgs args(p, gi, buf);
        auto plan = jit::cuda::plan_launch(p, g, args.a, 1);
        EXPECT_FALSE(plan.wide);
        if (g.kind == jit::GroupKind::Pointwise) {
            EXPECT_EQ(plan.params.count, 64 * 512);
            // b broadcasts along rows; rows are 16-byte aligned: rows by 4.
            EXPECT_EQ(plan.params.mode, 3);
            EXPECT_EQ(plan.grid, 16u);  // 32 blocks of 4-value steps, capped at 16 per SM
            args.ptrs[0] = buf + 1;     // x misaligned: element by element, strided
            EXPECT_EQ(jit::cuda::plan_launch(p, g, args.a, 1).params.mode, 0);
        } else {
            ASSERT_EQ(g.kind, jit::GroupKind::Reduce);
            EXPECT_EQ(plan.params.count * plan.params.inner, 64 * 512);
            // Over the contiguous axis: a block per row; over the outer axis (512 outputs, more
            // than one 256-thread block per SM can hold): a thread per column.
            bool rows = g.axes == std::vector<int>{1};
            EXPECT_EQ(plan.params.mode, rows ? 0 : 1) << "axes " << g.axes.size();
        }
    }
}

TEST(CudaLaunch, SplitsLongRowsThatLeaveTheDeviceIdle) {
    auto v = vector("sv", 1 << 20, f32), m = matrix("sm", 3, 1 << 16, f32);
    auto w = matrix("sw", 4096, 4096, f32);
    jit::Program p = program_of({"split", {v, m, w}, {sum(v), amax(m, {1}), sum(w, {1})}});
    alignas(16) static float buf[8];
    int split = 0;
    for (std::size_t gi = 0; gi < p.groups.size(); ++gi) {
        PlanArgs args(p, gi, buf);
        auto plan = jit::cuda::plan_launch(p, p.groups[gi], args.a, 132);
        if (plan.params.count == 1) {  // one row of 2^20: 256 blocks of 4096 values
            EXPECT_EQ(plan.params.mode, 0);
            EXPECT_EQ(plan.params.split, 256);
            EXPECT_EQ(plan.grid, 256u);
            EXPECT_EQ(plan.workspace, 256 * jit::cuda::kSplitSlotBytes + 4);
            ++split;
        } else if (plan.params.count == 3) {  // 3 rows of 2^16: 16 blocks each
            EXPECT_EQ(plan.params.mode, 0);
            EXPECT_EQ(plan.params.split, 16);
            EXPECT_EQ(plan.grid, 48u);
            ++split;
        } else {  // 4096 rows fill the device: a block per row, no workspace
            EXPECT_EQ(plan.params.mode, 0);
            EXPECT_LE(plan.params.split, 1);
            EXPECT_EQ(plan.workspace, 0u);
        }
    }
    EXPECT_EQ(split, 2);
}

TEST(CudaLaunch, ShortRowsTakeAWarpAndRowsThatFitStayInRegisters) {
    // On 132 SMs: 4096 rows of 10 take a warp each, 8 to a block of 256 (512 blocks); 100 rows
    // of 10 (too few for two blocks per SM) a block each. A softmax over rows of 4096 float32
    // values in blocks of 256 holds them in registers (16 a thread), so its dense variant runs
    // them; rows of 8192, or of 4094, do not fit it and take the general variant; 64 rows of
    // 8192 (too few for two blocks of 256 per SM) take blocks of 1024, and fit.
    auto a = matrix("wa", 4096, 10, f32), few = matrix("wf", 100, 10, f32);
    auto z = matrix("wz", 16384, 4096, f32), big = matrix("wb", 1024, 8192, f32);
    auto wide = matrix("ww", 64, 8192, f32);
    auto odd = matrix("wo", 16384, 4096 - 2, f32);
    alignas(16) static float buf[8];
    auto plan_of = [&](const Expr& e) {
        jit::Program p = program_of({"rows", free_variables({e}), {e}});
        EXPECT_EQ(p.groups.size(), 1u);
        PlanArgs args(p, 0, buf);
        return jit::cuda::plan_launch(p, p.groups[0], args.a, 132);
    };
    for (const Expr& e : {softmax(a, 1), logsumexp(a, {1}), a - mean(a, {1}, true)}) {
        auto plan = plan_of(e);
        EXPECT_EQ(plan.params.warp_rows, 1);
        EXPECT_EQ(plan.block, 256u);
        EXPECT_EQ(plan.grid, 512u);
    }
    auto one = plan_of(softmax(few, 1));
    EXPECT_EQ(one.params.warp_rows, 0);
    EXPECT_EQ(one.block, 32u);
    EXPECT_EQ(one.grid, 100u);
    auto fits = plan_of(softmax(z, 1));
    EXPECT_EQ(fits.params.warp_rows, 0);
    EXPECT_EQ(fits.block, 256u);
    EXPECT_TRUE(fits.dense);
    jit::Program sp = program_of({"rows", {z}, {softmax(z, 1)}});
    EXPECT_EQ(jit::cuda::row_cache_plan(sp, sp.groups[0]).steps, 4);
    EXPECT_FALSE(plan_of(softmax(big, 1)).dense);
    auto few_wide = plan_of(softmax(wide, 1));
    EXPECT_EQ(few_wide.block, 1024u);
    EXPECT_TRUE(few_wide.dense);
    EXPECT_FALSE(plan_of(softmax(odd, 1)).dense);
    Expr d = z - mean(z, {1}, true);
    EXPECT_TRUE(plan_of(d / sqrt(mean(d * d, {1}, true) + 1e-5)).dense);
    // A row of a static length holds only the steps a warp needs for it: one for 128 values,
    // two for 132 or 256; a symbolic row length keeps all four.
    auto steps_of = [](const Expr& x) {
        jit::Program rp = program_of({"rows", free_variables({x}), {x}});
        return jit::cuda::row_cache_plan(rp, rp.groups[0]).steps;
    };
    auto r128 = matrix("wr", 4096, 128, f32), r132 = matrix("wq", 4096, 132, f32);
    auto rsym = matrix("wy", 4096, sym_dim("wy_n"), f32);
    EXPECT_EQ(steps_of(softmax(r128, 1)), 1);
    EXPECT_EQ(steps_of(r128 - logsumexp(r128, {1}, true)), 1);
    EXPECT_EQ(steps_of(softmax(r132, 1)), 2);
    EXPECT_EQ(steps_of(softmax(matrix("wv", 4096, 256, f32), 1)), 2);
    EXPECT_EQ(steps_of(softmax(rsym, 1)), 4);
    auto held = plan_of(softmax(r128, 1));
    EXPECT_EQ(held.params.warp_rows, 1);
    EXPECT_TRUE(held.dense);
    EXPECT_TRUE(plan_of(softmax(r132, 1)).dense);
}

TEST(CudaLaunch, BiasGoesToTheProductsEpilogue) {
    auto x = matrix("ex", 64, 32, f32), W = matrix("eW", 32, 16, f32), c = vector("ec", 16, f32);
    auto r = matrix("er", 64, 1, f32), xd = matrix("exd", 64, 32), Wd = matrix("eWd", 32, 16);
    auto cd = vector("ecd", 16);
    auto fused = [&](const Expr& e, const std::vector<Expr>& more = {}) {
        std::vector<Expr> outs{e};
        outs.insert(outs.end(), more.begin(), more.end());
        jit::Program p = program_of({"fused", free_variables(outs), outs});
        for (const jit::Group& g : p.groups)
            if (g.kind == jit::GroupKind::Matmul) return jit::cuda::fused_epilogue(p, g, {});
        return jit::cuda::FusedEpilogue{};
    };
    EXPECT_TRUE(fused(matmul(x, W) + c).fused);
    EXPECT_TRUE(fused(c + matmul(transpose(transpose(x)), W)).fused);
    // Not what the bias epilogue computes: a bias per row, an activation (cuBLASLt's ReLU turns
    // a NaN into 0), more work after it, the product also an output, float64.
    EXPECT_FALSE(fused(relu(matmul(x, W) + c)).fused);
    EXPECT_FALSE(fused(matmul(x, W) + r).fused);
    EXPECT_FALSE(fused(tanh(matmul(x, W) + c)).fused);
    EXPECT_FALSE(fused(relu(matmul(x, W) + c) * 2).fused);
    EXPECT_FALSE(fused(relu(matmul(xd, Wd) + cd)).fused);
    Expr prod = matmul(x, W);
    EXPECT_FALSE(fused(relu(prod + c), {prod}).fused);
    EXPECT_FALSE(fused(relu(prod + c), {sum(prod)}).fused);
    EXPECT_FALSE(fused(relu(prod + c), {exp(prod) * 2}).fused);
    // The MLP's training step has none: the backward pass reads the hidden layer's product
    // (its ReLU's derivative), and the logits' bias is added where the softmax reads them.
    jit::Program mlp = program_of(mlp_step(f32, 128));
    int n = 0;
    for (const jit::Group& g : mlp.groups) n += jit::cuda::fused_epilogue(mlp, g, {}).fused;
    EXPECT_EQ(n, 0) << mlp.to_string();
}

TEST(CudaLaunch, PoolSizeClasses) {
    EXPECT_EQ(jit::cuda::pool_size_class(1), 512u);
    EXPECT_EQ(jit::cuda::pool_size_class(513), 1024u);
    EXPECT_EQ(jit::cuda::pool_size_class((1u << 20) + 1), (1u << 21) * 5 / 8 + 0u);
    EXPECT_GE(jit::cuda::pool_size_class(3000000), 3000000u);
}

// ---- on a GPU -------------------------------------------------------------------------------

TEST(CudaDevice, UnavailableDeviceSaysWhy) {
    auto a = cuda_availability();
    if (a.available) GTEST_SKIP() << "a CUDA device is present";
    EXPECT_FALSE(a.reason.empty());
    try {
        Device::cuda();
        FAIL() << "expected an Error";
    } catch (const Error& e) {
        EXPECT_THAT(std::string(e.what()), HasSubstr("no CUDA device available"));
    }
}

TEST(CudaDevice, CorpusAgreesWithTheReferenceEvaluator) {
    auto avail = cuda_availability();
    if (!avail.available) GTEST_SKIP() << "no CUDA device: " << avail.reason;
    expect_corpus_agrees([](const Case& c, const std::vector<Tensor>& args) {
        jit::Program p = program_of(c);
        CompileStats st;
        auto ex = jit::cuda::make_cuda_executor(p, {.device = Device::cuda(), .name = c.name}, st);
        std::vector<Tensor> no_shared;
        return jit::cuda::run_program(*ex, p, args, no_shared, {});
    });
}

TEST(CudaDevice, Float32FunctionsWithinCudaUlpBounds) {
    auto avail = cuda_availability();
    if (!avail.available) GTEST_SKIP() << "no CUDA device: " << avail.reason;
    expect_float_functions_within_cuda_bounds({.device = Device::cuda()});
}

TEST(CudaDevice, ResultsAndSharedVariablesStayOnTheDevice) {
    auto avail = cuda_availability();
    if (!avail.available) GTEST_SKIP() << "no CUDA device: " << avail.reason;
    Expr w = shared("cuda_resident_w", Tensor::from_vector<float>({3}, {1, 2, 3}));
    auto x = vector("x", 3, f32);
    Function step = compile({x}, {w * x, sum(w)},
                            {.updates = {{w, w + x}}, .device = Device::cuda(), .name = "step"});
    Tensor one = Tensor::from_vector<float>({3}, {1, 1, 1});
    auto r = step(one);
    // Results are on the device until read; the updated value lives there too.
    ASSERT_NE(r[0].device_storage(), nullptr);
    EXPECT_NE(get_value(w).device_storage(), nullptr);
    EXPECT_FLOAT_EQ(r[0].data<float>()[2], 3.0f);
    EXPECT_DOUBLE_EQ(r[1].item(), 6.0);
    // A result passed back in is used in place; a host write is seen by the next call.
    Tensor y = r[0];
    r = step(y);
    EXPECT_DOUBLE_EQ(r[1].item(), 9.0);  // w was (2, 3, 4)
    EXPECT_FLOAT_EQ(r[0].data<float>()[0], 2.0f);
    y.data<float>()[0] = 10;  // y = (10, 2, 3) on the host now
    EXPECT_EQ(y.device_storage(), nullptr);
    r = step(y);  // w was (3, 5, 7)
    EXPECT_FLOAT_EQ(r[0].data<float>()[0], 30.0f);
    EXPECT_DOUBLE_EQ(r[1].item(), 15.0);
    Tensor wv = get_value(w);
    EXPECT_FLOAT_EQ(wv.data<float>()[0], 13.0f);
    // set_value from the host, then a failing call changes nothing.
    set_value(w, Tensor::from_vector<float>({3}, {0, 0, 0}));
    EXPECT_THROW(step(Tensor(f32, {4})), ShapeError);
    EXPECT_DOUBLE_EQ(step(one)[1].item(), 0.0);
    EXPECT_DOUBLE_EQ(get_value(w).at(1), 1.0);
}

TEST(CudaDevice, AsynchronousCallsAgreeWithTheReference) {
    auto avail = cuda_availability();
    if (!avail.available) GTEST_SKIP() << "no CUDA device: " << avail.reason;
    // A training-like loop that reads nothing until the end: each call's update is the next
    // call's input, and the pool's blocks go round while earlier calls may still run.
    Expr w = shared("cuda_async_w", Tensor::from_vector<float>({4}, {1, 2, 3, 4}));
    auto x = vector("x", 4, f32);
    Function step = compile({x}, {sum(w * x)},
                            {.updates = {{w, w * 0.5 + x}},
                             .device = Device::cuda(),
                             .asynchronous = true,
                             .name = "async_step"});
    Tensor one = Tensor::from_vector<float>({4}, {1, 1, 1, 1});
    std::vector<double> host{1, 2, 3, 4};
    Tensor last;
    for (int i = 0; i < 50; ++i) {
        last = step(one)[0];
        double dot = 0;
        for (double& v : host) dot += v, v = v * 0.5 + 1;
        if (i == 49) {
            EXPECT_NEAR(last.item(), dot, 1e-5 * std::abs(dot));
        }
    }
    Tensor wv = get_value(w);
    for (int k = 0; k < 4; ++k) EXPECT_NEAR(wv.at(k), host[static_cast<std::size_t>(k)], 1e-5);
    // One function's pending result as another's input: the second stream waits for the first.
    auto big = vector("big", 1 << 22, f32);
    Function f = compile({big}, {exp(big * 0.001)},
                         {.device = Device::cuda(), .asynchronous = true, .name = "async_f"});
    Function g = compile({big}, {big * 2 - 1},
                         {.device = Device::cuda(), .asynchronous = true, .name = "async_g"});
    Tensor in(f32, {1 << 22});
    for (std::int64_t i = 0; i < in.size(); ++i) in.data<float>()[i] = static_cast<float>(i % 1000);
    Tensor z;
    for (int i = 0; i < 5; ++i) z = g(f(in)[0])[0];
    g.synchronize();
    for (std::int64_t i : {0, 1, 999, 4000000})
        EXPECT_NEAR(z.at(i), 2 * std::exp(0.001 * static_cast<double>(i % 1000)) - 1, 1e-5);
}

#endif  // AGNESI_WITH_CUDA

}  // namespace
}  // namespace agnesi
