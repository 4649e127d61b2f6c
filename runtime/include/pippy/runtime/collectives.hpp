#pragma once
// The collectives that the D replicas of one pipeline rank run together (pp x dp): the gradients' sum
// before U, and under ZeRO-1 the reduce-scatter and the updated slices' all-gather. One seam, two
// implementations side by side: gloo_group (c10d's Gloo, CPU tensors) and gpu/'s nccl_collectives (NCCL,
// tensors on the rank's GPU). replica_grad_sync and zero1_optimizer (data_parallel.hpp) see only this.
#include <torch/torch.h>

#include <future>
#include <vector>

namespace pippy {

class replica_collectives {
public:
  virtual ~replica_collectives() = default;
  virtual int rank() const = 0;       // this replica's index among the replicas
  virtual int world_size() const = 0; // D
  // Sums `tensors` (contiguous, on the implementation's device) over the replicas, in place, without
  // waiting: the future is ready once the sums are in `tensors` (kept alive until then), with the time
  // (now_us) it was seen done, or holds a peer_error. Posting order must be the same on every replica.
  virtual std::shared_future<double> allreduce_sum_async(std::vector<torch::Tensor> tensors) = 0;
  // Sums `input` (world_size equal parts) over the replicas and leaves this replica's part of the sum in
  // `output` (one part's size), without waiting, as allreduce_sum_async.
  virtual std::shared_future<double> reduce_scatter_sum_async(torch::Tensor input, torch::Tensor output) = 0;
  // Every replica's `mine` (the same size everywhere) flattened and concatenated in replica order;
  // throws peer_error.
  virtual torch::Tensor allgather(const torch::Tensor& mine) = 0;
};

} // namespace pippy
