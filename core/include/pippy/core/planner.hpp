#pragma once
// The planner: which schedule, stages per rank V, micro-batch count M and split of a profile's layers
// into R*V contiguous stages gives the shortest step. Each split is balanced (balanced_split), each
// candidate scored with the flat evaluator, so its predicted step time is what `pippy sim` gives for it.
// Plain functions of their arguments; thread-safe.
#include <cstdint>
#include <string>
#include <vector>

#include "pippy/core/cost_table.hpp"
#include "pippy/core/schedule.hpp"

namespace pippy {

class flat_evaluator;

struct plan_options {
  int num_ranks = 1;                 // pipeline ranks R
  std::vector<std::string> schedules; // names to try; empty: every generator (schedule_names())
  // Micro-batch counts to try; empty: the divisors of global_batch up to 1024, or R, 2R, 4R and 8R
  // without one.
  std::vector<int> microbatches;
  // Rows per step (0 = unknown). With the profile's microbatch_rows, a micro-batch of r rows costs
  // r / microbatch_rows times the profile's compute time and bytes, or its layers' times at r rows where
  // they were measured at other sizes too (layers_at_rows); without microbatch_rows, costs are as given.
  std::int64_t global_batch = 0;
  // V to try; empty: 1 up to layers / R (with per-layer costs), else the profile's stages / R.
  std::vector<int> stages_per_rank;
  link_model links;
  memory_model memory; // a candidate fits when no rank's peak exceeds cap_bytes (0 = no cap)
  // pp x dp: with processes > 0 (and a global batch), every R x D = processes is tried, R pipeline ranks
  // and D replicas that each take global_batch / D rows (num_ranks is then ignored); the all-reduce before
  // each U follows data_parallel.sync, and with data_parallel.zero1 every candidate with D > 1 is ZeRO-1
  // (a reduce-scatter before U, an all-gather after it, 1/D of the optimizer state per replica).
  int processes = 0;
  data_parallel_model data_parallel;
  // The CPUs the processes run on, bound as `pippy run --bind-cores` binds them (core's
  // ranks_sharing_bound_cpus over each candidate's R x D ranks; the profile's times are each action's
  // work alone): where the processes outnumber them, ranks share a CPU (cost_table::shared_cpus), so
  // that pp=2 x dp=2 and pp=4 on 2 cores are scored as they would run there. 0: a CPU for each.
  int cpus = 0;
  // How many of the best candidates by one step alone (step_us) are ranked again by the step the
  // runtime measures (core's expected_step_us): steps back to back, where one step's tail overlaps the
  // next one's start, and with the profile's step-to-step noise (cost_table::noise) drawn step by step,
  // since a pipeline waits for its slowest actions and plans differ in how much.
  int rerank_pool = 16;
};

struct plan_candidate {
  std::string schedule;
  int ranks = 0;    // pipeline ranks R (0: plan_options::num_ranks)
  int replicas = 1; // data-parallel replicas D (R x D processes)
  bool zero1 = false; // with D > 1: ZeRO-1
  int stages_per_rank = 1;
  int microbatches = 1;
  std::vector<int> boundaries;           // first layer of each stage (empty without per-layer costs)
  std::vector<std::string> split_points; // names of the layers where stages 1.. begin
  double step_us = 0;                    // one step alone at the mean costs: the flat evaluator's makespan +
                                         // the profile's step overhead (pippy sim's step_us)
  // The predicted step: core's expected_step_us (pippy sim's expected_step_us) for the rerank pool, 0
  // (not evaluated) for the rest.
  double expected_step_us = 0;
  double throughput = 0;                 // rows/s with a global batch, else micro-batches/s
  double bubble_fraction = 0;
  std::uint64_t peak_memory_bytes = 0;   // the largest rank's peak
  bool fits = true;                      // under the memory cap
};

struct plan_result {
  // Ranked: fitting candidates first, then by step time (with a global batch, the same work for every
  // candidate) or by step time per micro-batch (without one, M micro-batches of the profile's size):
  // the rerank pool (the best by one step alone) by expected step, ahead of the rest by one step alone.
  std::vector<plan_candidate> candidates;
  std::size_t skipped = 0; // schedule, V and M combinations a generator refused
  std::size_t repeats = 0; // combinations whose actions equal an earlier schedule's (the first name is kept)
  std::size_t actions = 0; // actions evaluated, over every lowered candidate schedule
  int layers = 0;          // layers the splits cut (the profile's stages without per-layer costs)
  bool per_layer = false;  // the profile had per-layer costs
  bool rows_known = false; // throughput is in rows/s
};

// Throws input_error naming the option ("ranks", "microbatches", "global-batch", "stages-per-rank",
// "schedule") when it cannot be planned, or when no candidate is left.
plan_result make_plan(const cost_table& profile, const plan_options& options);

// The candidate's compute-only schedule and the per-stage costs it was scored with (what `pippy sim`
// needs to run it, and `pippy plan --emit` writes).
schedule plan_schedule(const plan_options& options, const plan_candidate& c);
cost_table plan_costs(const cost_table& profile, const plan_options& options, const plan_candidate& c);
// The step the runtime measures for candidate c planned from `profile` (core's expected_step_us of its
// schedule and plan_costs, with the profile's noise): what make_plan ranks its rerank pool by, and what a
// plan's step is from each of several profiles (`pippy plan` with several cost files).
double plan_expected_step_us(flat_evaluator& ev, const cost_table& profile, const plan_options& options,
                             const plan_candidate& c);

// Boundaries (first index of each group, starting with 0) of `num_stages` contiguous, non-empty groups of
// `times` whose largest sum is as small as possible: the linear-partition DP, O(L * S) with a monotone
// split pointer. Throws input_error unless 1 <= num_stages <= times.size().
std::vector<int> balanced_split(const std::vector<double>& times, int num_stages);

// plan.json: {"schedule", "ranks", "replicas", "zero1", "stages_per_rank", "microbatches", "boundaries", "split_points",
// "predicted_step_us", "bubble_fraction", "peak_memory_bytes", "fits"}.
std::string to_plan_json(const plan_candidate& c, int num_ranks);

// What a runner needs from plan.json (`--plan DIR`): the schedule, its shape and the split.
struct emitted_plan {
  std::string schedule;
  int ranks = 1, replicas = 1, stages_per_rank = 1, microbatches = 1;
  bool zero1 = false; // with replicas > 1 (absent in plans before ZeRO-1: false)
  std::vector<int> boundaries; // first layer of each stage (starting with 0); empty: the profile's stages
};
// Reads DIR/plan.json. Throws input_error naming the file and field when it is missing or malformed:
// sizes must be positive (at most 1 << 20), boundaries must start at 0, increase, and number
// ranks * stages_per_rank.
emitted_plan load_plan(const std::string& dir);

} // namespace pippy
