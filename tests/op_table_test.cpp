#include <gtest/gtest.h>

#include <fstream>

#include "agnesi/agnesi.hpp"

using namespace agnesi;

TEST(OpTable, CompleteAndInOpOrder) {
    for (std::size_t i = 0; i < kNumOps; ++i) {
        const OpInfo& info = op_info(static_cast<Op>(i));
        EXPECT_EQ(static_cast<std::size_t>(info.op), i) << info.name;
        EXPECT_FALSE(info.name.empty()) << i;
        if (info.kind != OpKind::Leaf) {
            EXPECT_EQ(op_from_name(info.name), info.op) << info.name;
            EXPECT_FALSE(info.latex.empty()) << info.name;
            EXPECT_NE(info.vjp, nullptr) << info.name << " has no derivative rule";
        }
        if (info.kind == OpKind::Elementwise && info.op != Op::Cast) {
            EXPECT_NE(info.type, TypeRule::None) << info.name;
            EXPECT_FALSE(info.c_expr.empty()) << info.name;
            bool has_eval = info.eval.u64 || info.eval.b64 || info.eval.ui || info.eval.bi ||
                            info.op == Op::Where;
            EXPECT_TRUE(has_eval) << info.name;
        }
    }
}

TEST(OpTable, UnknownNames) {
    EXPECT_FALSE(op_from_name("nosuch"));
    EXPECT_FALSE(op_from_name("constant"));
}

TEST(OpTable, EveryOpIsDocumented) {
    std::ifstream f(AGNESI_SOURCE_DIR "/docs/ops.md");
    ASSERT_TRUE(f) << "docs/ops.md not found";
    std::string doc((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    for (std::size_t i = 0; i < kNumOps; ++i) {
        std::string name = "`" + std::string(op_info(static_cast<Op>(i)).name) + "`";
        EXPECT_NE(doc.find(name), std::string::npos) << name << " is missing from docs/ops.md";
    }
}
