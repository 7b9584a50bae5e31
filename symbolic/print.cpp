// Printers: text, LaTeX, Graphviz DOT and the debug listing.
//
// Text and LaTeX share one iterative renderer: a printer only says how one node lays out (literal
// pieces and operand slots, each operand with or without parentheses); the renderer walks the
// tree with an explicit stack, so any depth prints in output-linear time.
#include "agnesi/print.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "agnesi/error.hpp"
#include "agnesi/traverse.hpp"

namespace agnesi {

namespace {

struct Piece {
    std::string text;             // literal text, or
    const Node* child = nullptr;  // an operand to render here,
    bool parens = false;          // in parentheses when set
};
using Layout = std::vector<Piece>;
// How a node lays out, given its parent (null at a root).
using LayoutFn = std::function<Layout(const Node* n, const Node* parent)>;

std::string render(const Node* root, const LayoutFn& layout, std::string_view open,
                   std::string_view close) {
    std::string out;
    struct Frame {
        Layout pieces;
        std::size_t next = 0;
        bool parens = false;
        const Node* node;
    };
    std::vector<Frame> stack;
    stack.push_back({layout(root, nullptr), 0, false, root});
    while (!stack.empty()) {
        Frame& f = stack.back();
        if (f.next == f.pieces.size()) {
            if (f.parens) out += close;
            stack.pop_back();
            continue;
        }
        Piece& p = f.pieces[f.next++];
        if (!p.child) {
            out += p.text;
            continue;
        }
        if (p.parens) out += open;
        const Node* parent = f.node;
        Frame child{layout(p.child, parent), 0, p.parens, p.child};
        stack.push_back(std::move(child));  // invalidates f
    }
    return out;
}

bool is_identifier(const std::string& s) {
    if (s.empty() || !(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
    for (char c : s)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
    return true;
}

bool is_reserved(const std::string& s) {
    return s == "pi" || s == "e" || s == "inf" || s == "nan" || s == "true" || s == "false";
}

// ---- text ------------------------------------------------------------------------------------

bool is_all_axes(const Node* n) {
    const Ints& ax = n->ints();
    if (ax.size() != n->operand(0)->rank()) return false;
    for (std::size_t i = 0; i < ax.size(); ++i)
        if (ax[i] != static_cast<std::int64_t>(i)) return false;
    return true;
}

// Whether a constant prints as a plain number: true when the parser's weak literal in its place
// builds the same node. A strong constant qualifies only as an operand of an elementwise op whose
// other typed operands are of its dtype, with one of them not a constant to anchor the type
// (the builder then gives a literal exactly this dtype); everything else prints as a cast.
bool constant_prints_plain(const Node* c, const Node* parent) {
    if (c->weak()) return true;
    if (!parent || parent->info().kind != OpKind::Elementwise) return false;
    TypeRule rule = parent->info().type;
    if (rule == TypeRule::Cast || rule == TypeRule::Logical) return false;
    DType literal_dtype = c->value().is_integer() ? DType::Int64 : DType::Float64;
    if (literal_dtype == c->dtype()) return false;  // such a literal would stay weak
    bool anchored = false;
    std::size_t first_value = parent->op() == Op::Where ? 1 : 0;
    bool is_value = false;
    for (std::size_t i = first_value; i < parent->arity(); ++i) {
        const Node* o = parent->operand(i);
        if (o == c) {
            is_value = true;
            continue;
        }
        if (o->weak()) continue;
        if (o->dtype() != c->dtype()) return false;
        anchored = anchored || !o->is_constant();
    }
    return is_value && anchored;
}

// The text of a constant printed as a literal: float literals of integer value get ".0".
std::string literal_text(const Node* c) {
    std::string s = c->value().to_string();
    if (c->weak() && is_float(c->dtype()) && c->value().is_integer()) s += ".0";
    return s;
}

Prec text_prec(const Node* n, const Node* parent) {
    if (n->is_constant()) {
        if (!constant_prints_plain(n, parent)) return Prec::Atom;
        const Number& v = n->value();
        if (v.sign() < 0) return Prec::Unary;
        if (v.is_rational() && !v.is_integer() && v.to_string().find('/') != std::string::npos)
            return Prec::Mul;
        return Prec::Atom;
    }
    const OpInfo& info = n->info();
    if (info.kind == OpKind::Elementwise && !info.infix.empty()) return info.prec;
    return Prec::Atom;
}

bool is_integer_constant(const Node* n) {
    return n->is_constant() && n->value().is_integer();
}

Layout text_layout(const Node* n, const Node* parent) {
    const OpInfo& info = n->info();
    auto child = [&](const Node* c, bool parens) { return Piece{"", c, parens}; };
    auto lit = [](std::string s) { return Piece{std::move(s)}; };
    switch (n->op()) {
        case Op::Constant:
            if (constant_prints_plain(n, parent)) return {lit(literal_text(n))};
            return {
                lit(fmt::format("cast({}, {})", n->value().to_string(), dtype_name(n->dtype())))};
        case Op::Variable: return {lit(quote_name(n->name()))};
        case Op::Eye:
            if (n->dtype() == DType::Float64) return {lit(fmt::format("eye({})", n->shape()[0]))};
            return {lit(fmt::format("eye({}, {})", n->shape()[0], dtype_name(n->dtype())))};
        default: break;
    }
    if (n->op() == Op::Neg) {
        const Node* a = n->operand(0);
        // -(2) keeps a negation of a literal apart from the literal -2.
        bool parens = a->is_constant() || text_prec(a, n) < Prec::Unary;
        return {lit("-"), child(a, parens)};
    }
    if (info.kind == OpKind::Elementwise && !info.infix.empty()) {
        const Node* a = n->operand(0);
        const Node* b = n->operand(1);
        Prec p = info.prec;
        Prec pa = text_prec(a, n), pb = text_prec(b, n);
        bool la, rb;
        std::string sep;
        if (p == Prec::Pow) {
            la = pa <= Prec::Pow;  // (x^2)^3, (-x)^2, (1/2)^x
            rb = pb < Prec::Unary;
            sep = "^";
        } else if (p == Prec::Compare) {
            la = pa <= p;
            rb = pb <= p;
            sep = fmt::format(" {} ", info.infix);
        } else {
            la = pa < p;
            rb = pb <= p;
            sep = p == Prec::Add ? fmt::format(" {} ", info.infix) : std::string(info.infix);
        }
        // (1)/3 keeps a quotient of integers apart from the rational literal 1/3.
        if (n->op() == Op::Div && is_integer_constant(a) && is_integer_constant(b)) la = true;
        return {child(a, la), lit(sep), child(b, rb)};
    }
    Layout out{lit(std::string(info.name) + "(")};
    for (std::size_t i = 0; i < n->arity(); ++i) {
        if (i) out.push_back(lit(", "));
        out.push_back(child(n->operand(i), false));
    }
    auto ints = [&](auto first, auto last) {
        for (auto it = first; it != last; ++it) out.push_back(lit(fmt::format(", {}", *it)));
    };
    auto dims = [&](const Shape& s) {
        for (Dim d : s) out.push_back(lit(", " + dim_name(d)));
    };
    switch (info.kind) {
        case OpKind::Reduction:
            if (!is_all_axes(n)) ints(n->ints().begin(), n->ints().end());
            if (n->keepdims()) out.push_back(lit(", keepdims=true"));
            break;
        case OpKind::AxisNormalize: ints(n->ints().begin(), n->ints().end()); break;
        case OpKind::Shape:
            switch (n->op()) {
                case Op::Reshape:
                case Op::BroadcastTo: dims(n->shape()); break;
                case Op::Transpose: {
                    bool reversed = true;
                    std::size_t r = n->rank();
                    for (std::size_t i = 0; i < r; ++i)
                        reversed = reversed && n->ints()[i] == static_cast<std::int64_t>(r - 1 - i);
                    if (!reversed) ints(n->ints().begin(), n->ints().end());
                    break;
                }
                case Op::Concat: out.push_back(lit(fmt::format(", axis={}", n->ints()[0]))); break;
                default: ints(n->ints().begin(), n->ints().end());
            }
            break;
        default:
            if (n->op() == Op::Cast)
                out.push_back(lit(fmt::format(", {}", dtype_name(n->dtype()))));
    }
    out.push_back(lit(")"));
    return out;
}

// ---- LaTeX -----------------------------------------------------------------------------------

std::string latex_name(const std::string& name) {
    static const std::unordered_set<std::string> greek = {
        "alpha",  "beta",  "gamma", "delta", "epsilon", "zeta",  "eta",   "theta", "iota", "kappa",
        "lambda", "mu",    "nu",    "xi",    "rho",     "sigma", "tau",   "phi",   "chi",  "psi",
        "omega",  "Gamma", "Delta", "Theta", "Lambda",  "Xi",    "Sigma", "Phi",   "Psi",  "Omega"};
    std::string base = name, sub;
    // x1 -> x_{1}, w_hidden -> w_{hidden}
    if (auto u = name.find('_'); u != std::string::npos && u > 0 && u + 1 < name.size()) {
        base = name.substr(0, u);
        sub = name.substr(u + 1);
    } else {
        std::size_t k = name.size();
        while (k > 1 && std::isdigit(static_cast<unsigned char>(name[k - 1]))) --k;
        if (k < name.size() && k > 0) base = name.substr(0, k), sub = name.substr(k);
    }
    auto esc = [](const std::string& s) {
        std::string o;
        for (char c : s) {
            if (std::string_view("#$%&_{}").find(c) != std::string_view::npos) o += '\\';
            if (c == '\\')
                o += "\\backslash ";
            else if (c == '^' || c == '~')
                o += fmt::format("\\char{} ", static_cast<int>(c));
            else
                o += c;
        }
        return o;
    };
    std::string out;
    if (greek.count(base))
        out = "\\" + base;
    else if (base.size() == 1 && std::isalpha(static_cast<unsigned char>(base[0])))
        out = base;
    else
        out = "\\mathrm{" + esc(base) + "}";
    if (!sub.empty()) {
        bool plain = sub.size() == 1 || std::all_of(sub.begin(), sub.end(), [](char c) {
                         return std::isdigit(static_cast<unsigned char>(c));
                     });
        out += "_{" +
               (greek.count(sub) ? "\\" + sub
                : plain          ? esc(sub)
                                 : "\\mathrm{" + esc(sub) + "}") +
               "}";
    }
    return out;
}

Prec latex_prec(const Node* n) {
    if (n->is_constant()) {
        if (n->value().sign() < 0) return Prec::Unary;
        return Prec::Atom;
    }
    const OpInfo& info = n->info();
    if (n->op() == Op::Div) return Prec::Atom;  // a fraction is visually one block
    if (n->op() == Op::Mul) return Prec::Mul;
    if (n->op() == Op::Matmul) return Prec::Mul;
    if (info.kind == OpKind::Elementwise && !info.infix.empty()) return info.prec;
    if (n->op() == Op::Exp || n->op() == Op::Transpose) return Prec::Pow;
    if (info.kind == OpKind::Reduction) return Prec::Unary;
    return Prec::Atom;
}

// Expands a template: {N} is operand N (in parentheses when `parens(N)`), all else literal.
Layout expand(std::string_view tpl, const Node* n, const std::function<bool(std::size_t)>& parens) {
    Layout out;
    std::string text;
    for (std::size_t i = 0; i < tpl.size(); ++i) {
        if (tpl[i] == '{' && i + 2 < tpl.size() &&
            std::isdigit(static_cast<unsigned char>(tpl[i + 1])) && tpl[i + 2] == '}') {
            if (!text.empty()) out.push_back({std::move(text)}), text.clear();
            auto k = static_cast<std::size_t>(tpl[i + 1] - '0');
            out.push_back({"", n->operand(k), parens(k)});
            i += 2;
        } else {
            text += tpl[i];
        }
    }
    if (!text.empty()) out.push_back({std::move(text)});
    return out;
}

std::string axes_label(const Node* n) {
    std::string s;
    for (auto a : n->ints()) s += (s.empty() ? "" : ",") + std::to_string(a);
    return s;
}

Layout latex_layout(const Node* n, const Node* /*parent*/) {
    const OpInfo& info = n->info();
    auto lit = [](std::string s) { return Piece{std::move(s)}; };
    auto wrapped = [&](std::string head, std::string tail = "") {
        return Layout{lit(std::move(head) + "\\left("), Piece{"", n->operand(0), false},
                      lit("\\right)" + tail)};
    };
    switch (n->op()) {
        case Op::Constant: return {lit(n->value().to_latex())};
        case Op::Variable: return {lit(latex_name(n->name()))};
        case Op::Eye: return {lit(fmt::format("I_{{{}}}", n->shape()[0]))};
        case Op::Neg:
            return expand("-{0}", n,
                          [&](std::size_t) { return latex_prec(n->operand(0)) <= Prec::Add; });
        case Op::Mul: {
            const Node* b = n->operand(1);
            bool negative = b->op() == Op::Neg || (b->is_constant() && b->value().sign() < 0);
            // A number times something reads as juxtaposition (2 x); other products get a dot.
            std::string tpl =
                n->operand(0)->is_constant() && !b->is_constant() ? "{0} {1}" : "{0} \\cdot {1}";
            return expand(tpl, n, [&](std::size_t k) {
                return latex_prec(n->operand(k)) < Prec::Mul || (k == 1 && negative);
            });
        }
        case Op::Pow:
            return expand("{0}^{{1}}", n, [&](std::size_t k) {
                return k == 0 &&
                       (latex_prec(n->operand(0)) < Prec::Atom || n->operand(0)->op() == Op::Div);
            });
        case Op::Div: return expand(info.latex, n, [](std::size_t) { return false; });
        case Op::Matmul:
            return expand("{0} {1}", n,
                          [&](std::size_t k) { return latex_prec(n->operand(k)) < Prec::Atom; });
        case Op::Transpose:
            return expand("{0}^{\\top}", n,
                          [&](std::size_t) { return latex_prec(n->operand(0)) < Prec::Atom; });
        case Op::Cast: return wrapped(fmt::format("\\operatorname{{{}}}", dtype_name(n->dtype())));
        default: break;
    }
    if (info.kind == OpKind::Elementwise) {
        if (!info.infix.empty()) {
            Prec p = info.prec;
            return expand(info.latex, n, [&](std::size_t k) {
                Prec c = latex_prec(n->operand(k));
                return k == 0 ? c < p : c <= p;
            });
        }
        // Function templates end in {0} right after the name: the operand goes in \left( \right).
        std::string_view tpl = info.latex;
        if (info.arity == 1 && tpl.size() >= 3 && tpl.substr(tpl.size() - 3) == "{0}" &&
            (tpl.size() == 3 || tpl[tpl.size() - 4] != '{'))
            return wrapped(std::string(tpl.substr(0, tpl.size() - 3)));
        return expand(tpl, n, [](std::size_t) { return false; });
    }
    if (info.kind == OpKind::Reduction || info.kind == OpKind::AxisNormalize) {
        std::string sub =
            (info.kind == OpKind::Reduction && is_all_axes(n)) ? "" : "_{" + axes_label(n) + "}";
        return wrapped(std::string(info.latex) + sub);
    }
    // Shape ops: \operatorname{reshape}_{(4, 256)}\left(X\right)
    std::string sub;
    switch (n->op()) {
        case Op::Reshape:
        case Op::BroadcastTo: sub = shape_string(n->shape()); break;
        case Op::Slice:
            sub = fmt::format("{}:{}:{}", n->ints()[1], n->ints()[2], n->ints()[3]);
            sub = "axis " + std::to_string(n->ints()[0]) + ", " + sub;
            break;
        default: sub = axes_label(n);
    }
    Layout out{lit(std::string(info.latex) + "_{" + sub + "}\\left(")};
    for (std::size_t i = 0; i < n->arity(); ++i) {
        if (i) out.push_back(lit(", "));
        out.push_back({"", n->operand(i), false});
    }
    out.push_back(lit("\\right)"));
    return out;
}

std::string dot_escape(const std::string& s) {
    std::string o;
    for (char c : s) {
        if (c == '"' || c == '\\') o += '\\';
        if (c == '\n') {
            o += "\\n";
            continue;
        }
        o += c;
    }
    return o;
}

}  // namespace

std::string quote_name(const std::string& name) {
    if (is_identifier(name) && !is_reserved(name)) return name;
    std::string out = "`";
    for (char c : name) {
        if (c == '`') out += '`';  // a backquote inside doubles
        out += c;
    }
    return out + "`";
}

std::string to_string(const Expr& e) {
    if (!e) return "<empty>";
    return render(e.node(), text_layout, "(", ")");
}

std::string to_latex(const Expr& e) {
    if (!e) return "";
    return render(e.node(), latex_layout, "\\left(", "\\right)");
}

std::string to_dot(const std::vector<Expr>& roots) {
    std::vector<const Node*> rs;
    for (const Expr& r : roots) rs.push_back(r.node());
    auto order = post_order(rs);
    std::unordered_map<const Node*, std::size_t> id;
    std::string out = "digraph agnesi {\n  rankdir=BT;\n  node [fontname=\"Helvetica\"];\n";
    for (const Node* n : order) {
        std::size_t k = id.size();
        id.emplace(n, k);
        std::string label, shape = "ellipse";
        if (n->is_constant()) {
            label = n->value().to_string();
            shape = "plaintext";
        } else if (n->is_variable()) {
            label = n->name() + "\n" + std::string(dtype_name(n->dtype())) +
                    (n->rank() ? " " + shape_string(n->shape()) : "");
            shape = "box";
        } else {
            label = std::string(n->info().name);
            if (n->info().kind == OpKind::Reduction || n->info().kind == OpKind::AxisNormalize)
                label += " [" + axes_label(n) + "]";
            if (n->rank()) label += "\n" + shape_string(n->shape());
        }
        out += fmt::format("  n{} [label=\"{}\", shape={}];\n", k, dot_escape(label), shape);
        for (std::size_t i = 0; i < n->arity(); ++i) {
            out += fmt::format("  n{} -> n{}", id.at(n->operand(i)), k);
            if (n->arity() > 1 && !n->info().commutative) out += fmt::format(" [label=\"{}\"]", i);
            out += ";\n";
        }
    }
    for (std::size_t i = 0; i < rs.size(); ++i)
        out += fmt::format("  out{} [label=\"out{}\", shape=doublecircle];\n  n{} -> out{};\n", i,
                           i, id.at(rs[i]), i);
    return out + "}\n";
}

std::string debug_print(const std::vector<Expr>& roots, DebugOptions opts) {
    std::vector<const Node*> rs;
    for (const Expr& r : roots) rs.push_back(r.node());
    auto order = post_order(rs);
    auto uses = use_counts(order);
    for (const Node* r : rs) ++uses[r];
    // Shared inner nodes get a name; leaves always print inline.
    std::unordered_map<const Node*, std::string> names;
    const Node* current = nullptr;
    LayoutFn layout = [&](const Node* n, const Node* parent) -> Layout {
        if (n != current)
            if (auto it = names.find(n); it != names.end()) return {Piece{it->second}};
        return text_layout(n, parent);
    };
    auto type = [&](const Node* n) {
        return opts.types
                   ? fmt::format("  : {} {}", dtype_name(n->dtype()), shape_string(n->shape()))
                   : std::string();
    };
    std::string out;
    for (const Node* n : order) {
        if (n->arity() == 0 || uses[n] < 2) continue;
        std::string name = fmt::format("${}", names.size() + 1);
        current = n;
        out += name + " = " + render(n, layout, "(", ")") + type(n) + "\n";
        names.emplace(n, std::move(name));
    }
    current = nullptr;
    for (std::size_t i = 0; i < rs.size(); ++i) {
        if (rs.size() > 1) out += fmt::format("[{}] ", i);
        out += render(rs[i], layout, "(", ")") + type(rs[i]) + "\n";
    }
    return out;
}

}  // namespace agnesi
