#pragma once
// runtime's replica_collectives on GPUs: the replicas of one pipeline rank (pp x dp) sum their gradients,
// reduce-scatter them under ZeRO-1 and all-gather the updated slices with NCCL, the GPU half of the seam
// whose CPU half is gloo_group.
//
// One communicator of the D replicas (nccl_comm, bootstrapped through the job's store) and one stream of
// its own. A collective is posted behind the caller's current stream (the compute that made its
// tensors: an event the collective stream waits for), so it overlaps whatever the caller queues next;
// the tensors are record_stream'ed for the caching allocator. Its future waits on the host for the
// collective's event, polling with back-off, and fails with a peer_error (after aborting the
// communicator) on NCCL's asynchronous error or when the timeout passes: a lost replica never hangs U.
// Posting is serialised (a communicator takes one thread at a time), in the same order on every replica.
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAStream.h>

#include <chrono>
#include <functional>
#include <mutex>
#include <string>

#include "pippy/gpu/nccl_transport.hpp" // nccl_comm, owned_stream
#include "pippy/runtime/collectives.hpp"

namespace pippy::gpu {

// NCCL's type for a tensor's dtype; throws input_error naming the dtype where NCCL has none.
ncclDataType_t nccl_type_of(c10::ScalarType type);

class nccl_collectives : public replica_collectives {
public:
  // Collective over the `replicas` ranks that call it with the same key (replica 0 publishes the unique
  // id): this process is `replica`, on `device`.
  nccl_collectives(c10d::Store& store, const std::string& key, int replica, int replicas, c10::DeviceIndex device,
                   std::chrono::milliseconds timeout = std::chrono::seconds(300));

  int rank() const override { return comm_.rank(); }
  int world_size() const override { return comm_.size(); }
  // Tensors on this object's device, contiguous, of one NCCL type each; else input_error.
  std::shared_future<double> allreduce_sum_async(std::vector<torch::Tensor> tensors) override;
  std::shared_future<double> reduce_scatter_sum_async(torch::Tensor input, torch::Tensor output) override;
  torch::Tensor allgather(const torch::Tensor& mine) override;

private:
  // Posts `collective` (its NCCL calls, given the communicator and the stream) in one group behind the
  // caller's stream, and returns the future of its end.
  std::shared_future<double> post(const std::vector<torch::Tensor>& tensors, const char* what,
                                const std::function<void(ncclComm_t, cudaStream_t)>& collective);
  void check(const torch::Tensor& t, const char* what) const;

  owned_stream owned_; // declared first: outlives the communicator that used it
  nccl_comm comm_;
  c10::cuda::CUDAStream stream_;
  std::chrono::milliseconds timeout_;
  std::mutex post_mu_;
};

} // namespace pippy::gpu
