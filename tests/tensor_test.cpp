// Tensor: buffers, conversion, .npy files (round trips, Fortran order, corrupt files), printing.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "agnesi/tensor.hpp"

using namespace agnesi;
using ::testing::HasSubstr;

namespace {

template <class E, class F>
std::string error_text(F&& f) {
    try {
        f();
    } catch (const E& e) {
        return e.what();
    }
    return "<no error>";
}

// A fresh path in the temporary directory, removed when the test ends.
class TempFile {
  public:
    explicit TempFile(const std::string& name)
        : path_((std::filesystem::temp_directory_path() /
                 ("agnesi_tensor_test_" + std::to_string(::getpid()) + "_" + name))
                    .string()) {}
    ~TempFile() { std::remove(path_.c_str()); }
    const std::string& path() const { return path_; }

  private:
    std::string path_;
};

void write_bytes(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A version 1.0 .npy file with this header dict and raw data, as NumPy lays it out.
std::string npy_file(const std::string& dict, const std::string& data) {
    std::string h = dict;
    std::size_t total = (10 + h.size() + 1 + 63) / 64 * 64;
    h.append(total - 10 - h.size() - 1, ' ');
    h += '\n';
    std::string out = "\x93NUMPY";
    out += '\x01';
    out += '\x00';
    out += static_cast<char>(h.size() & 0xff);
    out += static_cast<char>(h.size() >> 8);
    return out + h + data;
}

template <class T>
std::string raw_bytes(const std::vector<T>& v) {
    std::string s(v.size() * sizeof(T), '\0');
    std::memcpy(s.data(), v.data(), s.size());
    return s;
}

}  // namespace

// ---- construction and access --------------------------------------------------------------------

TEST(Tensor, DefaultIsFloat64ScalarZero) {
    Tensor t;
    EXPECT_EQ(t.dtype(), f64);
    EXPECT_EQ(t.rank(), 0u);
    EXPECT_EQ(t.size(), 1);
    EXPECT_EQ(t.item(), 0.0);
    EXPECT_EQ(Tensor(0.5).item(), 0.5);
}

TEST(Tensor, ZeroFilledAndAligned) {
    for (DType d : {boolean, i32, i64, f32, f64, f16, bf16}) {
        Tensor t(d, {3, 5});
        EXPECT_EQ(t.dtype(), d);
        EXPECT_EQ(t.size(), 15);
        EXPECT_EQ(t.nbytes(), 15 * dtype_size(d));
        EXPECT_EQ(reinterpret_cast<std::uintptr_t>(t.raw()) % 64, 0u);
        for (std::int64_t i = 0; i < t.size(); ++i) EXPECT_EQ(t.at(i), 0.0);
    }
    Tensor empty(f32, {0, 4});
    EXPECT_EQ(empty.size(), 0);
    EXPECT_NE(empty.raw(), nullptr);
}

TEST(Tensor, SymbolicShapeIsRejected) {
    EXPECT_THAT(error_text<ShapeError>([] {
                    Tensor(f64, {sym_dim("tensor_n"), 2});
                }),
                HasSubstr("(tensor_n, 2)"));
}

TEST(Tensor, AtAndItemConvertEveryDtype) {
    auto t = Tensor::from_vector<std::int64_t>({3}, {-4, 0, 9007199254740993});
    EXPECT_EQ(t.at(0), -4.0);
    EXPECT_EQ(t.at(2), 9007199254740992.0);
    EXPECT_EQ(Tensor::scalar(true).item(), 1.0);
    EXPECT_EQ(Tensor::scalar(2.5f).item(), 2.5);
    EXPECT_THAT(error_text<ValueError>([&] { t.item(); }), HasSubstr("shape (3,)"));
    EXPECT_THAT(error_text<ValueError>([&] { t.at(3); }), HasSubstr("index 3"));
}

TEST(Tensor, CopiesShareCloneCopies) {
    auto a = Tensor::from_vector<double>({2}, {1, 2});
    Tensor b = a;
    Tensor c = a.clone();
    a.data<double>()[0] = 7;
    EXPECT_EQ(b.at(0), 7.0);
    EXPECT_EQ(c.at(0), 1.0);
    EXPECT_EQ(c.shape(), a.shape());
}

TEST(Tensor, ViewWrapsForeignMemory) {
    float buf[6] = {1, 2, 3, 4, 5, 6};
    Tensor v = Tensor::view(buf, f32, {2, 3});
    EXPECT_EQ(v.raw(), static_cast<void*>(buf));
    EXPECT_EQ(v.matrix<float>()(1, 2), 6.0f);
    v.data<float>()[0] = -1;
    EXPECT_EQ(buf[0], -1.0f);
}

TEST(Tensor, EigenMapsAndFromEigen) {
    Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> m(2, 3);
    m << 1, 2, 3, 4, 5, 6;
    Tensor t = Tensor::from_eigen(std::move(m));
    EXPECT_EQ(t.shape(), (Shape{2, 3}));
    EXPECT_EQ(t.at(5), 6.0);
    EXPECT_EQ(t.map<double>().sum(), 21.0);
}

TEST(Tensor, CheckTypeNamesBothDtypes) {
    Tensor t(f32, {2});
    EXPECT_EQ(error_text<TypeError>([&] { t.data<double>(); }),
              "Tensor: holds float32, asked for float64");
    EXPECT_THAT(error_text<ShapeError>([&] { t.matrix<float>(); }), HasSubstr("(2,)"));
}

TEST(Tensor, ReshapedSharesAndChecksSize) {
    auto a = Tensor::from_vector<std::int32_t>({2, 3}, {1, 2, 3, 4, 5, 6});
    Tensor b = a.reshaped({3, 2});
    EXPECT_EQ(b.shape(), (Shape{3, 2}));
    EXPECT_EQ(b.raw(), a.raw());
    std::string msg = error_text<ShapeError>([&] { a.reshaped({4}); });
    EXPECT_THAT(msg, HasSubstr("(2, 3)"));
    EXPECT_THAT(msg, HasSubstr("(4,)"));
}

// ---- astype -------------------------------------------------------------------------------------

TEST(Tensor, AstypeFloatToIntegerTruncatesTowardZero) {
    auto x = Tensor::from_vector<double>({6}, {-2.7, -0.5, 0.0, 1.5, 3.99, 1e30});
    Tensor i = x.astype(i32);
    EXPECT_EQ(i.dtype(), i32);
    std::vector<std::int32_t> want = {-2, 0, 0, 1, 3, std::numeric_limits<std::int32_t>::max()};
    for (std::size_t k = 0; k < want.size(); ++k) EXPECT_EQ(i.data<std::int32_t>()[k], want[k]);
    Tensor l = x.astype(i64);
    EXPECT_EQ(l.data<std::int64_t>()[0], -2);
    EXPECT_EQ(l.data<std::int64_t>()[5], std::numeric_limits<std::int64_t>::max());
    auto nan = Tensor::scalar(std::nan(""));
    EXPECT_EQ(nan.astype(i64).data<std::int64_t>()[0], 0);
}

TEST(Tensor, AstypeToBoolIsNonzero) {
    auto x = Tensor::from_vector<double>({4}, {0.0, -0.0, 0.25, std::nan("")});
    Tensor b = x.astype(boolean);
    EXPECT_FALSE(b.data<bool>()[0]);
    EXPECT_FALSE(b.data<bool>()[1]);
    EXPECT_TRUE(b.data<bool>()[2]);
    EXPECT_TRUE(b.data<bool>()[3]);
    auto i = Tensor::from_vector<std::int32_t>({2}, {0, -3}).astype(boolean);
    EXPECT_FALSE(i.data<bool>()[0]);
    EXPECT_TRUE(i.data<bool>()[1]);
}

TEST(Tensor, AstypeBetweenEveryPair) {
    auto src = Tensor::from_vector<double>({3}, {0, 1, 2});
    for (DType a : {boolean, i32, i64, f32, f64, f16, bf16}) {
        Tensor x = src.astype(a);
        for (DType b : {boolean, i32, i64, f32, f64, f16, bf16}) {
            Tensor y = x.astype(b);
            EXPECT_EQ(y.dtype(), b);
            double top = a == boolean || b == boolean ? 1.0 : 2.0;
            EXPECT_EQ(y.at(0), 0.0) << dtype_name(a) << " -> " << dtype_name(b);
            EXPECT_EQ(y.at(1), 1.0) << dtype_name(a) << " -> " << dtype_name(b);
            EXPECT_EQ(y.at(2), top) << dtype_name(a) << " -> " << dtype_name(b);
        }
    }
    auto big = Tensor::scalar<std::int64_t>(9007199254740993);
    EXPECT_EQ(big.astype(i64).data<std::int64_t>()[0], 9007199254740993);
    EXPECT_EQ(big.astype(i32).dtype(), i32);
}

TEST(Tensor, HalfPrecisionRoundsToNearestEven) {
    auto x =
        Tensor::from_vector<float>({8}, {1.0f, 0.1f, 65504.0f, 70000.0f, 1e-7f, -2.5f,
                                         std::numeric_limits<float>::infinity(), std::nanf("")});
    Tensor h = x.astype(f16);
    EXPECT_EQ(h.at(0), 1.0);
    EXPECT_EQ(h.at(1), 0.0999755859375);  // nearest half to 0.1
    EXPECT_EQ(h.at(2), 65504.0);          // the largest half
    EXPECT_TRUE(std::isinf(h.at(3)));
    EXPECT_EQ(h.at(4), std::ldexp(1.0, -23));  // 1e-7 is 1.68 units of 2^-24: rounds to 2
    EXPECT_EQ(h.at(5), -2.5);
    EXPECT_TRUE(std::isinf(h.at(6)));
    EXPECT_TRUE(std::isnan(h.at(7)));
    // 1 + 2^-11 lies halfway between 1 and 1 + 2^-10: ties go to the even mantissa (1).
    EXPECT_EQ(Tensor::scalar(1.0f + std::ldexp(1.0f, -11)).astype(f16).item(), 1.0);

    Tensor b = x.astype(bf16);
    EXPECT_EQ(b.at(0), 1.0);
    EXPECT_EQ(Tensor::scalar(3.14159265f).astype(bf16).item(), 3.140625);
    EXPECT_TRUE(std::isnan(b.at(7)));
}

// ---- .npy ---------------------------------------------------------------------------------------

TEST(Npy, RoundTripEveryDtype) {
    TempFile f("roundtrip.npy");
    auto check = [&](const Tensor& t) {
        t.save_npy(f.path());
        Tensor u = Tensor::load_npy(f.path());
        ASSERT_EQ(u.dtype(), t.dtype());
        ASSERT_EQ(u.shape(), t.shape());
        ASSERT_EQ(std::memcmp(u.raw(), t.raw(), t.nbytes()), 0) << dtype_name(t.dtype());
        EXPECT_EQ(read_bytes(f.path()).size() % 64, t.nbytes() % 64);  // header is 64-aligned
    };
    check(Tensor::from_vector<double>({2, 3}, {1.5, -2, 3, 1e300, -0.0, 7}));
    check(Tensor::from_vector<float>({3}, {0.1f, -1, 2}));
    check(Tensor::from_vector<std::int32_t>({2, 2}, {1, -2, 3, 2147483647}));
    check(Tensor::from_vector<std::int64_t>({1, 2, 2}, {1, -2, 3, 9007199254740993}));
    check(Tensor::from_vector<bool>({4}, {true, false, false, true}));
    check(Tensor::scalar(0.25));
    check(Tensor(f32, {0, 3}));
    check(Tensor::from_vector<double>({2}, {1, 2}).astype(f16));
}

TEST(Npy, WritesNumpyHeader) {
    TempFile f("header.npy");
    Tensor::from_vector<double>({2, 3}, {1, 2, 3, 4, 5, 6}).save_npy(f.path());
    std::string bytes = read_bytes(f.path());
    ASSERT_GE(bytes.size(), 128u);
    EXPECT_EQ(bytes.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
    EXPECT_THAT(bytes.substr(10, 64),
                HasSubstr("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }"));
    EXPECT_EQ(bytes[127], '\n');  // 10 + 60 header bytes pad to 128, as NumPy writes them
    EXPECT_EQ(bytes.size(), 128u + 48u);

    Tensor::from_vector<float>({3}, {1, 2, 3}).save_npy(f.path());
    EXPECT_THAT(read_bytes(f.path()),
                HasSubstr("'descr': '<f4', 'fortran_order': False, 'shape': (3,)"));
    Tensor::scalar(true).save_npy(f.path());
    EXPECT_THAT(read_bytes(f.path()),
                HasSubstr("'descr': '|b1', 'fortran_order': False, 'shape': ()"));
}

TEST(Npy, ReadsFortranOrder) {
    TempFile f("fortran.npy");
    // A 2x3 matrix [[1, 2, 3], [4, 5, 6]] stored column by column.
    write_bytes(f.path(), npy_file("{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }",
                                   raw_bytes<double>({1, 4, 2, 5, 3, 6})));
    Tensor t = Tensor::load_npy(f.path());
    ASSERT_EQ(t.shape(), (Shape{2, 3}));
    for (int i = 0; i < 6; ++i) EXPECT_EQ(t.at(i), i + 1.0);

    // (2, 3, 2) in Fortran order: element (i, j, k) at i + 2 * (j + 3 * k).
    std::vector<std::int32_t> data(12);
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 3; ++j)
            for (int k = 0; k < 2; ++k) data[i + 2 * (j + 3 * k)] = 100 * i + 10 * j + k;
    write_bytes(f.path(), npy_file("{'descr': '<i4', 'fortran_order': True, 'shape': (2, 3, 2), }",
                                   raw_bytes(data)));
    Tensor u = Tensor::load_npy(f.path());
    ASSERT_EQ(u.shape(), (Shape{2, 3, 2}));
    int at = 0;
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 3; ++j)
            for (int k = 0; k < 2; ++k)
                EXPECT_EQ(u.data<std::int32_t>()[at++], 100 * i + 10 * j + k);
}

