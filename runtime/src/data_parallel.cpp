#include "pippy/runtime/data_parallel.hpp"

#include <algorithm>

#include "pippy/runtime/gloo_group.hpp"

namespace pippy {

// ---- replica_grad_sync

replica_grad_sync::replica_grad_sync(gloo_group& replicas, std::vector<torch::Tensor> params, int microbatches,
                                     grad_sync_mode mode)
    : replicas_(replicas), params_(std::move(params)), microbatches_(microbatches), mode_(mode) {}

void replica_grad_sync::weight_grads_in() {
  if (++seen_ == microbatches_ && mode_ == grad_sync_mode::overlap)
    start();
}

void replica_grad_sync::before_step(const std::function<void()>& step) {
  if (!pending_.valid())
    start();
  pending_.get();
  pending_ = {};
  seen_ = 0;
  const double replicas = replicas_.world_size();
  std::int64_t at = 0;
  for (const auto& p : params_)
    if (p.grad().defined()) {
      const auto n = p.grad().numel();
      p.grad().copy_(bucket_.narrow(0, at, n).view_as(p.grad()).div(replicas));
      at += n;
    }
  step();
}

void replica_grad_sync::start() {
  std::vector<torch::Tensor> grads;
  for (const auto& p : params_)
    if (p.grad().defined())
      grads.push_back(p.grad().reshape(-1));
  if (grads.empty()) { // nothing to sum (every replica agrees: the same stage)
    std::promise<void> none;
    none.set_value();
    pending_ = none.get_future().share();
    return;
  }
  bucket_ = torch::cat(grads);
  pending_ = replicas_.allreduce_sum_async({bucket_});
}

// ---- zero1_optimizer

namespace {
torch::Tensor flat_copy(const std::vector<torch::Tensor>& ts) {
  std::vector<torch::Tensor> parts;
  for (const auto& t : ts)
    parts.push_back(t.detach().reshape(-1));
  return parts.empty() ? torch::zeros({0}) : torch::cat(parts);
}
} // namespace

zero1_optimizer::zero1_optimizer(
    std::vector<torch::Tensor> params, gloo_group& replicas,
    const std::function<std::shared_ptr<torch::optim::Optimizer>(std::vector<torch::Tensor>)>& make_inner)
    : torch::optim::Optimizer(std::move(params), std::make_unique<torch::optim::SGDOptions>(0.0)),
      replicas_(replicas) {
  const auto all = flat_copy(parameters());
  total_ = all.numel();
  const std::int64_t d = replicas_.rank(), D = replicas_.world_size();
  const std::int64_t per = (total_ + D - 1) / D; // the last slice is padded to the same size
  begin_ = std::min(total_, d * per);
  count_ = std::min(total_, begin_ + per) - begin_;
  slice_ = torch::zeros({per}, all.options());
  slice_.narrow(0, 0, count_).copy_(all.narrow(0, begin_, count_));
  slice_.set_requires_grad(true);
  inner_ = make_inner({slice_});
}

torch::Tensor zero1_optimizer::step(LossClosure) {
  torch::NoGradGuard no_grad;
  // The gradients are the replicas' average already (replica_grad_sync, before this step), tied ones
  // summed after that: read from each parameter only the part inside this replica's slice.
  auto g = torch::zeros_like(slice_);
  std::int64_t at = 0; // where the parameter starts in the flattened whole
  for (const auto& p : parameters()) {
    const std::int64_t from = std::max(at, begin_), to = std::min(at + p.numel(), begin_ + count_);
    if (from < to && p.grad().defined())
      g.narrow(0, from - begin_, to - from).copy_(p.grad().detach().reshape(-1).narrow(0, from - at, to - from));
    at += p.numel();
  }
  slice_.mutable_grad() = g;
  inner_->step();
  // Every replica's updated slice into every copy of the parameters.
  const auto slices = replicas_.allgather(slice_.detach());
  const auto all = torch::cat(slices).narrow(0, 0, total_);
  at = 0;
  for (auto& p : parameters()) {
    p.copy_(all.narrow(0, at, p.numel()).view_as(p));
    at += p.numel();
  }
  return {};
}

} // namespace pippy
