// The CUDA driver API, cuBLAS and cuBLASLt through dlopen (see driver.hpp). Types and signatures
// come from the toolkit's headers; the functions are looked up by their versioned symbol names.
#include "jit/cuda/driver.hpp"

#include <cublasLt.h>
#include <cublas_api.h>
#include <cuda.h>
#include <dlfcn.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <map>
#include <tuple>

#include "agnesi/error.hpp"

namespace agnesi::jit::cuda {
namespace {

struct Driver {
    decltype(&::cuInit) cuInit = nullptr;
    decltype(&::cuDriverGetVersion) cuDriverGetVersion = nullptr;
    decltype(&::cuDeviceGetCount) cuDeviceGetCount = nullptr;
    decltype(&::cuDeviceGet) cuDeviceGet = nullptr;
    decltype(&::cuDeviceGetName) cuDeviceGetName = nullptr;
    decltype(&::cuDeviceGetAttribute) cuDeviceGetAttribute = nullptr;
    decltype(&::cuDevicePrimaryCtxRetain) cuDevicePrimaryCtxRetain = nullptr;
    decltype(&::cuCtxSetCurrent) cuCtxSetCurrent = nullptr;
    decltype(&::cuModuleLoadData) cuModuleLoadData = nullptr;
    decltype(&::cuModuleGetFunction) cuModuleGetFunction = nullptr;
    decltype(&::cuModuleUnload) cuModuleUnload = nullptr;
    decltype(&::cuLaunchKernel) cuLaunchKernel = nullptr;
    decltype(&::cuMemAlloc) cuMemAlloc = nullptr;
    decltype(&::cuMemFree) cuMemFree = nullptr;
    decltype(&::cuMemGetInfo) cuMemGetInfo = nullptr;
    decltype(&::cuMemcpyHtoDAsync) cuMemcpyHtoDAsync = nullptr;
    decltype(&::cuMemcpyDtoHAsync) cuMemcpyDtoHAsync = nullptr;
    decltype(&::cuMemcpyDtoDAsync) cuMemcpyDtoDAsync = nullptr;
    decltype(&::cuMemsetD8Async) cuMemsetD8Async = nullptr;
    decltype(&::cuStreamCreate) cuStreamCreate = nullptr;
    decltype(&::cuStreamDestroy) cuStreamDestroy = nullptr;
    decltype(&::cuStreamSynchronize) cuStreamSynchronize = nullptr;
    decltype(&::cuGetErrorString) cuGetErrorString = nullptr;
    decltype(&::cuEventCreate) cuEventCreate = nullptr;
    decltype(&::cuEventRecord) cuEventRecord = nullptr;
    decltype(&::cuEventElapsedTime) cuEventElapsedTime = nullptr;
    decltype(&::cuEventDestroy) cuEventDestroy = nullptr;
    std::string error;  // why the driver is unusable
    int count = 0;
};

template <class F>
void load(void* lib, F& f, const char* name, std::string& error) {
    f = reinterpret_cast<F>(dlsym(lib, name));
    if (!f && error.empty()) error = fmt::format("the CUDA driver has no {}", name);
}

// The first of `names` that dlopen finds; null when none is.
void* open_first(std::initializer_list<const char*> names) {
    for (const char* n : names)
        if (void* lib = dlopen(n, RTLD_NOW | RTLD_LOCAL)) return lib;
    return nullptr;
}

const Driver& driver() {
    static const Driver d = [] {
        Driver r;
        void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
        if (!lib) {
            const char* e = dlerror();
            r.error = fmt::format("the NVIDIA driver library libcuda.so.1 cannot be loaded ({})",
                                  e ? e : "not found");
            return r;
        }
        load(lib, r.cuInit, "cuInit", r.error);
        load(lib, r.cuDriverGetVersion, "cuDriverGetVersion", r.error);
        load(lib, r.cuDeviceGetCount, "cuDeviceGetCount", r.error);
        load(lib, r.cuDeviceGet, "cuDeviceGet", r.error);
        load(lib, r.cuDeviceGetName, "cuDeviceGetName", r.error);
        load(lib, r.cuDeviceGetAttribute, "cuDeviceGetAttribute", r.error);
        load(lib, r.cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain", r.error);
        load(lib, r.cuCtxSetCurrent, "cuCtxSetCurrent", r.error);
        load(lib, r.cuModuleLoadData, "cuModuleLoadData", r.error);
        load(lib, r.cuModuleGetFunction, "cuModuleGetFunction", r.error);
        load(lib, r.cuModuleUnload, "cuModuleUnload", r.error);
        load(lib, r.cuLaunchKernel, "cuLaunchKernel", r.error);
        load(lib, r.cuMemAlloc, "cuMemAlloc_v2", r.error);
        load(lib, r.cuMemFree, "cuMemFree_v2", r.error);
        load(lib, r.cuMemGetInfo, "cuMemGetInfo_v2", r.error);
        load(lib, r.cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2", r.error);
        load(lib, r.cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2", r.error);
        load(lib, r.cuMemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2", r.error);
        load(lib, r.cuMemsetD8Async, "cuMemsetD8Async", r.error);
        load(lib, r.cuStreamCreate, "cuStreamCreate", r.error);
        load(lib, r.cuStreamDestroy, "cuStreamDestroy_v2", r.error);
        load(lib, r.cuStreamSynchronize, "cuStreamSynchronize", r.error);
        load(lib, r.cuGetErrorString, "cuGetErrorString", r.error);
        load(lib, r.cuEventCreate, "cuEventCreate", r.error);
        load(lib, r.cuEventRecord, "cuEventRecord", r.error);
        load(lib, r.cuEventDestroy, "cuEventDestroy_v2", r.error);
        // The elapsed time has a _v2 since CUDA 12.8; older drivers have only the first.
        r.cuEventElapsedTime = reinterpret_cast<decltype(r.cuEventElapsedTime)>(
            dlsym(lib, "cuEventElapsedTime_v2") ? dlsym(lib, "cuEventElapsedTime_v2")
                                                : dlsym(lib, "cuEventElapsedTime"));
        if (!r.cuEventElapsedTime && r.error.empty())
            r.error = "the CUDA driver has no cuEventElapsedTime";
        if (!r.error.empty()) return r;
        if (CUresult e = r.cuInit(0); e != CUDA_SUCCESS) {
            const char* s = nullptr;
            r.cuGetErrorString(e, &s);
            r.error =
                fmt::format("cuInit failed: {} ({})", s ? s : "unknown error", static_cast<int>(e));
            return r;
        }
        if (r.cuDeviceGetCount(&r.count) != CUDA_SUCCESS || r.count == 0)
            r.error = "the driver reports no CUDA device";
        return r;
    }();
    return d;
}

// The one checking macro every driver call goes through.
#define AGNESI_CU(call)                                                        \
    do {                                                                       \
        CUresult agnesi_status_ = (call);                                      \
        if (agnesi_status_ != CUDA_SUCCESS) throw_cuda(#call, agnesi_status_); \
    } while (0)

[[noreturn]] void throw_cuda(const char* call, CUresult status) {
    const char* s = nullptr;
    if (driver().cuGetErrorString) driver().cuGetErrorString(status, &s);
    // The call's text is "driver().cuName(...)" or "d.cuName(...)": its entry point's name.
    std::string c = call;
    for (const char* obj : {"driver().", "d."})
        if (c.rfind(obj, 0) == 0) c = c.substr(std::strlen(obj));
    c = c.substr(0, c.find('('));
    throw CudaError(fmt::format("CUDA call {} failed: {} ({})", c, s ? s : "unknown error",
                                static_cast<int>(status)),
                    c, static_cast<int>(status));
}

const Driver& checked_driver() {
    const Driver& d = driver();
    if (!d.error.empty()) throw Error("no CUDA device available: " + d.error);
    return d;
}

// cuBLAS, also through dlopen.
struct Blas {
    decltype(&::cublasCreate_v2) create = nullptr;
    decltype(&::cublasSetStream_v2) set_stream = nullptr;
    decltype(&::cublasSgemmStridedBatched) sgemm = nullptr;
    decltype(&::cublasDgemmStridedBatched) dgemm = nullptr;
    decltype(&::cublasSgemv_v2) sgemv = nullptr;
    decltype(&::cublasDgemv_v2) dgemv = nullptr;
    std::string error;
};

const Blas& blas() {
    static const Blas b = [] {
        Blas r;
        void* lib = open_first({"libcublas.so.13", "libcublas.so.12", "libcublas.so",
                                "/usr/local/cuda/lib64/libcublas.so"});
        if (!lib) {
            r.error = "cuBLAS (libcublas.so.13) cannot be loaded";
            return r;
        }
        load(lib, r.create, "cublasCreate_v2", r.error);
        load(lib, r.set_stream, "cublasSetStream_v2", r.error);
        load(lib, r.sgemm, "cublasSgemmStridedBatched", r.error);
        load(lib, r.dgemm, "cublasDgemmStridedBatched", r.error);
        load(lib, r.sgemv, "cublasSgemv_v2", r.error);
        load(lib, r.dgemv, "cublasDgemv_v2", r.error);
        return r;
    }();
    return b;
}

// cuBLASLt, also through dlopen; only for fused epilogues, so its absence is no error.
struct BlasLt {
    decltype(&::cublasLtCreate) create = nullptr;
    decltype(&::cublasLtMatmulDescCreate) desc_create = nullptr;
    decltype(&::cublasLtMatmulDescSetAttribute) desc_set = nullptr;
    decltype(&::cublasLtMatrixLayoutCreate) layout_create = nullptr;
    decltype(&::cublasLtMatmulPreferenceCreate) pref_create = nullptr;
    decltype(&::cublasLtMatmulPreferenceSetAttribute) pref_set = nullptr;
    decltype(&::cublasLtMatmulPreferenceDestroy) pref_destroy = nullptr;
    decltype(&::cublasLtMatmulAlgoGetHeuristic) heuristic = nullptr;
    decltype(&::cublasLtMatmul) matmul = nullptr;
    std::string error;
};

const BlasLt& blas_lt() {
    static const BlasLt b = [] {
        BlasLt r;
        void* lib = open_first({"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so",
                                "/usr/local/cuda/lib64/libcublasLt.so"});
        if (!lib) {
            r.error = "cuBLASLt (libcublasLt.so.13) cannot be loaded";
            return r;
        }
        load(lib, r.create, "cublasLtCreate", r.error);
        load(lib, r.desc_create, "cublasLtMatmulDescCreate", r.error);
        load(lib, r.desc_set, "cublasLtMatmulDescSetAttribute", r.error);
        load(lib, r.layout_create, "cublasLtMatrixLayoutCreate", r.error);
        load(lib, r.pref_create, "cublasLtMatmulPreferenceCreate", r.error);
        load(lib, r.pref_set, "cublasLtMatmulPreferenceSetAttribute", r.error);
        load(lib, r.pref_destroy, "cublasLtMatmulPreferenceDestroy", r.error);
        load(lib, r.heuristic, "cublasLtMatmulAlgoGetHeuristic", r.error);
        load(lib, r.matmul, "cublasLtMatmul", r.error);
        return r;
    }();
    return b;
}

// Row-major C = A B is column-major C^T = B^T A^T: B goes first. A row-major operand (unit
// column stride) is its column-major transpose as stored (no op); a column-major one (unit row
// stride) needs op T.
struct BlasOp {
    cublasOperation_t op;
    std::int64_t ld;
};

BlasOp blas_layout(const CudaDevice::GemmOperand& x, std::int64_t rows, std::int64_t cols,
                   const char* which) {
    std::int64_t rs = rows == 1 ? cols : x.row, cs = cols == 1 ? 1 : x.col;
    if (cs == 1 && rs >= cols) return {CUBLAS_OP_N, std::max<std::int64_t>(rs, 1)};
    rs = rows == 1 ? 1 : x.row;
    cs = cols == 1 ? rows : x.col;
    if (rs == 1 && cs >= rows) return {CUBLAS_OP_T, std::max<std::int64_t>(cs, 1)};
    throw Error(
        fmt::format("matmul on CUDA: operand {} has strides ({}, {}); cuBLAS takes "
                    "row- or column-major matrices",
                    which, x.row, x.col));
}

// One product shape with its epilogue, prepared once: descriptors and the algorithm chosen.
struct LtProduct {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
    bool ok = false;  // false: cuBLASLt offers no algorithm; the plain path is used
};

struct LtState {
    cublasLtHandle_t handle = nullptr;
    DevicePtr workspace = 0;
    // (m, n, k, op A, ld A, op B, ld B, relu) -> prepared product. Descriptors live as long as
    // the device (never destroyed, like the device itself).
    std::map<std::tuple<std::int64_t, std::int64_t, std::int64_t, int, std::int64_t, int,
                        std::int64_t, bool>,
             LtProduct>
        products;
};

constexpr std::size_t kLtWorkspaceBytes = std::size_t(32) << 20;
constexpr std::uint32_t kLtAlignment = 16;

#define AGNESI_CUBLAS(call)                                                            \
    do {                                                                               \
        cublasStatus_t agnesi_status_ = (call);                                        \
        if (agnesi_status_ != CUBLAS_STATUS_SUCCESS)                                   \
            throw CudaError(fmt::format("cuBLAS call {} failed with status {}", #call, \
                                        static_cast<int>(agnesi_status_)),             \
                            #call, static_cast<int>(agnesi_status_));                  \
    } while (0)

}  // namespace

CudaAvailability probe_cuda() {
    const Driver& d = driver();
    if (!d.error.empty()) return {false, d.error};
    return {true, fmt::format("{} CUDA device{}", d.count, d.count == 1 ? "" : "s")};
}

std::size_t pool_size_class(std::size_t bytes) {
    if (bytes == 0) bytes = 1;
    if (bytes <= (1u << 20)) return (bytes + 511) / 512 * 512;
    std::size_t p = 1u << 20;
    while (p < bytes) p <<= 1;
    std::size_t quarter = p / 8;  // p/2 < bytes <= p: steps of p/8 between them
    return (bytes + quarter - 1) / quarter * quarter;
}

CudaDevice& CudaDevice::get(int ordinal) {
    const Driver& d = checked_driver();
    if (ordinal < 0 || ordinal >= d.count)
        throw Error(fmt::format("no CUDA device {}: the driver reports {} device{}", ordinal,
                                d.count, d.count == 1 ? "" : "s"));
    static std::mutex mutex;
    static std::array<CudaDevice*, 64> devices{};
    std::lock_guard lock(mutex);
    auto& slot = devices.at(static_cast<std::size_t>(ordinal));
    if (!slot) slot = new CudaDevice(ordinal);  // never destroyed (see driver.hpp)
    return *slot;
}

CudaDevice::CudaDevice(int ordinal) : ordinal_(ordinal) {
    const Driver& d = checked_driver();
    CUdevice dev;
    AGNESI_CU(d.cuDeviceGet(&dev, ordinal));
    device_ = dev;
    CUcontext ctx;
    AGNESI_CU(d.cuDevicePrimaryCtxRetain(&ctx, dev));
    context_ = ctx;
    make_current();
    char name[256] = {};
    AGNESI_CU(d.cuDeviceGetName(name, sizeof name, dev));
    name_ = name;
    AGNESI_CU(d.cuDeviceGetAttribute(&major_, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev));
    AGNESI_CU(d.cuDeviceGetAttribute(&minor_, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev));
    AGNESI_CU(d.cuDeviceGetAttribute(&sm_count_, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev));
}

std::string CudaDevice::arch() const {
    return fmt::format("sm_{}{}", major_, minor_);
}

void CudaDevice::make_current() const {
    AGNESI_CU(driver().cuCtxSetCurrent(static_cast<CUcontext>(context_)));
}

Module CudaDevice::load_module(const std::string& cubin) const {
    make_current();
    CUmodule m;
    AGNESI_CU(driver().cuModuleLoadData(&m, cubin.data()));
    return m;
}

Kernel CudaDevice::kernel(Module m, const std::string& name) const {
    CUfunction f;
    AGNESI_CU(driver().cuModuleGetFunction(&f, static_cast<CUmodule>(m), name.c_str()));
    return f;
}

void CudaDevice::launch(Kernel k, unsigned grid, unsigned block, Stream s, void** params) const {
    AGNESI_CU(driver().cuLaunchKernel(static_cast<CUfunction>(k), grid, 1, 1, block, 1, 1, 0,
                                      static_cast<CUstream>(s), params, nullptr));
}

Stream CudaDevice::create_stream() const {
    make_current();
    CUstream s;
    AGNESI_CU(driver().cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    return s;
}

void CudaDevice::unload_module(Module m) const {
    make_current();
    driver().cuModuleUnload(static_cast<CUmodule>(m));  // best effort, from destructors
}

void CudaDevice::destroy_stream(Stream s) const {
    driver().cuStreamDestroy(static_cast<CUstream>(s));  // best effort, from destructors
}

void CudaDevice::synchronize(Stream s) const {
    AGNESI_CU(driver().cuStreamSynchronize(static_cast<CUstream>(s)));
}

Event CudaDevice::create_event() const {
    make_current();
    CUevent e;
    AGNESI_CU(driver().cuEventCreate(&e, CU_EVENT_DEFAULT));
    return e;
}

void CudaDevice::record(Event e, Stream s) const {
    AGNESI_CU(driver().cuEventRecord(static_cast<CUevent>(e), static_cast<CUstream>(s)));
}

double CudaDevice::elapsed_ms(Event from, Event to) const {
    float ms = 0;
    AGNESI_CU(
        driver().cuEventElapsedTime(&ms, static_cast<CUevent>(from), static_cast<CUevent>(to)));
    return ms;
}

void CudaDevice::destroy_event(Event e) const {
    driver().cuEventDestroy(static_cast<CUevent>(e));
}

void CudaDevice::trim_pool() {
    for (auto& [size, ptrs] : free_)
        for (DevicePtr p : ptrs) driver().cuMemFree(p);
    free_.clear();
}

namespace {
// With the pool's lock held.
bool pending_locked(const StreamUse& u) {
    return u.tag && u.tag->stream && u.tag->done < u.batch;
}
bool any_pending_locked(const std::vector<StreamUse>& uses) {
    return std::ranges::any_of(uses, pending_locked);
}
}  // namespace

void CudaDevice::free_finished() {
    for (auto it = deferred_.begin(); it != deferred_.end();) {
        if (any_pending_locked(it->uses)) {
            ++it;
            continue;
        }
        free_[it->size].push_back(it->ptr);
        it = deferred_.erase(it);
    }
}

StreamRef CudaDevice::create_tagged_stream() {
    auto t = std::make_shared<StreamTag>();
    t->stream = create_stream();
    return t;
}

void CudaDevice::retire(const StreamRef& tag) {
    Stream s = nullptr;
    {
        std::lock_guard lock(pool_mutex_);
        if (!tag || !tag->stream) return;
        s = tag->stream;
    }
    try {  // from destructors: an error here was reported by the call that caused it
        synchronize(s);
    } catch (...) {
    }
    {
        std::lock_guard lock(pool_mutex_);
        tag->done = tag->issued;
        tag->stream = nullptr;
        free_finished();
    }
    destroy_stream(s);
}

StreamUse CudaDevice::begin_batch(const StreamRef& tag) {
    std::lock_guard lock(pool_mutex_);
    return {tag, tag->issued + 1};
}

void CudaDevice::end_batch(const StreamUse& use) {
    std::lock_guard lock(pool_mutex_);
    use.tag->issued = std::max(use.tag->issued, use.batch);
}

bool CudaDevice::pending(const StreamUse& use) {
    std::lock_guard lock(pool_mutex_);
    return pending_locked(use);
}

void CudaDevice::wait(const StreamUse& use) {
    Stream s = nullptr;
    std::uint64_t upto = 0;
    {
        std::lock_guard lock(pool_mutex_);
        if (!pending_locked(use)) return;
        s = use.tag->stream;
        // Every batch launched in full by now. A batch still launching (another thread's call)
        // only reads what it shares with others: what it writes nobody else holds yet.
        upto = use.tag->issued;
    }
    synchronize(s);
    std::lock_guard lock(pool_mutex_);
    use.tag->done = std::max(use.tag->done, upto);
    free_finished();
}

DevicePtr CudaDevice::alloc(std::size_t bytes, const StreamRef& tag) {
    std::size_t size = pool_size_class(bytes);
    {
        std::lock_guard lock(pool_mutex_);
        auto it = free_.find(size);
        if (it != free_.end() && !it->second.empty()) {
            DevicePtr p = it->second.back();
            it->second.pop_back();
            sizes_[p] = size;
            return p;
        }
        // A block that only this stream may still use is free for it: its work runs in order.
        auto only_this = [&](const StreamUse& u) { return u.tag == tag || !pending_locked(u); };
        if (tag)
            for (auto d = deferred_.begin(); d != deferred_.end(); ++d)
                if (d->size == size && std::ranges::all_of(d->uses, only_this)) {
                    DevicePtr p = d->ptr;
                    deferred_.erase(d);
                    sizes_[p] = size;
                    return p;
                }
    }
    make_current();
    CUdeviceptr p = 0;
    CUresult r = driver().cuMemAlloc(&p, size);
    if (r == CUDA_ERROR_OUT_OF_MEMORY) {
        // Wait for the streams that hold released blocks, give every cached block back to the
        // driver, and try once more.
        std::vector<StreamUse> holders;
        {
            std::lock_guard lock(pool_mutex_);
            for (const Deferred& d : deferred_)
                holders.insert(holders.end(), d.uses.begin(), d.uses.end());
        }
        for (const StreamUse& u : holders) wait(u);
        {
            std::lock_guard lock(pool_mutex_);
            trim_pool();
        }
        r = driver().cuMemAlloc(&p, size);
    }
    if (r != CUDA_SUCCESS) {
        std::size_t free_b = 0, total = 0;
        driver().cuMemGetInfo(&free_b, &total);
        const char* s = nullptr;
        driver().cuGetErrorString(r, &s);
        throw CudaError(fmt::format("cannot allocate {} bytes on CUDA device {}: {} ({} bytes "
                                    "free of {})",
                                    bytes, ordinal_, s ? s : "error", free_b, total),
                        "cuMemAlloc", static_cast<int>(r));
    }
    std::lock_guard lock(pool_mutex_);
    sizes_[p] = size;
    return p;
}

void CudaDevice::release(DevicePtr p, const std::vector<StreamUse>& uses) {
    if (!p) return;
    std::lock_guard lock(pool_mutex_);
    auto it = sizes_.find(p);
    if (it == sizes_.end()) return;
    std::size_t size = it->second;
    sizes_.erase(it);
    if (any_pending_locked(uses))
        deferred_.push_back({p, size, uses});
    else
        free_[size].push_back(p);
}

void CudaDevice::claim_blas(const StreamUse& use) {
    if (blas_use_.tag && blas_use_.tag != use.tag) wait(blas_use_);
    blas_use_ = use;
}

void CudaDevice::upload(DevicePtr dst, const void* src, std::size_t bytes, Stream s) const {
    if (bytes) AGNESI_CU(driver().cuMemcpyHtoDAsync(dst, src, bytes, static_cast<CUstream>(s)));
}
void CudaDevice::download(void* dst, DevicePtr src, std::size_t bytes, Stream s) const {
    if (bytes) AGNESI_CU(driver().cuMemcpyDtoHAsync(dst, src, bytes, static_cast<CUstream>(s)));
}
void CudaDevice::copy(DevicePtr dst, DevicePtr src, std::size_t bytes, Stream s) const {
    if (bytes) AGNESI_CU(driver().cuMemcpyDtoDAsync(dst, src, bytes, static_cast<CUstream>(s)));
}
void CudaDevice::zero(DevicePtr dst, std::size_t bytes, Stream s) const {
    if (bytes) AGNESI_CU(driver().cuMemsetD8Async(dst, 0, bytes, static_cast<CUstream>(s)));
}

void CudaDevice::gemm(DType dtype, std::int64_t m, std::int64_t n, std::int64_t k,
                      const GemmOperand& a, const GemmOperand& b, DevicePtr c, std::int64_t batch,
                      const StreamUse& use) {
    Stream s = use.tag->stream;
    if (dtype != DType::Float32 && dtype != DType::Float64)
        throw TypeError(
            fmt::format("matmul of {} operands is not supported on CUDA (cuBLAS "
                        "multiplies float32 and float64)",
                        dtype_name(dtype)));
    std::size_t esize = dtype_size(dtype);
    if (m == 0 || n == 0 || batch == 0) return;
    if (k == 0) return zero(c, static_cast<std::size_t>(m * n * batch) * esize, s);
    const Blas& bl = blas();
    if (!bl.error.empty()) throw Error("matmul on CUDA: " + bl.error);
    std::lock_guard lock(blas_mutex_);  // the handle's stream is set per call
    claim_blas(use);
    if (!cublas_) {
        make_current();
        cublasHandle_t h;
        AGNESI_CUBLAS(bl.create(&h));
        cublas_ = h;
    }
    auto h = static_cast<cublasHandle_t>(cublas_);
    AGNESI_CUBLAS(bl.set_stream(h, static_cast<cudaStream_t>(s)));
    using Op = BlasOp;
    Op oa = blas_layout(a, m, k, "A"), ob = blas_layout(b, k, n, "B");
    // cuBLAS's sizes, strides and batch counts are ints.
    auto i = [&](std::int64_t v) {
        if (v > std::numeric_limits<int>::max())
            throw ShapeError(fmt::format(
                "matmul on CUDA: a product of ({}, {}) by ({}, {}) in a batch of {} has a size or "
                "stride of {}, past the 2^31 - 1 that cuBLAS takes",
                m, k, k, n, batch, v));
        return static_cast<int>(v);
    };
    // A matrix times a vector: GEMV, which reads the matrix once at full bandwidth (GEMM with
    // one column does not). C = A b reads A (op oa) against b's column; C = a B is C^T = B^T a^T.
    std::int64_t vinc = n == 1 ? (k == 1 ? 1 : b.row) : (k == 1 ? 1 : a.col);
    if (batch == 1 && (n == 1 || m == 1) && vinc > 0) {
        bool right = n == 1;  // the matrix is A, else B
        const GemmOperand& mat = right ? a : b;
        const GemmOperand& vec = right ? b : a;
        Op om = right ? oa : ob;
        std::int64_t rows = right ? m : k, cols = right ? k : n;  // of the row-major matrix
        // The column-major view of a row-major matrix (op N) is its transpose (cols x rows), of
        // a column-major one (op T) the matrix itself. A b needs the matrix: op T on a
        // transposed view; a B needs B^T: op N on it.
        bool transposed_view = om.op == CUBLAS_OP_N;
        std::int64_t cm_rows = transposed_view ? cols : rows;
        std::int64_t cm_cols = transposed_view ? rows : cols;
        cublasOperation_t op = transposed_view == right ? CUBLAS_OP_T : CUBLAS_OP_N;
        if (dtype == DType::Float32) {
            float one = 1, zero_v = 0;
            AGNESI_CUBLAS(bl.sgemv(h, op, i(cm_rows), i(cm_cols), &one,
                                   reinterpret_cast<const float*>(mat.ptr), i(om.ld),
                                   reinterpret_cast<const float*>(vec.ptr), i(vinc), &zero_v,
                                   reinterpret_cast<float*>(c), 1));
        } else {
            double one = 1, zero_v = 0;
            AGNESI_CUBLAS(bl.dgemv(h, op, i(cm_rows), i(cm_cols), &one,
                                   reinterpret_cast<const double*>(mat.ptr), i(om.ld),
                                   reinterpret_cast<const double*>(vec.ptr), i(vinc), &zero_v,
                                   reinterpret_cast<double*>(c), 1));
        }
        return;
    }
    if (dtype == DType::Float32) {
        float one = 1, zero_v = 0;
        AGNESI_CUBLAS(bl.sgemm(h, ob.op, oa.op, i(n), i(m), i(k), &one,
                               reinterpret_cast<const float*>(b.ptr), i(ob.ld), b.batch,
                               reinterpret_cast<const float*>(a.ptr), i(oa.ld), a.batch, &zero_v,
                               reinterpret_cast<float*>(c), i(n), m * n, i(batch)));
    } else {
        double one = 1, zero_v = 0;
        AGNESI_CUBLAS(bl.dgemm(h, ob.op, oa.op, i(n), i(m), i(k), &one,
                               reinterpret_cast<const double*>(b.ptr), i(ob.ld), b.batch,
                               reinterpret_cast<const double*>(a.ptr), i(oa.ld), a.batch, &zero_v,
                               reinterpret_cast<double*>(c), i(n), m * n, i(batch)));
    }
}

bool CudaDevice::gemm_bias(std::int64_t m, std::int64_t n, std::int64_t k, const GemmOperand& a,
                           const GemmOperand& b, DevicePtr bias, bool relu, DevicePtr c,
                           const StreamUse& use) {
    const BlasLt& lt = blas_lt();
    if (!lt.error.empty() || m <= 0 || n <= 0 || k <= 0) return false;
    Stream s = use.tag->stream;
    std::lock_guard lock(blas_mutex_);  // the prepared products' bias pointer is set per call
    make_current();
    if (!lt_) {
        auto st = std::make_shared<LtState>();
        AGNESI_CUBLAS(lt.create(&st->handle));
        st->workspace = alloc(kLtWorkspaceBytes);
        lt_ = st;
    }
    auto& st = *static_cast<LtState*>(lt_.get());
    BlasOp oa = blas_layout(a, m, k, "A"), ob = blas_layout(b, k, n, "B");
    auto key = std::make_tuple(m, n, k, static_cast<int>(oa.op), oa.ld, static_cast<int>(ob.op),
                               ob.ld, relu);
    auto it = st.products.find(key);
    if (it == st.products.end()) {
        // Column-major D^T (n x m) = op(B^T) op(A^T): cuBLASLt's A is our B. Its bias has one
        // value per row of D^T, that is per column of our C.
        LtProduct pr;
        AGNESI_CUBLAS(lt.desc_create(&pr.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
        cublasOperation_t ta = ob.op, tb = oa.op;
        AGNESI_CUBLAS(lt.desc_set(pr.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
        AGNESI_CUBLAS(lt.desc_set(pr.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
        cublasLtEpilogue_t epi = relu ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
        AGNESI_CUBLAS(lt.desc_set(pr.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
        // The algorithm depends on the bias pointer's alignment: choose it for one aligned to
        // 16 bytes only, as any bias that passes the check below is.
        const void* aligned_bias = reinterpret_cast<const void*>(st.workspace + kLtAlignment);
        AGNESI_CUBLAS(lt.desc_set(pr.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &aligned_bias,
                                  sizeof(aligned_bias)));
        auto u = [](std::int64_t v) { return static_cast<std::uint64_t>(v); };
        bool bn = ob.op == CUBLAS_OP_N, an = oa.op == CUBLAS_OP_N;
        AGNESI_CUBLAS(lt.layout_create(&pr.a, CUDA_R_32F, u(bn ? n : k), u(bn ? k : n), ob.ld));
        AGNESI_CUBLAS(lt.layout_create(&pr.b, CUDA_R_32F, u(an ? k : m), u(an ? m : k), oa.ld));
        AGNESI_CUBLAS(lt.layout_create(&pr.c, CUDA_R_32F, u(n), u(m), n));
        cublasLtMatmulPreference_t pref;
        AGNESI_CUBLAS(lt.pref_create(&pref));
        std::size_t ws = kLtWorkspaceBytes;
        AGNESI_CUBLAS(lt.pref_set(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
        // Operands may be views at any 16-byte offset, not at 256 bytes as cuBLASLt assumes.
        std::uint32_t align = kLtAlignment;
        for (auto attr : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                          CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                          CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                          CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
            AGNESI_CUBLAS(lt.pref_set(pref, attr, &align, sizeof(align)));
        cublasLtMatmulHeuristicResult_t res{};
        int found = 0;
        cublasStatus_t hs =
            lt.heuristic(st.handle, pr.desc, pr.a, pr.b, pr.c, pr.c, pref, 1, &res, &found);
        lt.pref_destroy(pref);
        pr.ok = hs == CUBLAS_STATUS_SUCCESS && found > 0 && res.state == CUBLAS_STATUS_SUCCESS;
        pr.algo = res.algo;
        it = st.products.emplace(key, pr).first;
    }
    const LtProduct& pr = it->second;
    // The algorithm was chosen for 16-byte aligned pointers (the pool's blocks are; an offset
    // view may not be).
    for (DevicePtr ptr : {a.ptr, b.ptr, bias, c})
        if (ptr % kLtAlignment != 0) return false;
    if (!pr.ok) return false;
    claim_blas(use);  // the workspace is the device's
    const void* bp = reinterpret_cast<const void*>(bias);
    AGNESI_CUBLAS(lt.desc_set(pr.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bp, sizeof(bp)));
    float one = 1, zero_v = 0;
    AGNESI_CUBLAS(lt.matmul(st.handle, pr.desc, &one, reinterpret_cast<const void*>(b.ptr), pr.a,
                            reinterpret_cast<const void*>(a.ptr), pr.b, &zero_v,
                            reinterpret_cast<void*>(c), pr.c, reinterpret_cast<void*>(c), pr.c,
                            &pr.algo, reinterpret_cast<void*>(st.workspace), kLtWorkspaceBytes,
                            static_cast<cudaStream_t>(s)));
    return true;
}

}  // namespace agnesi::jit::cuda
