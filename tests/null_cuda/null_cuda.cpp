// A stand-in for the NVIDIA driver (libcuda.so.1) with one device and no GPU: the host side of
// Device::cuda() runs against it (NVRTC still compiles every kernel for real), so its logic is
// tested on machines without a GPU. Device memory is host memory; copies and memsets are done at
// once; launches are counted and do nothing, so no kernel's result is ever computed here.
// agnesi_null_cuda_* (below) let a test read the counters and cap the device's memory.
#include <cuda.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>

namespace {

struct State {
    std::mutex mutex;
    std::unordered_map<CUdeviceptr, std::size_t> blocks;
    std::size_t used = 0;
    std::size_t capacity = std::size_t(1) << 30;
    std::atomic<long> allocs{0}, launches{0}, modules{0}, syncs{0}, uploads{0}, downloads{0};
};
State& state() {
    static State s;
    return s;
}

int dummy_context, dummy_stream;
int module_handles[64];  // handles only: nothing behind them (and nothing to leak)

}  // namespace

extern "C" {

CUresult cuInit(unsigned int) {
    return CUDA_SUCCESS;
}
CUresult cuDriverGetVersion(int* v) {
    *v = 13000;
    return CUDA_SUCCESS;
}
CUresult cuDeviceGetCount(int* n) {
    *n = 1;
    return CUDA_SUCCESS;
}
CUresult cuDeviceGet(CUdevice* d, int ordinal) {
    if (ordinal != 0) return CUDA_ERROR_INVALID_DEVICE;
    *d = 0;
    return CUDA_SUCCESS;
}
CUresult cuDeviceGetName(char* name, int len, CUdevice) {
    std::strncpy(name, "Agnesi null device", static_cast<std::size_t>(len));
    if (len > 0) name[len - 1] = 0;
    return CUDA_SUCCESS;
}
CUresult cuDeviceGetAttribute(int* v, CUdevice_attribute a, CUdevice) {
    switch (a) {
        case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: *v = 9; break;
        case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: *v = 0; break;
        case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: *v = 132; break;
        default: return CUDA_ERROR_INVALID_VALUE;
    }
    return CUDA_SUCCESS;
}
CUresult cuDevicePrimaryCtxRetain(CUcontext* c, CUdevice) {
    *c = reinterpret_cast<CUcontext>(&dummy_context);
    return CUDA_SUCCESS;
}
CUresult cuCtxSetCurrent(CUcontext) {
    return CUDA_SUCCESS;
}
CUresult cuModuleLoadData(CUmodule* m, const void* image) {
    // What NVRTC gave: a cubin, an ELF file.
    if (std::memcmp(image,
                    "\x7f"
                    "ELF",
                    4) != 0)
        return CUDA_ERROR_INVALID_IMAGE;
    long k = state().modules++;
    *m = reinterpret_cast<CUmodule>(&module_handles[k % 64]);
    return CUDA_SUCCESS;
}
CUresult cuModuleGetFunction(CUfunction* f, CUmodule m, const char*) {
    *f = reinterpret_cast<CUfunction>(m);
    return CUDA_SUCCESS;
}
CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                        unsigned by, unsigned bz, unsigned, CUstream, void** params, void**) {
    if (!f || !params || gx == 0 || gy == 0 || gz == 0 || bx == 0 || bx > 1024 || by * bz != 1)
        return CUDA_ERROR_INVALID_VALUE;
    ++state().launches;
    return CUDA_SUCCESS;
}
CUresult cuMemAlloc(CUdeviceptr* p, size_t bytes) {
    State& s = state();
    std::lock_guard lock(s.mutex);
    if (s.used + bytes > s.capacity) return CUDA_ERROR_OUT_OF_MEMORY;
    void* q = std::calloc(1, bytes ? bytes : 1);
    if (!q) return CUDA_ERROR_OUT_OF_MEMORY;
    *p = reinterpret_cast<CUdeviceptr>(q);
    s.blocks[*p] = bytes;
    s.used += bytes;
    ++s.allocs;
    return CUDA_SUCCESS;
}
CUresult cuMemFree(CUdeviceptr p) {
    State& s = state();
    std::lock_guard lock(s.mutex);
    auto it = s.blocks.find(p);
    if (it == s.blocks.end()) return CUDA_ERROR_INVALID_VALUE;
    s.used -= it->second;
    s.blocks.erase(it);
    std::free(reinterpret_cast<void*>(p));
    return CUDA_SUCCESS;
}
CUresult cuMemGetInfo(size_t* free_bytes, size_t* total) {
    State& s = state();
    std::lock_guard lock(s.mutex);
    *free_bytes = s.capacity - s.used;
    *total = s.capacity;
    return CUDA_SUCCESS;
}
CUresult cuMemcpyHtoDAsync(CUdeviceptr dst, const void* src, size_t n, CUstream) {
    ++state().uploads;
    std::memcpy(reinterpret_cast<void*>(dst), src, n);
    return CUDA_SUCCESS;
}
CUresult cuMemcpyDtoHAsync(void* dst, CUdeviceptr src, size_t n, CUstream) {
    ++state().downloads;
    std::memcpy(dst, reinterpret_cast<const void*>(src), n);
    return CUDA_SUCCESS;
}
CUresult cuMemcpyDtoDAsync(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream) {
    std::memmove(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), n);
    return CUDA_SUCCESS;
}
CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char v, size_t n, CUstream) {
    std::memset(reinterpret_cast<void*>(dst), v, n);
    return CUDA_SUCCESS;
}
CUresult cuStreamCreate(CUstream* s, unsigned int) {
    *s = reinterpret_cast<CUstream>(&dummy_stream);
    return CUDA_SUCCESS;
}
CUresult cuStreamDestroy(CUstream) {
    return CUDA_SUCCESS;
}
CUresult cuStreamSynchronize(CUstream) {
    ++state().syncs;
    return CUDA_SUCCESS;
}
// NVRTC asks a loaded driver for its private tables; there are none here.
CUresult cuGetExportTable(const void** table, const CUuuid*) {
    *table = nullptr;
    return CUDA_ERROR_NOT_SUPPORTED;
}
CUresult cuGetErrorString(CUresult e, const char** s) {
    *s = e == CUDA_ERROR_OUT_OF_MEMORY ? "out of memory"
         : e == CUDA_SUCCESS           ? "no error"
                                       : "error in the null driver";
    return CUDA_SUCCESS;
}

// For tests: the counters since the process started, and the device's memory.
struct agnesi_null_cuda_stats {
    long allocs, launches, modules, syncs, uploads, downloads;
    std::size_t used;
};
agnesi_null_cuda_stats agnesi_null_cuda_read() {
    State& s = state();
    std::lock_guard lock(s.mutex);
    return {s.allocs.load(), s.launches.load(), s.modules.load(),
            s.syncs.load(),  s.uploads.load(),  s.downloads.load(),
            s.used};
}
void agnesi_null_cuda_set_capacity(std::size_t bytes) {
    State& s = state();
    std::lock_guard lock(s.mutex);
    s.capacity = bytes;
}

}  // extern "C"
