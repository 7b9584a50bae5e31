// The agnesi command, run as a user runs it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#ifdef AGNESI_WITH_CUDA
#include "jit/cuda/nvrtc.hpp"
#endif

using ::testing::HasSubstr;

namespace {
struct Result {
    int status;
    std::string out;  // stdout and stderr together
    std::string err;
};

// Runs the CLI with the given arguments (each single-quoted for the shell).
Result run(std::initializer_list<std::string> args) {
    std::string cmd = AGNESI_CLI_PATH;
    for (const std::string& a : args) {
        std::string q = "'";
        for (char c : a) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
        cmd += " " + q + "'";
    }
    // One stderr file per test: tests run in parallel.
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string errfile = ::testing::TempDir() + "agnesi_cli_err_" + info->name() + ".txt";
    cmd += " 2>" + errfile;
    Result r{};
    FILE* p = popen(cmd.c_str(), "r");
    std::array<char, 4096> buf{};
    while (std::size_t n = fread(buf.data(), 1, buf.size(), p)) r.out.append(buf.data(), n);
    int status = pclose(p);
    r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    FILE* f = fopen(errfile.c_str(), "r");
    while (std::size_t n = fread(buf.data(), 1, buf.size(), f)) r.err.append(buf.data(), n);
    fclose(f);
    return r;
}
}  // namespace

