#include <iostream>
#include <vector>

#include "commands.hpp"
#include "pippy/core/error.hpp"

int main(int argc, char** argv) {
  CLI::App app{"pippy: pipeline-parallel schedules simulated, executed and drawn by the same code"};
  app.require_subcommand(1);
  const std::vector<pippy::cli::command> commands = {
      pippy::cli::add_schedule_command(app),
      pippy::cli::add_trace_command(app),
      pippy::cli::add_sim_command(app),
      pippy::cli::add_run_command(app),
  };
  CLI11_PARSE(app, argc, argv);
  try {
    for (const auto& c : commands)
      if (c.app->parsed())
        return c.run();
  } catch (const pippy::input_error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
