#pragma once
#include <string>

namespace pippy {

// The whole content of a file. Throws input_error(cannot_open) when it cannot be opened or read, so
// each caller names the file in its own words ("x.csv: cannot open schedule file").
std::string read_text_file(const std::string& path, const std::string& cannot_open);

} // namespace pippy
