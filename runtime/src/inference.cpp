#include "pippy/runtime/inference.hpp"

#include "pippy/core/generators.hpp"
#include "pippy/runtime/gloo_group.hpp"
#include "pippy/runtime/microbatch.hpp"
#include "pippy/runtime/pipeline_engine.hpp"
#include "pippy/runtime/stage_executor.hpp"

namespace pippy {

pipeline_stage::pipeline_stage(std::vector<std::shared_ptr<stage_module>> all_stages, const dist_env& env,
                               torch::Device device, const inference_options& options)
    : num_stages_(static_cast<int>(all_stages.size())) {
  if (!device.is_cpu())
    throw input_error("pipeline_stage: runs on CPU over Gloo; for CUDA devices use pippy::gpu's NCCL transport");
  const int R = env.world_size;
  if (R < 1 || num_stages_ < R || num_stages_ % R != 0)
    throw input_error("pipeline_stage: " + std::to_string(num_stages_) + " stages cannot be placed on " +
                      std::to_string(R) + " ranks (a multiple of the world size is needed)");
  const int V = num_stages_ / R;
  std::string name = options.schedule.empty() ? (V == 1 ? "gpipe" : "looped-bfs") : options.schedule;
  const schedule plan = forward_only(make_schedule(
      {.name = name, .num_ranks = R, .num_microbatches = options.microbatches, .stages_per_rank = V}));
  executors_.resize(static_cast<std::size_t>(num_stages_));
  for (int s : plan.shape.stages_of(env.rank)) {
    auto ex = std::make_shared<stage_executor>(s, num_stages_, all_stages.at(static_cast<std::size_t>(s)), nullptr);
    ex->set_forward_only(true);
    executors_[static_cast<std::size_t>(s)] = std::move(ex);
  }
  first_ = plan.shape.rank_of(0) == env.rank;
  last_ = plan.shape.rank_of(num_stages_ - 1) == env.rank;
  if (R > 1)
    net_ = std::make_unique<gloo_group>(env, options.timeout);
  engine_ = std::make_unique<pipeline_engine>(plan, executors_, net_.get());
}

pipeline_stage::~pipeline_stage() = default;

std::vector<torch::Tensor> pipeline_stage::operator()(const std::vector<torch::Tensor>& inputs) {
  if (first_ && inputs.empty())
    throw input_error("pipeline_stage: the first rank must be called with the batch");
  engine_->step(first_ ? inputs : std::vector<torch::Tensor>{}, torch::Tensor());
  if (!last_)
    return {};
  return merge_outputs(executors_[static_cast<std::size_t>(num_stages_ - 1)]->take_outputs());
}

} // namespace pippy