TEST(Cli, Eval) {
    auto r = run({"eval", "sin(x)^2 + cos(x)^2", "--at", "x=0.5,y=1.25"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "1\n");
    EXPECT_EQ(run({"eval", "x/3", "--at", "x=1"}).out, "0.33333333333333331\n");
    EXPECT_EQ(run({"eval", "log(0)"}).out, "-inf\n");
    EXPECT_EQ(run({"eval", "sqrt(-1)"}).out, "nan\n");
    EXPECT_EQ(run({"eval", "1/0"}).out, "inf\n");
    EXPECT_EQ(run({"eval", "2 < 3"}).out, "1\n");
    EXPECT_EQ(run({"eval", "(x > 1) + (x <= 1)", "--at", "x=3"}).out, "1\n");
}

TEST(Cli, ExpressionStartingWithMinusIsNotAnOption) {
    auto r = run({"eval", "-sin(x)", "--at", "x=0"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "-0\n");
    EXPECT_EQ(run({"print", "--format"}).out, "--format\n");
}

TEST(Cli, HelpAfterACommand) {
    for (const char* command : {"eval", "emit", "grad"}) {
        auto r = run({command, "--help"});
        EXPECT_EQ(r.status, 0) << r.err;
        EXPECT_THAT(r.out, HasSubstr("usage: agnesi COMMAND"));
        EXPECT_THAT(r.out, HasSubstr("--target"));
    }
    EXPECT_EQ(run({"eval", "-h", "--at", "h=2"}).out, "-2\n");  // an expression, not help
}

TEST(Cli, EvalTensors) {
    auto r = run({"eval", "sum(X, 1)", "--shape", "X=2x3", "--at", "X=0.5"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "[1.5, 1.5]\n");
}

TEST(Cli, PrintFormats) {
    EXPECT_EQ(run({"print", "sin(x)^2 + log1p(y)"}).out, "sin(x)^2 + log1p(y)\n");
    EXPECT_EQ(run({"print", "x/(y+1)", "--format", "latex"}).out, "\\frac{x}{y + 1}\n");
    EXPECT_THAT(run({"print", "x*x", "--format", "dot"}).out, HasSubstr("digraph"));
    EXPECT_EQ(run({"print", "sin(x*x) + exp(x*x)", "--format", "debug"}).out,
              "$1 = x*x\nsin($1) + exp($1)\n");
    EXPECT_EQ(
        run({"print", "matmul(A, B)", "--shape", "A=2x3,B=3x4", "--format", "debug", "--types"})
            .out,
        "matmul(A, B)  : float64 (2, 4)\n");
}

TEST(Cli, Simplify) {
    EXPECT_EQ(run({"simplify", "1/3 + 1/6"}).out, "0.5\n");
    EXPECT_EQ(run({"simplify", "x*(2^10)"}).out, "1024*x\n");
    EXPECT_EQ(run({"simplify", "log(1 + exp(x)) + x*y/x"}).out, "y + softplus(x)\n");
}

TEST(Cli, BadInputIsOneClearErrorAndNonZero) {
    auto r = run({"eval", "sin(x", "--at", "x=1"});
    EXPECT_EQ(r.status, 1);
    EXPECT_EQ(r.err,
              "agnesi: error: expected ')' but found end of input at column 6\nsin(x\n     ^\n");
    r = run({"eval", "x + y", "--at", "x=1"});
    EXPECT_EQ(r.status, 1);
    EXPECT_THAT(r.err, HasSubstr("no value for variable 'y'"));
    r = run({"eval", "frob(x)"});
    EXPECT_THAT(r.err, HasSubstr("unknown function 'frob'"));
    r = run({"eval", "X + w", "--shape", "X=3x4,w=5"});
    EXPECT_EQ(r.status, 1);
    EXPECT_THAT(r.err, HasSubstr("cannot broadcast shapes (3, 4) and (5,)"));
    r = run({"frobnicate", "x"});
    EXPECT_EQ(r.status, 2);
    EXPECT_THAT(r.err, HasSubstr("unknown command 'frobnicate'"));
    r = run({"eval"});
    EXPECT_EQ(r.status, 2);
    r = run({"print", "x", "--format", "nope"});
    EXPECT_EQ(r.status, 2);
    r = run({"eval", "x", "--at", "x=abc"});
    EXPECT_EQ(r.status, 2);
    EXPECT_THAT(r.err, HasSubstr("not a number"));
}

// ---- grad ------------------------------------------------------------------------------------

namespace {
std::vector<std::string> lines(const std::string& s) {
    std::vector<std::string> out;
    std::size_t start = 0;
    for (std::size_t end; (end = s.find('\n', start)) != std::string::npos; start = end + 1)
        out.push_back(s.substr(start, end - start));
    return out;
}
// Evaluates a printed expression with the CLI, as a user would paste it.
double eval_printed(const std::string& expr, const std::string& at) {
    auto r = run({"eval", expr, "--at", at});
    EXPECT_EQ(r.status, 0) << expr << "\n" << r.err;
    return std::stod(r.out);
}
}  // namespace

TEST(Cli, GradPrintsOneParseableLinePerVariable) {
    auto r = run({"grad", "sin(x^2)", "--wrt", "x"});
    EXPECT_EQ(r.status, 0) << r.err;
    ASSERT_EQ(lines(r.out).size(), 1u) << r.out;
    EXPECT_NEAR(eval_printed(lines(r.out)[0], "x=0.5"), 2 * 0.5 * std::cos(0.25), 1e-15);

    r = run({"grad", "x*y + sin(x)", "--wrt", "y,x,z"});
    EXPECT_EQ(r.status, 0) << r.err;
    auto ls = lines(r.out);
    ASSERT_EQ(ls.size(), 3u) << r.out;
    EXPECT_NEAR(eval_printed(ls[0], "x=0.5,y=2"), 0.5, 1e-15);
    EXPECT_NEAR(eval_printed(ls[1], "x=0.5,y=2"), 2 + std::cos(0.5), 1e-15);
    EXPECT_EQ(eval_printed(ls[2], "x=0.5,y=2"), 0);  // z does not occur
}

TEST(Cli, GradOfTensors) {
    auto r = run({"grad", "sum(X*w)", "--shape", "X=2x3,w=3", "--wrt", "w,X"});
    EXPECT_EQ(r.status, 0) << r.err;
    auto ls = lines(r.out);
    ASSERT_EQ(ls.size(), 2u) << r.out;
    auto e = run({"eval", ls[0], "--shape", "X=2x3,w=3", "--at", "X=0.5,w=2"});
    EXPECT_EQ(e.out, "[1, 1, 1]\n") << ls[0] << e.err;
    e = run({"eval", ls[1], "--shape", "X=2x3,w=3", "--at", "X=0.5,w=2"});
    EXPECT_EQ(e.out, "[[2, 2, 2], [2, 2, 2]]\n") << ls[1] << e.err;
}

TEST(Cli, GradFormats) {
    auto r = run({"grad", "sin(x*x) + exp(x*x)", "--wrt", "x", "--format", "stats"});
    EXPECT_EQ(r.status, 0) << r.err;
    ASSERT_EQ(lines(r.out).size(), 1u);
    int nodes = std::stoi(lines(r.out)[0]);
    EXPECT_GT(nodes, 3);
    EXPECT_LT(nodes, 20);
    // debug names the shared x*x (x^2 once simplified) once and refers to it by name.
    r = run({"grad", "sin(x*x) + exp(x*x)", "--wrt", "x", "--format", "debug"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_THAT(r.out, HasSubstr("$1 = x"));
    EXPECT_THAT(lines(r.out).back(), HasSubstr("($1)"));
    EXPECT_THAT(run({"grad", "x^3", "--wrt", "x", "--format", "latex"}).out, HasSubstr("x^{2}"));
    EXPECT_THAT(run({"grad", "x^3", "--wrt", "x", "--format", "dot"}).out, HasSubstr("digraph"));
    EXPECT_EQ(run({"grad", "x^3", "--wrt", "x", "--format", "nope"}).status, 2);
}

TEST(Cli, GradErrors) {
    auto r = run({"grad", "x*n", "--shape", "n=:int64", "--wrt", "n"});
    EXPECT_EQ(r.status, 1);
    EXPECT_THAT(r.err, HasSubstr("cannot differentiate with respect to 'n' of dtype int64"));
    r = run({"grad", "X*2", "--shape", "X=2x2", "--wrt", "X"});
    EXPECT_EQ(r.status, 1);
    EXPECT_THAT(r.err, HasSubstr("must be a scalar, got shape (2, 2)"));
    r = run({"grad", "x"});
    EXPECT_EQ(r.status, 2);
    EXPECT_THAT(r.err, HasSubstr("--wrt"));
}

TEST(Cli, GradIsReadableAfterSimplify) {
    EXPECT_EQ(run({"grad", "sin(x^2)", "--wrt", "x"}).out, "2*x*cos(x^2)\n");
}

TEST(Cli, EmitCudaPrintsOneKernelForAnElementwiseExpression) {
    auto r = run({"emit", "sigmoid(x) * y + exp(x)", "--target", "cuda"});
    EXPECT_EQ(r.status, 0) << r.err;
    std::size_t kernels = 0;
    for (std::size_t p = r.out.find("__global__"); p != std::string::npos;
         p = r.out.find("__global__", p + 1))
        ++kernels;
    EXPECT_EQ(kernels, 1u) << r.out;
    EXPECT_THAT(r.out, HasSubstr("agnesi_sigmoid("));
    EXPECT_THAT(r.out, HasSubstr("extern \"C\" __global__"));
}

TEST(Cli, EmitCudaRowSoftmaxWithShapes) {
    auto r = run({"emit", "softmax(z)", "--shape", "z=64x128:float32", "--target", "cuda"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_THAT(r.out, HasSubstr("row-normalize"));
    EXPECT_EQ(r.out.find("__global__"), r.out.rfind("__global__")) << r.out;
}

TEST(Cli, EmitStatsReportsEachKernelsRegistersAndSpills) {
#ifdef AGNESI_WITH_CUDA
    if (!agnesi::jit::cuda::nvrtc_status().available)
        GTEST_SKIP() << agnesi::jit::cuda::nvrtc_status().reason;
    auto r = run({"emit", "softmax(z, 1)", "--shape", "z=4096x128:float32", "--format", "stats",
                  "--arch", "sm_80"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_THAT(r.out, HasSubstr("CUDA kernels for sm_80"));
    EXPECT_THAT(r.out, HasSubstr("registers"));
    // One line per variant: the kernel's name, its kind, the variant, then the figures.
    for (const char* variant : {"general", "dense"}) {
        std::size_t at = r.out.find(std::string("row-normalize  ") + variant);
        ASSERT_NE(at, std::string::npos) << r.out;
        EXPECT_EQ(r.out.rfind("agnesi_f_g0", at), r.out.rfind('\n', at) + 1) << r.out;
    }
#else
    GTEST_SKIP() << "this build has no CUDA backend";
#endif
}

TEST(Cli, EmitErrors) {
    auto r = run({"emit", "x + 1", "--target", "gpu"});
    EXPECT_EQ(r.status, 2);
    EXPECT_THAT(r.err, HasSubstr("--target: expected cuda or cpu, got 'gpu'"));
    r = run({"emit", "x +", "--target", "cuda"});
    EXPECT_EQ(r.status, 1);
    r = run({"emit", "x + 1", "--format", "stats", "--target", "cpu"});
    EXPECT_EQ(r.status, 2);
    EXPECT_THAT(r.err, HasSubstr("--format stats: reports CUDA kernels (--target cuda)"));
    r = run({"emit", "x + 1", "--format", "stats", "--arch", "90"});
    EXPECT_EQ(r.status, 2);
    EXPECT_THAT(r.err, HasSubstr("--arch: expected sm_NN (sm_80, sm_90, ...), got '90'"));
    r = run({"emit", "x + 1", "--format", "latex"});
    EXPECT_EQ(r.status, 2);
    EXPECT_THAT(r.err, HasSubstr("--format: emit prints text or stats, not 'latex'"));
}
