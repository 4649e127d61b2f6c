#include "pippy/core/text_file.hpp"

#include <filesystem>
#include <fstream>

#include "pippy/core/error.hpp"

namespace pippy {

std::string read_text_file(const std::string& path, const std::string& cannot_open) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) // opens, and reports a size near 2^63
    throw input_error(cannot_open);
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw input_error(cannot_open);
  std::string text;
  in.seekg(0, std::ios::end);
  const auto size = in.tellg();
  in.seekg(0, std::ios::beg);
  if (size < 0)
    throw input_error(cannot_open); // a directory, or a stream that cannot seek
  text.resize(static_cast<std::size_t>(size));
  in.read(text.data(), size);
  text.resize(static_cast<std::size_t>(in.gcount()));
  return text;
}

void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write) {
  const std::string tmp = path + ".tmp";
  std::error_code ec;
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out)
      throw input_error(path + ": cannot open for writing");
    write(out);
    out.flush();
    if (!out) {
      out.close();
      std::filesystem::remove(tmp, ec);
      throw input_error(path + ": write failed");
    }
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    throw input_error(path + ": cannot move the finished file into place");
  }
}

} // namespace pippy
