// The parser: precedence climbing over a token list, with a nesting limit so that no input, however
// deep, can exhaust the stack (deep nesting is an error, not a crash).
#include "agnesi/parse.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <unordered_map>

#include "agnesi/error.hpp"

namespace agnesi {

namespace {

constexpr int kMaxDepth = 1000;

enum class Tok { Number, Ident, Quoted, Symbol, End };

struct Token {
    Tok kind;
    std::string text;
    std::size_t col;  // 1-based
};

// How an operand came to be: literal rules apply only to numbers written directly.
enum class Lit { None, Number, Signed };

struct Operand {
    Expr e;
    Lit lit = Lit::None;
    std::size_t col = 0;
};

struct Arg {
    Operand value;        // empty when `raw` is set and the value was not needed
    std::string raw;      // a lone identifier, kept as text (dtype names, symbolic sizes)
    std::string keyword;  // name=value
    std::size_t col = 0;
};

class Parser {
  public:
    Parser(std::string_view text, const ParseOptions& opts)
        : text_(text), ctx_(opts.context ? *opts.context : Context::global()) {
        for (const Expr& v : opts.variables) {
            if (!v || !v->is_variable())
                throw ValueError("parse: a declared variable is not a variable");
            vars_[v->name()] = v;
        }
        lex();
    }

    Expr run() {
        if (toks_[pos_].kind == Tok::End) fail("empty expression", toks_[pos_].col);
        Operand e = expr(0);
        if (toks_[pos_].kind != Tok::End) {
            const Token& t = toks_[pos_];
            fail(t.text == ")" ? "unmatched ')'" : fmt::format("unexpected '{}'", t.text), t.col);
        }
        return e.e;
    }

  private:
    [[noreturn]] void fail(const std::string& msg, std::size_t col) const {
        throw ParseError(msg, std::string(text_), col);
    }

    void lex() {
        std::size_t i = 0;
        const std::size_t n = text_.size();
        auto is_ident_start = [](char c) {
            return std::isalpha(static_cast<unsigned char>(c)) || c == '_';
        };
        while (i < n) {
            char c = text_[i];
            std::size_t col = i + 1;
            if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
                ++i;
                continue;
            }
            if (std::isdigit(static_cast<unsigned char>(c)) ||
                (c == '.' && i + 1 < n && std::isdigit(static_cast<unsigned char>(text_[i + 1])))) {
                std::size_t j = i;
                while (j < n && std::isdigit(static_cast<unsigned char>(text_[j]))) ++j;
                if (j < n && text_[j] == '.') {
                    ++j;
                    while (j < n && std::isdigit(static_cast<unsigned char>(text_[j]))) ++j;
                }
                if (j < n && (text_[j] == 'e' || text_[j] == 'E')) {
                    std::size_t k = j + 1;
                    if (k < n && (text_[k] == '+' || text_[k] == '-')) ++k;
                    if (k < n && std::isdigit(static_cast<unsigned char>(text_[k]))) {
                        while (k < n && std::isdigit(static_cast<unsigned char>(text_[k]))) ++k;
                        j = k;
                    }
                }
                if (j < n && (is_ident_start(text_[j]) || text_[j] == '.'))
                    fail(fmt::format("malformed number '{}'", text_.substr(i, j - i + 1)), col);
                toks_.push_back({Tok::Number, std::string(text_.substr(i, j - i)), col});
                i = j;
                continue;
            }
            if (is_ident_start(c)) {
                std::size_t j = i;
                while (j < n &&
                       (std::isalnum(static_cast<unsigned char>(text_[j])) || text_[j] == '_'))
                    ++j;
                toks_.push_back({Tok::Ident, std::string(text_.substr(i, j - i)), col});
                i = j;
                continue;
            }
            if (c == '`') {
                std::string name;
                std::size_t j = i + 1;
                for (;; ++j) {
                    if (j >= n) fail("unterminated quoted name", col);
                    if (text_[j] == '`') {
                        if (j + 1 < n && text_[j + 1] == '`') {
                            name += '`';
                            ++j;
                            continue;
                        }
                        break;
                    }
                    name += text_[j];
                }
                if (name.empty()) fail("empty quoted name", col);
                toks_.push_back({Tok::Quoted, std::move(name), col});
                i = j + 1;
                continue;
            }
            static const std::string_view two[] = {"**", "<=", ">=", "==", "!="};
            bool matched = false;
            for (auto s : two)
                if (text_.substr(i, 2) == s) {
                    toks_.push_back({Tok::Symbol, std::string(s), col});
                    i += 2;
                    matched = true;
                    break;
                }
            if (matched) continue;
            if (std::string_view("+-*/^(),<>=").find(c) != std::string_view::npos) {
                toks_.push_back({Tok::Symbol, std::string(1, c), col});
                ++i;
                continue;
            }
            if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f)
                fail(fmt::format("unexpected byte 0x{:02x}", static_cast<unsigned char>(c)), col);
            fail(fmt::format("unexpected character '{}'", c), col);
        }
        toks_.push_back({Tok::End, "end of input", n + 1});
    }

