// pippy split MODEL.pt --input SHAPE ... (--stages N | --split-at NAME=begin|end ...) [--out DIR]: runs
// pippy-split, found next to this executable, with the same arguments. The compiler needs libtorch, which
// the pippy command does without (it starts in milliseconds and builds without torch); exec keeps
// pippy-split's output, signals and exit status exactly as if it had been run directly.
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "commands.hpp"

namespace pippy::cli {

command add_split_command(CLI::App& app) {
  // Listed in `pippy --help` only: main() hands `pippy split ...` to run_split before parsing, so that
  // every option, --help included, is pippy-split's.
  auto* sub = app.add_subcommand("split", "split a TorchScript model into pipeline stages (runs pippy-split; "
                                          "pippy split --help for its options)");
  sub->allow_extras();
  return {sub, [] { return 0; }};
}

int run_split(int argc, char** argv) {
  std::error_code ec;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) {
    std::cerr << "error: pippy split: cannot find this executable's folder (/proc/self/exe: " << ec.message() << ")\n";
    return 127;
  }
  const std::string tool = (self.parent_path() / "pippy-split").string();
  std::vector<char*> args{const_cast<char*>(tool.c_str())};
  for (int i = 0; i < argc; ++i) args.push_back(argv[i]);
  args.push_back(nullptr);
  ::execv(tool.c_str(), args.data());
  const int err = errno;
  std::cerr << "error: pippy split needs " << tool << ": " << std::strerror(err)
            << (err == ENOENT ? " (it is built with libtorch: ninja pippy-split, or configure with "
                                "PIPPY_BUILD_TORCH=ON)"
                              : "")
            << "\n";
  return 127;
}

} // namespace pippy::cli
