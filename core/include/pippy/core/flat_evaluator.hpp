#pragma once
// The flat evaluator: a schedule's timing, memory and bubbles without actors, by the rules the
// simulator's actors follow (core's dependency rule, memory rule and link timing), so that for one
// configuration it gives the same start and end of every action as sim::simulate, and the same step
// time, peaks and out-of-memory action. Made for the planner, which scores thousands of candidates: flat
// arrays indexed by (direction, stage, micro-batch), ranks run from a ready stack, links numbered in
// the order their first transfer appears (only the rank pairs that carry one: memory and time linear in
// ranks and actions, never ranks squared), and buffers that an evaluator object keeps from one call to
// the next.
// Not thread-safe: one flat_evaluator per thread.
#include <cstdint>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "pippy/core/cost_table.hpp"
#include "pippy/core/processor.hpp"
#include "pippy/core/replicas.hpp"
#include "pippy/core/schedule.hpp"

namespace pippy {

struct flat_rank_result {
  double busy_us = 0;         // its compute time (a rank's compute actions never overlap)
  double first_start_us = 0;  // start of its first compute action (0 when it ran none)
  double last_end_us = 0;     // end of its last one
  double bubble_fraction = 0; // 1 - busy / step time
  int peak_activations = 0;   // micro-batches whose activations it held at once
  std::uint64_t peak_memory_bytes = 0; // parameters and their state + activations
};

struct flat_result {
  // Last end - first start over every compute action and transfer: traces' step time, which is what
  // sim::simulate reports as makespan_us.
  double makespan_us = 0;
  double bubble_fraction = 0; // 1 - sum of busy / (ranks * step time)
  std::vector<flat_rank_result> ranks;
  // The first action that did not fit under the memory cap (out_of_memory::before). As in
  // the simulator, its rank stops there and the others run on as far as their inputs allow.
  std::optional<out_of_memory> oom;
  bool completed = false; // every rank ran its whole list
  std::size_t actions = 0; // actions of the lowered schedule, times the replicas (pp x dp: every replica runs)

  std::uint64_t peak_memory_bytes() const; // max over ranks
};

class flat_evaluator;

// The step the runtime measures (traces' summarize over the steps after the first): steps run back to
// back with no barrier between them. Each rank starts its next step costs.step_overhead_us after its own
// last compute action (the gap the profile measures, the first action's overhead included), while other
// ranks may still be in theirs: a V schedule's last rank finishes its step while rank 0 already runs the
// next one's forwards. The step is the time from one step's first start to the next one's, in a chain of
// steps evaluated one after the other (the steps before the second are the warm-up, as in the runtime).
// At the mean costs, the period once it repeats (at most max_steady_chain steps, else their mean). With
// step-to-step noise (cost_table::noise) each step of the chain draws its own times (seeds costs.seed,
// costs.seed + 1, ...), and the step is the mean period, over at least 16 steps until its standard error
// is within 0.2% of it, or over `max_samples` steps. An out-of-memory step ends the chain: the step is
// then that step alone, its makespan + the step overhead. Throws input_error when max_samples is outside
// [1, limits::max_noise_samples].
inline constexpr int default_noise_samples = 1024;
inline constexpr int max_steady_chain = 64;
struct expected_step {
  double step_us = 0;
  double standard_error_us = 0;
  int samples = 0; // periods drawn with noise; 0 without noise
};
expected_step expected_step_us(flat_evaluator& ev, const schedule& s, const cost_table& costs, const link_model& links = {},
                               const memory_model& memory = {}, const data_parallel_model& dp = {},
                               int max_samples = default_noise_samples);

class flat_evaluator {
public:
  // Evaluates `s`, lowered with add_communication first when it has no communication actions. The
  // schedule must be valid (pippy::validate; generated schedules are): an invalid one ends with
  // completed = false or meaningless times, but never reads out of bounds. Throws input_error naming
  // the field when the models do not fit the schedule (validate_models) or an action's stage or
  // micro-batch is out of range, or when release_us is neither empty nor one time per rank. Rank r
  // starts at release_us[r] (empty: every rank at 0): a step that follows another. The result lives
  // until the next call.
  const flat_result& evaluate(const schedule& s, const cost_table& costs, const link_model& links = {},
                              const memory_model& memory = {}, const data_parallel_model& dp = {},
                              std::span<const double> release_us = {});

