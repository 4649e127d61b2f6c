#include "pippy/runtime/stage_executor.hpp"

#include <string>

#include "pippy/core/error.hpp"

namespace pippy {

stage_executor::stage_executor(int stage, int num_stages, std::shared_ptr<stage_module> module,
                               std::shared_ptr<torch::optim::Optimizer> optimizer, loss_function loss)
    : stage_(stage), num_stages_(num_stages), module_(std::move(module)),
      optimizer_(std::move(optimizer)), loss_(std::move(loss)) {
  if (!module_)
    throw input_error("stage " + std::to_string(stage) + ": no module");
  if (stage < 0 || stage >= num_stages)
    throw input_error("stage " + std::to_string(stage) + " out of range [0, " +
                      std::to_string(num_stages) + ")");
  if (is_last() && !loss_)
    throw input_error("stage " + std::to_string(stage) + " is the last stage but has no loss function");
  for (auto& p : module_->parameters())
    if (p.requires_grad())
      params_.push_back(p);
}

stage_executor::mb_state& stage_executor::at(int mb, const char* what) {
  auto it = state_.find(mb);
  if (it == state_.end())
    throw std::logic_error("stage " + std::to_string(stage_) + ": " + what + " of micro-batch " +
                           std::to_string(mb) + " before its forward");
  return it->second;
}

std::vector<torch::Tensor> stage_executor::forward(int mb, const std::vector<torch::Tensor>& inputs,
                                                   const torch::Tensor& target, double loss_scale) {
  torch::AutoGradMode grad_on(true);
  if (state_.count(mb))
    throw std::logic_error("stage " + std::to_string(stage_) + ": micro-batch " +
                           std::to_string(mb) + " forwarded twice");
  mb_state st;
  for (const auto& x : inputs) {
    auto in = x.detach();
    if (!is_first() && in.is_floating_point())
      in.requires_grad_(true);
    st.inputs.push_back(in);
  }
  auto outputs = module_->forward(st.inputs);
  if (is_last()) {
    if (outputs.empty())
      throw input_error("last stage returned no output for the loss");
    st.loss = loss_(outputs[0], target);
    st.roots = {st.loss * loss_scale};
    losses_[mb] = st.loss.detach();
    step_loss_ += st.loss.item<double>() * loss_scale;
  } else {
    st.roots = outputs;
  }
  state_.emplace(mb, std::move(st));
  std::vector<torch::Tensor> handed;
  for (auto& o : outputs)
    handed.push_back(o.detach());
  return handed;
}

void stage_executor::set_root_grads(mb_state& st, const std::vector<torch::Tensor>& grad_outputs) {
  if (is_last())
    return; // the scalar loss: autograd seeds it with 1
  if (grad_outputs.size() != st.roots.size())
    throw input_error("stage " + std::to_string(stage_) + ": " +
                      std::to_string(grad_outputs.size()) + " output gradients for " +
                      std::to_string(st.roots.size()) + " outputs");
  st.root_grads = grad_outputs;
}

// Roots that take part in backward (differentiable outputs) and their gradients.
namespace {
void differentiable_roots(const std::vector<torch::Tensor>& roots, const std::vector<torch::Tensor>& grads,
                          std::vector<torch::Tensor>& r, std::vector<torch::Tensor>& g) {
  for (std::size_t i = 0; i < roots.size(); ++i) {
    if (!roots[i].requires_grad())
      continue;
    r.push_back(roots[i]);
    if (!grads.empty())
      g.push_back(grads[i].defined() ? grads[i] : torch::zeros_like(roots[i]));
  }
}
} // namespace

std::vector<torch::Tensor> stage_executor::input_grads(mb_state& st, const std::vector<torch::Tensor>& all,
                                                       std::size_t count) const {
  std::vector<torch::Tensor> out;
  std::size_t k = 0;
  for (auto& in : st.inputs) {
    if (in.requires_grad()) {
      const auto& g = k < count ? all[k] : torch::Tensor();
      ++k;
      out.push_back(g.defined() ? g : torch::zeros_like(in));
    } else {
      out.push_back(torch::zeros_like(in)); // not differentiable: a zero gradient keeps the arity
    }
  }
  return out;
}

std::vector<torch::Tensor> stage_executor::backward_input(int mb,
                                                          const std::vector<torch::Tensor>& grad_outputs) {
  torch::AutoGradMode grad_on(true);
  auto& st = at(mb, "I");
  set_root_grads(st, grad_outputs);
  std::vector<torch::Tensor> wrt;
  for (auto& in : st.inputs)
    if (in.requires_grad())
      wrt.push_back(in);
  st.input_grads_done = true;
  if (wrt.empty())
    return {}; // first stage: nothing upstream; W does the whole backward
  std::vector<torch::Tensor> roots, grads;
  differentiable_roots(st.roots, st.root_grads, roots, grads);
  auto g = torch::autograd::grad(roots, wrt, grads, /*retain_graph=*/true, /*create_graph=*/false,
                                 /*allow_unused=*/true);
  return input_grads(st, g, g.size());
}

namespace {
void accumulate(std::vector<torch::Tensor>& params, const std::vector<torch::Tensor>& grads) {
  torch::NoGradGuard no_grad;
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (!grads[i].defined())
      continue;
    auto& slot = params[i].mutable_grad();
    if (slot.defined())
      slot.add_(grads[i]);
    else
      slot = grads[i].clone();
  }
}
} // namespace

