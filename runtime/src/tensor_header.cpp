#include "pippy/runtime/tensor_header.hpp"

#include <stdexcept>

namespace pippy {
namespace {
// Far above any activation (an H200 holds 2^37 bytes), far below what would wrap around.
constexpr int64_t max_header_elements = int64_t{1} << 40;
} // namespace

std::vector<int64_t> encode_tensor_header(const std::vector<torch::Tensor>& tensors) {
  std::vector<int64_t> m{static_cast<int64_t>(tensors.size())};
  for (const auto& t : tensors) {
    m.push_back(t.defined() ? static_cast<int64_t>(t.scalar_type()) : -1);
    m.push_back(t.defined() ? t.dim() : 0);
    if (t.defined())
      for (auto s : t.sizes())
        m.push_back(s);
  }
  return m;
}

std::vector<tensor_header_entry> decode_tensor_header(const std::vector<int64_t>& m, std::size_t max_tensors,
                                                      const std::string& from) {
  std::size_t pos = 0;
  auto next = [&]() {
    if (pos >= m.size())
      throw std::invalid_argument("a truncated tensor header from " + from);
    return m[pos++];
  };
  const int64_t n = next();
  if (n < 0 || static_cast<std::size_t>(n) > max_tensors)
    throw std::invalid_argument("a tensor header from " + from + " announces " + std::to_string(n) + " tensors");
  std::vector<tensor_header_entry> out;
  for (int64_t i = 0; i < n; ++i) {
    tensor_header_entry e;
    const int64_t dtype = next();
    const int64_t nd = next();
    if (dtype < -1 || dtype >= static_cast<int64_t>(torch::ScalarType::NumOptions) ||
        dtype == static_cast<int64_t>(torch::ScalarType::Undefined) || nd < 0 || nd > 64)
      throw std::invalid_argument("a malformed tensor header from " + from);
    e.defined = dtype >= 0;
    e.dtype = e.defined ? static_cast<torch::ScalarType>(dtype) : torch::kFloat;
    int64_t elements = 1;
    for (int64_t j = 0; j < nd; ++j) {
      const int64_t s = next();
      if (s < 0)
        throw std::invalid_argument("a negative size in a tensor header from " + from);
      if (s > 0 && elements > max_header_elements / s)
        throw std::invalid_argument("a tensor header from " + from + " announces more than 2^40 elements");
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

} // namespace pippy
