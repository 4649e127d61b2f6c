#pragma once
#include <stdexcept>
#include <string>

namespace pippy {

// Thrown for bad user input (options, files, schedules). The message names the field, line or action;
// command-line tools print it as is and exit non-zero.
class input_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

} // namespace pippy
