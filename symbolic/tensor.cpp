// Tensor: host buffers, dtype conversion, NumPy .npy files and NumPy-style printing.
#include "agnesi/tensor.hpp"

#include <fmt/format.h>

#include <atomic>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <mutex>
#include <string_view>

#include "agnesi/detail/convert.hpp"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace agnesi {

namespace {

constexpr std::size_t kAlign = 64;

// float16 and bfloat16 have no C++ type here: they are stored as their bit patterns.
struct Half {
    std::uint16_t bits;
};
struct BHalf {
    std::uint16_t bits;
};

float half_to_float(std::uint16_t h) {
    std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    std::uint32_t e = (h >> 10) & 0x1fu;
    std::uint32_t m = h & 0x3ffu;
    if (e == 0) {
        float v = std::ldexp(static_cast<float>(m), -24);
        return sign ? -v : v;
    }
    if (e == 31) return std::bit_cast<float>(sign | 0x7f800000u | (m << 13));
    return std::bit_cast<float>(sign | ((e + 112) << 23) | (m << 13));
}

// Rounds to nearest, ties to even.
std::uint16_t float_to_half(float f) {
    auto x = std::bit_cast<std::uint32_t>(f);
    auto sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
    std::uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return sign | (ax > 0x7f800000u ? 0x7e00 : 0x7c00);
    // 65520 is halfway between the largest half (65504) and 2^16; ties go to even, i.e. inf.
    if (ax >= 0x477ff000u) return sign | 0x7c00;
    if (ax < 0x38800000u) {  // below 2^-14: a subnormal half, in units of 2^-24
        float v = std::bit_cast<float>(ax) * 16777216.0f;
        return sign | static_cast<std::uint16_t>(std::nearbyint(v));
    }
    std::uint32_t h = (((ax >> 23) - 112) << 10) | ((ax & 0x7fffffu) >> 13);
    std::uint32_t rest = ax & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
    return sign | static_cast<std::uint16_t>(h);
}

float bhalf_to_float(std::uint16_t b) {
    return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}

std::uint16_t float_to_bhalf(float f) {
    auto x = std::bit_cast<std::uint32_t>(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return static_cast<std::uint16_t>(x >> 16);
}

template <class T>
struct Tag {
    using type = T;
};

// Calls f(Tag<T>{}) with the storage type of the dtype.
template <class F>
decltype(auto) visit_dtype(DType t, F&& f) {
    switch (t) {
        case DType::Bool: return f(Tag<bool>{});
        case DType::Int32: return f(Tag<std::int32_t>{});
        case DType::Int64: return f(Tag<std::int64_t>{});
        case DType::Float32: return f(Tag<float>{});
        case DType::Float64: return f(Tag<double>{});
        case DType::Float16: return f(Tag<Half>{});
        case DType::BFloat16: return f(Tag<BHalf>{});
    }
    detail::unreachable("visit_dtype");
}

// One element converted from S to D (detail/convert.hpp), through float for the 16-bit floats.
template <class D, class S>
D convert_value(S v) {
    if constexpr (std::is_same_v<S, Half>) {
        return convert_value<D>(half_to_float(v.bits));
    } else if constexpr (std::is_same_v<S, BHalf>) {
        return convert_value<D>(bhalf_to_float(v.bits));
    } else if constexpr (std::is_same_v<D, Half>) {
        return Half{float_to_half(convert_value<float>(v))};
    } else if constexpr (std::is_same_v<D, BHalf>) {
        return BHalf{float_to_bhalf(convert_value<float>(v))};
    } else {
        return detail::convert_arithmetic<D>(v);
    }
}

std::shared_ptr<void> allocate(std::size_t nbytes) {
#if defined(__linux__)
    // Large buffers come from mmap, 2 MiB aligned and marked for transparent huge pages: they
    // arrive zeroed and take 512 times fewer page faults (a fresh 32 MiB buffer took 27 ms with
    // malloc and memset, 3.5 ms this way, on the 2-core development machine).
    constexpr std::size_t kHuge = std::size_t(2) << 20;
    if (nbytes >= kHuge) {
        std::size_t len = nbytes + kHuge;
        void* base = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (base != MAP_FAILED) {
            auto at = (reinterpret_cast<std::uintptr_t>(base) + kHuge - 1) & ~(kHuge - 1);
            void* p = reinterpret_cast<void*>(at);
            madvise(p, nbytes, MADV_HUGEPAGE);  // advice only: failure leaves normal pages
            return std::shared_ptr<void>(p, [base, len](void*) { munmap(base, len); });
        }
    }
#endif
    // The size asked, not rounded up: under AddressSanitizer a read one element past the end is
    // then caught (generated kernels run under it in the sanitizer build).
    std::size_t n = nbytes == 0 ? 1 : nbytes;
    void* p = nullptr;
    if (posix_memalign(&p, kAlign, n) != 0 || !p)
        throw ValueError(fmt::format("Tensor: cannot allocate {} bytes", nbytes));
    std::memset(p, 0, n);
    return std::shared_ptr<void>(p, [](void* q) { std::free(q); });
}

void check_static(const char* where, const Shape& shape) {
    if (!is_static(shape))
        throw ShapeError(
            fmt::format("{}: shape {} has a symbolic size", where, shape_string(shape)));
    std::int64_t n = 1;
    for (Dim d : shape)
        if (__builtin_mul_overflow(n, d, &n))
            throw ShapeError(fmt::format("{}: shape {} is too large", where, shape_string(shape)));
}

// ---- .npy ---------------------------------------------------------------------------------------

constexpr std::string_view kMagic = "\x93NUMPY";

struct NpyHeader {
    std::string descr;
    bool fortran = false;
    Shape shape;
};

// Parses the Python dict literal of a .npy header, e.g.
// {'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }
class HeaderParser {
  public:
    HeaderParser(std::string_view text, const std::string& path) : s_(text), path_(path) {}

    NpyHeader parse() {
        NpyHeader h;
        bool has_descr = false, has_order = false, has_shape = false;
        expect('{');
        while (true) {
            skip_space();
            if (peek() == '}') break;
            std::string key = quoted();
            skip_space();
            expect(':');
            skip_space();
            if (key == "descr") {
                h.descr = quoted();
                has_descr = true;
            } else if (key == "fortran_order") {
                h.fortran = boolean();
                has_order = true;
            } else if (key == "shape") {
                h.shape = tuple();
                has_shape = true;
            } else {
                fail("unexpected key '" + key + "'");
            }
            skip_space();
            if (peek() == ',') ++i_;
        }
        if (!has_descr || !has_order || !has_shape)
            fail("the header lacks 'descr', 'fortran_order' or 'shape'");
        return h;
    }

  private:
    [[noreturn]] void fail(const std::string& what) const {
        throw ValueError(fmt::format("load_npy: '{}': malformed header: {}", path_, what));
    }
    char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
    void skip_space() {
        while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n')) ++i_;
    }
    void expect(char c) {
        skip_space();
        if (peek() != c) fail(fmt::format("expected '{}' at offset {}", c, i_));
        ++i_;
    }
    std::string quoted() {
        char q = peek();
        if (q != '\'' && q != '"') fail(fmt::format("expected a string at offset {}", i_));
        std::size_t end = s_.find(q, i_ + 1);
        if (end == std::string_view::npos) fail("unterminated string");
        std::string out(s_.substr(i_ + 1, end - i_ - 1));
        i_ = end + 1;
        return out;
    }
    bool boolean() {
        if (s_.substr(i_, 4) == "True") return i_ += 4, true;
        if (s_.substr(i_, 5) == "False") return i_ += 5, false;
        fail("fortran_order is neither True nor False");
    }
    Shape tuple() {
        expect('(');
        Shape shape;
        while (true) {
            skip_space();
            if (peek() == ')') break;
            std::int64_t d = 0;
            std::size_t start = i_;
            while (peek() >= '0' && peek() <= '9') {
                if (__builtin_mul_overflow(d, 10, &d) ||
                    __builtin_add_overflow(d, peek() - '0', &d))
                    fail("a dimension is too large");
                ++i_;
            }
            if (i_ == start) fail(fmt::format("expected a dimension at offset {}", i_));
            if (peek() == 'L') ++i_;  // Python 2 long literals
            shape.push_back(d);
            skip_space();
            if (peek() == ',')
                ++i_;
            else if (peek() != ')')
                fail(fmt::format("expected ',' or ')' at offset {}", i_));
        }
        ++i_;
        return shape;
    }

    std::string_view s_;
    const std::string& path_;
    std::size_t i_ = 0;
};

DType npy_dtype(const std::string& descr, const std::string& path) {
    if (descr.size() >= 2 && descr[0] == '>' && descr.substr(1) != "b1" && descr.substr(1) != "u1")
        throw ValueError(
            fmt::format("load_npy: '{}': big-endian data ('{}') is not supported", path, descr));
    std::string body = descr;
    if (!body.empty() && (body[0] == '<' || body[0] == '|' || body[0] == '=' || body[0] == '>'))
        body = body.substr(1);
    if (body == "f4") return DType::Float32;
    if (body == "f8") return DType::Float64;
    if (body == "i4") return DType::Int32;
    if (body == "i8") return DType::Int64;
    if (body == "b1") return DType::Bool;
    if (body == "f2") return DType::Float16;
    throw ValueError(fmt::format(
        "load_npy: '{}': unsupported dtype '{}' (expected <f4, <f8, <i4, <i8, <f2 or |b1)", path,
        descr));
}

std::string npy_descr(DType t) {
    switch (t) {
        case DType::Bool: return "|b1";
        case DType::Int32: return "<i4";
        case DType::Int64: return "<i8";
        case DType::Float32: return "<f4";
        case DType::Float64: return "<f8";
        case DType::Float16: return "<f2";
        case DType::BFloat16: break;
    }
    throw ValueError("save_npy: bfloat16 has no .npy dtype; convert it with astype first");
}

std::uint32_t read_le(const unsigned char* p, int n) {
    std::uint32_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

// ---- printing -----------------------------------------------------------------------------------

std::string element_string(const Tensor& t, std::int64_t i) {
    switch (t.dtype()) {
        case DType::Bool: return t.data<bool>()[i] ? "1" : "0";
        case DType::Int32: return std::to_string(t.data<std::int32_t>()[i]);
        case DType::Int64: return std::to_string(t.data<std::int64_t>()[i]);
        default: return format_value(t.at(i));
    }
}

}  // namespace

// ---- construction -------------------------------------------------------------------------------

Tensor::Tensor() : Tensor(0.0) {}

Tensor::Tensor(double v) : dtype_(DType::Float64), data_(allocate(sizeof(double))) {
    *static_cast<double*>(data_.get()) = v;
}

Tensor::Tensor(DType dtype, Shape shape) : dtype_(dtype), shape_(std::move(shape)) {
    check_static("Tensor", shape_);
    data_ = allocate(nbytes());
}

Tensor Tensor::view(void* data, DType dtype, Shape shape) {
    check_static("Tensor::view", shape);
    Tensor t(NoStorage{}, dtype, std::move(shape));
    t.data_ = std::shared_ptr<void>(data, [](void*) {});
    return t;
}

// The values of a tensor on a device, shared by its copies: the storage, whether it still holds
// the current values, and the host copy once made.
struct Tensor::DeviceCopy {
    std::shared_ptr<DeviceStorage> storage;
    std::atomic<bool> valid{true};
    std::once_flag once;
    std::shared_ptr<void> host;
    std::size_t bytes = 0;

    void* materialize() {
        std::call_once(once, [&] {
            std::shared_ptr<void> h = allocate(bytes);
            storage->download(h.get(), bytes);
            host = std::move(h);
        });
        return host.get();
    }
};

Tensor Tensor::on_device(DType dtype, Shape shape, std::shared_ptr<DeviceStorage> storage) {
    check_static("Tensor::on_device", shape);
    if (!storage) throw ValueError("Tensor::on_device: no storage");
    Tensor t(NoStorage{}, dtype, std::move(shape));
    t.device_ = std::make_shared<DeviceCopy>();
    t.device_->storage = std::move(storage);
    t.device_->bytes = t.nbytes();
    return t;
}

const DeviceStorage* Tensor::device_storage() const {
    return device_ && device_->valid.load() ? device_->storage.get() : nullptr;
}

Tensor Tensor::to_host() const {
    // A copy: writing to a tensor that shared the host values would leave the device's stale.
    if (!device_) return *this;
    Tensor t(dtype_, shape_);
    if (nbytes()) std::memcpy(t.raw(), host_for_read(), nbytes());
    return t;
}

void* Tensor::host_for_write() {
    void* p = device_->materialize();
    device_->valid = false;
    return p;
}

const void* Tensor::host_for_read() const {
    return device_->materialize();
}

void Tensor::check_type(DType t) const {
    if (t != dtype_)
        throw TypeError(
            fmt::format("Tensor: holds {}, asked for {}", dtype_name(dtype_), dtype_name(t)));
}

double Tensor::at(std::int64_t i) const {
    if (i < 0 || i >= size())
        throw ValueError(fmt::format("Tensor::at: index {} is out of range for shape {}", i,
                                     shape_string(shape_)));
    return visit_dtype(dtype_, [&](auto tag) {
        using T = typename decltype(tag)::type;
        return convert_value<double>(static_cast<const T*>(raw())[i]);
    });
}

double Tensor::item() const {
    if (size() != 1)
        throw ValueError(fmt::format("Tensor::item: needs one element, tensor has shape {}",
                                     shape_string(shape_)));
    return at(0);
}

Tensor Tensor::clone() const {
    // Device storage is never written after the call that filled it: the copy may share it, and
    // only its host values are its own.
    if (device_storage()) return on_device(dtype_, shape_, device_->storage);
    Tensor t(dtype_, shape_);
    if (nbytes()) std::memcpy(t.raw(), raw(), nbytes());
    return t;
}

Tensor Tensor::astype(DType dtype) const {
    if (dtype == dtype_) return clone();
    Tensor out(dtype, shape_);
    std::int64_t n = size();
    visit_dtype(dtype_, [&](auto src_tag) {
        using S = typename decltype(src_tag)::type;
        visit_dtype(dtype, [&](auto dst_tag) {
            using D = typename decltype(dst_tag)::type;
            const S* src = static_cast<const S*>(raw());
            D* dst = static_cast<D*>(out.raw());
            for (std::int64_t i = 0; i < n; ++i) dst[i] = convert_value<D>(src[i]);
        });
    });
    return out;
}

Tensor Tensor::reshaped(Shape shape) const {
    check_static("Tensor::reshaped", shape);
    if (numel(shape) != size())
        throw ShapeError(fmt::format("Tensor::reshaped: cannot reshape {} into {}",
                                     shape_string(shape_), shape_string(shape)));
    Tensor t = *this;
    t.shape_ = std::move(shape);
    return t;
}

// ---- .npy files ---------------------------------------------------------------------------------

Tensor Tensor::load_npy(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw ValueError(fmt::format("load_npy: cannot open '{}'", path));
    unsigned char pre[12];  // magic, version, and a 2- or 4-byte header length
    in.read(reinterpret_cast<char*>(pre), 8);
    if (in.gcount() != 8 || std::memcmp(pre, kMagic.data(), kMagic.size()) != 0)
        throw ValueError(fmt::format("load_npy: '{}' is not a .npy file (bad magic)", path));
    int major = pre[6];
    if (major < 1 || major > 3)
        throw ValueError(
            fmt::format("load_npy: '{}': unsupported format version {}.{}", path, major, pre[7]));
    int len_bytes = major == 1 ? 2 : 4;
    in.read(reinterpret_cast<char*>(pre + 8), len_bytes);
    if (in.gcount() != len_bytes)
        throw ValueError(fmt::format("load_npy: '{}': truncated header", path));
    std::uint32_t header_len = read_le(pre + 8, len_bytes);
    std::string header(header_len, '\0');
    in.read(header.data(), header_len);
    if (static_cast<std::uint32_t>(in.gcount()) != header_len)
        throw ValueError(fmt::format("load_npy: '{}': truncated header", path));

    NpyHeader h = HeaderParser(header, path).parse();
    DType dtype = npy_dtype(h.descr, path);
    std::int64_t bytes = static_cast<std::int64_t>(dtype_size(dtype));
    for (Dim d : h.shape)
        if (__builtin_mul_overflow(bytes, d, &bytes))
            throw ValueError(
                fmt::format("load_npy: '{}': shape {} is too large", path, shape_string(h.shape)));
    // Check the size before allocating, so a corrupt shape cannot ask for terabytes.
    auto data_at = in.tellg();
    in.seekg(0, std::ios::end);
    std::int64_t have = static_cast<std::int64_t>(in.tellg() - data_at);
    in.seekg(data_at);
    if (have < bytes)
        throw ValueError(fmt::format("load_npy: '{}': truncated data: expected {} bytes, got {}",
                                     path, bytes, have));
    Tensor t(dtype, h.shape);
    in.read(static_cast<char*>(t.raw()), static_cast<std::streamsize>(bytes));
    if (in.gcount() != bytes)
        throw ValueError(fmt::format("load_npy: '{}': cannot read the data", path));
    if (dtype == DType::Bool) {
        // Any nonzero byte is true; C++ bools must hold exactly 0 or 1.
        auto* p = static_cast<unsigned char*>(t.raw());
        for (std::int64_t i = 0; i < t.size(); ++i) p[i] = p[i] != 0;
    }
    if (!h.fortran || t.rank() < 2) return t;

    // Fortran order: element (i0, i1, ...) sits at i0 + d0 * (i1 + d1 * (...)).
    Tensor c(dtype, t.shape());
    std::size_t es = dtype_size(dtype);
    std::size_t r = t.rank();
    std::vector<std::int64_t> fstride(r), idx(r, 0);
    std::int64_t s = 1;
    for (std::size_t k = 0; k < r; ++k) fstride[k] = s, s *= t.shape()[k];
    const char* src = static_cast<const char*>(t.raw());
    char* dst = static_cast<char*>(c.raw());
    std::int64_t off = 0;
    for (std::int64_t i = 0; i < t.size(); ++i) {
        std::memcpy(dst + static_cast<std::size_t>(i) * es,
                    src + off * static_cast<std::int64_t>(es), es);
        for (std::size_t k = r; k-- > 0;) {
            off += fstride[k];
            if (++idx[k] < t.shape()[k]) break;
            off -= fstride[k] * t.shape()[k];
            idx[k] = 0;
        }
    }
    return c;
}

void Tensor::save_npy(const std::string& path) const {
    // Python tuple syntax, which shape_string also writes for static shapes: "()", "(3,)".
    std::string shape = shape_string(shape_);
    std::string dict = fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
                                   npy_descr(dtype_), shape);
    // The header, with its newline, pads the preamble plus dict to a multiple of 64 bytes.
    bool v1 = dict.size() + 1 + 10 <= 65535;
    std::size_t pre = v1 ? 10 : 12;
    std::size_t total = (pre + dict.size() + 1 + 63) / 64 * 64;
    dict.append(total - pre - dict.size() - 1, ' ');
    dict += '\n';

    std::ofstream out(path, std::ios::binary);
    if (!out) throw ValueError(fmt::format("save_npy: cannot open '{}' for writing", path));
    out.write(kMagic.data(), static_cast<std::streamsize>(kMagic.size()));
    char version[2] = {static_cast<char>(v1 ? 1 : 2), 0};
    out.write(version, 2);
    auto len = static_cast<std::uint32_t>(dict.size());
    char len_bytes[4] = {static_cast<char>(len & 0xff), static_cast<char>((len >> 8) & 0xff),
                         static_cast<char>((len >> 16) & 0xff), static_cast<char>(len >> 24)};
    out.write(len_bytes, v1 ? 2 : 4);
    out.write(dict.data(), static_cast<std::streamsize>(dict.size()));
    out.write(static_cast<const char*>(raw()), static_cast<std::streamsize>(nbytes()));
    if (!out) throw ValueError(fmt::format("save_npy: cannot write '{}'", path));
}

// ---- printing -----------------------------------------------------------------------------------

std::string format_value(double v) {
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    return fmt::format("{:.17g}", v);
}

std::string format_tensor(const Tensor& t) {
    const Shape& s = t.shape();
    std::size_t r = s.size();
    if (r == 0) return element_string(t, 0);
    if (t.size() == 0) {
        // Nested empty lists down to the first zero-sized axis: (2, 0) prints "[[], []]".
        std::size_t k = 0;
        while (s[k] != 0) ++k;
        std::string inner = "[]";
        for (std::size_t j = k; j-- > 0;) {
            std::string level = "[";
            for (Dim i = 0; i < s[j]; ++i) level += (i ? ", " : "") + inner;
            inner = level + "]";
        }
        return inner;
    }
    // Walk the elements in order; when an index rolls over, close and reopen that many lists.
    std::string out(r, '[');
    std::vector<Dim> idx(r, 0);
    for (std::int64_t i = 0; i < t.size(); ++i) {
        if (i > 0) {
            std::size_t rolled = 0;
            for (std::size_t k = r; k-- > 0;) {
                if (++idx[k] < s[k]) break;
                idx[k] = 0;
                ++rolled;
            }
            out.append(rolled, ']');
            out += ", ";
            out.append(rolled, '[');
        }
        out += element_string(t, i);
    }
    out.append(r, ']');
    return out;
}

}  // namespace agnesi
