// The host compiler, the disk cache and the loaded modules of the native CPU tier.
#include "jit/cpu/compiler.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <sstream>

#include "agnesi/error.hpp"

extern char** environ;

namespace agnesi::jit::cpu {

namespace fs = std::filesystem;

namespace {

#ifndef AGNESI_VERSION
#define AGNESI_VERSION "unknown"
#endif

double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

struct RunResult {
    int status = -1;     ///< exit status, or -1 when it could not run or was killed
    std::string output;  ///< stdout and stderr together
};

// Runs argv[0] (a path) with its output captured; no shell, so no quoting issues.
RunResult run(const std::vector<std::string>& argv) {
    RunResult r;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return r;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0].c_str(), &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc == 0) {
        char buf[4096];
        for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) != 0;) {
            if (n < 0) {
                if (errno == EINTR) continue;
                break;
            }
            r.output.append(buf, static_cast<std::size_t>(n));
        }
    }
    close(fds[0]);
    if (rc != 0) return r;
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return r;
}

bool executable(const std::string& p) {
    struct stat st;
    return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(p.c_str(), X_OK) == 0;
}

std::optional<std::string> locate(const std::string& name) {
    if (name.find('/') != std::string::npos)
        return executable(name) ? std::optional(fs::absolute(name).string()) : std::nullopt;
    const char* path = std::getenv("PATH");
    std::stringstream ss(path ? path : "/usr/local/bin:/usr/bin:/bin");
    for (std::string dir; std::getline(ss, dir, ':');) {
        if (dir.empty()) dir = ".";
        std::string p = dir + "/" + name;
        if (executable(p)) return fs::absolute(p).string();
    }
    return std::nullopt;
}

std::optional<HostCompiler> probe(const std::string& name) {
    auto path = locate(name);
    if (!path) return std::nullopt;
    RunResult v = run({*path, "--version"});
    if (v.status != 0) return std::nullopt;
    HostCompiler c;
    std::error_code ec;
    fs::path real = fs::canonical(*path, ec);
    c.path = ec ? *path : real.string();
    c.version = v.output.substr(0, v.output.find('\n'));
    c.clang = v.output.find("clang") != std::string::npos;
    return c;
}

// What -march=native means here: the CPU's model and feature flags, so a cache directory shared
// between machines never hands one machine another's instructions.
const std::string& cpu_identity() {
    static const std::string id = [] {
        std::ifstream f("/proc/cpuinfo");
        std::string line, model, flags;
        while (std::getline(f, line) && (model.empty() || flags.empty())) {
            if (model.empty() && line.rfind("model name", 0) == 0) model = line;
            if (flags.empty() && line.rfind("flags", 0) == 0) flags = line;
        }
        return model + "\n" + flags;
    }();
    return id;
}

// The trailer appended to each cached shared object (the dynamic loader ignores bytes past the
// ELF contents).
struct Trailer {
    char magic[8];
    std::uint64_t key;
    std::uint64_t size;  ///< bytes before the trailer
    std::uint64_t hash;  ///< hash64 of those bytes
};
constexpr char kMagic[8] = {'A', 'G', 'N', 'E', 'S', 'I', 'S', '1'};

std::optional<std::string> read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) return std::nullopt;
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// Whether the file at `path` is a complete cache entry for `key`.
bool valid_entry(const std::string& path, std::uint64_t key) {
    auto data = read_file(path);
    if (!data || data->size() < sizeof(Trailer)) return false;
    Trailer t;
    std::memcpy(&t, data->data() + data->size() - sizeof(Trailer), sizeof(Trailer));
    std::size_t size = data->size() - sizeof(Trailer);
    return std::memcmp(t.magic, kMagic, sizeof kMagic) == 0 && t.key == key && t.size == size &&
           t.hash == hash64(std::string_view(data->data(), size));
}

std::shared_ptr<Module> open(const std::string& path) {
    // Never unmapped: generated code loads libgomp, whose worker threads outlive any one
    // module, and callers may still hold group function pointers.
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    return h ? std::make_shared<Module>(h, path) : nullptr;
}

