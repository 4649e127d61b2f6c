#pragma once
// Runs a schedule's stage and micro-batch actors (pippy::actors, the same code as on hardware) in
// virtual time on CAF's deterministic test_coordinator. One simulate() call owns its own actor system;
// calls are independent and may run on different threads at once.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "pippy/core/schedule.hpp"
#include "pippy/core/cost_table.hpp"
#include "pippy/core/flat_evaluator.hpp"
#include "pippy/traces/trace.hpp"

namespace pippy::sim {

// The link and memory models are core's (cost_table.hpp): the flat evaluator uses the same ones.
using pippy::link_class;
using pippy::link_model;
using pippy::memory_model;

struct sim_options {
  cost_table costs;        // one entry per stage
  link_model links;
  memory_model memory;
  // pp x dp: the all-reduce of each stage's gradients over the pipeline's replicas before its U (core's
  // data_parallel_model, as the flat evaluator has it). Needs the schedule's U actions.
  data_parallel_model data_parallel;
  bool track_microbatches = true;
  // Called every `progress_every` delivered events with (events, virtual now); may be empty.
  std::function<void(std::size_t, double)> on_progress;
  std::size_t progress_every = 1 << 16;
  // Live hooks (may be empty), called on the simulating thread while the simulation runs, not at the end:
  // each compute or transfer event once the virtual clock reaches its end_us (the action has finished),
  // each memory sample once the clock reaches its t_us. Calls come in one stream ordered by that time
  // (end_us of events, t_us of samples; ties in the order they were recorded), and the events and samples
  // they pass are exactly those of sim_result.timeline. A hook that throws stops the simulation and the
  // exception leaves simulate(). Without hooks and pace, nothing of this costs anything.
  std::function<void(const trace_event&)> on_event;
  std::function<void(const memory_sample&)> on_memory;
  // Pacing for a human watching: virtual microseconds per wall-clock microsecond (e.g. 1e-3 plays one
  // virtual microsecond per wall millisecond); each hook call waits until its time is due. 0 = no waiting.
  double pace = 0;
  int noise_samples = default_noise_samples; // at most this many steps drawn for expected_step_us, when the costs carry noise
};

// Busy time, bubbles and spans are traces' compute_metrics of the timeline.
struct rank_stats {
  int rank = 0;
  double busy_us = 0;
  double idle_us = 0;
  double bubble_fraction = 0;
  int peak_activations = 0;            // micro-batches whose activations are held at once (F until B or W)
  std::uint64_t peak_memory_bytes = 0; // parameters + state + activations
  double first_start_us = 0;           // start of the rank's first compute action
  double end_us = 0;                   // end of the rank's last compute action
};

using pippy::out_of_memory; // core's (cost_table.hpp): the flat evaluator reports the same

struct sim_result {
  double makespan_us = 0;
  double step_us = 0; // one step alone, as between barriers: makespan + the cost table's step overhead
  // The step the runtime measures, steps back to back without a barrier (core's expected_step_us): each
  // rank starts its next step the step overhead after its own last action, while others may still be in
  // theirs. With step-to-step noise in the costs (cost_table::noise) the timeline is one draw (the
  // table's seed), and this the mean over a chain of steps each drawn anew (at most
  // sim_options::noise_samples).
  double expected_step_us = 0;
  double expected_step_error_us = 0; // its standard error
  int noise_samples = 0;             // steps averaged (0: no noise)
  double bubble_fraction = 0;
  double steady_bubble_fraction = 0; // idle inside each rank's own span (first start to last end)
  std::vector<rank_stats> ranks;
  std::optional<out_of_memory> oom; // the first to run out (out_of_memory::before); each such rank stops there
  bool completed = false;              // every rank ran its whole list
  std::vector<double> microbatch_end_us; // when each micro-batch finished (tracked runs)
  std::size_t actions = 0;             // actions of the lowered schedule, times the replicas (pp x dp)
  std::size_t events = 0;              // virtual-time events delivered
  std::size_t actor_runs = 0;          // actor activations run by the scheduler
  double validate_wall_s = 0;          // host time spent validating and lowering the schedule
  double run_wall_s = 0;               // host time spent simulating (actors, events, statistics)
  trace timeline;                      // compute on stream 0, transfers on stream 1, memory counters
};

// Validates the schedule, lowers it (add_communication) if it has no communication actions, checks the
// options against it and simulates it. Throws input_error naming the field on bad input.
sim_result simulate(const schedule& s, const sim_options& options);

} // namespace pippy::sim
