#include "pippy/core/replicas.hpp"

#include <algorithm>

namespace pippy {

void mesh_collectives::reset(const pipeline_shape& shape, const cost_table& costs, const link_model& links,
                             const data_parallel_model& dp) {
  dp_ = dp;
  R_ = shape.num_ranks, S_ = shape.num_stages(), M_ = shape.num_microbatches;
  const auto S = static_cast<std::size_t>(S_);
  const std::size_t D = static_cast<std::size_t>(std::max(1, dp.replicas));
  stage_rank_.resize(S);
  bytes_.assign(S, 0);
  sum_time_.assign(S, 0.0);
  gather_time_.assign(S, 0.0);
  for (int st = 0; st < S_; ++st) {
    const auto s = static_cast<std::size_t>(st);
    stage_rank_[s] = shape.rank_of(st);
    bytes_[s] = costs.param_bytes(st);
    const link_class link = replica_link(costs, links, stage_rank_[s], R_);
    sum_time_[s] = grad_sync_time(bytes_[s], dp, link, costs.replica_reduce_scatter_by_allreduce);
    gather_time_[s] = ring_pass_time(bytes_[s], dp.replicas, link);
  }
  group_free_.assign(static_cast<std::size_t>(R_), 0.0);
  weight_grads_.assign(S * D, 0);
  posted_.assign(S * D, 0);
  posted_at_.assign(S * D, 0.0);
  posts_.assign(2 * S, 0);
  latest_.assign(2 * S, 0.0);
  complete_.assign(2 * S, 0);
  end_.assign(2 * S, 0.0);
  completed_.clear();
}

void mesh_collectives::weight_grads_in(int replica, int stage, double t) {
  if (++weight_grads_[at(replica, stage)] == M_ && dp_.sync == grad_sync_mode::overlap)
    post(replica, stage, t);
}

void mesh_collectives::reach_step(int replica, int stage, double t0) {
  if (!posted_[at(replica, stage)])
    post(replica, stage, t0);
}

void mesh_collectives::post(int replica, int stage, double t) {
  posted_[at(replica, stage)] = 1;
  posted_at_[at(replica, stage)] = t;
  if (!no_collective(stage)) // the runtime posts none for a stage without parameters
    arrive(stage, collective::sum, t);
}

void mesh_collectives::post_gather(int stage, double t) {
  if (!no_collective(stage))
    arrive(stage, collective::gather, t);
}

void mesh_collectives::arrive(int stage, collective c, double t) {
  const std::size_t i = index(stage, c);
  const auto s = static_cast<std::size_t>(stage);
  latest_[i] = std::max(latest_[i], t);
  if (++posts_[i] < dp_.replicas)
    return;
  // The last replica is in: the group runs it after the collectives posted before it.
  double& free = group_free_[static_cast<std::size_t>(stage_rank_[s])];
  const double start = std::max(latest_[i], free);
  free = start + (c == collective::gather ? gather_time_[s] : sum_time_[s]);
  end_[i] = free;
  complete_[i] = 1;
  completed_.push_back({stage, c});
}

} // namespace pippy
