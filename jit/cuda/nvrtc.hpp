// NVRTC, opened at run time (dlopen), with a kernel cache in memory and on disk.
//
// Nothing links against libnvrtc: the library is found at the first compile (libnvrtc.so.13,
// libnvrtc.so, then $CUDA_HOME/lib64 and /usr/local/cuda/lib64), so Agnesi loads where CUDA is
// absent. Cubins are cached by a hash of (source, NVRTC version, options, architecture): in
// memory for the process, and on disk in cuda/*.cubin of the folder native code is
// cached in ($AGNESI_CACHE_DIR, else $XDG_CACHE_HOME/agnesi, else ~/.cache/agnesi).
// Disk entries are written to a temporary file and renamed into place, so a reader never sees a
// partial file; each entry carries its key and a checksum, and one that does not match is
// compiled again and rewritten.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace agnesi::jit::cuda {

/// Whether NVRTC can be loaded here; if not, `reason` says why.
struct NvrtcStatus {
    bool available = false;
    std::string reason;
    int major = 0, minor = 0;  ///< NVRTC version
};
NvrtcStatus nvrtc_status();

struct CompileResult {
    std::shared_ptr<const std::string> cubin;
    double compile_ms = 0;  ///< 0 on a cache hit
    bool cache_hit = false;
    bool disk_hit = false;
    /// NVRTC's log of the compile (warnings; ptxas's report with --ptxas-options=-v); empty on
    /// a cache hit.
    std::string log;
};

struct NvrtcOptions {
    std::string arch = "sm_80";      ///< "sm_80", "sm_90", ...: the cubin's architecture
    bool use_cache = true;           ///< memory and disk cache
    std::vector<std::string> extra;  ///< further NVRTC options
};

/// Compiles `source` to a cubin for `options.arch`. Throws CompileError (the log, and the source
/// with line numbers and the failing lines marked with '>') when NVRTC rejects it, and Error when
/// NVRTC cannot be loaded. `name` labels the program in messages.
CompileResult nvrtc_compile(const std::string& source, const std::string& name,
                            const NvrtcOptions& options = {});

/// Compiles several sources at once, on up to `threads` threads (0: the machine's cores); the
/// results are in the order of `sources`. Source i also takes the options extra[i], if any. The
/// first error is rethrown after all finished.
std::vector<CompileResult> nvrtc_compile_all(
    const std::vector<std::string>& sources, const std::string& name,
    const NvrtcOptions& options = {}, int threads = 0,
    const std::vector<std::vector<std::string>>& extra = {});

/// The on-disk cache folder: cuda/ in the folder native code is cached in (cpu::cache_root:
/// $AGNESI_CACHE_DIR, else $XDG_CACHE_HOME/agnesi, else ~/.cache/agnesi).
std::string cuda_cache_dir();

/// Forgets the in-memory cache (tests use it to measure the disk cache).
void clear_memory_cache();

/// The message of a failed compile: one summary line, the log, and the source with line numbers,
/// each line that the log reports an error on marked with '>' (exposed for tests).
std::string format_compile_error(const std::string& summary, const std::string& log,
                                 const std::string& source);

}  // namespace agnesi::jit::cuda
