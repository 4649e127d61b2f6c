// Front ends: C++ modules and TorchScript modules brought into one graph form (traced_model).
//
// A TorchScript file's own forward graph is used when it can be (inlined, attributes lowered to graph
// inputs): it keeps the sizes a Python trace recorded (aten::size), so stages accept other batch sizes
// and sequence lengths, every node knows the submodule it came from, and nothing runs on the user's
// module. Graphs with control flow are traced by running them instead, as C++ modules are.
#include <pippy/compiler/compiler.hpp>
#include <pippy/core/error.hpp>

#include <torch/csrc/jit/frontend/tracer.h>
#include <torch/csrc/jit/ir/scope.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/csrc/jit/passes/lower_graph.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/csrc/jit/runtime/interpreter.h>

#include <unordered_map>
#include <unordered_set>
#include <variant>

namespace pippy {
namespace {

using impl_ptr = const c10::TensorImpl*;
using torch::jit::Graph;
using torch::jit::Node;
using torch::jit::Value;

struct tensor_table {
  std::unordered_map<impl_ptr, std::string> canonical;  // tensor -> first qualified name
  std::unordered_map<impl_ptr, size_t> slot;            // tensor -> graph slot (params, then buffers)
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

void number_slots(const traced_model& t, tensor_table& table) {
  for (size_t i = 0; i < t.params.size(); ++i) table.slot[t.params[i].unsafeGetTensorImpl()] = i;
  for (size_t i = 0; i < t.buffers.size(); ++i) table.slot[t.buffers[i].unsafeGetTensorImpl()] = t.params.size() + i;
}

std::string sanitize(std::string s) {
  for (auto& c : s)
    if (c == '.') c = '_';
  return s;
}

// Name the parameter and buffer inputs after their qualified names (readable graphs).
void name_inputs(traced_model& t) {
  const size_t n = t.num_user_inputs;
  for (size_t i = 0; i < t.params.size(); ++i) t.graph->inputs()[n + i]->setDebugName(sanitize(t.param_names[i]));
  for (size_t i = 0; i < t.buffers.size(); ++i)
    t.graph->inputs()[n + t.params.size() + i]->setDebugName(sanitize(t.buffer_names[i]));
}

// Tracing runs the forward: the model's buffers (BatchNorm's running statistics, num_batches_tracked)
// must read afterwards exactly what they read before.
class buffers_restored {
public:
  explicit buffers_restored(const std::vector<torch::Tensor>& buffers) : buffers_(buffers) {
    torch::NoGradGuard no_grad;
    for (const auto& b : buffers_) saved_.push_back(b.clone());
  }
  ~buffers_restored() {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < buffers_.size(); ++i) {
      try {
        buffers_[i].copy_(saved_[i]);
      } catch (const std::exception&) {  // a destructor must not throw; same shapes, so not expected
      }
    }
  }
  buffers_restored(const buffers_restored&) = delete;
  buffers_restored& operator=(const buffers_restored&) = delete;

private:
  std::vector<torch::Tensor> buffers_;
  std::vector<torch::Tensor> saved_;
};

void run_trace(traced_model& t, const std::vector<torch::Tensor>& example_inputs,
               const std::function<std::vector<torch::Tensor>(const std::vector<torch::Tensor>&)>& call) {
  buffers_restored restore(t.buffers);
  torch::NoGradGuard no_grad;
  // Only the last resort for TorchScript runs the module's own executor (see trace_script); its plan
  // for a forward that already ran with gradients may hold aten::detach. Ask for the unoptimized one.
  torch::jit::GraphOptimizerEnabledGuard unoptimized(false);
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
  name_inputs(t);
}

// Inlines every method call of g, recording for each node the qualified path of the submodule it was
// computed in ("transformer.h.1.attn"; "" for the root). Module values are followed through their
// attribute chains, so containers that are never called themselves (ModuleList) keep their names, which
// the call stacks torch's own Inline leaves do not record. Free function calls are inlined afterwards and
// belong to the module that called them.
std::unordered_map<Node*, std::string> inline_with_paths(Graph& g) {
  std::unordered_map<const Value*, std::string> module_of_value{{g.inputs()[0], ""}};
  std::unordered_map<Node*, std::string> path;
  auto join = [](const std::string& a, const std::string& b) { return a.empty() ? b : a + "." + b; };
  for (auto it = g.nodes().begin(); it != g.nodes().end();) {
    Node* n = *it;
    const auto self = n->inputs().empty() ? module_of_value.end() : module_of_value.find(n->input(0));
    const std::string here = self == module_of_value.end() ? path[n] : self->second;
    if (n->kind() == c10::prim::GetAttr && self != module_of_value.end() && n->output()->type()->cast<c10::ClassType>()) {
      module_of_value[n->output()] = join(self->second, n->s(c10::attr::name));
    } else if (n->kind() == c10::prim::CallMethod && self != module_of_value.end()) {
      auto cls = n->input(0)->type()->cast<c10::ClassType>();
      auto* callee = cls ? torch::jit::tryToGraphFunction(cls->getMethod(n->s(c10::attr::name))) : nullptr;
      if (callee) {
        auto body = callee->graph()->copy();
        Node* before = n->prev();
        std::vector<Value*> outputs;
        {
          torch::jit::WithInsertPoint at(n);
          outputs = torch::jit::insertGraph(g, *body, n->inputs());
        }
        // The callee's self became n->input(0): its attribute chains resolve under `here`.
        for (Node* m = before->next(); m != n; m = m->next()) path[m] = here;
        for (size_t i = 0; i < outputs.size(); ++i) n->output(i)->replaceAllUsesWith(outputs[i]);
        n->destroy();
        // Resume at the first inlined node, or after the call when the body had none (nn.Identity).
        it = torch::jit::graph_node_list_iterator(before->next(), torch::jit::kNextDirection);
        continue;
      }
    }
    path[n] = here;
    ++it;
  }
  std::unordered_set<const Node*> before;
  for (const Node* n : g.nodes()) before.insert(n);
  torch::jit::Inline(g);  // free functions (prim::CallFunction)
  std::string last;
  for (Node* n : g.nodes()) {
    if (before.count(n) != 0) last = path[n];
    else path[n] = last;  // nodes of an inlined function: the caller's module
    // Carried as the node's scope: LowerGraph copies the graph, and copies keep scopes.
    n->setScope(c10::make_intrusive<torch::jit::Scope>()->push(c10::Symbol::scope("pippy:" + path[n])));
  }
  return path;
}

std::string module_path(Node* n) {
  const std::string s = n->scope() ? n->scope()->name().toUnqualString() : "";
  return s.rfind("pippy:", 0) == 0 ? s.substr(6) : "";
}

// Flattens a returned tuple or list of tensors into graph outputs; false if the return is anything else.
bool flatten_outputs(Graph& g) {
  for (size_t i = 0; i < g.outputs().size(); ++i) {
    Value* o = g.outputs()[i];
    if (o->type()->isSubtypeOf(*c10::TensorType::get())) continue;
    Node* n = o->node();
    if (n->kind() != c10::prim::TupleConstruct && n->kind() != c10::prim::ListConstruct) return false;
    g.eraseOutput(i);
    size_t at = i;
    for (Value* e : n->inputs()) {
      if (!e->type()->isSubtypeOf(*c10::TensorType::get())) return false;
      g.block()->insertOutput(at++, e);
    }
    --i;
  }
  torch::jit::EliminateDeadCode(g.block());
  return true;
}

// The file's forward graph, inlined, with its attributes replaced by the slot inputs (user inputs, then
// every parameter and buffer in traced_model order, used or not), or the reason it cannot be had.
std::variant<std::shared_ptr<Graph>, std::string> lowered_forward(torch::jit::Module& model, const tensor_table& table,
                                                                  const traced_model& t,
                                                                  const std::vector<torch::Tensor>& example_inputs) {
  if (!model.find_method("forward")) return std::string("the module has no forward method");
  auto g = model.get_method("forward").graph()->copy();
  {
    // With the executor's optimization off (as trainers set it) torch's Inline leaves some calls in place.
    torch::jit::GraphOptimizerEnabledGuard optimize(true);
    inline_with_paths(*g);
  }
  for (const Node* n : g->nodes())
    if (n->kind() == c10::prim::CallMethod || n->kind() == c10::prim::CallFunction)
      return std::string("a call could not be inlined (") + n->kind().toQualString() + ")";
  const size_t num_user = g->inputs().size() - 1;  // input 0 is self
  if (num_user != example_inputs.size())
    throw input_error("pipeline: the TorchScript forward takes " + std::to_string(num_user) + " input(s), " +
                      std::to_string(example_inputs.size()) + " example input(s) were given");
  for (size_t i = 1; i < g->inputs().size(); ++i)
    if (!g->inputs()[i]->type()->isSubtypeOf(*c10::TensorType::get()))
      return "forward input " + g->inputs()[i]->debugName() + " is not a tensor";
  std::pair<std::shared_ptr<Graph>, std::vector<c10::IValue>> lowered;
  try {
    lowered = torch::jit::LowerGraph(*g, model._ivalue());
  } catch (const std::exception& e) {  // c10::Error or the JIT's ErrorReport
    return std::string("its attributes cannot be lowered: ") + e.what();
  }
  auto& [lg, attrs] = lowered;
  if (!flatten_outputs(*lg)) return std::string("forward returns something other than tensors");
  // The lowered attribute inputs (one per attribute path, so tied tensors twice) become slot inputs.
  std::vector<Value*> slot_inputs;
  for (const auto& x : t.params) slot_inputs.push_back(lg->addInput()->setType(c10::TensorType::create(x)));
  for (const auto& x : t.buffers) slot_inputs.push_back(lg->addInput()->setType(c10::TensorType::create(x)));
  for (size_t i = 0; i < attrs.size(); ++i) {
    if (!attrs[i].isTensor()) return std::string("an attribute it reads is not a tensor");
    auto it = table.slot.find(attrs[i].toTensor().unsafeGetTensorImpl());
    if (it == table.slot.end()) return std::string("it reads a tensor attribute that is neither a parameter nor a buffer");
    lg->inputs()[num_user + i]->replaceAllUsesWith(slot_inputs[it->second]);
  }
  for (size_t i = num_user + attrs.size(); i-- > num_user;) lg->eraseInput(i);
  for (size_t i = 0; i < num_user; ++i) lg->inputs()[i]->setType(c10::TensorType::create(example_inputs[i]));
  return lg;
}

const Node* control_flow(const Graph& g) {
  for (const Node* n : g.nodes())
    if (!n->blocks().empty()) return n;
  return nullptr;
}

// Gives every tensor value of the graph its concrete type (sizes, dtype) from one run on the example
// inputs, with copies of the buffers so that the model is left as it was.
void annotate_types(traced_model& t) {
  torch::NoGradGuard no_grad;
  auto g = t.graph->copy();
  std::vector<std::pair<const Value*, size_t>> probes;  // original value -> output index in the copy
  auto orig = t.graph->nodes().begin();
  for (Node* n : g->nodes()) {
    for (size_t i = 0; i < n->outputs().size(); ++i)
      if (n->output(i)->type()->isSubtypeOf(*c10::TensorType::get()))
        probes.emplace_back((*orig)->output(i), g->registerOutput(n->output(i)));
    ++orig;
  }
  torch::jit::Stack stack;
  for (const auto& x : t.example_inputs) stack.emplace_back(x);
  for (const auto& p : t.params) stack.emplace_back(p);
  for (const auto& b : t.buffers) stack.emplace_back(b.clone());
  torch::jit::Code code(g, "annotate_types");
  torch::jit::InterpreterState(code).run(stack);
  for (const auto& [v, k] : probes) const_cast<Value*>(v)->setType(c10::TensorType::create(stack.at(k).toTensor()));
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
  number_slots(t, table);
  auto owned = [&](const torch::jit::Module& m) {
    std::vector<std::string> names;
    for (const auto& item : m.named_parameters(true)) names.push_back(table.canonical.at(item.value.unsafeGetTensorImpl()));
    for (const auto& item : m.named_buffers(true)) names.push_back(table.canonical.at(item.value.unsafeGetTensorImpl()));
    return names;
  };
  for (const auto& item : model.named_modules()) t.module_tensors[item.name] = owned(item.value);
  auto lowered = lowered_forward(model, table, t, example_inputs);
  if (auto* g = std::get_if<std::shared_ptr<Graph>>(&lowered); g && !control_flow(**g)) {
    t.graph = *g;
    t.num_user_inputs = example_inputs.size();
    t.example_inputs = example_inputs;
    t.sizes_recorded = true;
    for (Node* n : t.graph->nodes()) t.node_module[n] = module_path(n);
    name_inputs(t);
    annotate_types(t);
    return t;
  }
  if (auto* g = std::get_if<std::shared_ptr<Graph>>(&lowered)) {
    // Control flow: trace the lowered graph run by a plain interpreter on the example (the branches
    // taken are baked in). Never through the module's executor, whose plan may be optimized.
    t.trace_note = std::string("traced by running the forward (it has control flow (") +
                   control_flow(**g)->kind().toQualString() + ")): sizes and branches are those of the example inputs";
    torch::jit::Code code(*g, "forward");
    run_trace(t, example_inputs, [&](const std::vector<torch::Tensor>& xs) {
      torch::jit::Stack stack(xs.begin(), xs.end());
      for (const auto& p : t.params) stack.emplace_back(p);
      for (const auto& b : t.buffers) stack.emplace_back(b);
      torch::jit::InterpreterState(code).run(stack);
      std::vector<torch::Tensor> ys;
      for (auto& v : stack) ys.push_back(v.toTensor());
      return ys;
    });
    return t;
  }
  t.trace_note = "traced by running the forward (" + std::get<std::string>(lowered) +
                 "): sizes and branches are those of the example inputs";
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
