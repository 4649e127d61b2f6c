#include "pippy/gpu/cuda_pipeline.hpp"

#include <c10/cuda/CUDAGuard.h>
#include <caf/all.hpp>

#include "pippy/actors/pipeline.hpp"
#include "pippy/core/error.hpp"
#include "pippy/core/validate.hpp"
#include "pippy/runtime/gloo_transport.hpp" // peer_error

namespace pippy::gpu {

cuda_pipeline::cuda_pipeline(caf::actor_system& sys, const schedule& compute_only,
                             std::vector<std::shared_ptr<stage_executor>> stages, cuda_pipeline_options options)
    : sys_(sys), stages_(std::move(stages)), opt_(std::move(options)) {
  if (compute_only.has_communication())
    throw input_error("cuda_pipeline takes a compute-only schedule (it lowers communication itself)");
  compute_only.shape.validate();
  const int S = compute_only.shape.num_stages(), R = compute_only.shape.num_ranks;
  if (static_cast<int>(stages_.size()) != S)
    throw input_error("schedule '" + compute_only.name + "' has " + std::to_string(S) + " stages, " +
                      std::to_string(stages_.size()) + " stage executors given");
  plan_ = add_communication(compute_only);
  validate(plan_);
  if (opt_.store) {
    local_ranks_ = {opt_.rank};
    nccl_ = std::make_unique<nccl_transport>(opt_.store, opt_.rank, R, plan_, log_,
                                             nccl_options{.device = opt_.device, .timeout = opt_.timeout,
                                                          .deliver = opt_.deliver});
  } else {
    for (int r = 0; r < R; ++r)
      local_ranks_.push_back(r);
    memory_ = std::make_unique<memory_transport>(); // opaque payloads pass as they are: no copies
  }
  executors_.resize(static_cast<std::size_t>(R));
  for (int r : local_ranks_) {
    std::vector<std::shared_ptr<stage_executor>> mine(static_cast<std::size_t>(S));
    for (int s : plan_.shape.stages_of(r)) {
      if (!stages_[static_cast<std::size_t>(s)])
        throw input_error("rank " + std::to_string(r) + " runs stage " + std::to_string(s) +
                          " but no executor was given for it");
      mine[static_cast<std::size_t>(s)] = stages_[static_cast<std::size_t>(s)];
    }
    executors_[static_cast<std::size_t>(r)] = std::make_unique<cuda_executor>(
        r, mine, batch_, log_,
        cuda_executor_options{.device = opt_.device, .synchronous = opt_.synchronous_actions});
  }
}

cuda_pipeline::~cuda_pipeline() = default;

std::optional<double> cuda_pipeline::step(const std::vector<torch::Tensor>& inputs, const torch::Tensor& target,
                                          const std::vector<chunk_spec>& specs) {
  const auto& shape = plan_.shape;
  const int M = shape.num_microbatches, last = shape.num_stages() - 1;
  bool has_first = false, has_last = false;
  for (int r : local_ranks_) {
    has_first |= shape.rank_of(0) == r;
    has_last |= shape.rank_of(last) == r;
  }
  c10::cuda::CUDAGuard device(opt_.device);
  const torch::Device dev(torch::kCUDA, opt_.device);
  batch_ = {};
  batch_.scales.assign(static_cast<std::size_t>(M), 1.0 / M);
  if (has_first) {
    std::vector<torch::Tensor> on_dev;
    for (const auto& t : inputs)
      on_dev.push_back(t.defined() ? t.to(dev) : t);
    batch_.inputs = split_tensors(on_dev, M, specs);
  }
  if (has_last) {
    for (auto& t : split_tensors({target.to(dev)}, M))
      batch_.targets.push_back(t[0]);
    for (int m = 0; m < M; ++m)
      batch_.scales[static_cast<std::size_t>(m)] =
          static_cast<double>(batch_.targets[static_cast<std::size_t>(m)].size(0)) / static_cast<double>(target.size(0));
  }
  // The copies above ran on this thread's current stream; the ranks' streams start after them.
  c10::cuda::getCurrentCUDAStream(opt_.device).synchronize();
  for (int r : local_ranks_) {
    for (int s : shape.stages_of(r))
      stages_[static_cast<std::size_t>(s)]->begin_step();
    executors_[static_cast<std::size_t>(r)]->begin_step();
  }

  caf::scoped_actor self{sys_};
  std::vector<actors::executor*> execs(static_cast<std::size_t>(shape.num_ranks), nullptr);
  for (int r : local_ranks_)
    execs[static_cast<std::size_t>(r)] = executors_[static_cast<std::size_t>(r)].get();
  actors::transport* net = nccl_ ? static_cast<actors::transport*>(nccl_.get()) : memory_.get();
  auto handles = actors::spawn_pipeline(sys_, actors::pipeline_setup{.plan = &plan_, .executors = execs, .net = net,
                                                                     .supervisor = caf::actor_cast<caf::actor>(self),
                                                                     .track_microbatches = false});
  if (nccl_)
    nccl_->begin_step(caf::actor_cast<caf::actor>(self));
  handles.start();
  std::size_t finished = 0;
  std::string failure;
  bool timed_out = false;
  while (finished < local_ranks_.size() && failure.empty() && !timed_out) {
    self->receive([&](const actors::rank_finished&) { ++finished; },
                  [&](const actors::stage_failed& f) { failure = f.error; },
                  [&](const actors::microbatch_finished&) {},
                  caf::after(opt_.timeout) >> [&] { timed_out = true; });
  }
  handles.stop();
  if (!failure.empty() || timed_out)
    throw peer_error(-1, timed_out ? "rank " + std::to_string(local_ranks_.front()) + ": no progress for " +
                                         std::to_string(opt_.timeout.count()) + " ms"
                                   : failure);
  if (nccl_)
    nccl_->end_step();
  for (int r : local_ranks_)
    executors_[static_cast<std::size_t>(r)]->finish_step();
  if (!has_last)
    return std::nullopt;
  return stages_[static_cast<std::size_t>(last)]->step_loss();
}

trace cuda_pipeline::events() const {
  trace t;
  t.num_ranks = plan_.shape.num_ranks;
  t.run = plan_.name + " R=" + std::to_string(plan_.shape.num_ranks) + " M=" +
          std::to_string(plan_.shape.num_microbatches) + " measured (cuda)";
  t.events = log_.all();
  t.memory = log_.memory();
  return t;
}

} // namespace pippy::gpu
