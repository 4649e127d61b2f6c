#include "pippy/runtime/tensor_channel.hpp"

#include "pippy/runtime/tensor_header.hpp"

#include "pippy/core/error.hpp"

namespace pippy {

namespace {
constexpr int max_tensors = 16;
constexpr int meta_len = 64;
// 3 channels (forward, backward, metadata) x 1024 stages x 4096 micro-batches x 16 tensors < 2^31.
int tag_of(int channel, int stage, int mb) { return ((channel * 1024 + stage) * 4096 + mb) * max_tensors; }
// Metadata of both directions share channel 2; the backward ones take the upper half of the slots.
int meta_tag(tensor_channel::direction d, int stage, int mb) {
  return tag_of(2, stage, mb) + static_cast<int>(d) * (max_tensors / 2);
}
} // namespace

std::uint64_t bytes_of(const std::vector<torch::Tensor>& ts) {
  std::uint64_t n = 0;
  for (const auto& t : ts)
    if (t.defined())
      n += static_cast<std::uint64_t>(t.numel()) * t.element_size();
  return n;
}

void tensor_channel::send(direction d, int from_stage, int microbatch, const std::vector<torch::Tensor>& tensors,
                          int dst) {
  if (tensors.size() > static_cast<std::size_t>(max_tensors))
    throw input_error("stage " + std::to_string(from_stage) + ": more than " + std::to_string(max_tensors) +
                      " tensors cross a stage boundary");
  if (from_stage >= 1024 || microbatch >= 4096)
    throw input_error("transport: stage or micro-batch index too large for the tag space");
  for (const auto& t : tensors)
    if (!t.defined())
      throw input_error("stage " + std::to_string(from_stage) + ": an undefined tensor crosses a stage boundary");
  const auto words = encode_tensor_header(tensors);
  if (words.size() > static_cast<std::size_t>(meta_len))
    throw input_error("stage " + std::to_string(from_stage) + ": boundary tensors have too many dimensions");
  auto meta = torch::zeros({meta_len}, torch::kLong);
  std::copy(words.begin(), words.end(), meta.data_ptr<int64_t>());
  net_.send({meta}, dst, meta_tag(d, from_stage, microbatch));
  net_.send(tensors, dst, tag_of(static_cast<int>(d), from_stage, microbatch));
}

std::vector<torch::Tensor> tensor_channel::recv(direction d, int from_stage, int microbatch, int src) {
  auto meta = torch::zeros({meta_len}, torch::kLong);
  net_.recv({meta}, src, meta_tag(d, from_stage, microbatch)).get();
  std::vector<tensor_header_entry> entries;
  try {
    const int64_t* w = meta.data_ptr<int64_t>();
    entries = decode_tensor_header({w, w + meta_len}, max_tensors, "rank " + std::to_string(src));
  } catch (const std::invalid_argument& e) {
    throw failure_error({failure_kind::shape_mismatch, "stage " + std::to_string(from_stage) + ": " + e.what(), src});
  }
  auto into = receive_buffers(entries, torch::TensorOptions());
  net_.recv(into, src, tag_of(static_cast<int>(d), from_stage, microbatch)).get();
  return into;
}

} // namespace pippy
