#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "pippy/traces/trace.hpp"

namespace pippy {

// Measured per-stage costs in the simulator's cost-file form (microseconds, bytes):
// {"stages":[{"F":..,"I":..,"W":..,"B":..,"U":..,"activation_bytes":..,"param_bytes":..}, ...]}.
// Each cost is the mean duration of that action kind of the stage in the trace. Kinds a schedule did
// not run are derived: B = I + W when only I and W ran; I = W = B / 2 when only B ran.
struct stage_cost {
  double forward = 0, backward_input = 0, backward_weight = 0, full_backward = 0, optimizer_step = 0;
  std::uint64_t activation_bytes = 0;
  std::uint64_t param_bytes = 0;
};
std::vector<stage_cost> measure_stage_costs(const trace& t, int num_stages,
                                            const std::map<int, std::uint64_t>& activation_bytes,
                                            const std::map<int, std::uint64_t>& param_bytes);
std::string cost_profile_json(const std::vector<stage_cost>& costs);
// Writes path.tmp then renames. Throws input_error when the file cannot be written.
void save_cost_profile(const std::vector<stage_cost>& costs, const std::string& path);

// Bytes of heap this process has in use (glibc's mallinfo2: allocated chunks plus mmapped blocks; the
// CPU tensors live there). 0 where that is not available. Measured traces sample it after every compute
// action of a process that hosts one rank.
std::uint64_t heap_bytes_in_use();

// Step time and bubble of a measured trace over [first start, last end]: per rank busy = compute time.
struct measured_summary {
  double step_us = 0;         // makespan divided by the number of steps
  double bubble_fraction = 0; // 1 - compute busy / (ranks * makespan)
};
measured_summary summarize(const trace& t, int steps);

} // namespace pippy
