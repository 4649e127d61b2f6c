#include "pippy/runtime/stage_executor.hpp"

#include <torch/csrc/autograd/engine.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/variable.h>

#include <algorithm>
#include <set>
#include <unordered_map>

#include <string>

#include "pippy/core/error.hpp"
#include "pippy/runtime/clock.hpp"

namespace pippy {

std::vector<torch::Tensor> unique_parameters(const torch::nn::Module& m) {
  std::vector<torch::Tensor> out;
  std::set<const void*> seen;
  for (const auto& p : m.parameters())
    if (seen.insert(p.unsafeGetTensorImpl()).second)
      out.push_back(p);
  return out;
}

namespace {
// The stage's forward, its failure (a shape the graph cannot take, usually) as an input_error naming the
// stage, the micro-batch and the shapes it got, with the interpreter's last line rather than its traceback.
std::vector<torch::Tensor> forward_of(stage_module& m, int stage, int mb, const std::vector<torch::Tensor>& inputs) {
  try {
    return m.forward(inputs);
  } catch (const input_error&) {
    throw;
  } catch (const std::bad_alloc&) { // not the data's fault
    throw;
  } catch (const std::logic_error&) {
    throw;
  } catch (const std::exception& e) {
    const std::string last = last_message_line(e.what());
    std::string shapes;
    for (const auto& x : inputs)
      shapes += (shapes.empty() ? "" : ", ") + (x.defined() ? c10::str(x.sizes()) : std::string("undefined"));
    throw input_error("stage " + std::to_string(stage) + " micro-batch " + std::to_string(mb) +
                      ": forward failed on inputs of shape " + shapes + ": " + last);
  }
}
} // namespace

stage_executor::stage_executor(int stage, int num_stages, std::shared_ptr<stage_module> module,
                               std::shared_ptr<torch::optim::Optimizer> optimizer, loss_function loss)
    : stage_(stage), num_stages_(num_stages), module_(std::move(module)),
      optimizer_(std::move(optimizer)), loss_(std::move(loss)) {
  if (!module_)
    throw input_error("stage " + std::to_string(stage) + ": no module");
  if (stage < 0 || stage >= num_stages)
    throw input_error("stage " + std::to_string(stage) + " out of range [0, " +
                      std::to_string(num_stages) + ")");
  for (auto& p : unique_parameters(*module_))
    if (p.requires_grad())
      params_.push_back(p);
}

std::vector<std::vector<torch::Tensor>> stage_executor::take_outputs() {
  std::vector<std::vector<torch::Tensor>> out;
  for (auto& [mb, o] : outputs_)
    out.push_back(std::move(o));
  outputs_.clear();
  return out;
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
  if (forward_only_) {
    c10::InferenceMode no_autograd;
    auto outputs = forward_of(*module_, stage_, mb, inputs);
    if (is_last())
      outputs_[mb] = outputs;
    return outputs;
  }
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
  auto outputs = forward_of(*module_, stage_, mb, st.inputs);
  if (is_last()) {
    if (outputs.empty())
      throw input_error("last stage returned no output for the loss");
    if (!loss_) // a forward-only executor needs none; training does
      throw input_error("stage " + std::to_string(stage_) + " is the last stage but has no loss function");
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

std::optional<std::vector<torch::autograd::Edge>> stage_executor::plan_split(mb_state& st) const {
  using torch::autograd::Node;
  namespace impl = torch::autograd::impl;
  std::unordered_map<const Node*, std::size_t> param_of; // grad accumulator -> index in params_
  for (std::size_t i = 0; i < params_.size(); ++i)
    if (auto acc = impl::try_get_grad_accumulator(params_[i]))
      param_of[acc.get()] = i;
  std::set<const Node*> input_accs;
  for (auto& in : st.inputs)
    if (in.requires_grad())
      if (auto acc = impl::try_get_grad_accumulator(in))
        input_accs.insert(acc.get());

  // Per node: does it lead to a stage input ("mixed": on the activation-gradient chain) and to a weight.
  struct reach {
    bool input = false, param = false;
  };
  std::unordered_map<const Node*, reach> memo;
  std::vector<std::shared_ptr<Node>> order; // post-order, every node once
  std::function<reach(const std::shared_ptr<Node>&)> visit = [&](const std::shared_ptr<Node>& node) -> reach {
    Node* n = node.get();
    if (auto it = memo.find(n); it != memo.end())
      return it->second;
    memo[n] = reach{}; // a DAG: no cycles; marks the node as being visited
    reach r{input_accs.count(n) > 0, param_of.count(n) > 0};
    for (const auto& e : n->next_edges())
      if (e.function) {
        const reach c = visit(e.function);
        r.input |= c.input;
        r.param |= c.param;
      }
    memo[n] = r;
    order.push_back(node);
    return r;
  };
  for (auto& r : st.roots)
    if (r.requires_grad())
      if (auto e = impl::gradient_edge(r); e.function)
        if (!visit(e.function).input)
          return std::nullopt; // an output that does not depend on the inputs: keep it simple
  // Weights reachable below n through nodes off the activation chain.
  std::function<void(Node*, std::set<std::size_t>&, std::set<const Node*>&)> collect =
      [&](Node* n, std::set<std::size_t>& found, std::set<const Node*>& seen) {
        if (!seen.insert(n).second)
          return;
        if (auto it = param_of.find(n); it != param_of.end())
          found.insert(it->second);
        for (const auto& e : n->next_edges())
          if (e.function && !memo[e.function.get()].input)
            collect(e.function.get(), found, seen);
      };
  std::vector<torch::autograd::Edge> capture;
  std::set<std::size_t> covered, all_params;
  for (auto& [n, r] : memo)
    if (param_of.count(n))
      all_params.insert(param_of[n]);
  for (const auto& self : order) {
    Node* n = self.get();
    if (!memo[n].input)
      continue;
    bool uses_weights = false;
    for (const auto& e : n->next_edges())
      uses_weights |= e.function && !memo[e.function.get()].input && memo[e.function.get()].param;
    if (!uses_weights)
      continue;
    weight_job job;
    std::set<std::size_t> found;
    std::set<const Node*> seen;
    for (const auto& e : n->next_edges())
      if (e.function && !memo[e.function.get()].input)
        collect(e.function.get(), found, seen);
    for (std::size_t i : found) {
      if (!covered.insert(i).second)
        return std::nullopt; // a weight under two nodes (tied): W per node would count it twice
      job.params.push_back(i);
      job.param_edges.push_back(impl::gradient_edge(params_[i]));
    }
    for (uint32_t k = 0; k < n->num_inputs(); ++k) {
      job.roots.emplace_back(self, k);
      capture.emplace_back(self, k);
    }
    st.weight_jobs.push_back(std::move(job));
  }
  if (covered != all_params)
    return std::nullopt;
  return capture;
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
  if (roots.empty())
    return input_grads(st, {}, 0);
  st.weight_jobs.clear();
  auto capture = split_enabled_ ? plan_split(st) : std::nullopt;
  if (!capture) {
    st.weight_jobs.clear();
    auto g = torch::autograd::grad(roots, wrt, grads, /*retain_graph=*/true, /*create_graph=*/false,
                                   /*allow_unused=*/true);
    return input_grads(st, g, g.size());
  }
  // One pass: the input gradients, and the gradients entering every weight-using node.
  torch::autograd::edge_list root_edges, outputs;
  torch::autograd::variable_list root_grads;
  for (std::size_t i = 0; i < roots.size(); ++i) {
    root_edges.push_back(torch::autograd::impl::gradient_edge(roots[i]));
    root_grads.push_back(grads.empty() ? torch::ones_like(roots[i]) : grads[i]);
  }
  for (auto& in : wrt)
    outputs.push_back(torch::autograd::impl::gradient_edge(in));
  outputs.insert(outputs.end(), capture->begin(), capture->end());
  auto res = torch::autograd::Engine::get_default_engine().execute(root_edges, root_grads, /*keep_graph=*/true,
                                                                   /*create_graph=*/false,
                                                                   /*accumulate_grad=*/false, outputs);
  std::size_t pos = wrt.size();
  for (auto& job : st.weight_jobs) {
    std::vector<torch::autograd::Edge> kept;
    for (auto& e : job.roots) {
      auto& g = res[pos++];
      if (g.defined()) {
        kept.push_back(e);
        job.grads.push_back(g);
      }
    }
    job.roots = std::move(kept);
  }
  st.split = true;
  std::vector<torch::Tensor> in_grads(res.begin(), res.begin() + static_cast<std::ptrdiff_t>(wrt.size()));
  return input_grads(st, in_grads, in_grads.size());
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
  if (st.split) {
    for (auto& job : st.weight_jobs) {
      if (job.roots.empty())
        continue; // no gradient reached this node
      auto g = torch::autograd::Engine::get_default_engine().execute(job.roots, job.grads, /*keep_graph=*/true,
                                                                     /*create_graph=*/false,
                                                                     /*accumulate_grad=*/false, job.param_edges);
      std::vector<torch::Tensor> ps;
      for (std::size_t i : job.params)
        ps.push_back(params_[i]);
      accumulate(ps, g);
    }
    ++split_w_;
  } else if (!params_.empty()) {
    ++fallback_w_;
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
  step_began_us_.store(now_us(), std::memory_order_relaxed);
  if (gate_) {
    gate_(stage_, [this] {
      step_began_us_.store(now_us(), std::memory_order_relaxed);
      optimizer_step();
    });
  } else {
    optimizer_step();
  }
}

void stage_executor::optimizer_step() {
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
  for (const auto& p : unique_parameters(*module_))
    n += static_cast<std::uint64_t>(p.numel()) * p.element_size();
  return n;
}

} // namespace pippy
