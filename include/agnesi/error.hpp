// Errors raised by Agnesi.
//
// User errors (bad input, bad shapes, a missing value) throw subclasses of agnesi::Error. Broken
// internal invariants throw InternalError through AGNESI_ASSERT. The library never calls exit or
// abort. Every message is one line: what is wrong, where, and what was expected.
#pragma once

#include <cstddef>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace agnesi {

/// Base of every error Agnesi throws.
class Error : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

/// A syntax error in parsed text. `column()` is 1-based; `caret()` returns the input line with a
/// caret under that column.
class ParseError : public Error {
  public:
    ParseError(const std::string& message, std::string input, std::size_t column);
    std::size_t column() const { return column_; }
    const std::string& input() const { return input_; }
    /// Two lines: the input and a caret under the failing column.
    std::string caret() const;

  private:
    std::string input_;
    std::size_t column_;
};

/// Shapes that do not fit an op (names the op and both shapes).
class ShapeError : public Error {
  public:
    using Error::Error;
};

/// Dtypes that do not fit an op (names the op and both dtypes).
class TypeError : public Error {
  public:
    using Error::Error;
};

/// A value that is needed and missing, or of the wrong kind (evaluation, file formats).
class ValueError : public Error {
  public:
    using Error::Error;
};

/// A generated source that its compiler (NVRTC, the host compiler) rejected. what() is one line;
/// `log()` is the compiler's output and `source()` the source it was given.
class CompileError : public Error {
  public:
    CompileError(const std::string& message, std::string log, std::string source)
        : Error(message), log_(std::move(log)), source_(std::move(source)) {}
    const std::string& log() const { return log_; }
    const std::string& source() const { return source_; }

  private:
    std::string log_, source_;
};

/// A failed CUDA driver, NVRTC or cuBLAS call: `call()` names it, `status()` is its status code.
class CudaError : public Error {
  public:
    CudaError(const std::string& message, std::string call, int status)
        : Error(message), call_(std::move(call)), status_(status) {}
    const std::string& call() const { return call_; }
    int status() const { return status_; }

  private:
    std::string call_;
    int status_;
};

/// A broken internal invariant: a bug in Agnesi, never the user's fault.
class InternalError : public Error {
  public:
    using Error::Error;
};

namespace detail {

// Collects a message with operator<< and throws InternalError when it goes out of scope.
class AssertStream {
  public:
    AssertStream(const char* cond, const char* file, int line) {
        os_ << "internal error: " << cond << " failed at " << file << ":" << line << ": ";
    }
    AssertStream(const AssertStream&) = delete;
    AssertStream& operator=(const AssertStream&) = delete;
    ~AssertStream() noexcept(false) { throw InternalError(os_.str()); }
    template <class T>
    AssertStream& operator<<(const T& v) {
        os_ << v;
        return *this;
    }

  private:
    std::ostringstream os_;
};

/// Throws InternalError; for code paths that cannot be reached.
[[noreturn]] void unreachable(const char* what);

}  // namespace detail
}  // namespace agnesi

/// AGNESI_ASSERT(cond) << "context"; throws agnesi::InternalError when cond is false.
#define AGNESI_ASSERT(cond) \
    if (cond) {             \
    } else                  \
        ::agnesi::detail::AssertStream(#cond, __FILE__, __LINE__)