    const Token& peek() const { return toks_[pos_]; }
    bool at_symbol(std::string_view s) const {
        return toks_[pos_].kind == Tok::Symbol && toks_[pos_].text == s;
    }
    void expect(std::string_view s) {
        if (!at_symbol(s)) {
            const Token& t = peek();
            fail(fmt::format("expected '{}' but found {}", s,
                             t.kind == Tok::End ? "end of input" : "'" + t.text + "'"),
                 t.col);
        }
        ++pos_;
    }

    struct DepthGuard {
        Parser& p;
        DepthGuard(Parser& parser, std::size_t col) : p(parser) {
            if (++p.depth_ > kMaxDepth)
                p.fail(fmt::format("expression nested deeper than {} levels", kMaxDepth), col);
        }
        ~DepthGuard() { --p.depth_; }
    };

    // Runs a builder; a shape or type error gets the column of the operator that built it.
    template <class F>
    Expr build(std::size_t col, F&& f) {
        try {
            return f();
        } catch (const ShapeError& e) {
            throw ShapeError(fmt::format("{} (column {})", e.what(), col));
        } catch (const TypeError& e) {
            throw TypeError(fmt::format("{} (column {})", e.what(), col));
        } catch (const ParseError&) {
            throw;
        } catch (const ValueError& e) {
            throw ValueError(fmt::format("{} (column {})", e.what(), col));
        }
    }

    static int binary_prec(const Token& t) {
        if (t.kind != Tok::Symbol) return -1;
        const std::string& s = t.text;
        if (s == "<" || s == "<=" || s == ">" || s == ">=" || s == "==" || s == "!=") return 1;
        if (s == "+" || s == "-") return 2;
        if (s == "*" || s == "/") return 3;
        return -1;
    }

    Operand expr(int min_prec) {
        Operand lhs = unary();
        bool compared = false;
        for (;;) {
            const Token& t = peek();
            int p = binary_prec(t);
            if (p < 0 || p < min_prec) break;
            if (p == 1 && compared) fail("comparisons do not chain; use parentheses", t.col);
            std::string op = t.text;
            std::size_t col = t.col;
            ++pos_;
            Operand rhs = expr(p + 1);
            lhs = combine(op, lhs, rhs, col);
            compared = p == 1;
        }
        return lhs;
    }

    Operand combine(const std::string& op, const Operand& a, const Operand& b, std::size_t col) {
        if (op == "/" && a.lit != Lit::None && b.lit == Lit::Number && a.e->is_constant() &&
            b.e->is_constant() && a.e->value().is_integer() && b.e->value().is_integer() &&
            !b.e->value().is_zero()) {
            // A bare integer over a bare integer is a rational literal: 1/3.
            auto q = exact_div(a.e->value(), b.e->value());
            if (q) return {literal(*q, f64, ctx_), Lit::None, a.col};
        }
        Expr r = build(col, [&]() -> Expr {
            if (op == "+") return a.e + b.e;
            if (op == "-") return a.e - b.e;
            if (op == "*") return a.e * b.e;
            if (op == "/") return a.e / b.e;
            if (op == "<") return a.e < b.e;
            if (op == "<=") return a.e <= b.e;
            if (op == ">") return a.e > b.e;
            if (op == ">=") return a.e >= b.e;
            if (op == "==") return eq(a.e, b.e);
            return ne(a.e, b.e);
        });
        return {r, Lit::None, a.col};
    }

