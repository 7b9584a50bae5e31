// The host side of CUDA functions, against the null driver of tests/null_cuda, loaded by its
// path first so that the library's dlopen("libcuda.so.1") finds it and not a real driver.
// Kernels compile with NVRTC and load, launches are counted, memory is host memory, and no
// kernel computes anything. So what is checked here is what the library does around its
// kernels: the memory pool, uploads that happen once, the launches of a call, and a failed
// allocation's error and its effect on shared variables.
#include <dlfcn.h>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "agnesi/agnesi.hpp"

namespace agnesi {
namespace {

using ::testing::HasSubstr;

struct NullStats {
    long allocs, launches, modules, syncs, uploads, downloads, overlaps;
    std::size_t used;
    long memsets;
    std::size_t memset_bytes;
    long unloads;
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
        set_strict_ = reinterpret_cast<void (*)(bool)>(dlsym(lib, "agnesi_null_cuda_set_strict"));
        fail_launches_ =
            reinterpret_cast<void (*)(bool)>(dlsym(lib, "agnesi_null_cuda_fail_launches"));
        if (!read_ || !set_capacity_ || !set_strict_ || !fail_launches_)
            GTEST_SKIP() << "the driver loaded is not the null driver";
        set_capacity_(std::size_t(1) << 30);
    }
    void TearDown() override {
        if (set_capacity_) set_capacity_(std::size_t(1) << 30);
        if (set_strict_) set_strict_(false);
        if (fail_launches_) fail_launches_(false);
    }
    NullStats stats() const { return read_(); }
    NullStats (*read_)() = nullptr;
    void (*set_capacity_)(std::size_t) = nullptr;
    void (*set_strict_)(bool) = nullptr;
    void (*fail_launches_)(bool) = nullptr;
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

TEST_F(NullCuda, AFunctionUnloadsItsModulesWhenItGoes) {
    // Its modules: the one compiled with it, and one for a layout a call takes later (rows of
    // six values: the general kernel).
    Dim n = sym_dim("n"), m = sym_dim("m");
    auto X = variable("X", {n, m}, f32), b = variable("b", {m}, f32);
    NullStats before = stats();
    {
        Function f = compile({X, b}, {exp(X) + b}, {.device = Device::cuda(), .name = "unload"});
        f(Tensor(f32, {8, 16}), Tensor(f32, {16}));
        f(Tensor(f32, {8, 6}), Tensor(f32, {6}));
        EXPECT_EQ(stats().unloads, before.unloads);
    }
    NullStats after = stats();
    EXPECT_EQ(after.modules - before.modules, 2);
    EXPECT_EQ(after.unloads - before.unloads, after.modules - before.modules);
}

TEST_F(NullCuda, ProfileTimesEachGroupWithEvents) {
    // The null driver's events count a microsecond per launch between them: each group's
    // kernel is one launch, timed between its own two events.
    auto x = vector("x", 1 << 12, f32);
    Function f = compile(
        {x}, {exp(x) * 2 + 1, sum(x)},
        {.device = Device::cuda(), .asynchronous = true, .profile = true, .name = "profiled"});
    Tensor a(f32, {1 << 12});
    NullStats before = stats();
    for (int i = 0; i < 3; ++i) f(a);
    EXPECT_EQ(stats().syncs - before.syncs, 3) << "a profiled call waits for its work";
    std::vector<GroupProfile> prof = f.profile();
    ASSERT_EQ(prof.size(), 2u);
    EXPECT_THAT((std::vector<std::string>{prof[0].kind, prof[1].kind}),
                ::testing::UnorderedElementsAre("pointwise", "reduce"));
    for (const GroupProfile& g : prof) {
        EXPECT_EQ(g.calls, 3);
        EXPECT_NEAR(g.ms, 0.003, 1e-6);
    }
    Function plain = compile({x}, {x * 2}, {.device = Device::cuda(), .name = "plain"});
    EXPECT_THAT([&] { plain.profile(); },
                ::testing::ThrowsMessage<Error>(HasSubstr("CompileOptions::profile")));
}

TEST_F(NullCuda, KernelsCompileForTheLayoutsTheirCallsTake) {
    // Contiguous: the dense kernel alone, compiled with the function; calls compile nothing.
    auto x = vector("x", 1 << 12, f32);
    long m0 = stats().modules;
    Function f = compile({x}, {exp(x) * 2}, {.device = Device::cuda(), .name = "dense"});
    long m1 = stats().modules;
    EXPECT_EQ(m1 - m0, 1);
    f(Tensor(f32, {1 << 12}));
    EXPECT_EQ(stats().modules, m1);
    // A transposed input: the general kernel, compiled with the function.
    auto z = matrix("z", 64, 32, f32);
    Function t = compile({z}, {transpose(z) * 2}, {.device = Device::cuda(), .name = "strided"});
    long m2 = stats().modules;
    EXPECT_EQ(m2 - m1, 1);
    t(Tensor(f32, {64, 32}));
    EXPECT_EQ(stats().modules, m2);
    // Symbolic sizes are guessed: a bias along rows of `m` values goes by four, dense. Rows of
    // six values cannot: the general kernel is compiled at the first such call, once.
    Dim n = sym_dim("n"), m = sym_dim("m");
    auto X = variable("X", {n, m}, f32), b = variable("b", {m}, f32);
    Function g = compile({X, b}, {X + b}, {.device = Device::cuda(), .name = "guess"});
    long m3 = stats().modules;
    EXPECT_EQ(m3 - m2, 1);
    g(Tensor(f32, {8, 16}), Tensor(f32, {16}));
    EXPECT_EQ(stats().modules, m3);
    g(Tensor(f32, {8, 6}), Tensor(f32, {6}));
    EXPECT_EQ(stats().modules, m3 + 1);
    g(Tensor(f32, {5, 6}), Tensor(f32, {6}));
    g(Tensor(f32, {8, 16}), Tensor(f32, {16}));
    EXPECT_EQ(stats().modules, m3 + 1);
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

TEST_F(NullCuda, AFailedLaunchNamesTheKernelAndChangesNoSharedValue) {
    Tensor w0 = Tensor::from_vector<float>({4}, {1, 2, 3, 4});
    Expr w = shared("null_cuda_w_launch", w0);
    auto x = vector("x", 4, f32);
    Function f = compile({x}, {x * w},
                         {.updates = {{w, w * 2}}, .device = Device::cuda(), .name = "failing"});
    f(Tensor(f32, {4}));
    Tensor before = get_value(w).to_host();
    fail_launches_(true);
    try {
        f(Tensor(f32, {4}));
        FAIL() << "expected a CudaError";
    } catch (const CudaError& e) {
        EXPECT_EQ(e.call(), "cuLaunchKernel");
        EXPECT_THAT(e.what(), HasSubstr("CUDA call cuLaunchKernel failed: too many resources "
                                        "requested for launch"));
        EXPECT_THAT(e.what(), HasSubstr("launching kernel agnesi_failing_g0 of group 0"));
    }
    fail_launches_(false);
    Tensor after = get_value(w).to_host();
    for (int i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(after.data<float>()[i], before.data<float>()[i]);
}

TEST_F(NullCuda, ASplitReductionsCountersAreZeroWhereverTheSizesPutThem) {
    // A row split across blocks counts its finished blocks in the workspace, after the partial
    // results: for 1 row of 2^20 (256 parts, 132 SMs) the counter is at byte 8192, for 2 rows
    // of 2^18 (64 parts each) at 4096, on the first call's partial results, in the same
    // workspace. The kernels leave their counters at zero, so a workspace is zeroed when made
    // and its counters again only when they move.
    auto X = matrix("X", sym_dim("split_rows"), sym_dim("split_cols"), f32);
    Function f = compile({X}, {sum(X, {1})}, {.device = Device::cuda(), .name = "split"});
    Tensor one(f32, {1, 1 << 20}), two(f32, {2, 1 << 18});
    auto zeroed = [&](const Tensor& t) {
        NullStats before = stats();
        f(t);
        return stats().memset_bytes - before.memset_bytes;
    };
    EXPECT_EQ(zeroed(one), 256u * 32 + 4);
    EXPECT_EQ(zeroed(one), 0u);
    EXPECT_EQ(zeroed(two), 2u * 4);
    EXPECT_EQ(zeroed(two), 0u);
    EXPECT_EQ(zeroed(one), 4u);
}

TEST_F(NullCuda, AGroupOfSixtyFourSlotsIsPlanned) {
    // 63 inputs and an output: every slot aligned sets all 64 bits of the alignment mask. The
    // call takes the plan's dense kernel, compiled with the function, and no other.
    std::vector<Expr> xs;
    Expr total;
    for (int i = 0; i < 63; ++i) {
        xs.push_back(vector(fmt::format("x{}", i), 1024, f32));
        total = i ? total + xs.back() : xs.back();
    }
    Function f = compile(xs, {total}, {.device = Device::cuda(), .name = "wide"});
    std::vector<Tensor> in(63, Tensor(f32, {1024}));
    NullStats before = stats();
    f.call(in);
    EXPECT_EQ(stats().modules, before.modules) << "the call compiled another kernel variant";
    EXPECT_EQ(stats().launches - before.launches, 1);
}

// Asynchronous calls (CompileOptions::asynchronous): in strict mode the null driver fails a
// launch or a copy to the host while another stream has work pending, which is what would read
// unfinished results or race on a GPU.

TEST_F(NullCuda, AsynchronousCallsWaitOnlyWhenAResultIsRead) {
    auto x = vector("x", 4096, f32);
    Function f = compile({x}, {exp(x) * 2 + 1, sum(x)},
                         {.device = Device::cuda(), .asynchronous = true, .name = "async"});
    Tensor in(f32, {4096});
    // Warm: a call's results are still held while the next one computes, so the pool holds
    // two sets of output blocks.
    std::vector<Tensor> r;
    for (int i = 0; i < 3; ++i) r = f(in);
    f.synchronize();
    set_strict_(true);
    NullStats before = stats();
    for (int i = 0; i < 10; ++i) r = f(in);
    NullStats mid = stats();
    EXPECT_EQ(mid.syncs, before.syncs) << "an asynchronous call waited";
    // Temporaries go back to the pool while the stream may still use them; its next call takes
    // them again (the stream runs in order), so steady calls allocate nothing.
    EXPECT_EQ(mid.allocs, before.allocs);
    EXPECT_EQ(mid.launches - before.launches, 20);
    // Reading a result waits for the stream, then copies (with a wait of its own).
    // (The null driver computes nothing: the values are whatever the pool's block held.)
    EXPECT_NO_THROW(r[1].item());
    NullStats after = stats();
    EXPECT_EQ(after.overlaps, before.overlaps);
    EXPECT_EQ(after.syncs - mid.syncs, 2);
    // Now nothing is pending: reading the other result waits for its copy only.
    EXPECT_NO_THROW((void)r[0].data<float>()[0]);
    EXPECT_EQ(stats().syncs - after.syncs, 1);
}

TEST_F(NullCuda, AnotherStreamWaitsForTheWorkThatWroteItsInput) {
    auto x = vector("x", 4096, f32);
    CompileOptions o{.device = Device::cuda(), .asynchronous = true};
    Function f = compile({x}, {x * 2}, o);
    Function g = compile({x}, {x + 1}, o);
    Tensor in(f32, {4096});
    set_strict_(true);
    NullStats before = stats();
    Tensor y = f(in)[0];  // pending on f's stream
    Tensor z = g(y)[0];   // g's stream first waits for f's
    EXPECT_EQ(stats().overlaps, before.overlaps) << "g launched while f's work was pending";
    EXPECT_EQ(stats().syncs - before.syncs, 1);
    g.synchronize();
    EXPECT_NO_THROW((void)z.data<float>()[0]);
    EXPECT_EQ(stats().overlaps, before.overlaps);
}

TEST_F(NullCuda, ReleasedMemoryGoesToAnotherStreamOnlyAfterAWait) {
    auto x = vector("x", 1 << 14, f32);
    CompileOptions o{.device = Device::cuda(), .asynchronous = true};
    Function f = compile({x}, {exp(x)}, o);
    Function g = compile({x}, {exp(x) + 1}, o);
    Tensor in(f32, {1 << 14});
    f(in);  // its input's temporary goes back to the pool while f's stream may still read it
    f(in);
    NullStats before = stats();
    g(in);  // the same size: g may not take f's block
    EXPECT_EQ(stats().allocs - before.allocs, 2) << "g took a block f's stream may still use";
    // Once f's stream is waited for, its blocks are free for every stream.
    f.synchronize();
    g.synchronize();
    before = stats();
    for (int i = 0; i < 4; ++i) g(in);
    EXPECT_EQ(stats().allocs, before.allocs);
    g.synchronize();
}

TEST_F(NullCuda, OutOfMemoryWaitsForStreamsHoldingReleasedMemory) {
    auto x = vector("x", 1 << 18, f32);  // 1 MiB
    Function f = compile({x}, {exp(x)}, {.device = Device::cuda(), .asynchronous = true});
    Tensor in(f32, {1 << 18});
    // An allocation that fails empties the pool: the blocks earlier tests left in it go back.
    set_capacity_(0);
    EXPECT_THROW(f(in), CudaError);
    set_capacity_(std::size_t(1) << 30);
    for (int i = 0; i < 3; ++i) f(in);  // blocks released while f's stream may still run
    // No room beyond what is allocated now: a function of other sizes must wait for f's
    // stream, give the released blocks back and allocate again.
    set_capacity_(stats().used);
    auto w = vector("w", 1 << 17, f32);
    Function g = compile({w}, {w * 3}, {.device = Device::cuda()});
    NullStats before = stats();
    EXPECT_NO_THROW(g(Tensor(f32, {1 << 17})));
    EXPECT_GT(stats().syncs, before.syncs);
}

}  // namespace
}  // namespace agnesi