TEST(Npy, ReadsVersionTwoAndOddSpacing) {
    TempFile f("v2.npy");
    std::string dict = "{\"shape\":(3,),\"fortran_order\":False,\"descr\":\"<i8\"}";
    std::string h = dict + std::string(64 - 12 - dict.size() - 1, ' ') + "\n";
    std::string bytes = std::string("\x93NUMPY\x02\x00", 8);
    bytes += static_cast<char>(h.size());
    bytes += std::string(3, '\0');
    bytes += h + raw_bytes<std::int64_t>({7, -8, 9});
    write_bytes(f.path(), bytes);
    Tensor t = Tensor::load_npy(f.path());
    ASSERT_EQ(t.dtype(), i64);
    EXPECT_EQ(t.data<std::int64_t>()[1], -8);
}

TEST(Npy, CorruptFilesNameThePath) {
    TempFile f("corrupt.npy");
    auto load_error = [&] { return error_text<ValueError>([&] { Tensor::load_npy(f.path()); }); };

    write_bytes(f.path(), "PK\x03\x04 this is a zip file");
    EXPECT_THAT(load_error(), HasSubstr("bad magic"));
    EXPECT_THAT(load_error(), HasSubstr(f.path()));

    write_bytes(f.path(),
                npy_file("{'descr': '<u2', 'fortran_order': False, 'shape': (2,), }", "abcd"));
    EXPECT_THAT(load_error(), HasSubstr("unsupported dtype '<u2'"));

    write_bytes(f.path(), npy_file("{'descr': '>f8', 'fortran_order': False, 'shape': (1,), }",
                                   std::string(8, '\0')));
    EXPECT_THAT(load_error(), HasSubstr("big-endian"));

    write_bytes(f.path(), npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': (4,), }",
                                   std::string(20, '\0')));
    EXPECT_THAT(load_error(), HasSubstr("truncated data: expected 32 bytes, got 20"));
    EXPECT_THAT(load_error(), HasSubstr(f.path()));

    write_bytes(f.path(), npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': "
                                   "(1000000000000,), }",
                                   ""));
    EXPECT_THAT(load_error(), HasSubstr("expected 8000000000000 bytes, got 0"));

    std::string whole = npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': (4,), }", "");
    write_bytes(f.path(), whole.substr(0, 30));
    EXPECT_THAT(load_error(), HasSubstr("truncated header"));

    write_bytes(f.path(), npy_file("{'descr': '<f8', 'shape': (4,), }", ""));
    EXPECT_THAT(load_error(), HasSubstr("malformed header"));

    write_bytes(f.path(),
                npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': (4, x), }", ""));
    EXPECT_THAT(load_error(), HasSubstr("malformed header"));

    EXPECT_THAT(error_text<ValueError>([] { Tensor::load_npy("/nonexistent/dir/a.npy"); }),
                HasSubstr("cannot open '/nonexistent/dir/a.npy'"));
    EXPECT_THAT(error_text<ValueError>([] { Tensor(f32, {2}).save_npy("/nonexistent/dir/a.npy"); }),
                HasSubstr("/nonexistent/dir/a.npy"));
}

