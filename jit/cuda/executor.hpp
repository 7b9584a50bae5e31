// The CUDA executor: runs a Program's groups as the kernels of jit/cuda/codegen.hpp on one device.
//
// The runtime hands it device buffers: `agnesi_group_args::ptrs` hold device addresses (a
// DevicePtr cast to void*), and `run_gemm` takes the device address of every buffer. Launches go
// to the executor's own stream, in order; `synchronize` waits for them. Kernels are compiled when
// the executor is made (in parallel, one module per group, through the NVRTC cache).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "jit/backend.hpp"
#include "jit/cuda/codegen.hpp"
#include "jit/cuda/driver.hpp"
#include "jit/cuda/plan.hpp"

namespace agnesi::jit::cuda {

class CudaExecutor : public Executor {
  public:
    /// Launches group `gi`'s kernel; a.ptrs are device addresses.
    void run_group(const Program& p, std::size_t gi, const agnesi_group_args& a) override = 0;
    /// Launches group `gi`'s kernel for one call: `bufs` holds the device address of every
    /// buffer of `p`. The launch is prepared once per binding of the symbolic sizes.
    virtual void launch_group(const Program& p, std::size_t gi, const DevicePtr* bufs,
                              const DimEnv& env) = 0;
    /// The product of Matmul group `g` into its buffer; `buffers` holds the device address of
    /// every buffer of `p`. Returns true when it computed the group's epilogue too (cuBLASLt's,
    /// see fused_epilogue): the group's kernel is then not launched.
    virtual bool run_gemm(const Program& p, const Group& g, void* const* buffers,
                          const DimEnv& env) = 0;
    virtual CudaDevice& device() = 0;
    virtual Stream stream() const = 0;
    /// The stream's tag, and the batch of the call whose work is being launched.
    virtual const StreamRef& tag() const = 0;
    virtual void begin(const StreamUse& use) = 0;
    /// The device copy of constant buffer `b`, uploaded on the first call (null until then).
    virtual std::shared_ptr<DeviceStorage>& constant(std::size_t b) = 0;
    /// Waits until every launch so far has finished (and reports asynchronous errors).
    virtual void synchronize() = 0;
};

/// Compiles every group of `p` for the device of `options.device` and returns its executor.
/// Throws Error when no CUDA device is available, CompileError when NVRTC rejects a kernel.
std::unique_ptr<CudaExecutor> make_cuda_executor(const Program& p, const CompileOptions& options,
                                                 CompileStats& stats);

/// Device memory from the pool of `dev` (for work on `tag`'s stream), given back when the last
/// tensor holding it is gone.
std::shared_ptr<DeviceStorage> device_block(CudaDevice& dev, std::size_t bytes,
                                            const StreamRef& tag = nullptr);

/// Runs the whole of `p` on the executor's device for one call and returns the values of
/// `p.outputs` (the outputs, then the update values) as tensors on the device: complete when it
/// returns if `wait`, else once its kernels finish (reading them waits). Inputs and shared values
/// already on this device are used in place; others are uploaded, and an uploaded shared value
/// is replaced in `shared` by a device tensor that also keeps its host values, so that it stays
/// on the device. Temporaries come from the device pool. This is the device-side counterpart of
/// the buffer loop in Function's call. With `group_ms`, the call waits for its work and sets
/// each group's device time (CUDA events around its kernel or products) there.
std::vector<Tensor> run_program(CudaExecutor& ex, const Program& p,
                                const std::vector<Tensor>& inputs, std::vector<Tensor>& shared,
                                const DimEnv& env, bool wait = true,
                                std::vector<double>* group_ms = nullptr);

}  // namespace agnesi::jit::cuda
