#include "pippy/runtime/tensor_header.hpp"

#include <stdexcept>

#include "pippy/core/error.hpp"
#include "pippy/core/failure.hpp"

namespace pippy {
namespace {
// Far above any activation (an H200 holds 2^37 bytes), far below what would wrap around.
constexpr int64_t max_header_elements = int64_t{1} << 40;
constexpr int64_t header_magic = 0x70697070790001; // "pippy", protocol 1

std::string describe(int64_t direction, int64_t stage, int64_t microbatch) {
  return std::string(direction == 0 ? "activations" : direction == 1 ? "gradients" : "transfer") + " of stage " +
         std::to_string(stage) + " micro-batch " + std::to_string(microbatch);
}
} // namespace

std::vector<int64_t> frame_header(const std::vector<torch::Tensor>& tensors, const transfer_key& key) {
  const int from_stage = key.stage;
  if (tensors.size() > max_boundary_tensors)
    throw input_error("stage " + std::to_string(from_stage) + ": " + std::to_string(tensors.size()) +
                      " tensors cross a stage boundary, at most " + std::to_string(max_boundary_tensors) +
                      " may");
  std::vector<int64_t> m{header_magic, key.direction, key.stage, key.microbatch, static_cast<int64_t>(tensors.size())};
  for (const auto& t : tensors) {
    m.push_back(t.defined() ? static_cast<int64_t>(t.scalar_type()) : -1);
    m.push_back(t.defined() ? t.dim() : 0);
    if (t.defined())
      for (auto s : t.sizes())
        m.push_back(s);
  }
  if (m.size() > header_words)
    throw input_error("stage " + std::to_string(from_stage) + ": the boundary tensors have " +
                      std::to_string(m.size()) + " header words of shape and dtype, at most " +
                      std::to_string(header_words) + " fit (too many dimensions)");
  m.resize(header_words, 0);
  return m;
}

std::vector<tensor_header_entry> read_header(const int64_t* words, const transfer_key& expected, int peer) {
  const std::string what =
      "stage " + std::to_string(expected.stage) + ": a tensor header from rank " + std::to_string(peer);
  auto bad = [&](const std::string& why) {
    return failure_error({failure_kind::shape_mismatch, what + " " + why, peer});
  };
  std::size_t pos = 0;
  auto next = [&]() {
    if (pos >= header_words)
      throw bad("is truncated");
    return words[pos++];
  };
  if (next() != header_magic)
    throw bad("is not one (no magic word): the link is out of step");
  const int64_t direction = next(), stage = next(), microbatch = next();
  if (direction != expected.direction || stage != expected.stage || microbatch != expected.microbatch)
    throw bad("announces the " + describe(direction, stage, microbatch) + " where the " +
              describe(expected.direction, expected.stage, expected.microbatch) + " is due");
  const int64_t n = next();
  if (n < 0 || static_cast<std::size_t>(n) > max_boundary_tensors)
    throw bad("announces " + std::to_string(n) + " tensors, at most " + std::to_string(max_boundary_tensors));
  std::vector<tensor_header_entry> out;
  for (int64_t i = 0; i < n; ++i) {
    tensor_header_entry e;
    const int64_t dtype = next();
    const int64_t nd = next();
    if (dtype < -1 || dtype >= static_cast<int64_t>(torch::ScalarType::NumOptions) ||
        dtype == static_cast<int64_t>(torch::ScalarType::Undefined))
      throw bad("names an unknown dtype " + std::to_string(dtype) + " for tensor " + std::to_string(i));
    if (nd < 0 || nd > static_cast<int64_t>(header_words))
      throw bad("gives tensor " + std::to_string(i) + " " + std::to_string(nd) + " dimensions");
    e.defined = dtype >= 0;
    e.dtype = e.defined ? static_cast<torch::ScalarType>(dtype) : torch::kFloat;
    int64_t elements = 1;
    for (int64_t j = 0; j < nd; ++j) {
      const int64_t s = next();
      if (s < 0)
        throw bad("gives tensor " + std::to_string(i) + " a negative size");
      if (s > 0 && elements > max_header_elements / s)
        throw bad("announces more than 2^40 elements for tensor " + std::to_string(i));
      elements *= s;
      e.sizes.push_back(s);
    }
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<torch::Tensor> receive_buffers(const std::vector<tensor_header_entry>& entries,
                                           const torch::TensorOptions& options) {
  std::vector<torch::Tensor> out;
  for (const auto& e : entries)
    out.push_back(e.defined ? torch::empty(e.sizes, options.dtype(e.dtype)) : torch::Tensor());
  return out;
}

std::uint64_t bytes_of(const std::vector<torch::Tensor>& ts) {
  std::uint64_t n = 0;
  for (const auto& t : ts)
    if (t.defined())
      n += static_cast<std::uint64_t>(t.numel()) * t.element_size();
  return n;
}

std::vector<torch::Tensor> defined_tensors(const std::vector<torch::Tensor>& tensors) {
  std::vector<torch::Tensor> out;
  for (const auto& t : tensors)
    if (t.defined())
      out.push_back(t);
  return out;
}

} // namespace pippy