  // The lowered schedule of the last call: `s` itself when it had communication actions (then valid
  // while `s` is), else the evaluator's own lowering.
  const schedule& evaluated() const { return *evaluated_; }
  // Start and end of action i of rank r of evaluated() (pp x dp: mesh rank r, d x R + its rank in replica
  // d, whose actions are those of its rank), as the simulator's trace has them: a compute
  // action after its overhead; a SEND its transfer, from leaving to arrival; a RECV the moment its
  // message was there (zero length; the simulator records no event for it). -1 for an action that never
  // ran (after an out-of-memory action, or behind one).
  double start_us(int rank, std::size_t i) const { return time_of(start_, rank, i); }
  double end_us(int rank, std::size_t i) const { return time_of(end_, rank, i); }

private:
  // One action, with what the hot loop needs of it (48 bytes: the loop streams through them).
  struct op {
    double cost = 0;          // compute: its time; SEND: what posting it takes from its rank
    std::uint64_t held = 0;   // compute: memory_effect::held_at_start; SEND: bytes on the link
    std::uint64_t freed = 0;  // compute: memory_effect::freed_at_end
    std::int32_t wait = -1;   // the data slot it waits for, or -1
    std::int32_t fill = -1;   // the data slot it fills (at its end, or at arrival for a SEND), or -1
    std::int32_t fill_rank = 0; // the rank that consumes `fill`
    std::int32_t link = 0;    // SEND: its link's index in link_ and link_free_
    std::int8_t activations_at_start = 0, activations_freed_at_end = 0; // memory_effect's counts
    std::uint8_t cls = 0;     // compute, send or receive
    std::uint8_t dp_role = 0; // with replicas: 1 = B or W (weight gradients in), 2 = U
    std::int32_t stage = 0;
  };
  double time_of(const std::vector<double>& times, int rank, std::size_t i) const {
    const std::size_t k = offset_[static_cast<std::size_t>(rank)] + i;
    return k < pc_[static_cast<std::size_t>(rank)] ? times[k] : -1.0; // ops from pc_ on never ran
  }
  void prepare(const schedule& s, const cost_table& costs, const link_model& links, const memory_model& memory,
               const data_parallel_model& dp);
  void run(bool blocking_send, double overhead_us, std::span<const double> release_us);

  const schedule* evaluated_ = nullptr;
  schedule lowered_;
  flat_result result_;
  std::vector<op> ops_;
  std::vector<std::size_t> offset_;   // first op of each rank; offset_[R] = ops_.size()
  std::vector<std::size_t> pc_;       // next op of each rank
  std::vector<std::int32_t> blocked_; // the slot each rank waits for, or -1
  std::vector<double> now_;           // each rank's clock
  std::vector<double> slot_;          // when each (micro-batch, direction, stage) input was there; -1 not yet
  std::vector<double> link_free_;     // per link that carries a transfer: when it is free
  std::vector<link_class> link_;      // ... and its class
  std::unordered_map<std::uint64_t, std::int32_t> link_index_; // src * R + dst -> index in link_
  std::vector<std::int8_t> neighbour_input_; // prepare's memos: per (kind, stage), per stage, per (direction, stage)
  std::vector<int> stage_rank_;
  std::vector<std::int32_t> send_link_;
  std::vector<rank_memory> memory_;
  std::vector<int> ready_;
  std::vector<double> start_, end_;   // per op; set for the ops a rank ran (before its pc_)
  // pp x dp (data_parallel_model): every replica runs, rank r of replica d as mesh rank d x R + r, on its
  // own slots (replica d's from d x 2SM); their collectives follow core's mesh_collectives. A U
  // waiting for its all-reduce blocks on sync_base_ + d x S + its stage, for its all-gather on
  // sync_base_ + (D + d) x S + its stage.
  mesh_collectives replicas_;
  int pipeline_ranks_ = 1;
  std::int32_t sync_base_ = 0;
  std::vector<char> gathering_; // per mesh rank: its ZeRO-1 U has computed and waits for the all-gather
  rank_processors processors_; // when an action's end may move: arrivals' costs, ranks sharing a CPU (else empty)
  // ... what settles an action's end early (run): the ranks that send to rank r (sender_[into_offset_[r]]
  // up to into_offset_[r + 1]) and the rank that fills each (direction, stage) group of slots (-1: none
  // or in memory); and the paused ranks' ends, in a tournament tree (paused_[1] is the earliest).
  std::vector<std::int32_t> sender_, producer_;
  std::vector<std::size_t> into_offset_;
  struct paused_rank {
    double end;
    std::int32_t rank;
  };
  std::vector<paused_rank> paused_;
};

} // namespace pippy
