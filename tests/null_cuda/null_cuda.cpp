// A stand-in for the NVIDIA driver (libcuda.so.1) with one device and no GPU: the host side of
// Device::cuda() runs against it (NVRTC still compiles every kernel for real), so its logic is
// tested on machines without a GPU. Device memory is host memory; copies and memsets are done at
// once; launches are counted and do nothing, so no kernel's result is ever computed here.
// Each stream has work pending from a launch or copy on it until it is synchronized; in strict
// mode a launch or a copy to the host while another stream has work pending fails (for tests
// whose streams must never overlap). agnesi_null_cuda_* (below) let a test read the counters,
// cap the device's memory and turn strict mode on.
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
    std::atomic<long> memsets{0}, unloads{0};
    std::atomic<std::size_t> memset_bytes{0};
    std::atomic<bool> fail_launches{false};
    static constexpr int kStreams = 256;
    bool pending[kStreams] = {};  // per stream handle (index into stream_handles)
    int streams = 0;
    bool strict = false;
    long overlaps = 0;  // strict-mode failures
};
State& state() {
    static State s;
    return s;
}

int dummy_context;
int module_handles[64];  // handles only: nothing behind them (and nothing to leak)
int stream_handles[State::kStreams];

// Work enqueued on `s` (null: the legacy stream, which the library only uses with a wait).
// Returns false when strict mode forbids it: another stream has work pending.
bool enqueue(CUstream s, bool to_host = false) {
    State& st = state();
    std::lock_guard lock(st.mutex);
    int me = -1;
    if (s) me = static_cast<int>(reinterpret_cast<int*>(s) - stream_handles);
    if (st.strict)
        for (int k = 0; k < st.streams; ++k)
            if (k != me && st.pending[k]) {
                ++st.overlaps;
                return false;
            }
    if (me >= 0 && !to_host) st.pending[me] = true;
    return true;
}

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
CUresult cuModuleUnload(CUmodule m) {
    if (!m) return CUDA_ERROR_INVALID_HANDLE;
    ++state().unloads;
    return CUDA_SUCCESS;
}
CUresult cuModuleGetFunction(CUfunction* f, CUmodule m, const char*) {
    *f = reinterpret_cast<CUfunction>(m);
    return CUDA_SUCCESS;
}
CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                        unsigned by, unsigned bz, unsigned, CUstream s, void** params, void**) {
    if (!f || !params || gx == 0 || gy == 0 || gz == 0 || bx == 0 || bx > 1024 || by * bz != 1)
        return CUDA_ERROR_INVALID_VALUE;
    if (state().fail_launches) return CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES;
    if (!enqueue(s)) return CUDA_ERROR_ILLEGAL_STATE;
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
CUresult cuMemcpyHtoDAsync(CUdeviceptr dst, const void* src, size_t n, CUstream s) {
    enqueue(s);  // staged at once: never an overlap
    ++state().uploads;
    std::memcpy(reinterpret_cast<void*>(dst), src, n);
    return CUDA_SUCCESS;
}
CUresult cuMemcpyDtoHAsync(void* dst, CUdeviceptr src, size_t n, CUstream s) {
    if (!enqueue(s, true)) return CUDA_ERROR_ILLEGAL_STATE;
    ++state().downloads;
    std::memcpy(dst, reinterpret_cast<const void*>(src), n);
    return CUDA_SUCCESS;
}
CUresult cuMemcpyDtoDAsync(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s) {
    enqueue(s);
    std::memmove(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), n);
    return CUDA_SUCCESS;
}
CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char v, size_t n, CUstream s) {
    enqueue(s);
    ++state().memsets;
    state().memset_bytes += n;
    std::memset(reinterpret_cast<void*>(dst), v, n);
    return CUDA_SUCCESS;
}
CUresult cuStreamCreate(CUstream* s, unsigned int) {
    State& st = state();
    std::lock_guard lock(st.mutex);
    if (st.streams == State::kStreams) return CUDA_ERROR_OUT_OF_MEMORY;
    *s = reinterpret_cast<CUstream>(&stream_handles[st.streams++]);
    return CUDA_SUCCESS;
}
CUresult cuStreamDestroy(CUstream) {
    return CUDA_SUCCESS;
}
CUresult cuStreamSynchronize(CUstream s) {
    State& st = state();
    std::lock_guard lock(st.mutex);
    ++st.syncs;
    if (s) st.pending[reinterpret_cast<int*>(s) - stream_handles] = false;
    return CUDA_SUCCESS;
}
// An event holds the launch count when it was recorded; the time between two is a stated
// microsecond per launch, so that a profile's figures are predictable.
CUresult cuEventCreate(CUevent* e, unsigned int) {
    *e = reinterpret_cast<CUevent>(new long(0));
    return CUDA_SUCCESS;
}
CUresult cuEventRecord(CUevent e, CUstream) {
    *reinterpret_cast<long*>(e) = state().launches.load();
    return CUDA_SUCCESS;
}
CUresult cuEventElapsedTime(float* ms, CUevent from, CUevent to) {
    *ms =
        0.001f * static_cast<float>(*reinterpret_cast<long*>(to) - *reinterpret_cast<long*>(from));
    return CUDA_SUCCESS;
}
CUresult cuEventDestroy(CUevent e) {
    delete reinterpret_cast<long*>(e);
    return CUDA_SUCCESS;
}
// NVRTC asks a loaded driver for its private tables; there are none here.
CUresult cuGetExportTable(const void** table, const CUuuid*) {
    *table = nullptr;
    return CUDA_ERROR_NOT_SUPPORTED;
}
CUresult cuGetErrorString(CUresult e, const char** s) {
    *s = e == CUDA_ERROR_OUT_OF_MEMORY             ? "out of memory"
         : e == CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES ? "too many resources requested for launch"
         : e == CUDA_SUCCESS                       ? "no error"
                                                   : "error in the null driver";
    return CUDA_SUCCESS;
}

// For tests: the counters since the process started, and the device's memory.
struct agnesi_null_cuda_stats {
    long allocs, launches, modules, syncs, uploads, downloads, overlaps;
    std::size_t used;
    long memsets;
    std::size_t memset_bytes;
    long unloads;
};
agnesi_null_cuda_stats agnesi_null_cuda_read() {
    State& s = state();
    std::lock_guard lock(s.mutex);
    return {s.allocs.load(),  s.launches.load(),     s.modules.load(), s.syncs.load(),
            s.uploads.load(), s.downloads.load(),    s.overlaps,       s.used,
            s.memsets.load(), s.memset_bytes.load(), s.unloads.load()};
}
// Every launch fails (as one asking for more resources than the device has), or none.
void agnesi_null_cuda_fail_launches(bool on) {
    state().fail_launches = on;
}
void agnesi_null_cuda_set_strict(bool on) {
    State& s = state();
    std::lock_guard lock(s.mutex);
    s.strict = on;
}
void agnesi_null_cuda_set_capacity(std::size_t bytes) {
    State& s = state();
    std::lock_guard lock(s.mutex);
    s.capacity = bytes;
}

}  // extern "C"
