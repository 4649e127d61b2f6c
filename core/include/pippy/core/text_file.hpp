#pragma once
#include <functional>
#include <iosfwd>
#include <string>

namespace pippy {

// The whole content of a file. Throws input_error(cannot_open) when it cannot be opened or read, so
// each caller names the file in its own words ("x.csv: cannot open schedule file").
std::string read_text_file(const std::string& path, const std::string& cannot_open);

// Writes a file whole or not at all: `write` fills PATH.tmp, which then replaces PATH, so a reader (or a
// crash) never sees half a file. Throws input_error naming PATH when it cannot be written.
void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write);

} // namespace pippy
