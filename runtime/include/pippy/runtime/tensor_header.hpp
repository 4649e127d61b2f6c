#pragma once
// How two ranks agree on the tensors of one transfer before the data moves (Gloo and NCCL alike):
// a header of int64 words [count, (dtype or -1 if undefined, ndim, sizes...) per tensor].
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace pippy {

struct tensor_header_entry {
  bool defined = true;
  torch::ScalarType dtype = torch::kFloat;
  std::vector<int64_t> sizes;
};

std::vector<int64_t> encode_tensor_header(const std::vector<torch::Tensor>& tensors);

// The header's entries; words after the last entry are ignored (fixed-size buffers). A malformed header
// (a count above max_tensors, an unknown dtype, a negative size, more than 2^40 elements, too few words) throws
// std::invalid_argument naming `from`: a peer's bytes decide no allocation before they are checked.
std::vector<tensor_header_entry> decode_tensor_header(const std::vector<int64_t>& words, std::size_t max_tensors,
                                                      const std::string& from);

// Empty tensors to receive into (undefined for undefined entries), with `options`' device.
std::vector<torch::Tensor> receive_buffers(const std::vector<tensor_header_entry>& entries,
                                           const torch::TensorOptions& options);

} // namespace pippy
