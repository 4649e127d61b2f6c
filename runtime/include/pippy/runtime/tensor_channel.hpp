#pragma once
#include <torch/torch.h>

#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "pippy/runtime/gloo_transport.hpp"

namespace pippy {

// Activations (forward) and gradients (backward) between stages on different ranks, over a
// gloo_transport. Shapes and dtypes are agreed once per (direction, producing stage, micro-batch): the
// first transfer of a key is preceded by a small metadata message and both sides cache it, so later
// steps move only the data. Tags are unique per (direction, stage, micro-batch, tensor index).
// Thread-safe: one thread may send while another receives.
class tensor_channel {
public:
  enum class direction { forward = 0, backward = 1 };
  explicit tensor_channel(gloo_transport& net) : net_(net) {}

  // Posts the sends and returns at once. `from_stage` is the producing stage.
  void send(direction d, int from_stage, int microbatch, const std::vector<torch::Tensor>& tensors, int dst);
  // Blocks until the tensors produced by `from_stage` for `microbatch` arrived from rank src; throws
  // peer_error when src is lost.
  std::vector<torch::Tensor> recv(direction d, int from_stage, int microbatch, int src);

  gloo_transport& transport() { return net_; }

private:
  struct tensor_meta {
    std::vector<int64_t> sizes;
    torch::ScalarType dtype;
  };
  using key = std::tuple<int, int, int>;
  gloo_transport& net_;
  std::mutex mu_;
  std::map<key, bool> sent_meta_;
  std::map<key, std::vector<tensor_meta>> recv_meta_;
};

// Bytes of the defined tensors.
std::uint64_t bytes_of(const std::vector<torch::Tensor>& ts);

} // namespace pippy
