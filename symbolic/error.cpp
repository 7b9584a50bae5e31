#include "agnesi/error.hpp"

namespace agnesi {

ParseError::ParseError(const std::string& message, std::string input, std::size_t column)
    : Error(message + " at column " + std::to_string(column)),
      input_(std::move(input)),
      column_(column) {}

std::string ParseError::caret() const {
    std::string line = input_;
    for (char& c : line)
        if (c == '\n' || c == '\t' || c == '\r') c = ' ';
    return line + "\n" + std::string(column_ > 0 ? column_ - 1 : 0, ' ') + "^";
}

namespace detail {
void unreachable(const char* what) {
    throw InternalError(std::string("internal error: ") + what);
}
}  // namespace detail

}  // namespace agnesi
