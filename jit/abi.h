/* The calling convention between the runtime and generated group code (C++ and CUDA alike).
 *
 * For each group and each call, the runtime resolves every access (jit/schedule.hpp) into a base
 * pointer (offset already applied) and strides in elements over the group's domain, and passes:
 *   dims[rank]   the domain (the index space of the instrs before reduce_at; all of them for a
 *                Pointwise or Matmul group)
 *   edims[rank]  the epilogue domain (dims with the reduced axes set to 1 for Reduce; equal to dims
 *                otherwise)
 *   ptrs[i], strides[i * rank .. i * rank + rank)   for i < num_inputs: Group::inputs[i], over
 *                dims if its Loads are before reduce_at, over edims if they are in the epilogue;
 *                for i = num_inputs + k: Group::outputs[k].target, over edims.
 * A rank-0 domain has rank 0 and one element. Sizes and strides are int64. This file is also
 * pasted verbatim at the top of generated sources, so it must stay plain C.
 */
#ifndef AGNESI_JIT_ABI_H
#define AGNESI_JIT_ABI_H

#ifdef __cplusplus
#include <cstdint>
#else
#include <stdint.h>
#endif

typedef struct agnesi_group_args {
    int64_t rank;
    const int64_t* dims;
    const int64_t* edims;
    void* const* ptrs;
    const int64_t* strides;
    int64_t num_inputs;
    int64_t num_outputs;
    int32_t threads; /* CPU: OpenMP threads to use */
} agnesi_group_args;

#endif
