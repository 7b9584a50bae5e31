// NVRTC through dlopen, and the kernel cache (see nvrtc.hpp).
#include "jit/cuda/nvrtc.hpp"

#include <dlfcn.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <unordered_map>

#include "agnesi/error.hpp"
#include "jit/cpu/compiler.hpp"
#include "jit/cuda/codegen.hpp"

namespace agnesi::jit::cuda {
namespace {

// The few NVRTC entry points used, declared here so no CUDA header is needed to build.
using Prog = struct NvrtcProgramOpaque*;
using Res = int;
struct Api {
    Res (*version)(int*, int*) = nullptr;
    Res (*create)(Prog*, const char*, const char*, int, const char* const*,
                  const char* const*) = nullptr;
    Res (*destroy)(Prog*) = nullptr;
    Res (*compile)(Prog, int, const char* const*) = nullptr;
    Res (*log_size)(Prog, std::size_t*) = nullptr;
    Res (*log)(Prog, char*) = nullptr;
    Res (*cubin_size)(Prog, std::size_t*) = nullptr;
    Res (*cubin)(Prog, char*) = nullptr;
    const char* (*error_string)(Res) = nullptr;
    std::string error;  // why loading failed
    int major = 0, minor = 0;
};

const Api& api() {
    static const Api a = [] {
        Api r;
        std::vector<std::string> names = {"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"};
        for (const char* env : {"CUDA_HOME", "CUDA_PATH"})
            if (const char* h = std::getenv(env))
                names.push_back(std::string(h) + "/lib64/libnvrtc.so");
        names.push_back("/usr/local/cuda/lib64/libnvrtc.so");
        void* h = nullptr;
        std::string errors;
        for (const auto& n : names) {
            h = dlopen(n.c_str(), RTLD_NOW | RTLD_LOCAL);
            if (h) break;
            if (errors.empty()) errors = dlerror();
        }
        if (!h) {
            r.error = "NVRTC not found (libnvrtc.so.13; set CUDA_HOME): " + errors;
            return r;
        }
        auto sym = [&](auto& f, const char* name) {
            f = reinterpret_cast<std::remove_reference_t<decltype(f)>>(dlsym(h, name));
            if (!f && r.error.empty()) r.error = fmt::format("NVRTC has no symbol {}", name);
        };
        sym(r.version, "nvrtcVersion");
        sym(r.create, "nvrtcCreateProgram");
        sym(r.destroy, "nvrtcDestroyProgram");
        sym(r.compile, "nvrtcCompileProgram");
        sym(r.log_size, "nvrtcGetProgramLogSize");
        sym(r.log, "nvrtcGetProgramLog");
        sym(r.cubin_size, "nvrtcGetCUBINSize");
        sym(r.cubin, "nvrtcGetCUBIN");
        sym(r.error_string, "nvrtcGetErrorString");
        if (r.error.empty()) r.version(&r.major, &r.minor);
        return r;
    }();
    return a;
}

void check(Res r, const char* call) {
    if (r == 0) return;
    const char* msg = api().error_string ? api().error_string(r) : "unknown";
    throw CudaError(fmt::format("{} failed: {} ({})", call, msg, r), call, r);
}

// Two 64-bit FNV-1a hashes with different offsets: a 128-bit key that is stable across runs and
// builds (std::hash is not).
struct Hash {
    std::uint64_t a = 0xcbf29ce484222325ull, b = 0x84222325cbf29ce4ull;
    void add(std::string_view s) {
        for (unsigned char c : s) {
            a = (a ^ c) * 0x100000001b3ull;
            b = (b ^ c) * 0x100000001b3ull;
            b ^= b >> 29;
        }
        a = (a ^ 0xff) * 0x100000001b3ull;  // separator, so ("ab","c") != ("a","bc")
        b = (b ^ 0xff) * 0x100000001b3ull;
    }
    std::string hex() const { return fmt::format("{:016x}{:016x}", a, b); }
};

std::uint64_t checksum(std::string_view s) {
    Hash h;
    h.add(s);
    return h.a;
}

std::vector<std::string> option_list(const NvrtcOptions& o) {
    std::vector<std::string> v = {"--gpu-architecture=" + o.arch, "-std=c++17"};
    // Generated code is self-contained: skip texture, surface and device-runtime declarations to
    // compile faster (NVRTC 12.4 and later).
    if (api().major > 12 || (api().major == 12 && api().minor >= 4)) v.push_back("-minimal");
    v.insert(v.end(), o.extra.begin(), o.extra.end());
    return v;
}

struct MemoryCache {
    std::mutex mutex;
    std::unordered_map<std::string, std::shared_ptr<const std::string>> entries;
    static MemoryCache& get() {
        static MemoryCache c;
        return c;
    }
};

// Disk entries: "AGNESI-CUBIN 1\n<key>\n<size> <checksum>\n" then the cubin bytes.
constexpr std::string_view kMagic = "AGNESI-CUBIN 1\n";

std::shared_ptr<const std::string> read_entry(const std::filesystem::path& file,
                                              const std::string& key) {
    std::ifstream in(file, std::ios::binary);
    if (!in) return nullptr;
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (data.compare(0, kMagic.size(), kMagic) != 0) return nullptr;
    std::size_t p = kMagic.size();
    std::size_t nl = data.find('\n', p);
    if (nl == std::string::npos || data.substr(p, nl - p) != key) return nullptr;
    std::size_t nl2 = data.find('\n', nl + 1);
    if (nl2 == std::string::npos) return nullptr;
    std::istringstream hdr(data.substr(nl + 1, nl2 - nl - 1));
    std::size_t size = 0;
    std::uint64_t sum = 0;
    if (!(hdr >> size >> std::hex >> sum)) return nullptr;
    if (data.size() - nl2 - 1 != size) return nullptr;
    auto cubin = std::make_shared<const std::string>(data.substr(nl2 + 1));
    if (checksum(*cubin) != sum) return nullptr;
    return cubin;
}

void write_entry(const std::filesystem::path& file, const std::string& key,
                 const std::string& cubin) {
    std::error_code ec;
    std::filesystem::create_directories(file.parent_path(), ec);
    static std::atomic<unsigned> counter{0};
    auto tmp = file;
    tmp += fmt::format(".tmp.{}.{}", ::getpid(), counter++);
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        if (!out) return;  // an unwritable cache only costs a compile next time
        out << kMagic << key << '\n' << cubin.size() << ' ' << std::hex << checksum(cubin) << '\n';
        out.write(cubin.data(), static_cast<std::streamsize>(cubin.size()));
        if (!out) {
            out.close();
            std::filesystem::remove(tmp, ec);
            return;
        }
    }
    std::filesystem::rename(tmp, file, ec);
    if (ec) std::filesystem::remove(tmp, ec);
}

double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

NvrtcStatus nvrtc_status() {
    const Api& a = api();
    return {a.error.empty(), a.error, a.major, a.minor};
}

std::string cuda_cache_dir() {
    return cpu::cache_root() + "/cuda";
}

void clear_memory_cache() {
    auto& c = MemoryCache::get();
    std::lock_guard lock(c.mutex);
    c.entries.clear();
}

std::string format_compile_error(const std::string& summary, const std::string& log,
                                 const std::string& source) {
    const std::set<int> bad = error_lines(log);
    std::string out = summary + "\n" + log;
    if (!out.empty() && out.back() != '\n') out += '\n';
    out += "generated source:\n";
    std::istringstream in(source);
    std::string line;
    for (int n = 1; std::getline(in, line); ++n)
        out += fmt::format("{}{:5} | {}\n", bad.count(n) ? '>' : ' ', n, line);
    return out;
}

CompileResult nvrtc_compile(const std::string& source, const std::string& name,
                            const NvrtcOptions& options) {
    const Api& a = api();
    if (!a.error.empty()) throw Error("CUDA compile of '" + name + "': " + a.error);
    std::vector<std::string> opts = option_list(options);
    Hash h;
    h.add(source);
    h.add(fmt::format("nvrtc {}.{}", a.major, a.minor));
    for (const auto& o : opts) h.add(o);
    h.add(options.arch);
    std::string key = h.hex();
    CompileResult res;
    auto& mem = MemoryCache::get();
    std::filesystem::path file = std::filesystem::path(cuda_cache_dir()) / (key + ".cubin");
    if (options.use_cache) {
        {
            std::lock_guard lock(mem.mutex);
            auto it = mem.entries.find(key);
            if (it != mem.entries.end()) {
                res.cubin = it->second;
                res.cache_hit = true;
                return res;
            }
        }
        if (auto c = read_entry(file, key)) {
            std::lock_guard lock(mem.mutex);
            mem.entries.emplace(key, c);
            res.cubin = c;
            res.cache_hit = res.disk_hit = true;
            return res;
        }
    }
    auto t0 = std::chrono::steady_clock::now();
    std::string prog_name = "agnesi_" + name + ".cu";
    std::replace_if(
        prog_name.begin(), prog_name.end(),
        [](char c) {
            return !(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.');
        },
        '_');
    Prog prog = nullptr;
    check(a.create(&prog, source.c_str(), prog_name.c_str(), 0, nullptr, nullptr),
          "nvrtcCreateProgram");
    std::unique_ptr<Prog, void (*)(Prog*)> guard(&prog, [](Prog* p) { api().destroy(p); });
    std::vector<const char*> argv;
    for (const auto& o : opts) argv.push_back(o.c_str());
    Res r = a.compile(prog, static_cast<int>(argv.size()), argv.data());
    std::size_t log_size = 0;
    a.log_size(prog, &log_size);
    std::string log(log_size, '\0');
    if (log_size) a.log(prog, log.data());
    while (!log.empty() && log.back() == '\0') log.pop_back();
    if (r != 0) {
        std::string summary = fmt::format("NVRTC could not compile '{}' for {}: {}", name,
                                          options.arch, a.error_string(r));
        throw CompileError(format_compile_error(summary, log, source), log, source);
    }
    std::size_t size = 0;
    check(a.cubin_size(prog, &size), "nvrtcGetCUBINSize");
    std::string cubin(size, '\0');
    check(a.cubin(prog, cubin.data()), "nvrtcGetCUBIN");
    res.compile_ms = ms_since(t0);
    res.cubin = std::make_shared<const std::string>(std::move(cubin));
    res.log = std::move(log);
    if (options.use_cache) {
        write_entry(file, key, *res.cubin);
        std::lock_guard lock(mem.mutex);
        mem.entries.emplace(key, res.cubin);
    }
    return res;
}

std::vector<CompileResult> nvrtc_compile_all(const std::vector<std::string>& sources,
                                             const std::string& name, const NvrtcOptions& options,
                                             int threads,
                                             const std::vector<std::vector<std::string>>& extra) {
    std::vector<CompileResult> out(sources.size());
    std::vector<std::exception_ptr> errors(sources.size());
    std::atomic<std::size_t> next{0};
    auto work = [&] {
        for (std::size_t i; (i = next++) < sources.size();) {
            if (sources[i].empty()) continue;
            try {
                NvrtcOptions o = options;
                if (i < extra.size())
                    o.extra.insert(o.extra.end(), extra[i].begin(), extra[i].end());
                out[i] = nvrtc_compile(sources[i], fmt::format("{}_m{}", name, i), o);
            } catch (...) {
                errors[i] = std::current_exception();
            }
        }
    };
    std::size_t n = threads > 0 ? static_cast<std::size_t>(threads)
                                : std::max(1u, std::thread::hardware_concurrency());
    n = std::min(n, sources.size());
    std::vector<std::thread> pool;
    for (std::size_t t = 1; t < n; ++t) pool.emplace_back(work);
    work();
    for (auto& t : pool) t.join();
    for (auto& e : errors)
        if (e) std::rethrow_exception(e);
    return out;
}

}  // namespace agnesi::jit::cuda
