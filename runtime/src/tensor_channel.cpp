#include "pippy/runtime/tensor_channel.hpp"

#include "pippy/runtime/tensor_header.hpp"

#include "pippy/core/error.hpp"

namespace pippy {

namespace {
constexpr int max_tensors = static_cast<int>(max_boundary_tensors);
// 3 channels (forward, backward, header) x 1024 stages x 4096 micro-batches x 16 tensors < 2^31.
int tag_of(int channel, int stage, int mb) { return ((channel * 1024 + stage) * 4096 + mb) * max_tensors; }
// Headers of both directions share channel 2; the backward ones take the upper half of the slots.
int header_tag(tensor_channel::direction d, int stage, int mb) {
  return tag_of(2, stage, mb) + static_cast<int>(d) * (max_tensors / 2);
}
} // namespace

void tensor_channel::send(direction d, int from_stage, int microbatch, const std::vector<torch::Tensor>& tensors,
                          int dst) {
  const auto words = frame_header(tensors, {static_cast<int>(d), from_stage, microbatch});
  if (from_stage >= 1024 || microbatch >= 4096)
    throw input_error("transport: stage or micro-batch index too large for the tag space");
  auto header = torch::empty({static_cast<int64_t>(header_words)}, torch::kLong);
  std::copy(words.begin(), words.end(), header.data_ptr<int64_t>());
  net_.send({header}, dst, header_tag(d, from_stage, microbatch));
  net_.send(defined_tensors(tensors), dst, tag_of(static_cast<int>(d), from_stage, microbatch));
}

std::vector<torch::Tensor> tensor_channel::recv(direction d, int from_stage, int microbatch, int src) {
  auto header = torch::empty({static_cast<int64_t>(header_words)}, torch::kLong);
  net_.recv({header}, src, header_tag(d, from_stage, microbatch)).get();
  const transfer_key due{static_cast<int>(d), from_stage, microbatch};
  auto into = receive_buffers(read_header(header.data_ptr<int64_t>(), due, src), torch::TensorOptions());
  net_.recv(defined_tensors(into), src, tag_of(static_cast<int>(d), from_stage, microbatch)).get();
  return into;
}

} // namespace pippy
