#include "pippy/runtime/tensor_channel.hpp"

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
  std::lock_guard lock(mu_);
  const key k{static_cast<int>(d), from_stage, microbatch};
  if (!sent_meta_[k]) {
    auto meta = torch::zeros({meta_len}, torch::kLong);
    auto m = meta.accessor<int64_t, 1>();
    int64_t pos = 1;
    m[0] = static_cast<int64_t>(tensors.size());
    for (const auto& t : tensors) {
      if (pos + 2 + t.dim() > meta_len)
        throw input_error("stage " + std::to_string(from_stage) + ": boundary tensors have too many dimensions");
      m[pos++] = static_cast<int64_t>(t.scalar_type());
      m[pos++] = t.dim();
      for (auto s : t.sizes())
        m[pos++] = s;
    }
    net_.send({meta}, dst, meta_tag(d, from_stage, microbatch));
    sent_meta_[k] = true;
  }
  net_.send(tensors, dst, tag_of(static_cast<int>(d), from_stage, microbatch));
}

std::vector<torch::Tensor> tensor_channel::recv(direction d, int from_stage, int microbatch, int src) {
  const key k{static_cast<int>(d), from_stage, microbatch};
  std::vector<tensor_meta> metas;
  {
    std::lock_guard lock(mu_);
    if (auto it = recv_meta_.find(k); it != recv_meta_.end())
      metas = it->second;
  }
  if (metas.empty()) { // first time: agree on shapes and dtypes
    auto meta = torch::zeros({meta_len}, torch::kLong);
    net_.recv({meta}, src, meta_tag(d, from_stage, microbatch)).get();
    auto m = meta.accessor<int64_t, 1>();
    int64_t pos = 1;
    for (int64_t i = 0; i < m[0]; ++i) {
      tensor_meta tm;
      tm.dtype = static_cast<torch::ScalarType>(m[pos++]);
      const int64_t nd = m[pos++];
      for (int64_t j = 0; j < nd; ++j)
        tm.sizes.push_back(m[pos++]);
      metas.push_back(tm);
    }
    std::lock_guard lock(mu_);
    recv_meta_[k] = metas;
  }
  std::vector<torch::Tensor> into;
  for (const auto& tm : metas)
    into.push_back(torch::empty(tm.sizes, torch::TensorOptions().dtype(tm.dtype)));
  net_.recv(into, src, tag_of(static_cast<int>(d), from_stage, microbatch)).get();
  return into;
}

} // namespace pippy