std::string numbered(const std::string& source) {
    std::string out;
    std::istringstream in(source);
    int n = 0;
    for (std::string line; std::getline(in, line);) out += fmt::format("{:5}  {}\n", ++n, line);
    return out;
}

std::string temp_name(const std::string& dir, const std::string& key) {
    static std::atomic<unsigned> counter{0};
    return fmt::format("{}/{}.tmp-{}-{}", dir, key, getpid(), counter++);
}

// Compiles `source` into the cache entry `final_path`; throws on a compiler error.
void compile_into(const std::string& source, const HostCompiler& c,
                  const std::vector<std::string>& extra_flags, std::uint64_t key,
                  const std::string& dir, const std::string& final_path) {
    std::string base = temp_name(dir, fmt::format("{:016x}", key));
    std::string src = base + ".cpp", so = base + ".so";
    struct Cleanup {
        std::string a, b;
        ~Cleanup() {
            std::error_code ec;
            fs::remove(a, ec);
            fs::remove(b, ec);
        }
    } cleanup{src, so};
    {
        std::ofstream f(src, std::ios::binary);
        f << source;
        if (!f) throw Error(fmt::format("native CPU code: cannot write {}", src));
    }
    std::vector<std::string> argv{c.path};
    for (const std::string& f : compile_flags(c)) argv.push_back(f);
    for (const std::string& f : extra_flags) argv.push_back(f);
    argv.insert(argv.end(), {"-o", so, src});
    argv.push_back("-lm");
    if (!c.clang) argv.push_back("-lmvec");
    RunResult r = run(argv);
    if (r.status != 0) {
        throw Error(
            fmt::format("native CPU code: {} failed (status {}): {}\n--- generated source ---\n{}",
                        c.path, r.status, r.output, numbered(source)));
    }
    auto bytes = read_file(so);
    if (!bytes) throw Error(fmt::format("native CPU code: the compiler wrote no {}", so));
    Trailer t;
    std::memcpy(t.magic, kMagic, sizeof kMagic);
    t.key = key;
    t.size = bytes->size();
    t.hash = hash64(*bytes);
    {
        std::ofstream f(so, std::ios::binary | std::ios::app);
        f.write(reinterpret_cast<const char*>(&t), sizeof t);
        if (!f) throw Error(fmt::format("native CPU code: cannot write {}", so));
    }
    // rename() replaces atomically: readers see the old complete file or the new one.
    if (std::rename(so.c_str(), final_path.c_str()) != 0)
        throw Error(fmt::format("native CPU code: cannot rename {} to {}: {}", so, final_path,
                                std::strerror(errno)));
}

std::mutex g_mutex;
std::map<std::string, std::shared_future<std::shared_ptr<Module>>> g_modules;

}  // namespace

std::uint64_t hash64(std::string_view data, std::uint64_t seed) {
    std::uint64_t h = seed;
    for (unsigned char c : data) {
        h ^= c;
        h *= 0x100000001b3ull;
    }
    return h;
}

std::optional<HostCompiler> find_compiler() {
    static std::mutex m;
    static std::map<std::string, std::optional<HostCompiler>> found;
    const char* env = std::getenv("AGNESI_CXX");
    std::string want = env && *env ? env : "";
    std::lock_guard<std::mutex> lock(m);
    if (auto it = found.find(want); it != found.end()) return it->second;
    std::optional<HostCompiler> c;
    if (!want.empty()) {
        c = probe(want);
    } else {
        for (const char* name : {"c++", "g++", "clang++"})
            if ((c = probe(name))) break;
    }
    found.emplace(want, c);
    return c;
}

