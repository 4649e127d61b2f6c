#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "pippy/compiler/stage_module.hpp"

namespace pippy {

// A stage given by hand: modules [begin, end) of a torch::nn::Sequential, run in order on the single
// input tensor. Shares the modules (and so the parameters) with the Sequential it was cut from.
class sequential_stage : public stage_module {
public:
  sequential_stage(const torch::nn::Sequential& seq, std::size_t begin, std::size_t end);
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& inputs) override;
  std::string describe() const override;
  bool uses_batch_statistics() const override;

private:
  std::vector<std::shared_ptr<torch::nn::Module>> modules_;
  std::vector<torch::nn::AnyModule> any_;
  std::string description_;
};

// Cuts seq into stages at the given boundaries (indices of the first module of stages 1..S-1,
// increasing). Throws input_error when a boundary is out of order or leaves a stage empty.
std::vector<std::shared_ptr<stage_module>> split_sequential(const torch::nn::Sequential& seq,
                                                            const std::vector<std::size_t>& boundaries);
// Boundaries that spread seq.size() modules over num_stages stages as evenly as possible.
std::vector<std::size_t> even_boundaries(std::size_t num_modules, int num_stages);

} // namespace pippy
