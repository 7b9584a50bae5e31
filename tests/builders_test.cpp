#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "agnesi/agnesi.hpp"

using namespace agnesi;
using ::testing::HasSubstr;

template <class E, class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const E& e) {
        return e.what();
    }
    return "<no error>";
}

TEST(Builders, StructurallyEqualNodesAreOneNode) {
    auto x = scalar("x");
    Expr a = sin(x * x) + exp(-x) / 3;
    Expr b = sin(x * x) + exp(-x) / 3;
    EXPECT_EQ(a, b);
    EXPECT_EQ(a.node(), b.node());
    EXPECT_NE(sin(x), cos(x));
    EXPECT_NE(scalar("x"), scalar("x", f32));
    EXPECT_EQ(a->hash(), b->hash());
}

TEST(Builders, SeparateContextsDoNotShareNodes) {
    Context c1, c2;
    auto x1 = scalar("x", f64, kNone, c1);
    auto x2 = scalar("x", f64, kNone, c2);
    EXPECT_NE(x1.node(), x2.node());
    EXPECT_EQ(x1->hash(), x2->hash());  // hashes depend on structure, not on addresses
    EXPECT_EQ((x1 + 1)->hash(), (x2 + 1)->hash());
    EXPECT_EQ(&(x1 * 2)->context(), &c1);  // a literal joins its partner's context
    EXPECT_THAT(error_of<ValueError>([&] { (void)(x1 + x2); }), HasSubstr("different contexts"));
}

TEST(Builders, WeakLiteralsTakeTheTypedOperandsDtype) {
    auto x = scalar("x", f32);
    EXPECT_EQ((x * 2).dtype(), f32);
    EXPECT_EQ((x * 0.5).dtype(), f32);
    EXPECT_EQ((x * 2).operand(1).dtype(), f32);
    EXPECT_EQ((x * 2).node(), (x * constant(2, f32)).node());
    auto n = scalar("n", i64);
    EXPECT_EQ((n + 1).dtype(), i64);
    EXPECT_EQ((n + 0.5).dtype(), f64);
    EXPECT_EQ((n / 2).dtype(), f64);
    EXPECT_EQ(sin(n).dtype(), f64);
    EXPECT_EQ((x < 1).dtype(), boolean);
    EXPECT_EQ((x + scalar("y", f64)).dtype(), f64);
    EXPECT_TRUE(Expr(2)->weak());
    EXPECT_TRUE((Expr(2) + 3)->weak());
    EXPECT_FALSE((x + 3)->weak());
}

TEST(Builders, ArithmeticOperatorsAgreeWithTheGeneralBuilder) {
    // Operators and functions take a short path for float operands of one dtype and shape; it
    // must build the node the general one does, weak literals and mixed dtypes included.
    Context ctx;
    std::vector<Expr> xs = {scalar("x", f64, kNone, ctx),
                            scalar("y", f32, kNone, ctx),
                            vector("v", 3, f32, ctx),
                            scalar("n", i64, kNone, ctx),
                            literal(Number(2), ctx),
                            literal(Number::rational(1, 3), ctx),
                            constant(2, f32, ctx),
                            scalar("b", DType::Bool, kNone, ctx),
                            literal(Number::from_double(0.5), DType::Float64, ctx),
                            Expr(3) /* a weak literal of the global context */};
    for (Op op : {Op::Add, Op::Sub, Op::Mul, Op::Div})
        for (const Expr& a : xs)
            for (const Expr& b : xs) {
                if (a.dtype() == DType::Bool || b.dtype() == DType::Bool) continue;
                Expr by_operator = op == Op::Add   ? a + b
                                   : op == Op::Sub ? a - b
                                   : op == Op::Mul ? a * b
                                                   : a / b;
                Expr general = elementwise(op, {a, b});
                EXPECT_EQ(by_operator, general) << to_string(general);
                EXPECT_EQ(by_operator->weak(), general->weak()) << to_string(general);
            }
    // Every elementwise op of one or two operands, through rebuild (the simplifier's builder).
    int checked = 0;
    for (std::size_t k = 0; k < kNumOps; ++k) {
        Op op = static_cast<Op>(k);
        const OpInfo& info = op_info(op);
        if (info.kind != OpKind::Elementwise || op == Op::Cast || info.arity > 2) continue;
        for (const Expr& a : xs)
            for (const Expr& b : xs) {
                if (info.arity == 1 && &b != &xs.front()) continue;
                std::vector<Expr> args =
                    info.arity == 1 ? std::vector<Expr>{a} : std::vector<Expr>{a, b};
                Expr general, built;
                try {
                    general = elementwise(op, args);
                } catch (const Error&) {
                    continue;  // operands this op does not take
                }
                built = rebuild(general.node(), args);
                EXPECT_EQ(built, general) << to_string(general);
                EXPECT_EQ(built->weak(), general->weak()) << to_string(general);
                ++checked;
            }
    }
    EXPECT_GT(checked, 200);
}

