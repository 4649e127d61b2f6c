#pragma once
// Test helpers: run a pipe stage by stage as separate ranks would (detached boundaries, backward
// stage by stage with boundary gradients routed back), and compare tensors.
#include <pippy/compiler/compiler.hpp>

#include <functional>
#include <map>
#include <set>
#include <string>

namespace pippy::test {

struct split_run {
  std::vector<torch::Tensor> outputs;
  torch::Tensor loss;
};

split_run run_stages(pipe& p, const std::vector<torch::Tensor>& inputs,
                     const std::function<torch::Tensor(const std::vector<torch::Tensor>&)>& loss_fn);

// max |a - b| <= rtol * max |b| (+ a tiny absolute floor for all-zero tensors); false for any nan or inf.
bool close(const torch::Tensor& a, const torch::Tensor& b, double rtol = 1e-5);

// Gradients of the original model by qualified name (tied tensors under every name).
std::map<std::string, torch::Tensor> grads_of(torch::nn::Module& m);
// Gradients held by the stages, summed over the copies of tied parameters, by qualified name.
std::map<std::string, torch::Tensor> stage_grads(const pipe& p);
// Checks that the stages' gradients (tied copies summed) equal the unsplit model's, parameter by
// parameter, leaving out `aliases` (second names of a tied tensor); with no aliases the stages must hold
// exactly the model's parameters. Returns the unsplit model's gradients.
std::map<std::string, torch::Tensor> check_stage_grads(const pipe& p, torch::nn::Module& unsplit,
                                                       const std::set<std::string>& aliases = {});
// Every parameter of every stage (name -> stages holding it).
std::map<std::string, std::vector<int>> holders(const pipe& p);

} // namespace pippy::test
