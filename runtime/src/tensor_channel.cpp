#include "pippy/runtime/tensor_channel.hpp"

#include "pippy/runtime/tensor_header.hpp"

#include "pippy/core/error.hpp"

#include <utility>

namespace pippy {

namespace {
constexpr int max_tensors = static_cast<int>(max_boundary_tensors);
// 3 channels (forward, backward, header) x 1024 stages x 4096 micro-batches x 16 tensors < 2^31.
int tag_of(int channel, int stage, int mb) { return ((channel * 1024 + stage) * 4096 + mb) * max_tensors; }
// Headers of both directions share channel 2; the backward ones take the upper half of the slots.
int header_tag(tensor_channel::direction d, int stage, int mb) {
  return tag_of(2, stage, mb) + static_cast<int>(d) * (max_tensors / 2);
}
void check_tag_space(int stage, int mb) {
  if (stage >= 1024 || mb >= 4096)
    throw input_error("transport: stage or micro-batch index too large for the tag space");
}
} // namespace

tensor_channel::incoming tensor_channel::incoming_of(const action& recv, const pipeline_shape& shape) {
  const bool fwd = recv.kind == action_kind::recv_f;
  const int from = fwd ? recv.stage - 1 : recv.stage + 1;
  return {.dir = fwd ? direction::forward : direction::backward, .from_stage = from, .src = shape.rank_of(from)};
}

void tensor_channel::send(direction d, int from_stage, int microbatch, const std::vector<torch::Tensor>& tensors,
                          int dst) {
  const transfer_key key{static_cast<int>(d), from_stage, microbatch};
  const auto words = frame_header(tensors, key);
  check_tag_space(from_stage, microbatch);
  auto header = torch::empty({static_cast<int64_t>(header_words)}, torch::kLong);
  std::copy(words.begin(), words.end(), header.data_ptr<int64_t>());
  const std::vector<tensor_header_entry> entries = read_header(words.data(), key, dst);
  std::vector<tensor_header_entry> expected; // what the receiver posted ahead (none: empty)
  {
    std::lock_guard lock(sent_mu_);
    expected = std::exchange(sent_[{key.direction, from_stage, microbatch, dst}], entries);
  }
  const int tag = tag_of(static_cast<int>(d), from_stage, microbatch);
  net_.send({header}, dst, header_tag(d, from_stage, microbatch));
  if (!expected.empty() && expected != entries) {
    std::vector<torch::Tensor> filler = receive_buffers(expected, torch::TensorOptions());
    for (auto& t : filler)
      if (t.defined())
        t.zero_();
    net_.send(defined_tensors(filler), dst, tag);
  }
  net_.send(defined_tensors(tensors), dst, tag);
}

tensor_channel::posted_transfer tensor_channel::post(direction d, int from_stage, int microbatch, int src) {
  posted_transfer p;
  {
    std::lock_guard lock(received_mu_);
    if (auto it = received_.find({static_cast<int>(d), from_stage, microbatch, src}); it != received_.end())
      p.last = it->second;
  }
  p.header = torch::empty({static_cast<int64_t>(header_words)}, torch::kLong);
  p.header_recv = net_.post_recv({p.header}, src, header_tag(d, from_stage, microbatch));
  if (!p.last.empty()) { // posted with the last shapes, before the header
    p.ahead = receive_buffers(p.last, torch::TensorOptions());
    p.ahead_recv = net_.post_recv(defined_tensors(p.ahead), src, tag_of(static_cast<int>(d), from_stage, microbatch));
  }
  return p;
}

void tensor_channel::post_ahead(direction d, int from_stage, int microbatch, int src) {
  check_tag_space(from_stage, microbatch);
  const std::tuple key{static_cast<int>(d), from_stage, microbatch, src};
  {
    std::lock_guard lock(received_mu_);
    if (posted_.count(key))
      return;
  }
  posted_transfer p = post(d, from_stage, microbatch, src);
  std::lock_guard lock(received_mu_);
  posted_.emplace(key, std::move(p));
}

void tensor_channel::post_step_ahead(const schedule& lowered, int rank) {
  for (const auto& a : lowered.ranks.at(static_cast<std::size_t>(rank))) {
    if (is_compute(a.kind))
      return;
    if (!is_receive(a.kind))
      continue;
    const incoming in = incoming_of(a, lowered.shape);
    try {
      post_ahead(in.dir, in.from_stage, a.microbatch, in.src);
    } catch (const std::exception&) {
      return;
    }
  }
}

std::vector<torch::Tensor> tensor_channel::recv(direction d, int from_stage, int microbatch, int src) {
  const transfer_key due{static_cast<int>(d), from_stage, microbatch};
  const int tag = tag_of(static_cast<int>(d), from_stage, microbatch);
  posted_transfer p;
  {
    std::lock_guard lock(received_mu_);
    if (auto it = posted_.find({due.direction, from_stage, microbatch, src}); it != posted_.end()) {
      p = std::move(it->second);
      posted_.erase(it);
    }
  }
  if (!p.header_recv.posted())
    p = post(d, from_stage, microbatch, src);
  const bool ahead = p.ahead_recv.posted();
  auto header_arrived = net_.await_recv(std::move(p.header_recv));
  std::shared_future<void> ahead_arrived;
  if (ahead)
    ahead_arrived = net_.await_recv(std::move(p.ahead_recv));
  header_arrived.get();
  auto entries = read_header(p.header.data_ptr<int64_t>(), due, src);
  {
    std::lock_guard lock(received_mu_);
    received_[{due.direction, from_stage, microbatch, src}] = entries;
  }
  if (ahead) {
    ahead_arrived.get();
    if (entries == p.last)
      return p.ahead;
    // the sender's filler: dropped
  }
  auto into = receive_buffers(entries, torch::TensorOptions());
  net_.recv(defined_tensors(into), src, tag).get();
  return into;
}

} // namespace pippy