TEST(Builders, BroadcastingFollowsNumPy) {
    auto M = matrix("M", 3, 4);
    auto v = vector("v", 4);
    auto c = tensor("c", {3, 1});
    EXPECT_EQ((M + v).shape(), (Shape{3, 4}));
    EXPECT_EQ((c * v).shape(), (Shape{3, 4}));
    EXPECT_EQ((M + 1).shape(), (Shape{3, 4}));
    EXPECT_THAT(error_of<ShapeError>([&] { (void)(M + vector("w", 5)); }),
                HasSubstr("add: cannot broadcast shapes (3, 4) and (5,)"));
}

TEST(Builders, ReductionShapes) {
    auto X = tensor("X", {2, 3, 4});
    EXPECT_EQ(sum(X).shape(), Shape{});
    EXPECT_EQ(sum(X, {1}).shape(), (Shape{2, 4}));
    EXPECT_EQ(sum(X, {-1}, true).shape(), (Shape{2, 3, 1}));
    EXPECT_EQ(amax(X, {0, 2}).shape(), (Shape{3}));
    EXPECT_EQ(mean(tensor("I", {2, 2}, i32)).dtype(), f64);
    EXPECT_EQ(sum(tensor("B", {2}, boolean)).dtype(), i64);
    EXPECT_EQ(sum(X, {1}), sum(X, {-2}));
    EXPECT_THAT(error_of<ShapeError>([&] { (void)sum(X, {3}); }),
                HasSubstr("sum: axis 3 is out of range for shape (2, 3, 4)"));
    EXPECT_THAT(error_of<ShapeError>([&] { (void)sum(X, {1, -2}); }), HasSubstr("repeated axis"));
    EXPECT_EQ(softmax(X, 1).shape(), X.shape());
    EXPECT_EQ(logsumexp(X, {2}).shape(), (Shape{2, 3}));
    EXPECT_THAT(error_of<ShapeError>([&] { (void)softmax(scalar("s")); }),
                HasSubstr("softmax: needs at least one axis"));
}

TEST(Builders, ShapeOps) {
    auto X = tensor("X", {2, 3, 4});
    EXPECT_EQ(reshape(X, {6, -1}).shape(), (Shape{6, 4}));
    EXPECT_EQ(reshape(X, {2, 3, 4}), X);
    EXPECT_THAT(error_of<ShapeError>([&] {
                    (void)reshape(X, {5, 5});
                }),
                HasSubstr("reshape: cannot reshape (2, 3, 4) into (5, 5)"));
    EXPECT_EQ(transpose(X).shape(), (Shape{4, 3, 2}));
    EXPECT_EQ(transpose(X, {0, 2, 1}).shape(), (Shape{2, 4, 3}));
    EXPECT_EQ(transpose(X, {0, 1, 2}), X);
    EXPECT_EQ(broadcast_to(vector("v", 4), {3, 4}).shape(), (Shape{3, 4}));
    EXPECT_THAT(error_of<ShapeError>([&] {
                    (void)broadcast_to(vector("v", 4), {4, 3});
                }),
                HasSubstr("cannot broadcast shape (4,) to (4, 3)"));
    EXPECT_EQ(expand_dims(X, -1).shape(), (Shape{2, 3, 4, 1}));
    EXPECT_EQ(squeeze(tensor("S", {1, 3, 1})).shape(), (Shape{3}));
    EXPECT_THAT(error_of<ShapeError>([&] { (void)squeeze(X, {0}); }),
                HasSubstr("squeeze: axis 0 of shape (2, 3, 4) is not of size 1"));
    EXPECT_EQ(concat({X, X}, 1).shape(), (Shape{2, 6, 4}));
    EXPECT_THAT(error_of<ShapeError>([&] {
                    (void)concat({X, tensor("Y", {2, 2, 5})}, 1);
                }),
                HasSubstr("concat: shapes (2, 3, 4) and (2, 2, 5) do not fit along axis 1"));
    EXPECT_EQ(slice(X, 2, 1, 4, 2).shape(), (Shape{2, 3, 2}));
    EXPECT_EQ(slice(X, 2, -3, 100).shape(), (Shape{2, 3, 3}));
    EXPECT_EQ(slice(X, 0, 0, 2), X);
}

