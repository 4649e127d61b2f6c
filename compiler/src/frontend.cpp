// Front ends: C++ modules and TorchScript modules traced into one graph form (traced_model).
#include <pippy/compiler/compiler.hpp>
#include <pippy/core/error.hpp>

#include <torch/csrc/jit/frontend/tracer.h>

#include <unordered_map>

namespace pippy {
namespace {

using impl_ptr = const c10::TensorImpl*;

struct tensor_table {
  std::unordered_map<impl_ptr, std::string> canonical;  // tensor -> first qualified name
};

// Adds named tensors to the model (parameters or buffers), deduplicating tied ones by identity.
void collect(traced_model& t, tensor_table& table, const std::vector<std::pair<std::string, torch::Tensor>>& named,
             bool params) {
  for (const auto& [name, tensor] : named) {
    auto [it, inserted] = table.canonical.emplace(tensor.unsafeGetTensorImpl(), name);
    if (!inserted) {
      t.aliases[it->second].push_back(name);
      continue;
    }
    (params ? t.param_names : t.buffer_names).push_back(name);
    (params ? t.params : t.buffers).push_back(tensor);
  }
}

void run_trace(traced_model& t, const std::vector<torch::Tensor>& example_inputs,
               const std::function<std::vector<torch::Tensor>(const std::vector<torch::Tensor>&)>& call) {
  torch::NoGradGuard no_grad;
  torch::jit::Stack stack;
  for (const auto& x : example_inputs) stack.emplace_back(x);
  for (const auto& p : t.params) stack.emplace_back(p);
  for (const auto& b : t.buffers) stack.emplace_back(b);
  t.num_user_inputs = example_inputs.size();
  t.example_inputs = example_inputs;
  const size_t n = example_inputs.size();
  auto result = torch::jit::tracer::trace(
      std::move(stack),
      [&](torch::jit::Stack in) {
        std::vector<torch::Tensor> xs;
        for (size_t i = 0; i < n; ++i) xs.push_back(in[i].toTensor());
        torch::jit::Stack out;
        for (auto& y : call(xs)) out.emplace_back(std::move(y));
        return out;
      },
      [](const torch::autograd::Variable&) { return std::string(); }, /*strict=*/false);
  t.graph = result.first->graph;
  // Name the parameter and buffer inputs after their qualified names (readable graphs).
  auto sanitize = [](std::string s) {
    for (auto& c : s)
      if (c == '.') c = '_';
    return s;
  };
  for (size_t i = 0; i < t.params.size(); ++i) t.graph->inputs()[n + i]->setDebugName(sanitize(t.param_names[i]));
  for (size_t i = 0; i < t.buffers.size(); ++i)
    t.graph->inputs()[n + t.params.size() + i]->setDebugName(sanitize(t.buffer_names[i]));
}

} // namespace

traced_model trace_module(torch::nn::Module& model, const forward_fn& forward,
                          const std::vector<torch::Tensor>& example_inputs) {
  traced_model t;
  tensor_table table;
  std::vector<std::pair<std::string, torch::Tensor>> params, buffers;
  for (const auto& item : model.named_parameters(true)) params.emplace_back(item.key(), item.value());
  for (const auto& item : model.named_buffers(true)) buffers.emplace_back(item.key(), item.value());
  collect(t, table, params, true);
  collect(t, table, buffers, false);
  auto owned = [&](torch::nn::Module& m) {
    std::vector<std::string> names;
    for (const auto& item : m.named_parameters(true)) names.push_back(table.canonical.at(item.value().unsafeGetTensorImpl()));
    for (const auto& item : m.named_buffers(true)) names.push_back(table.canonical.at(item.value().unsafeGetTensorImpl()));
    return names;
  };
  t.module_tensors[""] = owned(model);
  for (const auto& item : model.named_modules("", /*include_self=*/false)) t.module_tensors[item.key()] = owned(*item.value());
  run_trace(t, example_inputs, forward);
  return t;
}

traced_model trace_script(torch::jit::Module& model, const std::vector<torch::Tensor>& example_inputs) {
  traced_model t;
  tensor_table table;
  std::vector<std::pair<std::string, torch::Tensor>> params, buffers;
  for (const auto& item : model.named_parameters(true)) params.emplace_back(item.name, item.value);
  for (const auto& item : model.named_buffers(true)) buffers.emplace_back(item.name, item.value);
  collect(t, table, params, true);
  collect(t, table, buffers, false);
  auto owned = [&](const torch::jit::Module& m) {
    std::vector<std::string> names;
    for (const auto& item : m.named_parameters(true)) names.push_back(table.canonical.at(item.value.unsafeGetTensorImpl()));
    for (const auto& item : m.named_buffers(true)) names.push_back(table.canonical.at(item.value.unsafeGetTensorImpl()));
    return names;
  };
  for (const auto& item : model.named_modules()) t.module_tensors[item.name] = owned(item.value);
  run_trace(t, example_inputs, [&](const std::vector<torch::Tensor>& xs) {
    std::vector<torch::jit::IValue> args(xs.begin(), xs.end());
    auto out = model.forward(args);
    std::vector<torch::Tensor> ys;
    if (out.isTensor()) {
      ys.push_back(out.toTensor());
    } else if (out.isTuple()) {
      for (const auto& e : out.toTupleRef().elements()) ys.push_back(e.toTensor());
    } else if (out.isTensorList()) {
      for (const auto& e : out.toTensorVector()) ys.push_back(e);
    } else {
      throw input_error("trace_script: forward must return a tensor, a tuple of tensors or a list of tensors");
    }
    return ys;
  });
  return t;
}

} // namespace pippy
