#pragma once
// The compute rule, written once (the simulator's executor and the flat evaluator apply it): when a
// rank's compute action ends, given what else happens on the processor it computes on. A rank computes
// alone on its processor, or beside the other ranks bound to the same CPU (cost_table::shared_cpus:
// `pippy run --bind-cores` with more ranks than CPUs).
// - An action of cost c takes c of its processor's time.
// - Newest first: an action that starts while another runs on the processor takes the processor until
//   it ends, and the one it interrupted waits. So an action ends once the processor has run its cost and
//   every action that started inside it. This is what ranks bound to one CPU show: in MyNetwork's
//   3-process runs on 2 cores, 94% of the overlapping actions of the two ranks sharing a CPU nest, and a
//   nested action takes its time alone (Linux wakes the newcomer ahead of the one running).
// - Arrivals: each transfer arriving on a rank strictly inside one of its actions (start < t < end)
//   lengthens that action by arrival_cost_us (the transport's threads share the rank's processor); one
//   that arrives between actions costs nothing (a rank waiting for its input pays for the receive in the
//   link's latency).
// - On a shared CPU the runtime's own work before an action (cost_table::action_overhead_us: its actor
//   and transport threads, which preempt the yielding compute threads) is the processor's work too: the
//   action takes the processor from its decision, overhead and cost as one job (rank_processors::begin).
//   A saturated core has no idle time to hide it in; MyNetwork on 3 processes (ranks 0 and 2 on core 0,
//   85% busy over a whole run, a quarter of it in the kernel) left 4.8 ms a step on core 0 with neither
//   rank computing against 3.3 ms simulated when it was only a delay, and each schedule's error followed
//   its number of actions (zbv and dualpipev -8%, 1f1b -2%). A rank alone on its processor waits the
//   same either way, so there it stays a delay.
// Starts at the same time nest in member order (the higher member inside the lower). An action's end
// depends only on what starts and arrives after its own start, whatever the order in which those become
// known, provided every start and arrival before the end is known before the action is finished (engines
// in time order: a start is known when it happens, an arrival from its posting). Until then end() is a
// lower bound that only grows. Plain value, one thread.
#include <cstdint>
#include <vector>

#include "pippy/core/cost_table.hpp"

namespace pippy {

class shared_processor {
public:
  explicit shared_processor(int members = 1, double arrival_cost_us = 0);
  // A transfer that arrives on `member` at `t`.
  void arrive(int member, double t);
  // `member` starts a compute action of cost `cost` at `start`; returns its end so far.
  double begin(int member, double start, double cost);
  // The end so far of `member`'s running action.
  double end(int member);
  // `member`'s running action is over (at end(member)).
  void finish(int member);

private:
  struct job {
    double start = 0;
    double cost = 0;
    int charges = 0; // arrivals charged to it, fixed once it is finished
    std::uint64_t order = 0;
    int member = 0;
    bool finished = false;
  };
  // The processor time a job takes: written once, so that every end is the same sum whatever an engine
  // knew when (bit for bit: the two engines are compared exactly).
  double total(double cost, int charges) const { return cost + charges * arrival_cost_; }
  void settle();
  void drop_arrivals_until(int member, double t); // member's arrivals at or before t
  void drop_before_running();
  double arrival_cost_ = 0;
  std::uint64_t next_order_ = 0;
  bool dirty_ = false;
  std::vector<job> jobs_; // from the earliest running one's start on (the others cannot move a running end), by start
  std::vector<char> running_; // per member: whether it has an action running
  std::vector<double> end_; // per member: its running job's end so far
  std::vector<int> charges_; // ... and its arrivals' charges so far
  std::vector<std::vector<double>> pending_; // per member: arrivals after its last action's start, in time order
  std::vector<std::size_t> stack_; // settle's
  std::vector<double> left_;       // settle's: per job, processor time still to run
  std::vector<std::size_t> next_arrival_; // settle's
  std::vector<int> count_;                // settle's: per job, arrivals charged
  std::vector<std::size_t> popped_at_;    // settle's: per job, how many jobs had started when it ended
};

// The rule read backwards, for a measured trace: each compute action's work alone, given the actions of
// the ranks that share its CPU (and its own rank's): its span less the time taken by the other members'
// actions that started inside it (newest first: those ran while it waited), counted once where they
// overlap. Each action's job on the processor starts lead_us (the per-action overhead) before its
// span: a member's overhead inside another's span is taken from it too. `spans` in any order; the
// result is in the same order.
struct processor_span {
  double start = 0, end = 0;
  int member = 0;
};
std::vector<double> work_alone(const std::vector<processor_span>& spans, double lead_us = 0);

// The processors of a schedule's ranks: one per rank, except the ranks of a cost_table::shared_cpus
// group, which share one. Empty when nothing can move an action's end (no arrival costs and no shared
// CPUs): the engines then take start + cost.
class rank_processors {
public:
  rank_processors() = default;
  rank_processors(const cost_table& costs, int num_ranks); // costs.shared_cpus valid for num_ranks
  bool empty() const { return processors_.empty(); }
  // Whether rank r shares its processor with another rank.
  bool shared(int r) const { return shared_[static_cast<std::size_t>(r)] != 0; }
  void arrive(int r, double t) { of(r).arrive(member_[static_cast<std::size_t>(r)], t); }
  // Rank r's compute action of `cost` starts at `start`, after the runtime's overhead_us: on a shared
  // processor that overhead is processor work before it (shared_processor's rule), alone a delay the
  // engine has already counted. Returns its end so far.
  double begin(int r, double start, double cost, double overhead_us) {
    const double lead = shared(r) ? overhead_us : 0.0;
    return of(r).begin(member_[static_cast<std::size_t>(r)], start - lead, lead + cost);
  }
  double end(int r) { return of(r).end(member_[static_cast<std::size_t>(r)]); }
  void finish(int r) { of(r).finish(member_[static_cast<std::size_t>(r)]); }

private:
  shared_processor& of(int r) { return processors_[static_cast<std::size_t>(index_[static_cast<std::size_t>(r)])]; }
  std::vector<shared_processor> processors_;
  std::vector<int> index_, member_;
  std::vector<char> shared_;
};

} // namespace pippy
