#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "pippy/core/cost_table.hpp"
#include "pippy/traces/trace.hpp"

namespace pippy {

// What a profile knows besides the trace: the sizes the stages reported (stage -> bytes), the links
// probe_links measured (with --dp, the replicas' link probe_replica_link fitted), and the rows of one
// micro-batch.
struct profile_context {
  std::map<int, std::uint64_t> activation_bytes, param_bytes;
  std::vector<link_cost> links;
  std::optional<link_class> send_posting; // probe_links' fit of what a send call took, over its sizes
  std::optional<link_class> replica_link;
  bool replica_reduce_scatter_by_allreduce = false; // cost_table's, for the replicas' backend
  // What an arrival takes from compute, as the run's transport measured it (probe_arrival_cost); without
  // one (ranks in one process), fitted from the trace.
  std::optional<double> arrival_cost_us;
  // The run's replicas. With ZeRO-1 a measured U is 1/D of the stage's step plus the all-gather: the
  // profile records the whole step (core's whole_step_us), as the cost model expects.
  data_parallel_model data_parallel;
  // The ranks that shared a CPU (cost_table::shared_cpus): their compute times are taken back to each
  // action's work alone (traces' work_alone) before anything is read from them.
  std::vector<std::vector<int>> shared_cpus;
  std::vector<layer_cost> layers;
  std::vector<int> stage_first_layers; // where each stage's layers begin (cost_table's); empty: unknown
  std::int64_t microbatch_rows = 0;
  int steps = 1; // in the trace: the gap between them is the runtime's per-step overhead
};

// Measured costs: each stage's time of a kind is the mean duration of that kind of the stage's actions in
// the trace, less what the receives landing inside them took: the context's arrival_cost_us (else traces'
// fit_arrival_cost's) times the mean arrivals that fit_arrival_cost counts. Kinds a schedule did not run are derived: B = I + W when only I and W ran; I = W = B / 2 when
// only B ran. The per-action overhead is traces' action_overhead_us of the trace; sizes, links and rows
// and layers come from the context (weight_input_bytes is half the activations); each stage's rank
// (stage_ranks) from the trace. A link the trace shows
// a rank waiting on (traces' transfer_waits) takes the latency that gives back the median of those waits (of all links' waits where it has fewer than 3)
// with the probe's bandwidth and the overhead; the others keep the probe's. A send's posting (it holds
// its rank: cost_table::send_posting) takes the probe's bandwidth and the latency that gives back the
// median of the trace's SEND events (a measured SEND spans its posting); the probe's where the trace
// has none.
cost_table measure_stage_costs(const trace& t, int num_stages, const profile_context& context);

// The profile of a run again, from its trace (every step, as `--trace` writes it) and the cost file that
// run wrote (`--profile`), under this build's rules: what the trace does not hold comes from the cost
// file (sizes, the probed links and send posting, the probed cost per arrival, the replicas' link, the
// shared CPUs, the layers, the rows) and `data_parallel` (a ZeRO-1 run's U: the cost file does not say
// how many replicas ran). The steps after the first are read, as the run read them. Under the rules that
// wrote the cost file, the result is that cost file. Throws input_error when the trace's stages are not
// the cost file's.
cost_table profile_again(const trace& whole, const cost_table& run_profile, const data_parallel_model& data_parallel = {});

// Step time and bubble of a measured trace, from traces' compute_metrics (the simulator's definitions).
struct measured_summary {
  double step_us = 0;         // step time divided by the number of steps
  double bubble_fraction = 0;
};
measured_summary summarize(const trace& t, int steps);

} // namespace pippy
