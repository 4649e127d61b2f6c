#include "pippy/runtime/pipeline_engine.hpp"

#include <algorithm>
#include <sstream>
#include <stdexcept>
#include <utility>

#include "pippy/core/dependencies.hpp"
#include "pippy/core/error.hpp"
#include "pippy/core/validate.hpp"
#include "pippy/runtime/cpu_memory.hpp"
#include "pippy/traces/profile.hpp"

namespace pippy {

pipeline_engine::pipeline_engine(const schedule& compute_only,
                                 std::vector<std::shared_ptr<stage_executor>> stages,
                                 gloo_group* transport)
    : stages_(std::move(stages)), transport_(transport) {
  if (compute_only.has_communication())
    throw input_error("pipeline_engine takes a compute-only schedule (it lowers communication itself)");
  compute_only.shape.validate();
  num_stages_ = compute_only.shape.num_stages();
  microbatches_ = compute_only.shape.num_microbatches;
  if (static_cast<int>(stages_.size()) != num_stages_)
    throw input_error("schedule '" + compute_only.name + "' has " + std::to_string(num_stages_) +
                      " stages, " + std::to_string(stages_.size()) + " stage executors given");
  if (transport_) {
    if (transport_->world_size() != compute_only.shape.num_ranks)
      throw input_error("schedule '" + compute_only.name + "' needs " +
                        std::to_string(compute_only.shape.num_ranks) + " ranks, WORLD_SIZE is " +
                        std::to_string(transport_->world_size()));
    sched_ = add_communication(compute_only);
    local_ranks_ = {transport_->rank()};
    channel_ = std::make_unique<tensor_channel>(*transport_);
  } else {
    sched_ = compute_only;
    for (int r = 0; r < compute_only.shape.num_ranks; ++r)
      local_ranks_.push_back(r);
  }
  validate(sched_);
  for (int r : local_ranks_) {
    const auto& acts = sched_.ranks[static_cast<std::size_t>(r)];
    std::size_t last = acts.size();
    for (std::size_t k = 0; k < acts.size(); ++k)
      if (is_receive(acts[k].kind))
        last = k;
    last_receive_.push_back(last);
  }
  for (int r : local_ranks_)
    for (int s : sched_.shape.stages_of(r))
      if (!stages_[static_cast<std::size_t>(s)])
        throw input_error("rank " + std::to_string(r) + " runs stage " + std::to_string(s) +
                          " but no executor was given for it");
  trace_.num_ranks = sched_.shape.num_ranks;
  trace_.run = sched_.name + " R=" + std::to_string(sched_.shape.num_ranks) +
               " M=" + std::to_string(microbatches_) + " measured";
}

void pipeline_engine::record(int rank, const action& a, double start, double end, std::uint64_t bytes,
                             int peer) {
  trace_.events.push_back(trace_event{.rank = rank, .act = a, .start_us = start, .end_us = end,
                                      .bytes = bytes, .peer = peer, .source = event_source::measured});
  if (transport_ && is_compute(a.kind)) // one rank per process: the heap is this rank's
    trace_.memory.push_back(memory_sample{.rank = rank, .t_us = end, .bytes = cpu_tensor_bytes()});
}

bool pipeline_engine::ready(const action& a) const {
  // Core's rule: inputs from a neighbour stage must be here (in memory, or received by a RECV before);
  // W and U follow their own rank's earlier actions, receives block.
  for (const dependency& d : inputs_of(a, num_stages_)) {
    if (d.role == input_role::activation && !fwd_in_.count({a.stage, a.microbatch}))
      return false;
    if (d.role == input_role::gradient && !bwd_in_.count({a.stage, a.microbatch}))
      return false;
  }
  return true;
}

void pipeline_engine::run(int rank, const action& a) {
  double t0 = now_us();
  const key k{a.stage, a.microbatch};
  const auto stage_idx = static_cast<std::size_t>(a.stage);
  std::uint64_t bytes = 0;
  int peer = -1;
  switch (a.kind) {
  case action_kind::forward: {
    auto& ex = *stages_[stage_idx];
    std::vector<torch::Tensor> in;
    if (a.stage == 0) {
      in = mb_inputs_[static_cast<std::size_t>(a.microbatch)];
    } else {
      in = std::move(fwd_in_.at(k));
      fwd_in_.erase(k);
    }
    const auto mb = static_cast<std::size_t>(a.microbatch);
    auto out = ex.forward(a.microbatch, in, ex.is_last() ? mb_targets_[mb] : torch::Tensor(), mb_scale_[mb]);
    if (ex.is_last()) {
      last_out_[a.microbatch] = out;
    } else {
      activation_bytes_[a.stage] = bytes_of(out);
      if (!transport_ || sched_.shape.rank_of(a.stage + 1) == rank)
        fwd_in_[{a.stage + 1, a.microbatch}] = std::move(out); // same process: in memory
      else
        fwd_out_[k] = std::move(out);
    }
    break;
  }
  case action_kind::backward_input:
  case action_kind::full_backward: {
    auto& ex = *stages_[stage_idx];
    std::vector<torch::Tensor> grads;
    if (!ex.is_last()) {
      grads = std::move(bwd_in_.at(k));
      bwd_in_.erase(k);
    }
    auto g = a.kind == action_kind::full_backward ? ex.full_backward(a.microbatch, grads)
                                                  : ex.backward_input(a.microbatch, grads);
    if (a.stage > 0) {
      if (!transport_ || sched_.shape.rank_of(a.stage - 1) == rank)
        bwd_in_[{a.stage - 1, a.microbatch}] = std::move(g);
      else
        bwd_out_[k] = std::move(g);
    }
    break;
  }
  case action_kind::backward_weight:
    stages_[stage_idx]->backward_weight(a.microbatch);
    break;
  case action_kind::optimizer_step:
    stages_[stage_idx]->step();
    t0 = stage_executor::step_start_within(stages_[stage_idx]->last_step_began_us(), t0, now_us()); // as the actors record it
    break;
  case action_kind::send_f: {
    auto out = std::move(fwd_out_.at(k));
    fwd_out_.erase(k);
    peer = sched_.shape.rank_of(a.stage + 1);
    bytes = bytes_of(out);
    channel_->send(tensor_channel::direction::forward, a.stage, a.microbatch, out, peer);
    break;
  }
  case action_kind::send_b: {
    auto g = std::move(bwd_out_.at(k));
    bwd_out_.erase(k);
    peer = sched_.shape.rank_of(a.stage - 1);
    bytes = bytes_of(g);
    channel_->send(tensor_channel::direction::backward, a.stage, a.microbatch, g, peer);
    break;
  }
  case action_kind::recv_f:
  case action_kind::recv_b: {
    const auto [dir, from, src] = tensor_channel::incoming_of(a, sched_.shape);
    auto& into = (dir == tensor_channel::direction::forward ? fwd_in_ : bwd_in_)[k];
    into = channel_->recv(dir, from, a.microbatch, src);
    bytes = bytes_of(into);
    peer = src;
    break;
  }
  case action_kind::reduce_grad:
    throw std::logic_error("REDUCE_GRAD in a schedule (validate refuses it): " + to_string(a));
  }
  record(rank, a, t0, now_us(), bytes, peer);
  stages_[stage_idx]->weight_grads_recorded(a);
}

std::optional<double> pipeline_engine::step(const std::vector<torch::Tensor>& inputs,
                                            const torch::Tensor& target,
                                            const std::vector<chunk_spec>& specs) {
  const auto& shape = sched_.shape;
  step_batch batch = make_step_batch(sched_, local_ranks_, inputs, target, specs);
  mb_inputs_ = std::move(batch.inputs);
  mb_targets_ = std::move(batch.targets);
  mb_scale_ = std::move(batch.scales);
  for (int r : local_ranks_)
    for (int s : shape.stages_of(r))
      stages_[static_cast<std::size_t>(s)]->begin_step();
  last_out_.clear();
  const bool post_ahead = channel_ && std::exchange(another_step_follows_, false);

  std::vector<std::size_t> pos(local_ranks_.size(), 0);
  for (;;) {
    bool progress = false, all_done = true;
    for (std::size_t i = 0; i < local_ranks_.size(); ++i) {
      const int r = local_ranks_[i];
      const auto& acts = sched_.ranks[static_cast<std::size_t>(r)];
      // Run this rank as far as it can go before giving the others a turn.
      while (pos[i] < acts.size() && ready(acts[pos[i]])) {
        run(r, acts[pos[i]]);
        if (post_ahead && pos[i] == last_receive_[i])
          channel_->post_step_ahead(sched_, r);
        ++pos[i];
        progress = true;
      }
      all_done &= pos[i] == acts.size();
    }
    if (all_done)
      break;
    if (!progress) {
      std::ostringstream msg;
      msg << "schedule '" << sched_.name << "' is stuck:";
      for (std::size_t i = 0; i < local_ranks_.size(); ++i) {
        const auto& acts = sched_.ranks[static_cast<std::size_t>(local_ranks_[i])];
        if (pos[i] < acts.size())
          msg << " rank " << local_ranks_[i] << " waits at " << to_string(acts[pos[i]]) << ";";
      }
      throw std::logic_error(msg.str());
    }
  }
  if (transport_)
    transport_->flush();

  merged_outputs_.clear();
  const int last = num_stages_ - 1;
  if (!runs_stage(shape, local_ranks_, last))
    return std::nullopt;
  std::vector<std::vector<torch::Tensor>> outs;
  for (auto& [m, o] : last_out_)
    outs.push_back(o);
  merged_outputs_ = merge_outputs(outs);
  return stages_[static_cast<std::size_t>(last)]->step_loss();
}

} // namespace pippy
