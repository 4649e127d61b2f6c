#pragma once
// pp x dp as both engines run it (the simulator's executors and the flat evaluator), written once: every
// replica of the pipeline runs, rank r of replica d as mesh rank d x R + r (the runtime's global rank),
// so that the replicas' ranks can share CPUs (cost_table::shared_cpus names mesh ranks) and draw their
// own noise, and each collective waits for the last replica to post it. On 2 cores the twin replicas of
// a stage share one CPU and posted their all-reduce 1.7-5 ms apart; one replica, simulated for all,
// predicted pp=2 x dp=2 15-19% under.
// The collectives of stage s run over rank_of(s) of every replica: one process group per pipeline rank
// (the runtime's), which runs its collectives one at a time in posting order.
// - A replica posts stage s's all-reduce (with ZeRO-1 its reduce-scatter) at its last B or W of the step
//   (overlap), or at U (at_step, or when no backward posted it). It starts once every replica has posted
//   it and the group is done with the collectives before it; it lasts grad_sync_time. U waits for it.
// - ZeRO-1: U computes its 1/D of the step, then posts the all-gather of the updated slices (one ring
//   pass), which starts once every replica has posted it and the group is free; U ends with it.
// - A stage without parameters posts nothing (the runtime sums nothing): nothing waits.
// Each replica posts its collectives in one order (its schedule's), so the group's are complete in
// posting order whatever order the posts reach this rule in: every time is a max and a sum of times
// already final. The flat evaluator posts in its own order, the simulator in time order, and both get
// the same times. Plain value, one thread; the engines reset it for each step.
#include <cstdint>
#include <vector>

#include "pippy/core/cost_table.hpp"
#include "pippy/core/topology.hpp"

namespace pippy {

class mesh_collectives {
public:
  enum class collective : std::uint8_t { sum, gather }; // the gradients' all-reduce; ZeRO-1's all-gather
  struct completed_collective {
    int stage = 0;
    collective kind = collective::sum;
  };

  // For a step of a schedule of `shape`, every group free at 0.
  void reset(const pipeline_shape& shape, const cost_table& costs, const link_model& links,
             const data_parallel_model& dp);
  int replicas() const { return dp_.replicas; }
  bool sharded() const { return dp_.sharded(); }
  // The mesh rank that runs `stage` in `replica` (replica x R + the stage's rank).
  int mesh_rank(int replica, int stage) const { return replica * R_ + stage_rank_[static_cast<std::size_t>(stage)]; }
  // A B or W of `stage` in `replica` ended at t: one more micro-batch's weight gradients are in. The
  // step's last one posts the all-reduce (overlap).
  void weight_grads_in(int replica, int stage, double t);
  // U of `stage` in `replica` is due at t0 (decided, after the runtime's overhead): posts the all-reduce
  // if nothing did (at_step, or no backward ran). Posting twice is posting once.
  void reach_step(int replica, int stage, double t0);
  // Whether U of `stage` may start: its all-reduce is complete (or there is none). Then U starts no
  // earlier than synced (the post time where the stage has no parameters); the trace's REDUCE_GRAD spans
  // posted_at to synced, as the runtime measures it (a replica that posts first waits inside it).
  bool summed(int stage) const { return no_collective(stage) || complete_[index(stage, collective::sum)] != 0; }
  double synced(int replica, int stage) const { return bytes(stage) ? end_[index(stage, collective::sum)] : posted_at(replica, stage); }
  double posted_at(int replica, int stage) const { return posted_at_[at(replica, stage)]; }
  std::uint64_t bytes(int stage) const { return bytes_[static_cast<std::size_t>(stage)]; }
  // ZeRO-1: what U computes of `cost` (its 1/D), and once that is done at t, its all-gather's post.
  double step_compute(double cost) const { return sharded() ? cost / dp_.replicas : cost; }
  void post_gather(int stage, double t);
  // Whether the all-gather of `stage` is complete (or there is none), and when U ends then.
  bool gathered(int stage) const { return no_collective(stage) || complete_[index(stage, collective::gather)] != 0; }
  double gather_end(int stage, double t) const { return no_collective(stage) ? t : end_[index(stage, collective::gather)]; }
  // The collectives complete since clear_completed (to wake the U's that wait for them).
  const std::vector<completed_collective>& completed() const { return completed_; }
  void clear_completed() { completed_.clear(); }

private:
  bool no_collective(int stage) const { return bytes(stage) == 0; }
  std::size_t at(int replica, int stage) const {
    return static_cast<std::size_t>(replica) * static_cast<std::size_t>(S_) + static_cast<std::size_t>(stage);
  }
  std::size_t index(int stage, collective c) const {
    return static_cast<std::size_t>(c == collective::gather ? S_ : 0) + static_cast<std::size_t>(stage);
  }
  void post(int replica, int stage, double t);
  // One replica posts collective c of `stage` at t: the last one starts it.
  void arrive(int stage, collective c, double t);

  data_parallel_model dp_;
  int R_ = 0, S_ = 0, M_ = 0;
  std::vector<int> stage_rank_;
  std::vector<std::uint64_t> bytes_; // per stage
  std::vector<double> sum_time_, gather_time_; // per stage: its all-reduce's and all-gather's times
  std::vector<double> group_free_;   // per pipeline rank: when its group is done with what it ran
  // per (replica, stage)
  std::vector<int> weight_grads_;
  std::vector<char> posted_;
  std::vector<double> posted_at_;
  // per (collective, stage): replicas that posted it, the latest post, whether it is complete, its end
  std::vector<int> posts_;
  std::vector<double> latest_;
  std::vector<char> complete_;
  std::vector<double> end_;
  std::vector<completed_collective> completed_;
};

} // namespace pippy