TEST(Npy, BoolBytesAreNormalized) {
    TempFile f("bool.npy");
    write_bytes(f.path(), npy_file("{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }",
                                   std::string("\x00\x01\x07", 3)));
    Tensor t = Tensor::load_npy(f.path());
    EXPECT_EQ(format_tensor(t), "[0, 1, 1]");
}

// ---- printing -----------------------------------------------------------------------------------

TEST(Format, ValuesUseSeventeenDigits) {
    EXPECT_EQ(format_value(0.5), "0.5");
    EXPECT_EQ(format_value(0.1), "0.10000000000000001");
    EXPECT_EQ(format_value(1.0 / 3), "0.33333333333333331");
    EXPECT_EQ(format_value(-2), "-2");
    EXPECT_EQ(format_value(1e20), "1e+20");
    EXPECT_EQ(format_value(std::nan("")), "nan");
    EXPECT_EQ(format_value(-std::nan("")), "nan");
    EXPECT_EQ(format_value(std::numeric_limits<double>::infinity()), "inf");
    EXPECT_EQ(format_value(-std::numeric_limits<double>::infinity()), "-inf");
}

TEST(Format, TensorsPrintLikeNumpyLists) {
    EXPECT_EQ(format_tensor(Tensor(0.5)), "0.5");
    EXPECT_EQ(format_tensor(Tensor::scalar(0.1f)), "0.10000000149011612");
    EXPECT_EQ(format_tensor(Tensor::from_vector<double>({3}, {1, 2.5, -3})), "[1, 2.5, -3]");
    EXPECT_EQ(format_tensor(Tensor::from_vector<std::int32_t>({2, 2}, {1, 2, 3, 4})),
              "[[1, 2], [3, 4]]");
    EXPECT_EQ(
        format_tensor(Tensor::from_vector<std::int64_t>({2, 1, 2}, {1, 2, 3, 9007199254740993})),
        "[[[1, 2]], [[3, 9007199254740993]]]");
    EXPECT_EQ(format_tensor(Tensor::from_vector<bool>({2}, {true, false})), "[1, 0]");
    EXPECT_EQ(format_tensor(Tensor::scalar(true)), "1");
    EXPECT_EQ(format_tensor(Tensor(f64, {0})), "[]");
    EXPECT_EQ(format_tensor(Tensor(f64, {2, 0})), "[[], []]");
    EXPECT_EQ(format_tensor(Tensor(f64, {0, 3})), "[]");
    EXPECT_EQ(format_tensor(Tensor::from_vector<double>({1, 1}, {std::nan("")})), "[[nan]]");
}

