#include "pippy/runtime/sequential_stage.hpp"

#include <sstream>

#include "pippy/core/error.hpp"

namespace pippy {

sequential_stage::sequential_stage(const torch::nn::Sequential& seq, std::size_t begin, std::size_t end) {
  if (begin >= end || end > seq->size())
    throw input_error("sequential stage [" + std::to_string(begin) + ", " + std::to_string(end) +
                      ") is empty or beyond the " + std::to_string(seq->size()) + " modules");
  std::ostringstream d;
  const auto names = seq->named_children().keys(); // the Sequential's own names: the stage's parameters are
                                                   // named as in the unsplit model
  for (std::size_t i = begin; i < end; ++i) {
    auto child = seq->ptr(i);
    register_module(names[i], child);
    modules_.push_back(child);
    any_.push_back(*(seq->begin() + static_cast<std::ptrdiff_t>(i)));
    d << (i == begin ? "" : " -> ") << i << ":" << child->name();
  }
  description_ = d.str();
}

std::vector<torch::Tensor> sequential_stage::forward(const std::vector<torch::Tensor>& inputs) {
  if (inputs.size() != 1)
    throw input_error("sequential stage takes one input tensor, got " + std::to_string(inputs.size()));
  torch::Tensor x = inputs[0];
  for (auto& m : any_)
    x = m.forward(x);
  return {x};
}

std::string sequential_stage::describe() const { return description_; }

bool sequential_stage::uses_batch_statistics() const {
  for (const auto& m : modules())
    if (m->is_training() && (m->as<torch::nn::BatchNorm1d>() || m->as<torch::nn::BatchNorm2d>() ||
                             m->as<torch::nn::BatchNorm3d>()))
      return true;
  return false;
}

std::vector<std::shared_ptr<stage_module>> split_sequential(const torch::nn::Sequential& seq,
                                                            const std::vector<std::size_t>& boundaries) {
  std::vector<std::shared_ptr<stage_module>> stages;
  std::size_t begin = 0;
  for (std::size_t i = 0; i <= boundaries.size(); ++i) {
    const std::size_t end = i < boundaries.size() ? boundaries[i] : seq->size();
    if (end <= begin)
      throw input_error("split boundary " + std::to_string(end) + " leaves stage " +
                        std::to_string(i) + " empty");
    stages.push_back(std::make_shared<sequential_stage>(seq, begin, end));
    begin = end;
  }
  return stages;
}

std::vector<std::size_t> even_boundaries(std::size_t num_modules, int num_stages) {
  if (num_stages < 1 || static_cast<std::size_t>(num_stages) > num_modules)
    throw input_error("cannot split " + std::to_string(num_modules) + " modules into " +
                      std::to_string(num_stages) + " stages (at most " + std::to_string(num_modules) +
                      "): run fewer ranks or --stages-per-rank, or give the model more layers");
  std::vector<std::size_t> b;
  const auto s = static_cast<std::size_t>(num_stages);
  for (std::size_t i = 1; i < s; ++i)
    b.push_back(i * num_modules / s);
  return b;
}

} // namespace pippy
