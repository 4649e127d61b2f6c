#pragma once
#include <torch/torch.h>
#include <vector>

namespace pippy {

// One pipeline stage's computation. It owns exactly its parameters and buffers (registered on this
// torch::nn::Module); its inputs and outputs are the tensors that cross stage boundaries, in a fixed
// order agreed by the stages on both sides. Not thread-safe: one caller at a time.
class stage_module : public torch::nn::Module {
public:
  stage_module() = default;
  explicit stage_module(std::string name) : torch::nn::Module(std::move(name)) {}
  virtual std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& inputs) = 0;
  // Human-readable description of what the stage runs, for printing a Pipe.
  virtual std::string describe() const = 0;
  // True when the stage normalises with batch statistics (BatchNorm in training mode): each micro-batch
  // then normalises with its own statistics and updates the running ones once per micro-batch, which
  // equals gradient accumulation over micro-batches, not one step on the whole batch.
  virtual bool uses_batch_statistics() const { return false; }
};

} // namespace pippy
