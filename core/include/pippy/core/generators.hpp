#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "pippy/core/schedule.hpp"

namespace pippy {

struct schedule_options {
  std::string name;         // gpipe, 1f1b, interleaved-1f1b, looped-bfs, interleaved-zb, zbv, dualpipev, zb-h1, zb-h2
  int num_ranks = 1;        // pipeline ranks R
  int num_microbatches = 1; // M
  int stages_per_rank = 0;  // V; 0 = the schedule's default (1, or 2 for the V-shaped ones)
  bool optimizer_steps = true; // end each rank with one U per local stage
};

// Names accepted by make_schedule, in the order the CLI lists them.
const std::vector<std::string_view>& schedule_names();

// A compute-only schedule (no SEND/RECV; add_communication lowers it). Throws input_error naming the
// option when the name is unknown or the sizes break the schedule's documented constraints.
schedule make_schedule(const schedule_options& options);

} // namespace pippy