    Operand unary() {
        std::vector<std::size_t> minus;
        while (at_symbol("-") || at_symbol("+")) {
            if (peek().text == "-") minus.push_back(peek().col);
            ++pos_;
            if (minus.size() > static_cast<std::size_t>(kMaxDepth))
                fail("too many signs in a row", peek().col);
        }
        Operand x = power();
        for (std::size_t k = minus.size(); k-- > 0;) {
            if (x.lit == Lit::Number && x.e->is_constant() &&
                x.e->value().kind() != Number::Kind::NaN &&
                x.e->value().kind() != Number::Kind::Pi && x.e->value().kind() != Number::Kind::E) {
                // -2 written directly is the literal -2, not a negation.
                x = {literal(-x.e->value(), x.e.dtype(), ctx_), Lit::Signed, minus[k]};
            } else {
                Expr e = x.e;
                x = {build(minus[k], [&] { return -e; }), Lit::None, minus[k]};
            }
        }
        return x;
    }

    Operand power() {
        Operand base = atom();
        if (at_symbol("^") || at_symbol("**")) {
            std::size_t col = peek().col;
            ++pos_;
            DepthGuard guard(*this, col);
            Operand ex = unary();
            return {build(col, [&] { return pow(base.e, ex.e); }), Lit::None, base.col};
        }
        return base;
    }

    Expr name_value(const std::string& name, std::size_t col, bool quoted) {
        if (!quoted) {
            if (name == "pi") return literal(Number::pi(), ctx_);
            if (name == "e") return literal(Number::e(), ctx_);
            if (name == "inf") return literal(Number::inf(), ctx_);
            if (name == "nan") return literal(Number::nan(), ctx_);
        }
        if (auto it = vars_.find(name); it != vars_.end()) return it->second;
        return build(col, [&] { return scalar(name, f64, kNone, ctx_); });
    }

    Operand atom() {
        const Token t = peek();
        switch (t.kind) {
            case Tok::Number: {
                ++pos_;
                auto v = Number::from_decimal(t.text);
                if (!v) fail(fmt::format("malformed number '{}'", t.text), t.col);
                // 2 is an int64 literal, 2.0 and 2e0 are float64 literals.
                bool floating = t.text.find_first_of(".eE") != std::string::npos;
                return {floating ? literal(*v, f64, ctx_) : literal(*v, ctx_), Lit::Number, t.col};
            }
            case Tok::Quoted: ++pos_; return {name_value(t.text, t.col, true), Lit::None, t.col};
            case Tok::Ident: {
                ++pos_;
                if (at_symbol("(")) return {call(t), Lit::None, t.col};
                Expr v = name_value(t.text, t.col, false);
                bool number_like = t.text == "inf";
                return {v, number_like ? Lit::Number : Lit::None, t.col};
            }
            case Tok::Symbol:
                if (t.text == "(") {
                    ++pos_;
                    DepthGuard guard(*this, t.col);
                    Operand inner = expr(0);
                    expect(")");
                    return {inner.e, Lit::None, t.col};
                }
                fail(fmt::format("expected an operand but found '{}'", t.text), t.col);
            case Tok::End: fail("unexpected end of input", t.col);
        }
        detail::unreachable("parser atom");
    }

    std::vector<Arg> args(const Token& fn) {
        DepthGuard guard(*this, fn.col);
        expect("(");
        std::vector<Arg> out;
        if (at_symbol(")")) {
            ++pos_;
            return out;
        }
        for (;;) {
            Arg a;
            a.col = peek().col;
            const Token& t = peek();
            const Token& next = toks_[pos_ + 1];
            bool is_name = t.kind == Tok::Ident;
            if (is_name && next.kind == Tok::Symbol && next.text == "=") {
                a.keyword = t.text;
                pos_ += 2;
                a.col = peek().col;
            }
            const Token& v = peek();
            const Token& after = toks_[pos_ + 1];
            if (v.kind == Tok::Ident && after.kind == Tok::Symbol &&
                (after.text == "," || after.text == ")")) {
                a.raw = v.text;  // resolved when the function says what it wants
                ++pos_;
            } else {
                a.value = expr(0);
            }
            out.push_back(std::move(a));
            if (at_symbol(",")) {
                ++pos_;
                continue;
            }
            expect(")");
            return out;
        }
    }

    Expr value_of(Arg& a) {
        if (!a.value.e) a.value = {name_value(a.raw, a.col, false), Lit::None, a.col};
        return a.value.e;
    }