TEST(Builders, MatmulShapes) {
    auto A = matrix("A", 3, 4), B = matrix("B", 4, 5);
    EXPECT_EQ(matmul(A, B).shape(), (Shape{3, 5}));
    EXPECT_EQ(matmul(A, vector("v", 4)).shape(), (Shape{3}));
    EXPECT_EQ(matmul(vector("u", 3), A).shape(), (Shape{4}));
    EXPECT_EQ(matmul(tensor("T", {7, 1, 3, 4}), tensor("U", {2, 4, 5})).shape(),
              (Shape{7, 2, 3, 5}));
    EXPECT_THAT(error_of<ShapeError>([&] { (void)matmul(A, A); }),
                HasSubstr("matmul: inner dimensions differ: (3, 4) and (3, 4)"));
    EXPECT_THAT(error_of<TypeError>([&] {
                    (void)matmul(tensor("b", {2, 2}, boolean), B);
                }),
                HasSubstr("matmul: expects numeric operands, got bool(2, 2) and float64(4, 5)"));
}

TEST(Builders, SymbolicSizes) {
    Dim n = sym_dim("n");
    auto X = tensor("X", {n, 4});
    auto w = vector("w", 4);
    EXPECT_EQ((X * w).shape(), (Shape{n, 4}));
    EXPECT_EQ(sum(X, {0}).shape(), (Shape{4}));
    EXPECT_EQ(shape_string((X * w).shape()), "(n, 4)");
    EXPECT_THAT(error_of<ShapeError>([&] {
                    (void)(X + tensor("Y", {3, 4}));
                }),
                HasSubstr("cannot broadcast shapes (n, 4) and (3, 4)"));
    EXPECT_EQ(reshape(X, {4, n}).shape(), (Shape{4, n}));
}

TEST(Builders, CastOfALiteralTypesIt) {
    EXPECT_EQ(cast(Expr(2), f32), constant(2, f32));
    auto x = scalar("x");
    EXPECT_EQ(cast(x, f64), x);
    EXPECT_EQ(cast(x, f32).op(), Op::Cast);
    EXPECT_EQ(cast(Expr(2.5), i32).op(), Op::Cast);  // not exact: stays a cast
}

TEST(Builders, ConcurrentInterningGivesOneNodePerStructure) {
    Context ctx;
    constexpr int kThreads = 4, kTerms = 2000;
    std::vector<std::vector<const Node*>> seen(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&, t] {
            auto x = scalar("x", f64, kNone, ctx);
            for (int i = 0; i < kTerms; ++i) seen[t].push_back(sin(x * i + 1).node());
        });
    for (auto& th : threads) th.join();
    for (int t = 1; t < kThreads; ++t) EXPECT_EQ(seen[t], seen[0]);
    // x, then per i: literal i, x*i, literal 1 (shared), x*i+1, sin(...); i=0,1 share literals.
    EXPECT_LT(ctx.size(), static_cast<std::size_t>(5 * kTerms + 10));
}

TEST(Builders, StructuralOrderIsDeterministic) {
    auto x = scalar("x"), y = scalar("y");
    EXPECT_LT(structural_compare(Expr(2).node(), x.node()), 0);
    EXPECT_LT(structural_compare(x.node(), y.node()), 0);
    EXPECT_LT(structural_compare(y.node(), sin(x).node()), 0);
    EXPECT_EQ(structural_compare(sin(x).node(), sin(x).node()), 0);
    EXPECT_GT(structural_compare(sin(y).node(), sin(x).node()), 0);
}
