#pragma once
// pp x dp as both engines run it (the simulator's executors and the flat evaluator), written once: every
// replica of the pipeline runs, rank r of replica d as mesh rank d x R + r (the runtime's global rank),
// so that the replicas' ranks can share CPUs (cost_table::shared_cpus names mesh ranks) and draw their
// own noise, and each stage's collectives wait for the last replica to post them. On 2 cores the twin
// replicas of a stage share one CPU and posted their all-reduce 1.7-5 ms apart; one replica, simulated
// for all, predicted pp=2 x dp=2 15-19% under.
// The collectives of stage s run over rank_of(s) of every replica: one process group per pipeline rank
// (the runtime's), which runs its collectives one at a time in posting order.
// - A replica posts stage s's all-reduce at its last B or W of the step (overlap), or at U (at_step, or
//   when no backward posted it). It starts once every replica has posted it, the group is done with the
//   collectives before it, and each replica's link is free as it was when that replica posted (its
//   ZeRO-1 all-gathers before); it lasts grad_sync_time.
// - U of stage s waits for its all-reduce; with ZeRO-1 also for every all-reduce its replica posted
//   before (its all-gather follows them on the link), and its end is sharded_step_end on its replica's
//   link. Each replica's U decides alone when its all-gather starts.
// - A stage without parameters posts nothing (the runtime sums nothing) and its U waits for no one.
// Every time is a max and a sum of times already final, in any order of posting: the flat evaluator
// posts in its own order, the simulator in time order, and both get the same times. Plain value, one
// thread; the engines reset it for each step.
#include <cstdint>
#include <vector>

#include "pippy/core/cost_table.hpp"
#include "pippy/core/topology.hpp"

namespace pippy {

class mesh_collectives {
public:
  // For a step of a schedule of `shape`, each replica starting with its links free at 0.
  void reset(const pipeline_shape& shape, const cost_table& costs, const link_model& links,
             const data_parallel_model& dp);
  int replicas() const { return dp_.replicas; }
  bool sharded() const { return dp_.sharded(); }
  int mesh_ranks() const { return R_ * dp_.replicas; }
  // A B or W of `stage` in `replica` ended at t: one more micro-batch's weight gradients are in. The
  // step's last one posts the all-reduce (overlap).
  void weight_grads_in(int replica, int stage, double t);
  // U of `stage` in `replica` is due at t0 (decided, after the runtime's overhead): posts the all-reduce
  // if nothing did (at_step, or no backward ran). Posting twice is posting once.
  void reach_step(int replica, int stage, double t0);
  // The stage whose all-reduce U of `stage` in `replica` still waits for, or -1 when none.
  int waiting_for(int replica, int stage) const;
  // Once nothing is waited for: the end of the stage's all-reduce (U starts no earlier; the post time
  // where the stage has no parameters), and when the replica posted it: the trace's REDUCE_GRAD spans
  // the two, as the runtime measures it (a replica that posts first waits for the others inside it).
  double synced(int replica, int stage) const { return at(synced_, replica, stage); }
  double posted_at(int replica, int stage) const { return at(posted_at_, replica, stage); }
  std::uint64_t bytes(int stage) const { return bytes_[static_cast<std::size_t>(stage)]; }
  // U of `stage` in `replica` starts at t0 and costs `cost`: its end (with ZeRO-1, after the all-gather;
  // the replica's link is busy until then).
  double step_end(int replica, int stage, double t0, double cost);
  // The stages whose all-reduce became complete since clear_completed (to wake the U's that wait for them).
  const std::vector<int>& completed() const { return completed_; }
  void clear_completed() { completed_.clear(); }

private:
  double at(const std::vector<double>& v, int replica, int stage) const {
    return v[static_cast<std::size_t>(replica) * static_cast<std::size_t>(S_) + static_cast<std::size_t>(stage)];
  }
  std::size_t index(int replica, int stage) const {
    return static_cast<std::size_t>(replica) * static_cast<std::size_t>(S_) + static_cast<std::size_t>(stage);
  }
  void post(int replica, int stage, double t);

  data_parallel_model dp_;
  int R_ = 0, S_ = 0, M_ = 0;
  std::vector<int> stage_rank_;
  std::vector<std::vector<int>> stages_of_; // per pipeline rank, its stages
  std::vector<std::uint64_t> bytes_;        // per stage
  std::vector<double> time_;                // per stage: its all-reduce's time
  std::vector<link_class> link_;            // per pipeline rank: its group's link
  std::vector<double> group_free_;          // per pipeline rank: when its group is done with what it ran
  std::vector<double> link_free_;           // per mesh rank: when its link is free (all-reduces, all-gathers)
  // per (replica, stage)
  std::vector<int> weight_grads_;
  std::vector<char> posted_;
  std::vector<double> synced_, posted_at_;
  // per stage: replicas that posted, and the latest of their post times and links then
  std::vector<int> posts_;
  std::vector<double> ready_;
  std::vector<char> complete_;
  std::vector<int> completed_;
};

} // namespace pippy
