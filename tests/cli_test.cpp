// The agnesi command, run as a user runs it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <string>

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
    EXPECT_EQ(run({"simplify", "x*(2^10)"}).out, "x*1024\n");
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
