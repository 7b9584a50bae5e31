#!/usr/bin/env bash
# Packs the tests and benchmarks of a build for a machine with an NVIDIA GPU that has its driver,
# the CUDA toolkit and Python (PyTorch, CuPy) but none of the packages scripts/setup.sh
# installs: the binaries, and every shared library they load besides glibc's (fmt, Boost's
# program_options, OpenBLAS, libgomp, libstdc++, ...), about 60 MB. Both machines must be x86-64
# with a glibc at least as new as this one's.
#   scripts/gpu_bundle.sh [BUILD_DIR] [OUT_DIR]      (defaults: build, gpu)
# Then, on the GPU machine, from a copy of the repository with OUT_DIR in it:
#   OUT_DIR/run.sh [--quick]
# runs the tests that need a device (the CUDA tiers of the JIT tests, waiting and asynchronous;
# the device tensors, the CUDA corpus and fuzz test), then benchmarks/compare_gpu.sh on the
# bundled agnesi-bench, then NVRTC's compile times.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
out=${2:-gpu}
bins=(agnesi_unit_tests agnesi_fuzz_tests agnesi-bench agnesi_bench_cuda_compile agnesi)
for b in "${bins[@]}"; do
    if [ ! -x "$build/bin/$b" ]; then
        echo "gpu_bundle.sh: $build/bin/$b not found; build first (./scripts/setup.sh)" >&2
        exit 1
    fi
done
rm -rf "$out"
mkdir -p "$out/bin" "$out/lib"
for b in "${bins[@]}"; do
    # Without their symbols the binaries are a tenth of the size; backtraces keep the names of
    # exported functions.
    strip -o "$out/bin/$b" "$build/bin/$b"
    ldd "$build/bin/$b" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | while read -r lib; do
        case "$(basename "$lib")" in
            libc.so.* | libm.so.* | libdl.so.* | libpthread.so.* | librt.so.* | ld-linux*) ;;
            *) [ -e "$out/lib/$(basename "$lib")" ] || cp -L "$lib" "$out/lib/" ;;
        esac
    done
done
cat >"$out/run.sh" <<'RUN'
#!/usr/bin/env bash
# Runs the device tests, then the GPU benchmarks beside the peers. From the repository root.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export AGNESI_CACHE_DIR=${AGNESI_CACHE_DIR:-$(mktemp -d)}
status=0
nvidia-smi -L || status=1
"$here/bin/agnesi_unit_tests" --gtest_brief=1 \
    --gtest_filter='CudaDevice.*:DeviceTensor.*:Cuda*.*:Arch/*:Tiers/JitTest.*/Cuda*-CudaEmulator.*' || status=1
"$here/bin/agnesi_fuzz_tests" --gtest_brief=1 --gtest_filter='FuzzJit.CudaBatches' || status=1
benchmarks/compare_gpu.sh "$here" "$@" || status=1
# The row kernels again with each row read in every loop over it (not held in registers), and
# the MLP step with a block (not a warp) per short row, to set beside the table's.
echo "row kernels with AGNESI_CUDA_ROW_CACHE=0 (rows read again in each loop):"
for w in softmax layer_norm; do
    AGNESI_CUDA_ROW_CACHE=0 "$here/bin/agnesi-bench" --device cuda --filter "$w" "$@" || status=1
done
# The pointwise kernels' grid: at most N blocks per SM (16 by default; 0: no cap, no loop); and
# their 16-byte accesses marked evict-first: none (0, the default), stores (1), both (2).
echo "gelu with AGNESI_CUDA_POINTWISE_BLOCKS=N in turn (N blocks of 256 per SM):"
for n in 16 8 0 16 8 0; do
    echo "AGNESI_CUDA_POINTWISE_BLOCKS=$n"
    AGNESI_CUDA_POINTWISE_BLOCKS=$n "$here/bin/agnesi-bench" --device cuda --filter gelu "$@" ||
        status=1
done
echo "pointwise kernels with AGNESI_CUDA_STREAMING=N in turn (0 none, 1 stores, 2 both evict-first):"
for w in gelu bias_act; do
    for n in 0 1 2 0 1 2; do
        echo "AGNESI_CUDA_STREAMING=$n"
        AGNESI_CUDA_STREAMING=$n "$here/bin/agnesi-bench" --device cuda --filter "$w" "$@" ||
            status=1
    done
done
echo "MLP step with AGNESI_CUDA_WARP_ROWS=0 (a block of 32 threads per row of 10):"
AGNESI_CUDA_WARP_ROWS=0 "$here/bin/agnesi-bench" --device cuda --filter mlp_step "$@" || status=1
# Where the multi-kernel workloads spend their time, kernel by kernel (CUDA events).
for w in logreg mlp_step layer_norm; do
    "$here/bin/agnesi-bench" --device cuda --profile --filter "$w" "$@" >/dev/null || status=1
done
# NVRTC's cold compile of each workload's kernels on this machine's CPU.
"$here/bin/agnesi_bench_cuda_compile" --benchmark_filter=Cold || status=1
exit $status
RUN
chmod +x "$out/run.sh"
du -sh "$out"
