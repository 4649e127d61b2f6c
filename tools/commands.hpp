#pragma once
#include <CLI/CLI.hpp>
#include <functional>

namespace pippy::cli {

// Each subcommand registers its options and returns itself with the action to run when it is chosen.
struct command {
  CLI::App* app;
  std::function<int()> run;
};

command add_schedule_command(CLI::App& app);
command add_trace_command(CLI::App& app);
command add_sim_command(CLI::App& app);
command add_run_command(CLI::App& app);

} // namespace pippy::cli
