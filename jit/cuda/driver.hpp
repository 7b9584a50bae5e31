// The CUDA driver API, cuBLAS and cuBLASLt, opened at run time with dlopen (libcuda.so.1,
// libcublas.so.13, libcublasLt.so.13),
// so the library loads and runs on machines without a GPU or driver. Every call goes through one
// checking macro that throws CudaError naming the call and its status.
//
// A CudaDevice is the process-wide handle of one GPU: its primary context, properties, a device
// memory pool (freed blocks are kept by size class and reused, so a call does not pay cuMemAlloc)
// and a cuBLAS handle. It is never destroyed: the driver may be gone when static objects die.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "agnesi/jit.hpp"

namespace agnesi::jit::cuda {

using DevicePtr = std::uint64_t;  ///< CUdeviceptr
using Stream = void*;             ///< CUstream
using Module = void*;             ///< CUmodule
using Kernel = void*;             ///< CUfunction
using Event = void*;              ///< CUevent

/// Whether the driver loads, initializes and reports at least one device (and if not, why).
CudaAvailability probe_cuda();

/// A stream as device memory sees it. Each call of a function launches its work on the
/// function's stream as one numbered batch: `issued` is the last batch launched in full, `done`
/// the last one the host has waited for. `stream` is null once the stream is gone (after its
/// work finished). Guarded by the device's pool lock.
struct StreamTag {
    Stream stream = nullptr;
    std::uint64_t issued = 0, done = 0;
};
using StreamRef = std::shared_ptr<StreamTag>;
/// The last use of device memory: a stream and its batch. Until the host has waited for that
/// batch, only the same stream may reuse the memory (its work runs in order) and the host may
/// not read it.
struct StreamUse {
    StreamRef tag;
    std::uint64_t batch = 0;
};

class CudaDevice {
  public:
    /// The device `ordinal`, initialized on first use. Throws Error when CUDA is unavailable.
    static CudaDevice& get(int ordinal);

    int ordinal() const { return ordinal_; }
    const std::string& name() const { return name_; }
    int sm_count() const { return sm_count_; }
    /// "sm_90" for compute capability 9.0: the architecture NVRTC compiles for.
    std::string arch() const;

    /// Makes this device's primary context current on the calling thread.
    void make_current() const;

    Module load_module(const std::string& cubin) const;
    Kernel kernel(Module m, const std::string& name) const;
    /// Unloads a module whose kernels no stream runs any more (never throws).
    void unload_module(Module m) const;
    void launch(Kernel k, unsigned grid, unsigned block, Stream s, void** params) const;

    Stream create_stream() const;
    void destroy_stream(Stream s) const;
    void synchronize(Stream s) const;

    /// Events timing work on a stream: elapsed_ms is the device time between two recorded
    /// events that have completed.
    Event create_event() const;
    void record(Event e, Stream s) const;
    double elapsed_ms(Event from, Event to) const;
    void destroy_event(Event e) const;

    /// A new stream with its tag; `retire` waits for its work, then destroys it.
    StreamRef create_tagged_stream();
    void retire(const StreamRef& tag);
    /// The number of the next batch on `tag`, and the end of its launches.
    StreamUse begin_batch(const StreamRef& tag);
    void end_batch(const StreamUse& use);
    /// Waits on the host until `use` has finished (at once if it has). Memory it released
    /// becomes free for every stream.
    void wait(const StreamUse& use);
    /// Whether `use` may still be running.
    bool pending(const StreamUse& use);

    /// Device memory from the pool, for work on `tag`'s stream (null: any stream). A failed
    /// allocation (after waiting for the streams and returning cached blocks to the driver)
    /// throws CudaError with the size asked and the memory free.
    DevicePtr alloc(std::size_t bytes, const StreamRef& tag = nullptr);
    /// Back to the pool. While one of `uses` (its last use on each stream) may be running, only
    /// a stream that has all the running ones may take it again.
    void release(DevicePtr p, const std::vector<StreamUse>& uses = {});
    void upload(DevicePtr dst, const void* src, std::size_t bytes, Stream s) const;
    void download(void* dst, DevicePtr src, std::size_t bytes, Stream s) const;
    void copy(DevicePtr dst, DevicePtr src, std::size_t bytes, Stream s) const;
    void zero(DevicePtr dst, std::size_t bytes, Stream s) const;

    /// C (row-major m x n, contiguous, `batch` of them `m * n` apart) = A B, with A and B given by
    /// their strides in elements (row, column, batch). Float32 or float64 only.
    struct GemmOperand {
        DevicePtr ptr = 0;
        std::int64_t row = 0, col = 0, batch = 0;
    };
    /// The products run in `use`'s batch on its stream; cuBLAS's workspace is the device's, so a
    /// product on another stream than the last one waits for that one first.
    void gemm(DType dtype, std::int64_t m, std::int64_t n, std::int64_t k, const GemmOperand& a,
              const GemmOperand& b, DevicePtr c, std::int64_t batch, const StreamUse& use);
    /// C = A B + bias, then ReLU if `relu`, in one cuBLASLt call (its bias epilogue): float32, one
    /// row-major m x n product, `bias` n contiguous values added to every row. Returns false,
    /// having done nothing, where cuBLASLt cannot be loaded or offers no algorithm for it.
    /// cuBLASLt's ReLU is max(x, 0): a NaN becomes 0, unlike Agnesi's relu.
    bool gemm_bias(std::int64_t m, std::int64_t n, std::int64_t k, const GemmOperand& a,
                   const GemmOperand& b, DevicePtr bias, bool relu, DevicePtr c,
                   const StreamUse& use);

  private:
    explicit CudaDevice(int ordinal);
    int ordinal_ = 0;
    int device_ = 0;
    void* context_ = nullptr;
    std::string name_;
    int major_ = 0, minor_ = 0, sm_count_ = 0;
    void* cublas_ = nullptr;
    std::shared_ptr<void> lt_;  // cuBLASLt's handle, workspace and prepared products
    std::mutex blas_mutex_;     // cuBLAS and cuBLASLt state, for calls from several threads
    StreamUse blas_use_;        // the last products' stream and batch
    void claim_blas(const StreamUse& use);
    std::mutex pool_mutex_;
    std::unordered_map<std::size_t, std::vector<DevicePtr>> free_;  // by rounded size
    std::unordered_map<DevicePtr, std::size_t> sizes_;              // live blocks
    struct Deferred {  // released while a last use may still run
        DevicePtr ptr;
        std::size_t size;
        std::vector<StreamUse> uses;
    };
    std::vector<Deferred> deferred_;
    void trim_pool();
    void free_finished();  // deferred blocks whose last use has finished go to free_
};

/// The size class of an allocation: 512-byte granules up to 1 MiB, then powers of two split in
/// four (at most 25% waste).
std::size_t pool_size_class(std::size_t bytes);

}  // namespace agnesi::jit::cuda