std::vector<std::string> compile_flags(const HostCompiler& c) {
    // -fno-math-errno and -fno-trapping-math change no result: they let calls and selects
    // vectorize. -fwrapv gives integer overflow the reference's wrap-around meaning. Without
    // errno, GCC rewrites sin(atan(x)) and cos(atan(x)) into algebra that gives +-1 and +-0 for a
    // NaN: atan is not taken as the builtin it matches (its calls still vectorize).
    std::vector<std::string> f{
        "-std=c++17",
        // GCC vectorizes omp simd loops at -O1, where a cold compile costs a third less than
        // at -O2. GCSE keeps the polynomials' constants out of the loops (a fifth of a
        // logsumexp), and no second, narrower vector copy of each fused loop is made for its
        // remainder. Clang vectorizes from -O2 only.
        c.clang ? "-O2" : "-O1", "-march=native", "-fPIC", "-shared", "-fopenmp", "-fno-math-errno",
        "-fno-trapping-math", "-fwrapv", "-fno-builtin-atan", "-fno-builtin-atanf", "-w", "-x",
        "c++"};
    if (!c.clang) f.insert(f.begin() + 2, {"-fgcse", "--param=vect-epilogues-nomask=0"});
    return f;
}

std::string cache_root() {
    if (const char* e = std::getenv("AGNESI_CACHE_DIR"); e && *e) return e;
    if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/agnesi";
    if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.cache/agnesi";
    return (fs::temp_directory_path() / fmt::format("agnesi-{}", getuid())).string();
}

std::string cache_dir() {
    const std::string dir = cache_root();
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec)
        throw Error(fmt::format("native CPU code: cannot create the cache directory {}: {}", dir,
                                ec.message()));
    return dir;
}

Module::~Module() {
    if (handle_) dlclose(handle_);
}

GroupFn Module::function(const std::string& symbol) const {
    void* f = dlsym(handle_, symbol.c_str());
    if (!f) throw Error(fmt::format("native CPU code: {} has no symbol {}", path_, symbol));
    return reinterpret_cast<GroupFn>(f);
}

BuildResult build(const std::string& source, const HostCompiler& compiler,
                  const std::vector<std::string>& extra_flags) {
    auto t0 = std::chrono::steady_clock::now();
    std::string material =
        fmt::format("agnesi-cpu 1\n{}\n{}\n{}\n", AGNESI_VERSION, compiler.path, compiler.version);
    for (const std::string& f : compile_flags(compiler)) material += f + " ";
    for (const std::string& f : extra_flags) material += f + " ";
    material += "\n" + cpu_identity() + "\n" + source;
    std::uint64_t key = hash64(material);
    BuildResult out;
    out.stats.key = fmt::format("{:016x}", key);

    std::promise<std::shared_ptr<Module>> promise;
    std::shared_future<std::shared_ptr<Module>> future;
    bool mine = false;
    {
        std::lock_guard<std::mutex> lock(g_mutex);
        auto it = g_modules.find(out.stats.key);
        if (it != g_modules.end()) {
            future = it->second;
        } else {
            future = promise.get_future().share();
            g_modules.emplace(out.stats.key, future);
            mine = true;
        }
    }
    if (!mine) {
        out.module = future.get();  // rethrows the first builder's error
        out.stats.cache_hit = out.stats.memory_hit = true;
        out.stats.load_ms = ms_since(t0);
        return out;
    }
    try {
        std::string dir = cache_dir();
        std::string path = dir + "/" + out.stats.key + ".so";
        if (valid_entry(path, key)) out.module = open(path);
        if (out.module) {
            out.stats.cache_hit = true;
        } else {
            auto tc = std::chrono::steady_clock::now();
            compile_into(source, compiler, extra_flags, key, dir, path);
            out.stats.compile_ms = ms_since(tc);
            out.module = open(path);
            if (!out.module)
                throw Error(fmt::format("native CPU code: cannot load {}: {}", path, dlerror()));
        }
        out.stats.load_ms = ms_since(t0) - out.stats.compile_ms;
        promise.set_value(out.module);
    } catch (...) {
        promise.set_exception(std::current_exception());
        std::lock_guard<std::mutex> lock(g_mutex);
        g_modules.erase(out.stats.key);
        throw;
    }
    return out;
}

void clear_memory_cache() {
    std::lock_guard<std::mutex> lock(g_mutex);
    g_modules.clear();
}

}  // namespace agnesi::jit::cpu
