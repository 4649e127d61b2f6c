#pragma once
#include <array>
#include <cstdio>
#include <string>
#include <sys/wait.h>

// Runs the pippy command line with `args` (shell words), capturing stdout and stderr together.
struct cli_result {
  int exit_code = -1;
  std::string output;
};

inline cli_result run_pippy(const std::string& args) {
  const std::string command = std::string(PIPPY_CLI) + " " + args + " 2>&1";
  cli_result result;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe)
    return result;
  std::array<char, 4096> buf{};
  std::size_t n = 0;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0)
    result.output.append(buf.data(), n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}