// ---- tensors on a device ----------------------------------------------------------------------

// Device memory stood in for by host memory, counting the copies to the host.
class FakeDeviceStorage : public DeviceStorage {
  public:
    explicit FakeDeviceStorage(std::vector<float> v) : values(std::move(v)) {}
    int device_ordinal() const override { return 0; }
    std::uint64_t address() const override {
        return reinterpret_cast<std::uint64_t>(values.data());
    }
    void download(void* host, std::size_t bytes) const override {
        ++downloads;
        std::memcpy(host, values.data(), bytes);
    }
    std::vector<float> values;
    mutable int downloads = 0;
};

TEST(DeviceTensor, CopiesToTheHostOnceOnFirstRead) {
    auto dev = std::make_shared<FakeDeviceStorage>(std::vector<float>{1.5f, -2, 4});
    Tensor t = Tensor::on_device(f32, {3}, dev);
    Tensor alias = t;
    EXPECT_EQ(dev->downloads, 0);
    EXPECT_EQ(t.device_storage(), dev.get());
    EXPECT_DOUBLE_EQ(t.at(1), -2.0);
    EXPECT_FLOAT_EQ(alias.data<float>()[2], 4.0f);  // a writable access: the copies share it
    EXPECT_EQ(dev->downloads, 1);
    // Written on the host, the device copy is no longer the tensor's values.
    EXPECT_EQ(t.device_storage(), nullptr);
    EXPECT_EQ(alias.device_storage(), nullptr);
    alias.data<float>()[0] = 7;
    EXPECT_DOUBLE_EQ(t.at(0), 7.0);
    EXPECT_FLOAT_EQ(dev->values[0], 1.5f);
}

TEST(DeviceTensor, ReadsKeepTheDeviceCopyAndConversionsMakeHostTensors) {
    auto dev = std::make_shared<FakeDeviceStorage>(std::vector<float>{1, 2, 3, 4, 5, 6});
    const Tensor t = Tensor::on_device(f32, {2, 3}, dev);
    EXPECT_EQ(format_tensor(t), "[[1, 2, 3], [4, 5, 6]]");
    EXPECT_EQ(t.device_storage(), dev.get());
    Tensor r = t.reshaped({3, 2});
    EXPECT_EQ(r.device_storage(), dev.get());
    Tensor h = t.to_host();
    EXPECT_EQ(h.device_storage(), nullptr);
    h.data<float>()[0] = 9;  // a copy: t is unchanged and still on the device
    EXPECT_DOUBLE_EQ(t.at(0), 1.0);
    EXPECT_EQ(t.device_storage(), dev.get());
    EXPECT_DOUBLE_EQ(t.astype(f64).at(5), 6.0);
    EXPECT_EQ(dev->downloads, 1);
    EXPECT_THROW(Tensor::on_device(f32, {2}, nullptr), ValueError);
}
