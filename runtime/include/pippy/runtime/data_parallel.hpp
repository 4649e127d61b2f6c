#pragma once
// pp x dp: what a stage of one pipeline replica does with its replicas of the same stage (--dp D).
//   replica_grad_sync  its gradients summed over the replicas in one bucket and divided by their number
//                      before its optimizer step; posted as soon as the step's last micro-batch's weight
//                      gradients are in (overlap) or at the step, which waits for it.
//   zero1_optimizer    ZeRO stage 1: each replica keeps the optimizer state of 1/D of the stage's
//                      parameters (a contiguous slice of them, flattened), updates only that slice from the
//                      averaged gradients, and the replicas all-gather the updated slices into every copy.
#include <torch/torch.h>

#include <functional>
#include <future>
#include <memory>
#include <vector>

#include "pippy/core/cost_table.hpp" // grad_sync_mode

namespace pippy {

class gloo_group;

class replica_grad_sync {
public:
  replica_grad_sync(gloo_group& replicas, std::vector<torch::Tensor> params, int microbatches, grad_sync_mode mode);
  // After each micro-batch's weight gradients (stage_executor::set_after_weight_grads).
  void weight_grads_in();
  // The stage's step gate: waits for (or runs) the all-reduce, averages, then `step`.
  void before_step(const std::function<void()>& step);

private:
  void start();

  gloo_group& replicas_;
  const std::vector<torch::Tensor> params_;
  const int microbatches_;
  const grad_sync_mode mode_;
  int seen_ = 0;
  torch::Tensor bucket_;
  std::shared_future<void> pending_;
};

class zero1_optimizer : public torch::optim::Optimizer {
public:
  // params: the stage's parameters (every replica the same); make_inner: the optimizer the job would use,
  // built here on this replica's slice only.
  zero1_optimizer(std::vector<torch::Tensor> params, gloo_group& replicas,
                  const std::function<std::shared_ptr<torch::optim::Optimizer>(std::vector<torch::Tensor>)>& make_inner);
  torch::Tensor step(LossClosure closure = nullptr) override;
  // Elements of the slice whose state this replica keeps.
  std::int64_t slice_size() const { return slice_.numel(); }
  std::int64_t total_size() const { return total_; }

private:
  gloo_group& replicas_;
  std::int64_t total_ = 0; // elements of all parameters
  std::int64_t begin_ = 0, count_ = 0; // this replica's part of them (the padding after count_ excluded)
  torch::Tensor slice_;    // that part, padded to the common size, a leaf the inner optimizer updates
  std::shared_ptr<torch::optim::Optimizer> inner_;
};

} // namespace pippy
