#pragma once
// pp x dp: what a stage of one pipeline replica does with its replicas of the same stage (--dp D).
//   replica_grad_sync  its gradients summed over the replicas and divided by their number before its
//                      optimizer step; posted as soon as the step's last micro-batch's weight gradients
//                      are in (overlap) or at the step, which waits for it. One all-reduce of one bucket,
//                      or with ZeRO-1 one reduce-scatter: each replica gets the sum of its slice only.
//   zero1_optimizer    ZeRO stage 1: each replica keeps the optimizer state of 1/D of the stage's
//                      parameters (a contiguous slice of them, flattened), updates only that slice from the
//                      averaged gradients, and the replicas all-gather the updated slices into every copy.
// Both run their collectives through the replica_collectives seam (collectives.hpp): Gloo on CPU, NCCL on
// GPU; their own tensors go on the parameters' device.
#include <torch/torch.h>

#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <vector>

#include "pippy/core/cost_table.hpp" // grad_sync_mode

namespace pippy {

class replica_collectives;

// The part of a stage's parameters, flattened in order, whose optimizer state replica `replica` of
// `replicas` keeps under ZeRO-1: equal slices of ceil(total / replicas) elements, the last padded.
struct optimizer_shard {
  std::int64_t total = 0;            // elements of all the stage's parameters
  std::int64_t per = 0;              // elements per slice, padding included
  std::int64_t begin = 0, count = 0; // this replica's elements of the total (padding excluded)
  static optimizer_shard of(std::int64_t total, int replica, int replicas);
};

// One step's collectives of a stage's gradients over its replicas, as a trace records them (REDUCE_GRAD):
// from their posting to when the last was seen done, and the bytes they carried from this replica.
struct reduce_grad_window {
  double posted_us = 0, done_us = 0;
  std::uint64_t bytes = 0;
};

class replica_grad_sync {
public:
  // Without `slice`, every gradient is all-reduced whole. With it (ZeRO-1), the gradients are
  // reduce-scattered and only this replica's slice of them is averaged, which is all its
  // zero1_optimizer reads; `whole` (tied copies, whose sum with the other holders' copies needs them
  // whole) are all-reduced whole as well.
  replica_grad_sync(replica_collectives& replicas, std::vector<torch::Tensor> params, int microbatches, grad_sync_mode mode,
                    std::optional<optimizer_shard> slice = std::nullopt, std::vector<torch::Tensor> whole = {});
  // After each micro-batch's weight gradients (stage_executor::set_after_weight_grads).
  void weight_grads_in();
  // The stage's step gate: waits for (or runs) the collectives, averages, then `step`.
  void before_step(const std::function<void()>& step);
  // Every step's collectives so far, one window per step that posted any; read between steps.
  const std::vector<reduce_grad_window>& windows() const { return windows_; }

private:
  void start();

  replica_collectives& replicas_;
  const std::vector<torch::Tensor> params_;
  const int microbatches_;
  const grad_sync_mode mode_;
  const std::optional<optimizer_shard> slice_;
  const std::vector<torch::Tensor> whole_;
  int seen_ = 0;
  torch::Tensor bucket_, whole_bucket_, slice_sum_;
  std::vector<std::shared_future<double>> pending_;
  reduce_grad_window window_; // this step's, once posted
  std::vector<reduce_grad_window> windows_;
  bool posted_ = false; // this step's collectives (possibly none) are posted
};

class zero1_optimizer : public torch::optim::Optimizer {
public:
  // params: the stage's parameters (every replica the same); make_inner: the optimizer the job would use,
  // built here on this replica's slice only.
  zero1_optimizer(std::vector<torch::Tensor> params, replica_collectives& replicas,
                  const std::function<std::shared_ptr<torch::optim::Optimizer>(std::vector<torch::Tensor>)>& make_inner);
  torch::Tensor step(LossClosure closure = nullptr) override;
  // The inner optimizer's state of this shard, with where the shard lies. load expects the parameters
  // loaded already (it takes the shard's values from them) and refuses a shard of another layout
  // (another --dp, or another split), naming both.
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;
  // Elements of the slice whose state this replica keeps.
  std::int64_t slice_size() const { return part_.per; }
  std::int64_t total_size() const { return part_.total; }
  const optimizer_shard& part() const { return part_; }

private:
  replica_collectives& replicas_;
  optimizer_shard part_;
  torch::Tensor slice_; // this replica's part, padded to the common size, a leaf the inner optimizer updates
  std::shared_ptr<torch::optim::Optimizer> inner_;
};

} // namespace pippy
