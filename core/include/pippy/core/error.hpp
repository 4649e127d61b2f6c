#pragma once
#include <algorithm>
#include <stdexcept>
#include <string>

namespace pippy {

// Thrown for bad user input (options, files, schedules). The message names the field, line or action;
// command-line tools print it as is and exit non-zero.
class input_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

// The last non-blank line of an error message (TorchScript's interpreter puts its traceback first and
// the error itself last), or the whole message when it has none.
inline std::string last_message_line(const std::string& text) {
  std::string last;
  for (std::size_t a = 0; a < text.size();) {
    const std::size_t b = std::min(text.find('\n', a), text.size());
    if (text.find_first_not_of(" \t\r", a) < b)
      last = text.substr(a, b - a);
    a = b + 1;
  }
  return last.empty() ? text : last;
}

} // namespace pippy
