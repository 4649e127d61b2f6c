#include "pippy/core/replicas.hpp"

#include <algorithm>

namespace pippy {

void mesh_collectives::reset(const pipeline_shape& shape, const cost_table& costs, const link_model& links,
                                const data_parallel_model& dp) {
  dp_ = dp;
  R_ = shape.num_ranks, S_ = shape.num_stages(), M_ = shape.num_microbatches;
  const auto S = static_cast<std::size_t>(S_), R = static_cast<std::size_t>(R_);
  const std::size_t D = static_cast<std::size_t>(std::max(1, dp.replicas));
  stage_rank_.resize(S);
  stages_of_.assign(R, {});
  bytes_.assign(S, 0);
  time_.assign(S, 0.0);
  link_.clear();
  for (int r = 0; r < R_; ++r)
    link_.push_back(replica_link(costs, links, r, R_));
  for (int st = 0; st < S_; ++st) {
    const auto s = static_cast<std::size_t>(st);
    stage_rank_[s] = shape.rank_of(st);
    stages_of_[static_cast<std::size_t>(stage_rank_[s])].push_back(st);
    bytes_[s] = costs.param_bytes(st);
    time_[s] = grad_sync_time(bytes_[s], dp, link_[static_cast<std::size_t>(stage_rank_[s])],
                              costs.replica_reduce_scatter_by_allreduce);
  }
  group_free_.assign(R, 0.0);
  link_free_.assign(R * D, 0.0);
  weight_grads_.assign(S * D, 0);
  posted_.assign(S * D, 0);
  synced_.assign(S * D, 0.0);
  posted_at_.assign(S * D, 0.0);
  posts_.assign(S, 0);
  ready_.assign(S, 0.0);
  complete_.assign(S, 0);
  completed_.clear();
}

void mesh_collectives::weight_grads_in(int replica, int stage, double t) {
  if (++weight_grads_[index(replica, stage)] == M_ && dp_.sync == grad_sync_mode::overlap)
    post(replica, stage, t);
}

void mesh_collectives::reach_step(int replica, int stage, double t0) {
  if (!posted_[index(replica, stage)])
    post(replica, stage, t0);
}

void mesh_collectives::post(int replica, int stage, double t) {
  const std::size_t i = index(replica, stage);
  const auto s = static_cast<std::size_t>(stage);
  posted_[i] = 1;
  posted_at_[i] = t;
  if (bytes_[s] == 0) { // nothing to sum: the runtime posts no collective
    synced_[i] = t;
    return;
  }
  const auto r = static_cast<std::size_t>(stage_rank_[s]);
  const std::size_t q = static_cast<std::size_t>(replica) * static_cast<std::size_t>(R_) + r;
  ready_[s] = std::max(ready_[s], std::max(t, link_free_[q]));
  if (++posts_[s] < dp_.replicas)
    return;
  // The last replica is in: the group runs it after the collectives posted before it.
  const double start = std::max(ready_[s], group_free_[r]);
  const double end = start + time_[s];
  group_free_[r] = end;
  for (int d = 0; d < dp_.replicas; ++d) {
    synced_[index(d, stage)] = end;
    double& free = link_free_[static_cast<std::size_t>(d) * static_cast<std::size_t>(R_) + r];
    free = std::max(free, end);
  }
  complete_[s] = 1;
  completed_.push_back(stage);
}

int mesh_collectives::waiting_for(int replica, int stage) const {
  auto done = [&](int st) { return bytes_[static_cast<std::size_t>(st)] == 0 || complete_[static_cast<std::size_t>(st)] != 0; };
  if (!done(stage))
    return stage;
  if (dp_.sharded()) // the all-gather goes after every all-reduce this replica posted
    for (const int st : stages_of_[static_cast<std::size_t>(stage_rank_[static_cast<std::size_t>(stage)])])
      if (posted_[index(replica, st)] && !done(st))
        return st;
  return -1;
}

double mesh_collectives::step_end(int replica, int stage, double t0, double cost) {
  if (!dp_.sharded())
    return t0 + cost;
  const auto r = static_cast<std::size_t>(stage_rank_[static_cast<std::size_t>(stage)]);
  double& free = link_free_[static_cast<std::size_t>(replica) * static_cast<std::size_t>(R_) + r];
  free = sharded_step_end(cost, bytes_[static_cast<std::size_t>(stage)], dp_.replicas, link_[r], t0, free);
  return free;
}

} // namespace pippy