    std::int64_t int_of(Arg& a, const std::string& fn) {
        if (!a.raw.empty())
            fail(fmt::format("{}: expected an integer, found '{}'", fn, a.raw), a.col);
        const Node* n = a.value.e.node();
        if (a.value.lit == Lit::None || !n->is_constant() || !n->value().to_int64())
            fail(fmt::format("{}: expected an integer", fn), a.col);
        return *n->value().to_int64();
    }

    Dim dim_of(Arg& a, const std::string& fn) {
        if (!a.raw.empty()) return sym_dim(a.raw);
        auto d = int_of(a, fn);
        if (d < -1) fail(fmt::format("{}: a size cannot be {}", fn, d), a.col);
        return d;
    }

    bool bool_of(Arg& a, const std::string& fn) {
        if (a.raw == "true") return true;
        if (a.raw == "false") return false;
        auto v = int_of(a, fn);
        if (v != 0 && v != 1) fail(fmt::format("{}: expected true or false", fn), a.col);
        return v == 1;
    }

    Expr call(const Token& fn) {
        const std::string& name = fn.text;
        std::vector<Arg> as = args(fn);
        auto positional = [&]() {
            std::vector<Arg*> p;
            for (Arg& a : as)
                if (a.keyword.empty()) p.push_back(&a);
            return p;
        };
        auto keyword = [&](const std::string& k) -> Arg* {
            for (Arg& a : as)
                if (a.keyword == k) return &a;
            return nullptr;
        };
        auto only_keywords = [&](std::initializer_list<std::string_view> allowed) {
            for (Arg& a : as)
                if (!a.keyword.empty() && std::find(allowed.begin(), allowed.end(),
                                                    std::string_view(a.keyword)) == allowed.end())
                    fail(fmt::format("{}: unknown argument '{}'", name, a.keyword), a.col);
        };
        auto count = [&](std::size_t lo, std::size_t hi) {
            auto p = positional();
            if (p.size() < lo || p.size() > hi) {
                std::string want = lo == hi         ? std::to_string(lo)
                                   : hi == SIZE_MAX ? fmt::format("at least {}", lo)
                                                    : fmt::format("{} to {}", lo, hi);
                fail(fmt::format("{}: takes {} argument{}, got {}", name, want,
                                 (lo == 1 && hi == 1) ? "" : "s", p.size()),
                     fn.col);
            }
            return p;
        };

        if (name == "pow") {
            only_keywords({});
            auto p = count(2, 2);
            return build(fn.col, [&] { return pow(value_of(*p[0]), value_of(*p[1])); });
        }
        if (name == "cast") {
            only_keywords({});
            auto p = count(2, 2);
            auto t = parse_dtype(p[1]->raw);
            if (!t)
                fail("cast: expected a dtype (float32, float64, int32, int64, bool)", p[1]->col);
            return build(fn.col, [&] { return cast(value_of(*p[0]), *t); });
        }
        if (name == "eye") {
            only_keywords({});
            auto p = count(1, 2);
            std::int64_t n = int_of(*p[0], name);
            DType t = DType::Float64;
            if (p.size() == 2) {
                auto d = parse_dtype(p[1]->raw);
                if (!d) fail("eye: expected a dtype (float32, float64, int32, int64)", p[1]->col);
                t = *d;
            }
            return build(fn.col, [&] { return eye(n, t, ctx_); });
        }
        if (name == "cross_entropy") {
            only_keywords({"axis"});
            auto p = count(2, 3);
            std::int64_t axis = p.size() == 3 ? int_of(*p[2], name) : -1;
            if (Arg* k = keyword("axis")) axis = int_of(*k, name);
            return build(fn.col,
                         [&] { return cross_entropy(value_of(*p[0]), value_of(*p[1]), axis); });
        }
        auto op = op_from_name(name);
        if (!op) fail(fmt::format("unknown function '{}'", name), fn.col);
        const OpInfo& info = op_info(*op);
        switch (info.kind) {
            case OpKind::Elementwise: {
                only_keywords({});
                if (*op == Op::Cast) break;
                auto p = count(static_cast<std::size_t>(info.arity),
                               static_cast<std::size_t>(info.arity));
                std::vector<Expr> xs;
                for (Arg* a : p) xs.push_back(value_of(*a));
                return build(fn.col, [&] { return elementwise(*op, xs); });
            }
            case OpKind::Reduction: {
                only_keywords({"keepdims"});
                auto p = count(1, SIZE_MAX);
                Axes axes;
                for (std::size_t i = 1; i < p.size(); ++i) axes.push_back(int_of(*p[i], name));
                bool keep = false;
                if (Arg* k = keyword("keepdims")) keep = bool_of(*k, name);
                Expr x = value_of(*p[0]);
                // sum(x) is over all axes; for a scalar that is no axes at all.
                return build(fn.col, [&] { return reduce(*op, x, axes, keep); });
            }
            case OpKind::AxisNormalize: {
                only_keywords({"axis"});
                auto p = count(1, 2);
                std::int64_t axis = p.size() == 2 ? int_of(*p[1], name) : -1;
                if (Arg* k = keyword("axis")) axis = int_of(*k, name);
                Expr x = value_of(*p[0]);
                return build(fn.col, [&] {
                    return *op == Op::Softmax ? softmax(x, axis) : log_softmax(x, axis);
                });
            }
            case OpKind::Matmul: {
                only_keywords({});
                auto p = count(2, 2);
                return build(fn.col, [&] { return matmul(value_of(*p[0]), value_of(*p[1])); });
            }
            case OpKind::Shape: return shape_call(*op, name, fn, keyword, only_keywords, count);
            case OpKind::Leaf: break;
        }
        fail(fmt::format("unknown function '{}'", name), fn.col);
    }

