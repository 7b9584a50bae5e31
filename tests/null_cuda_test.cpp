// The host side of CUDA functions, against the null driver of tests/null_cuda, loaded by its
// path first so that the library's dlopen("libcuda.so.1") finds it and not a real driver.
// Kernels compile with NVRTC and load, launches are counted, memory is host memory, and no
// kernel computes anything. So what is checked here is what the library does around its
// kernels: the memory pool, uploads that happen once, the launches of a call, and a failed
// allocation's error and its effect on shared variables.
#include <dlfcn.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "agnesi/agnesi.hpp"

namespace agnesi {
namespace {

using ::testing::HasSubstr;

struct NullStats {
    long allocs, launches, modules, syncs, uploads, downloads;
    std::size_t used;
};

class NullCuda : public ::testing::Test {
  protected:
    void SetUp() override {
        void* lib = dlopen(AGNESI_NULL_CUDA_PATH, RTLD_NOW | RTLD_GLOBAL);
        ASSERT_NE(lib, nullptr) << dlerror();
        auto a = cuda_availability();
        if (!a.available) GTEST_SKIP() << "no CUDA (NVRTC missing?): " << a.reason;
        read_ = reinterpret_cast<NullStats (*)()>(dlsym(lib, "agnesi_null_cuda_read"));
        set_capacity_ =
            reinterpret_cast<void (*)(std::size_t)>(dlsym(lib, "agnesi_null_cuda_set_capacity"));
        if (!read_ || !set_capacity_) GTEST_SKIP() << "the driver loaded is not the null driver";
        set_capacity_(std::size_t(1) << 30);
    }
    void TearDown() override {
        if (set_capacity_) set_capacity_(std::size_t(1) << 30);
    }
    NullStats stats() const { return read_(); }
    NullStats (*read_)() = nullptr;
    void (*set_capacity_)(std::size_t) = nullptr;
};

TEST_F(NullCuda, TheDeviceIsTheNullDriversOne) {
    Device d = Device::cuda();
    EXPECT_EQ(d.name(), "cuda:0");
    EXPECT_THROW(Device::cuda(1), Error);
}

TEST_F(NullCuda, CallsReuseThePoolAndLaunchOnceAGroup) {
    auto x = vector("x", 1 << 16, f32);
    Function f = compile({x}, {exp(x) * 2 + 1, sum(x)}, {.device = Device::cuda(), .name = "pool"});
    Tensor a(f32, {1 << 16});
    f(a);
    NullStats before = stats();
    for (int i = 0; i < 20; ++i) f(a);
    NullStats after = stats();
    EXPECT_EQ(after.allocs, before.allocs) << "a call allocated device memory";
    // Two groups (the pointwise chain and the sum), one launch each per call.
    EXPECT_EQ(after.launches - before.launches, 40);
    EXPECT_EQ(after.uploads - before.uploads, 20) << "the host input, once per call";
    EXPECT_EQ(after.modules, before.modules);
}

TEST_F(NullCuda, SharedValuesUploadOnceAndStayOnTheDevice) {
    Tensor w0 = Tensor::from_vector<float>({4}, {1, 2, 3, 4});
    Expr w = shared("null_cuda_w", w0);
    auto x = vector("x", 4, f32);
    Function f = compile({x}, {x * w}, {.device = Device::cuda(), .name = "resident"});
    Tensor a(f32, {4});
    f(a);
    ASSERT_NE(get_value(w).device_storage(), nullptr);
    NullStats before = stats();
    f(a);
    f(a);
    EXPECT_EQ(stats().uploads - before.uploads, 2) << "only x: w stays on the device";
    // Read back from the device: the values uploaded.
    Tensor back = get_value(w);
    for (int i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(back.data<float>()[i], w0.data<float>()[i]);
    EXPECT_GT(stats().downloads, before.downloads);
}

TEST_F(NullCuda, AFailedAllocationSaysWhatAndChangesNoSharedValue) {
    Tensor w0 = Tensor::from_vector<float>({4}, {1, 2, 3, 4});
    Expr w = shared("null_cuda_w_oom", w0);
    auto x = variable("x", {sym_dim("n")}, f32);
    Function f = compile({x}, {sum(x) * w},
                         {.updates = {{w, w + sum(x)}}, .device = Device::cuda(), .name = "oom"});
    f(Tensor(f32, {16}));  // w on the device now
    Tensor before = get_value(w).to_host();
    // Room for little more than what is in use: 8 MiB of input cannot be uploaded.
    set_capacity_(stats().used + (std::size_t(1) << 20));
    try {
        f(Tensor(f32, {1 << 21}));
        FAIL() << "expected a CudaError";
    } catch (const CudaError& e) {
        EXPECT_THAT(e.what(), HasSubstr("cannot allocate 8388608 bytes on CUDA device 0"));
        EXPECT_THAT(e.what(), HasSubstr("out of memory"));
        EXPECT_THAT(e.what(), HasSubstr("bytes free of"));
        EXPECT_EQ(e.call(), "cuMemAlloc");
    }
    Tensor after = get_value(w).to_host();
    for (int i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(after.data<float>()[i], before.data<float>()[i]);
    // With room again, the same call goes through.
    set_capacity_(std::size_t(1) << 30);
    EXPECT_NO_THROW(f(Tensor(f32, {1 << 21})));
}

}  // namespace
}  // namespace agnesi