void stage_executor::backward_weight(int mb) {
  torch::AutoGradMode grad_on(true);
  auto& st = at(mb, "W");
  if (!st.input_grads_done)
    throw std::logic_error("stage " + std::to_string(stage_) + ": W of micro-batch " +
                           std::to_string(mb) + " before its I");
  if (!params_.empty()) {
    std::vector<torch::Tensor> roots, grads;
    differentiable_roots(st.roots, st.root_grads, roots, grads);
    if (!roots.empty()) {
      auto g = torch::autograd::grad(roots, params_, grads, /*retain_graph=*/false,
                                     /*create_graph=*/false, /*allow_unused=*/true);
      accumulate(params_, g);
    }
  }
  state_.erase(mb);
}

std::vector<torch::Tensor> stage_executor::full_backward(int mb,
                                                         const std::vector<torch::Tensor>& grad_outputs) {
  torch::AutoGradMode grad_on(true);
  auto& st = at(mb, "B");
  set_root_grads(st, grad_outputs);
  std::vector<torch::Tensor> wrt;
  std::size_t n_inputs = 0;
  for (auto& in : st.inputs)
    if (in.requires_grad()) {
      wrt.push_back(in);
      ++n_inputs;
    }
  wrt.insert(wrt.end(), params_.begin(), params_.end());
  std::vector<torch::Tensor> result;
  std::vector<torch::Tensor> roots, grads;
  differentiable_roots(st.roots, st.root_grads, roots, grads);
  if (!wrt.empty() && !roots.empty()) {
    auto g = torch::autograd::grad(roots, wrt, grads, /*retain_graph=*/false, /*create_graph=*/false,
                                   /*allow_unused=*/true);
    std::vector<torch::Tensor> wg(g.begin() + static_cast<std::ptrdiff_t>(n_inputs), g.end());
    accumulate(params_, wg);
    if (n_inputs > 0)
      result = input_grads(st, g, n_inputs);
  }
  state_.erase(mb);
  return result;
}

void stage_executor::step() {
  if (!state_.empty())
    throw std::logic_error("stage " + std::to_string(stage_) + ": optimizer step with " +
                           std::to_string(state_.size()) + " micro-batches still in flight");
  if (optimizer_) {
    torch::NoGradGuard no_grad;
    optimizer_->step();
    optimizer_->zero_grad();
  }
}

void stage_executor::begin_step() {
  if (!state_.empty())
    throw std::logic_error("stage " + std::to_string(stage_) + ": new step with " +
                           std::to_string(state_.size()) + " micro-batches still in flight");
  losses_.clear();
  step_loss_ = 0;
}

torch::Tensor stage_executor::loss(int mb) const {
  auto it = losses_.find(mb);
  return it == losses_.end() ? torch::Tensor() : it->second;
}

std::uint64_t stage_executor::parameter_bytes() const {
  std::uint64_t n = 0;
  for (const auto& p : module_->parameters())
    n += static_cast<std::uint64_t>(p.numel()) * p.element_size();
  return n;
}

} // namespace pippy