    template <class K, class O, class C>
    Expr shape_call(Op op, const std::string& name, const Token& fn, K keyword, O only_keywords,
                    C count) {
        switch (op) {
            case Op::Reshape:
            case Op::BroadcastTo: {
                only_keywords({});
                auto p = count(1, SIZE_MAX);
                Shape s;
                for (std::size_t i = 1; i < p.size(); ++i) s.push_back(dim_of(*p[i], name));
                Expr x = value_of(*p[0]);
                return build(
                    fn.col, [&] { return op == Op::Reshape ? reshape(x, s) : broadcast_to(x, s); });
            }
            case Op::Transpose:
            case Op::Squeeze: {
                only_keywords({});
                auto p = count(1, SIZE_MAX);
                Axes ax;
                for (std::size_t i = 1; i < p.size(); ++i) ax.push_back(int_of(*p[i], name));
                Expr x = value_of(*p[0]);
                return build(fn.col, [&] {
                    return op == Op::Transpose ? transpose(x, ax) : squeeze(x, ax);
                });
            }
            case Op::ExpandDims: {
                only_keywords({"axis"});
                auto p = count(1, 2);
                std::int64_t axis = p.size() == 2 ? int_of(*p[1], name) : 0;
                if (Arg* k = keyword("axis")) axis = int_of(*k, name);
                Expr x = value_of(*p[0]);
                return build(fn.col, [&] { return expand_dims(x, axis); });
            }
            case Op::Concat: {
                only_keywords({"axis"});
                auto p = count(1, SIZE_MAX);
                std::int64_t axis = 0;
                if (Arg* k = keyword("axis")) axis = int_of(*k, name);
                std::vector<Expr> xs;
                for (Arg* a : p) xs.push_back(value_of(*a));
                return build(fn.col, [&] { return concat(xs, axis); });
            }
            case Op::Slice: {
                only_keywords({});
                auto p = count(4, 5);
                std::int64_t axis = int_of(*p[1], name), start = int_of(*p[2], name),
                             stop = int_of(*p[3], name);
                std::int64_t step = p.size() == 5 ? int_of(*p[4], name) : 1;
                Expr x = value_of(*p[0]);
                return build(fn.col, [&] { return slice(x, axis, start, stop, step); });
            }
            default: break;
        }
        fail(fmt::format("unknown function '{}'", name), fn.col);
    }

    std::string_view text_;
    Context& ctx_;
    std::unordered_map<std::string, Expr> vars_;
    std::vector<Token> toks_;
    std::size_t pos_ = 0;
    int depth_ = 0;
};

}  // namespace

Expr parse(std::string_view text, const ParseOptions& options) {
    return Parser(text, options).run();
}

Expr parse(std::string_view text, const std::vector<Expr>& variables) {
    ParseOptions o;
    o.variables = variables;
    if (!variables.empty() && variables.front()) o.context = &variables.front()->context();
    return parse(text, o);
}

}  // namespace agnesi
