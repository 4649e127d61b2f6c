#pragma once
#include <torch/torch.h>

#include <optional>
#include <variant>
#include <vector>

#include "pippy/core/topology.hpp" // chunk_sizes

namespace pippy {

// How one argument of the model is split into micro-batches (PiPPy's TensorChunkSpec / Replicate).
// split_dim: the tensor is cut into chunks along that dimension; replicate: every micro-batch gets the
// whole tensor (e.g. a mask shared by the batch).
struct chunk_spec {
  std::optional<int64_t> split_dim = 0; // nullopt = replicate
  static chunk_spec replicate() { return chunk_spec{.split_dim = std::nullopt}; }
};

// An argument: a tensor, or a non-tensor value that passes through unchanged to every micro-batch.
using argument = std::variant<torch::Tensor, double, int64_t, bool>;

// Splits each argument into `chunks` micro-batches (torch.tensor_split semantics: sizes differ by at
// most one, earlier chunks larger). specs may be empty (all tensors split along dim 0) or name one spec
// per argument. Throws input_error when a split tensor has fewer rows than chunks or the sizes of the
// split arguments disagree. Returns result[m][i] = argument i of micro-batch m.
std::vector<std::vector<argument>> split_arguments(const std::vector<argument>& args, int chunks,
                                                   const std::vector<chunk_spec>& specs = {});
// Convenience for tensor-only arguments.
std::vector<std::vector<torch::Tensor>> split_tensors(const std::vector<torch::Tensor>& args,
                                                      int chunks,
                                                      const std::vector<chunk_spec>& specs = {});

// Concatenates per-micro-batch outputs back in micro-batch order along dim (outputs[m][i]).
std::vector<torch::Tensor> merge_outputs(const std::vector<std::vector<torch::Tensor>>& outputs,
                                         int64_t dim = 0);

} // namespace pippy
