#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <sstream>
#include <string>

#include "pippy/core/cost_table.hpp"
#include "pippy/core/generators.hpp"
#include "pippy/core/limits.hpp"
#include "pippy/cli/options.hpp" // within(), one_of()

namespace pippy::cli {

// Each subcommand registers its options and returns itself with the action to run when it is chosen.
struct command {
  CLI::App* app;
  std::function<int()> run;
};

command add_schedule_command(CLI::App& app);

// The schedule a subcommand works on: generated from `gen`, or read from the file `from`. With a file,
// --ranks, --microbatches and --stages-per-rank given on the command line must agree with it.
schedule schedule_for(const CLI::App& sub, const schedule_options& gen, const std::string& from);
command add_trace_command(CLI::App& app);

// The link model's options, shared by pippy sim and pippy plan: --latency-us, --bandwidth-gbps,
// --ranks-per-host, --inter-host-latency-us, --inter-host-bandwidth-gbps, --blocking-send.
struct link_options {
  double latency_us = 0, bandwidth_gbps = 0;
  double inter_latency_us = -1, inter_bandwidth_gbps = -1; // -1: as within a host
  int ranks_per_host = 0;
  bool blocking_send = false;
};
void add_link_options(CLI::App& sub, link_options& o);
// Throws input_error naming the option when a value is negative.
link_model make_link_model(const link_options& o);
command add_plan_command(CLI::App& app);
command add_sim_command(CLI::App& app);
command add_run_command(CLI::App& app);
command add_split_command(CLI::App& app);
// pippy split ARGS...: execs pippy-split (next to this executable) with ARGS; returns only when it cannot.
int run_split(int argc, char** argv);

} // namespace pippy::cli
