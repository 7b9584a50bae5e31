// The host compiler and the kernel cache of the native CPU tier.
//
// `build(source)` turns a generated source (codegen.hpp) into a loaded shared object, with one
// compiler run, through two caches:
// - in memory: the same key gives the same loaded Module (concurrent builds of one key in one
//   process wait for the first);
// - on disk: `<dir>/<key>.so`, where dir is AGNESI_CACHE_DIR, else $XDG_CACHE_HOME/agnesi, else
//   ~/.cache/agnesi. The key is a 64-bit hash of the source, the compiler's path and version,
//   the flags, the CPU and the library version. Each file ends with a trailer holding the key,
//   the payload size and a hash of the payload, checked before dlopen: a truncated, corrupt or
//   foreign file is rebuilt, never loaded. Files are written under a unique temporary name in the
//   same directory and renamed into place, so concurrent builders (threads or processes) of
//   the same key all succeed and readers never see a partial file.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "jit/abi.h"

namespace agnesi::jit::cpu {

/// A C++ compiler found on this machine.
struct HostCompiler {
    std::string path;     ///< absolute path
    std::string version;  ///< first line of `--version`
    bool clang = false;
};

/// The compiler named by AGNESI_CXX, else the first of c++, g++, clang++ on PATH; nullopt when
/// there is none (the caller then uses the evaluator). The answer is computed once per process
/// and per value of AGNESI_CXX.
std::optional<HostCompiler> find_compiler();

/// The flags of every compile (one place), for `c`.
std::vector<std::string> compile_flags(const HostCompiler& c);

/// Where Agnesi caches compiled code: $AGNESI_CACHE_DIR, else $XDG_CACHE_HOME/agnesi, else
/// ~/.cache/agnesi, else a folder of the user's in the temporary directory.
std::string cache_root();

/// The cache directory of native code: cache_root(), created on first use.
std::string cache_dir();

/// 64-bit FNV-1a.
std::uint64_t hash64(std::string_view data, std::uint64_t seed = 0xcbf29ce484222325ull);

using GroupFn = void (*)(const agnesi_group_args*);

/// A loaded shared object (it stays mapped for the life of the process).
class Module {
  public:
    Module(void* handle, std::string path) : handle_(handle), path_(std::move(path)) {}
    ~Module();
    Module(const Module&) = delete;
    Module& operator=(const Module&) = delete;

    /// The function `symbol`; throws agnesi::Error if it is missing.
    GroupFn function(const std::string& symbol) const;
    const std::string& path() const { return path_; }

  private:
    void* handle_;
    std::string path_;
};

struct BuildStats {
    double compile_ms = 0;    ///< the compiler run (0 on a cache hit)
    double load_ms = 0;       ///< checking and loading the shared object
    bool cache_hit = false;   ///< found on disk or in memory
    bool memory_hit = false;  ///< found in this process
    std::string key;          ///< the cache key, 16 hex digits
};

struct BuildResult {
    std::shared_ptr<Module> module;
    BuildStats stats;
};

/// Compiles (or finds in a cache) `source` with `compiler` and loads it. Throws agnesi::Error
/// with the compiler's messages and the numbered source when the compiler fails. `extra_flags`
/// follow the usual ones (and are part of the cache key).
BuildResult build(const std::string& source, const HostCompiler& compiler,
                  const std::vector<std::string>& extra_flags = {});

/// Forgets the in-memory cache (loaded modules stay loaded while referenced); for tests.
void clear_memory_cache();

}  // namespace agnesi::jit::cpu
