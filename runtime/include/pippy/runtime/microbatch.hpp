#pragma once
#include <torch/torch.h>

#include <optional>
#include <variant>
#include <vector>

#include "pippy/core/schedule.hpp"
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

// Per-step inputs of the first stage and targets/loss scales of the last, by micro-batch.
struct step_batch {
  std::vector<std::vector<torch::Tensor>> inputs;
  std::vector<torch::Tensor> targets; // undefined ones in a forward-only step (no target)
  std::vector<double> scales;
};

// Whether one of `ranks` runs `stage`.
bool runs_stage(const pipeline_shape& shape, const std::vector<int>& ranks, int stage);
// The batch of one step for `ranks` (the contract of pipeline_engine::step; the runtimes
// all cut a step so): the inputs split into
// micro-batches if they run the first stage; the targets, and each micro-batch's loss scale (its share
// of the rows), if they run the last (scales 1/M otherwise). An undefined target
// is a forward-only step: no targets. With a `device`, inputs and target are
// moved there first.
step_batch make_step_batch(const schedule& plan, const std::vector<int>& ranks, const std::vector<torch::Tensor>& inputs,
                           const torch::Tensor& target, const std::vector<chunk_spec>& specs,
                           std::optional<torch::Device> device = std::nullopt);

} // namespace pippy
