#pragma once
#include <torch/torch.h>

#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "pippy/runtime/gloo_group.hpp"
#include "pippy/runtime/tensor_header.hpp" // bytes_of, and the shape handshake

namespace pippy {

// Activations (forward) and gradients (backward) between stages on different ranks, over a
// gloo_group. Shapes and dtypes travel by the shape handshake of tensor_header.hpp (a header before each
// transfer, as on NCCL). Tags are unique per (direction, stage, micro-batch, tensor index).
// Thread-safe: one thread may send while another receives.
class tensor_channel {
public:
  enum class direction { forward = 0, backward = 1 };
  explicit tensor_channel(gloo_group& net) : net_(net) {}

  // Posts the sends and returns at once. `from_stage` is the producing stage.
  void send(direction d, int from_stage, int microbatch, const std::vector<torch::Tensor>& tensors, int dst);
  // Blocks until the tensors produced by `from_stage` for `microbatch` arrived from rank src; throws
  // peer_error when src is lost, failure_error (shape_mismatch) for a header that cannot be read.
  std::vector<torch::Tensor> recv(direction d, int from_stage, int microbatch, int src);

  gloo_group& transport() { return net_; }

private:
  gloo_group& net_;
};

} // namespace pippy
