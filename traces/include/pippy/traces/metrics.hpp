#pragma once
#include <array>
#include <functional>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "pippy/core/action.hpp"
#include "pippy/core/schedule.hpp"
#include "pippy/core/validate.hpp"
#include "pippy/traces/trace.hpp"

namespace pippy {

// Turns core's evaluation (abstract time units) into a trace: one compute event per timed action,
// `us_per_unit` microseconds per unit. Communication actions of a lowered schedule become zero-length
// events on stream 1. The reference trace for tests and `pippy trace make`.
trace trace_from_evaluation(const evaluation& ev, const std::string& run, double us_per_unit = 1000.0,
                            event_source source = event_source::simulated);

// Why a rank sat idle: the dependency of its next action that arrived last. An input from another rank
// arrives when its transfer does: in a measured trace, a gap whose producer had ended before it began but
// whose RECV completed inside it waited for that transfer (activation or gradient), not for the order.
enum class idle_cause : std::uint8_t {
  activation, // F waited for stage-1's F output (forward activation)
  gradient,   // I/B waited for stage+1's I/B output (output gradient)
  local,      // W waited for its own I, or U for the stage's backward work, finished on another lane
  ordering,   // every input was there before the gap began: the rank's order held it
  drain,      // after the rank's last action until the end of the step
};
inline constexpr int num_idle_causes = 5;
std::string_view to_string(idle_cause c);

struct idle_gap {
  int rank = 0;
  double start_us = 0;
  double end_us = 0;
  idle_cause cause = idle_cause::ordering;
  std::optional<action> next;       // the action that ran after the gap (none for drain)
  std::optional<action> waited_for; // the dependency whose end closed the gap (activation/gradient/local)
  int waited_rank = -1;             // the rank that ran waited_for
  double waited_end_us = 0;         // when waited_for ended
  double duration_us() const { return end_us - start_us; }
  std::string describe() const; // "rank 1 idle 0..1000 us: waiting for activation of stage 0 mb 0 (0F0 on rank 0)"
};

struct rank_metrics {
  int rank = 0;
  std::size_t num_actions = 0; // compute actions
  double first_start_us = 0;   // of its compute actions
  double last_end_us = 0;
  double busy_us = 0;          // union of its compute intervals
  double bubble_fraction = 0;  // 1 - busy / step time
  double utilisation = 0;      // busy / step time
  double comm_us = 0;          // union of its communication intervals
  std::uint64_t peak_memory = 0;
};

struct trace_metrics {
  double start_us = 0, end_us = 0; // first start and last end over all events
  double step_time_us = 0;         // end - start
  double bubble_fraction = 0;      // 1 - sum busy / (ranks * step time)
  double utilisation = 0;          // sum busy / (ranks * step time)
  // Idle time inside each rank's own span (first start to last end of the actions that take time) over
  // the spans: the bubble left in steady state when consecutive steps overlap (the zero-bubble paper's
  // measure). Ranks that did no work have no span.
  double steady_bubble_fraction = 0;
  std::size_t num_events = 0, num_compute = 0;
  // A transfer is one send and its receive. A simulated trace records the send alone (the link's time); a
  // measured one records both ends, each on its own rank, so the transfers are the larger of the two counts.
  std::size_t num_sends = 0, num_receives = 0, num_comm = 0;
  std::size_t num_reduce_grads = 0; // REDUCE_GRAD: a stage's gradients summed over its replicas (pp x dp)
  std::vector<rank_metrics> ranks;
  std::vector<idle_gap> gaps;      // every idle gap of every rank longer than 0, by rank then time
  // Per action kind (index = action_kind): count and total duration of compute events.
  std::array<std::size_t, num_action_kinds> kind_count{};
  std::array<double, num_action_kinds> kind_us{};
  // The chain of dependencies (data and same-rank order) that ends at the last action: indices into
  // trace::events, first to last. Its idle time is the waiting along the chain. Each step goes back to
  // the predecessor that ended last; on a tie, a data dependency before the rank's previous action. A
  // predecessor may end up to 1e-9 * (1 + |start|) us after the action starts (recorded times are rounded).
  std::vector<std::size_t> critical_path;
  double critical_path_busy_us = 0; // compute time on the path
  std::uint64_t peak_memory = 0;    // max over ranks
};

// Metrics of a trace: the one definition of step time, busy time (the union of a rank's compute
// intervals) and bubble, for simulated and measured traces alike. Dependencies follow core's rule
// (inputs_of); events whose producers are missing (partial traces) simply have fewer dependencies.
// `summary` leaves out the idle gaps and the critical path (for callers that want only the numbers of a
// large trace). Never throws on a well-formed trace.
enum class metrics_depth : std::uint8_t { summary, full };
trace_metrics compute_metrics(const trace& t, metrics_depth depth = metrics_depth::full);

// An ASCII timeline: a row per rank, a column per time unit, each cell the action running then
// ("." where the rank idles), and the bubble fraction per rank (compute_metrics). Communication actions
// take no time. What `pippy schedule --format grid` prints.
std::string render_grid(const schedule& s, const evaluation& e);

// Trace slicing. The events of steps [first, steps): each rank's events in start order cut into `steps`
// equal parts (every rank runs the same actions each step), and each rank's memory samples from its first
// kept event on.
// `count` >= 0 keeps only that many steps from `first` on.
trace step_range(const trace& t, int steps, int first, int count = -1);
// What a run's numbers are read from: the steps after the first of a trace of `steps` (the first warms
// up), or the only one.
inline trace steps_after_first(const trace& t, int steps) { return step_range(t, steps, steps > 1 ? 1 : 0); }
// One trace of the ranks that separate files hold (a process's torch.profiler trace each, or each rank's own
// trace): events, memory and markers together, times as they are (one host's clock). `names` label the
// parts in errors. Throws input_error when two parts hold the same rank.
trace merge_ranks(const std::vector<trace>& parts, const std::vector<std::string>& names);
// A trace of ranks that shared CPUs (cost_table::shared_cpus, each group's ranks) as if each compute
// action had run alone: it ends its work alone after its start (core's work_alone, the processor rule
// read backwards, each action's job starting the per-action overhead_us before it); everything else as
// it was.
trace work_alone(const trace& t, const std::vector<std::vector<int>>& shared_cpus, double overhead_us);
// How many steps a trace holds: k when every compute action of every rank occurs exactly k times (a
// measured run of k steps), else 1.
int steps_in(const trace& t);
// Per step of a trace of several (steps_in): each step's time (its first start to its last end) and
// bubble, then their mean, min and max. Empty for one step.
std::string format_steps(const trace& t);

// The median of measured values as the runtime reports them: the upper middle one of an even count (a
// value that occurred), 0 for none.
double median_of(std::vector<double> values);

// Each step's first compute start and last compute end over all ranks, each rank's compute actions cut
// into `steps` equal parts (every rank runs the same actions each step); empty when steps < 1.
struct step_bounds {
  std::vector<double> first_start_us, last_end_us;
};
step_bounds bounds_of_steps(const trace& t, int steps);
// The runtime's time between consecutive steps: the mean, over steps k = 1..steps-1, of step k's first
// start minus step k-1's last end; 0 when steps < 2.
double step_gap_us(const trace& t, int steps);
// The runtime's own time between steps on one rank: from its last compute action of step k - 1 to its
// first of step k, where that first action waits for no other rank (a forward of stage 0, whose input is
// the batch), the mean over such ranks and steps k = 1..steps-1 (each rank's compute actions cut into
// `steps` equal parts). The chain of steps core's expected_step_us runs starts each rank's next step
// this long after its own last action. 0 when steps < 2 or no rank starts a step so.
double rank_step_gap_us(const trace& t, int steps);
// The median step when steps follow each other: step k lasts from its first start to the next step's
// (the last step: to its last end plus the mean gap), so a stall in one step does not move it. 0 when
// steps < 1.
double median_step_us(const trace& t, int steps);
// Moves every event and sample so that the first event starts at 0.
void shift_to_zero(trace& t);

// The runtime's own time per compute action, read off a measured trace: the mean of the idle gaps
// between two compute actions of a rank whose inputs had all ended before the gap began (cause
// ordering), each less the time its rank spent posting sends in it (the trace's SEND events there: a
// measured SEND spans its posting, which cost_table::send_posting charges apart); 0 without such gaps.
// The mean, since the simulator adds it before each compute action and a step's time is their sum.
double action_overhead_us(const trace& t);
// Each step's metrics on their own, for a trace of `steps` steps (step_range; the whole trace for one).
std::vector<trace_metrics> step_metrics(const trace& t, int steps);
// The same over the steps' metrics of `t` (an action's inputs are found in its own step, not in an
// earlier one's), or over a trace of `steps` steps. With ranks that shared CPUs (cost_table::shared_cpus),
// each gap also less the time another rank computed on the rank's CPU within it.
double action_overhead_us(const std::vector<trace_metrics>& per_step, const trace& t,
                          const std::vector<std::vector<int>>& shared_cpus = {});
double action_overhead_us(const trace& t, int steps);

// A transfer its consumer waited for: the consumer's rank sat idle from before its producer, on another
// rank, ended until the consumer started (a gap of cause activation or gradient). Not a gap that began
// after the producer's end and waited for the transfer's completion: the transport shares the rank's
// cores, so that completion may have waited for the rank's previous action to end, which says nothing of
// the link. wait_us = consumer start
// - producer end holds the link's latency and time on the wire and the runtime's per-action overhead,
// which the simulator adds up the same way.
struct transfer_wait {
  int src = 0, dst = 0;
  action producer;
  double wait_us = 0;
};
// Those of a trace of `steps` steps, each step's metrics on their own (as action_overhead_us). The wait
// before a rank's first action of a step counts only where the rank's last action of the step before had
// ended by the producer's end (steps overlap: the rank may have been busy with the one before), and never
// in the first step.
std::vector<transfer_wait> transfer_waits(const std::vector<trace_metrics>& per_step);
std::vector<transfer_wait> transfer_waits(const trace& t, int steps);

// What a transfer arriving on a rank takes from the compute action it lands in (core's shared_processor,
// cost_table::arrival_cost_us), read off a measured trace. Each compute action is counted with the
// receives of its rank that ended strictly inside it and before its start plus the median time of its
// stage and kind (so that an action slow for another reason does not catch more of them); cost_us is
// the least-squares extra time per such arrival, one value for all, each (stage, kind) with its own base
// time. It is 0 unless it is more than twice its standard error (a few noisy steps tell nothing), and on a
// simulated trace, which records no receives. mean_arrivals[stage][kind] (kind = the compute
// action_kind, 0..4) is the mean count, so that the base time of a stage and kind is its mean time -
// cost_us * mean_arrivals.
struct arrival_fit {
  double cost_us = 0;
  std::vector<std::array<double, 5>> mean_arrivals;
};
arrival_fit fit_arrival_cost(const trace& t, int num_stages);

// Step-to-step noise of a measured trace of `steps` steps (cost_table::noise): every compute action
// (rank, action) occurs once per step; each time over its own mean across the steps, its deviation scaled
// by sqrt(n / (n - 1)) for the n steps its mean came from, pooled over all actions. Returns `quantiles`
// quantiles of that factor at probabilities (i + 0.5) / quantiles, scaled to a mean of 1 (the mean of a
// draw from them); empty with fewer than 3 steps.
std::vector<double> fit_step_noise(const trace& t, int steps, int quantiles = 64);

// The memory samples of one rank sorted by time (the memory curve).
std::vector<memory_sample> memory_curve(const trace& t, int rank);

// Indices into t.events of the data dependencies of event i (producers in the trace), see compute_metrics.
std::vector<std::size_t> data_dependencies(const trace& t, std::size_t i);

// Error of a prediction against a measurement, matched by (rank, action).
struct diff_row {
  std::string name;              // "rank 0", "F", ...
  std::size_t matched = 0;
  double predicted_us = 0, measured_us = 0; // rank: busy time; kind: total duration
  double error_us() const { return predicted_us - measured_us; }
  double relative_error() const { return measured_us != 0 ? (predicted_us - measured_us) / measured_us : 0.0; }
  double mean_abs_relative_error = 0;       // over matched actions with measured duration > 0
};
struct trace_diff {
  double predicted_step_us = 0, measured_step_us = 0;
  double predicted_bubble = 0, measured_bubble = 0;
  std::size_t matched = 0, only_predicted = 0, only_measured = 0;
  // Receives of the one trace that records them, beside one that records transfers by their sends alone (a
  // simulation): not compared, and not counted as unmatched.
  std::size_t receives_unpaired = 0;
  std::vector<diff_row> ranks;
  std::vector<diff_row> kinds; // only kinds present in either trace
};
// How a prediction and a measurement are matched, by trace diff and the viewer's comparison alike: the pairs
// (index in predicted, index in measured) of one action on one rank, in the predicted trace's order. Only
// the events `compared` takes part; each (rank, action) pairs once (its first event in each trace), and the
// others are counted as found in one trace alone.
struct action_matching {
  std::vector<std::pair<std::size_t, std::size_t>> pairs;
  std::size_t only_predicted = 0, only_measured = 0;
};
action_matching match_actions(const trace& predicted, const trace& measured,
                              const std::function<bool(const trace_event&)>& compared);
trace_diff diff_traces(const trace& predicted, const trace& measured);
// The same with both traces' metrics already computed (a viewer holds them).
trace_diff diff_traces(const trace& predicted, const trace& measured, const trace_metrics& pm, const trace_metrics& mm);
// Why two traces are not one schedule's prediction and measurement (empty when they are): another number of
// ranks, or compute actions that differ (another schedule or size, or a multi-step trace beside one step).
std::string why_not_comparable(const trace& predicted, const trace& measured);

// Human-readable reports (what `pippy trace summary` and `pippy trace diff` print).
std::string format_summary(const trace& t, const trace_metrics& m, std::size_t max_gaps = 20);
std::string format_diff(const trace_diff& d);

} // namespace pippy
