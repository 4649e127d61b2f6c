#include "pippy/gpu/cuda_pipeline.hpp"

#include <c10/cuda/CUDAGuard.h>

#include "pippy/runtime/gloo_transport.hpp" // peer_error

namespace pippy::gpu {

cuda_pipeline::cuda_pipeline(caf::actor_system& sys, const schedule& compute_only,
                             std::vector<std::shared_ptr<stage_executor>> stages, cuda_pipeline_options options)
    : sys_(sys), plan_(lower_for_actors(compute_only, stages.size(), "cuda_pipeline")), stages_(std::move(stages)),
      opt_(std::move(options)) {
  const int R = plan_.shape.num_ranks;
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
  for (int r : local_ranks_)
    executors_[static_cast<std::size_t>(r)] = std::make_unique<cuda_executor>(
        r, stages_of_rank(plan_, stages_, r), batch_, log_,
        cuda_executor_options{.device = opt_.device, .synchronous = opt_.synchronous_actions});
}

cuda_pipeline::~cuda_pipeline() = default;

std::optional<double> cuda_pipeline::step(const std::vector<torch::Tensor>& inputs, const torch::Tensor& target,
                                          const std::vector<chunk_spec>& specs) {
  const auto& shape = plan_.shape;
  c10::cuda::CUDAGuard device(opt_.device);
  batch_ = make_step_batch(plan_, local_ranks_, inputs, target, specs, torch::Device(torch::kCUDA, opt_.device));
  // The copies above ran on this thread's current stream; the ranks' streams start after them.
  c10::cuda::getCurrentCUDAStream(opt_.device).synchronize();
  for (int r : local_ranks_) {
    for (int s : shape.stages_of(r))
      stages_[static_cast<std::size_t>(s)]->begin_step();
    executors_[static_cast<std::size_t>(r)]->begin_step();
  }

  std::vector<actors::executor*> execs(static_cast<std::size_t>(shape.num_ranks), nullptr);
  for (int r : local_ranks_)
    execs[static_cast<std::size_t>(r)] = executors_[static_cast<std::size_t>(r)].get();
  actors::transport* net = nccl_ ? static_cast<actors::transport*>(nccl_.get()) : memory_.get();
  const std::string why = run_actor_step(sys_, plan_, execs, *net, opt_.timeout, [&](const caf::actor& supervisor) {
    if (nccl_)
      nccl_->begin_step(supervisor);
  });
  if (!why.empty())
    throw peer_error(-1, why);
  if (nccl_)
    nccl_->end_step();
  for (int r : local_ranks_)
    executors_[static_cast<std::size_t>(r)]->finish_step();
  const int last = shape.num_stages() - 1;
  if (!runs_stage(shape, local_ranks_, last))
    return std::nullopt;
  return stages_[static_cast<std::size_t>(last)]->step_loss();
}

trace cuda_pipeline::events() const { return measured_trace(plan_, log_, "cuda"); }

} // namespace pippy::gpu
