// The splitter: cuts a traced graph into stages and builds one graph_stage per stage.
#include <pippy/compiler/compiler.hpp>
#include <pippy/core/error.hpp>

#include <torch/csrc/jit/frontend/tracer.h>
#include <torch/csrc/jit/runtime/interpreter.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <limits>
#include <mutex>
#include <set>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

TORCH_LIBRARY(pippy, m) {
  // The pipe_split() marker. CONSERVATIVE alias analysis marks it as having side effects, so the
  // tracer's dead-code elimination keeps it; the splitter removes it and never runs it.
  m.def(torch::schema("pipe_split() -> ()", c10::AliasAnalysisKind::CONSERVATIVE), [] {});
}

namespace pippy {
namespace {

using torch::jit::Graph;
using torch::jit::Node;
using torch::jit::Value;

const c10::Symbol& pipe_split_symbol() {
  static const auto s = c10::Symbol::fromQualString("pippy::pipe_split");
  return s;
}

std::mutex annotations_mutex;
std::unordered_map<const void*, std::vector<std::pair<std::string, split_point>>>& annotations() {
  static std::unordered_map<const void*, std::vector<std::pair<std::string, split_point>>> a;
  return a;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

void check_names(const std::set<std::string>& known, const std::vector<std::pair<std::string, split_point>>& points) {
  for (const auto& [name, sp] : points) {
    if (known.count(name) != 0) continue;
    std::vector<std::pair<size_t, std::string>> nearest;
    for (const auto& k : known)
      if (!k.empty()) nearest.emplace_back(edit_distance(name, k), k);
    std::sort(nearest.begin(), nearest.end());
    std::string list;
    for (size_t i = 0; i < nearest.size() && i < 6; ++i) list += (i ? ", " : "") + nearest[i].second;
    throw input_error("annotate_split_points: the model has no submodule named '" + name + "' (nearest: " + list + ")");
  }
}

void store(const void* key, const std::vector<std::pair<std::string, split_point>>& points) {
  std::lock_guard lock(annotations_mutex);
  auto& v = annotations()[key];
  v.insert(v.end(), points.begin(), points.end());
}

std::vector<std::pair<std::string, split_point>> take(const void* key) {
  std::lock_guard lock(annotations_mutex);
  auto it = annotations().find(key);
  if (it == annotations().end()) return {};
  auto v = it->second;
  annotations().erase(it);
  return v;
}

const char* to_string(split_point sp) { return sp == split_point::beginning ? "beginning" : "end"; }

bool is_tensor(const Value* v) { return v->type()->isSubtypeOf(*c10::TensorType::get()); }

std::string shape_of(const torch::Tensor& t) {
  std::ostringstream os;
  os << t.sizes();
  return os.str();
}

} // namespace

void annotate_split_points(torch::nn::Module& model, const std::vector<std::pair<std::string, split_point>>& points) {
  std::set<std::string> known;
  for (const auto& item : model.named_modules("", false)) known.insert(item.key());
  check_names(known, points);
  store(&model, points);
}

void annotate_split_points(torch::jit::Module& model, const std::vector<std::pair<std::string, split_point>>& points) {
  std::set<std::string> known;
  for (const auto& item : model.named_modules()) known.insert(item.name);
  check_names(known, points);
  store(model._ivalue().get(), points);
}

void clear_split_points(const void* model) { take(model); }

void pipe_split() {
  if (!torch::jit::tracer::isTracing()) return;
  auto& g = torch::jit::tracer::getTracingState()->graph;
  g->insertNode(g->create(pipe_split_symbol(), 0));
}

// ------------------------------------------------------------------------------------------------------

graph_stage::graph_stage(int index, std::shared_ptr<Graph> graph, std::vector<std::string> tensor_names,
                         std::vector<torch::Tensor> tensors, std::vector<bool> is_param, size_t num_boundary_inputs)
    : stage_module("pippy::stage" + std::to_string(index)), index_(index), graph_(std::move(graph)),
      names_(std::move(tensor_names)), is_param_(std::move(is_param)), num_boundary_inputs_(num_boundary_inputs) {
  // Register every tensor under its qualified name, recreating the module path with plain containers.
  for (size_t i = 0; i < names_.size(); ++i) {
    torch::nn::Module* m = this;
    std::string rest = names_[i];
    for (auto dot = rest.find('.'); dot != std::string::npos; dot = rest.find('.')) {
      std::string part = rest.substr(0, dot);
      rest = rest.substr(dot + 1);
      auto children = m->named_children();
      if (auto* found = children.find(part)) {
        m = found->get();
      } else {
        m = m->register_module(part, std::make_shared<torch::nn::Module>(part)).get();
      }
    }
    if (is_param_[i]) {
      tensors_.push_back(m->register_parameter(rest, tensors[i], tensors[i].requires_grad()));
    } else {
      tensors_.push_back(m->register_buffer(rest, tensors[i]));
    }
  }
  for (const Node* n : graph_->nodes())
    if (n->kind() == c10::aten::batch_norm) {
      const auto training = torch::jit::toIValue(n->input(5));  // batch_norm(input, w, b, mean, var, training, ...)
      batch_statistics_ = batch_statistics_ || !training || !training->isBool() || training->toBool();
    }
  code_ = std::make_unique<torch::jit::Code>(graph_, "stage" + std::to_string(index_));
}

std::vector<torch::Tensor> graph_stage::forward(const std::vector<torch::Tensor>& inputs) {
  TORCH_CHECK(inputs.size() == num_boundary_inputs_, "stage ", index_, " expects ", num_boundary_inputs_,
              " inputs, got ", inputs.size());
  torch::jit::Stack stack;
  stack.reserve(inputs.size() + tensors_.size());
  for (const auto& x : inputs) stack.emplace_back(x);
  for (const auto& t : tensors_) stack.emplace_back(t);
  torch::jit::InterpreterState(*code_).run(stack);
  std::vector<torch::Tensor> out;
  out.reserve(stack.size());
  for (auto& v : stack) out.push_back(v.toTensor());
  return out;
}

std::string graph_stage::describe() const {
  std::ostringstream os;
  os << "stage " << index_ << ": " << num_boundary_inputs_ << " input(s), " << graph_->outputs().size()
     << " output(s)\n";
  std::set<std::string> modules;
  for (const auto& n : names_) modules.insert(n.find('.') == std::string::npos ? "" : n.substr(0, n.rfind('.')));
  os << "  modules:";
  for (const auto& m : modules) os << " " << (m.empty() ? "<root>" : m);
  os << "\n";
  for (size_t i = 0; i < names_.size(); ++i)
    os << "  " << (is_param_[i] ? "parameter " : "buffer ") << names_[i] << " " << shape_of(tensors_[i]) << "\n";
  os << "  graph:\n";
  std::istringstream lines(graph_->toString(false));
  for (std::string line; std::getline(lines, line);) os << "    " << line << "\n";
  return os.str();
}

// ------------------------------------------------------------------------------------------------------

std::vector<torch::Tensor> pipe::forward(const std::vector<torch::Tensor>& inputs) {
  TORCH_CHECK(inputs.size() == num_inputs_, "pipe expects ", num_inputs_, " inputs, got ", inputs.size());
  std::vector<std::vector<torch::Tensor>> outs(stages_.size());
  auto get = [&](const value_source& s) {
    return s.stage < 0 ? inputs.at(static_cast<size_t>(s.index))
                       : outs.at(static_cast<size_t>(s.stage)).at(static_cast<size_t>(s.index));
  };
  for (size_t s = 0; s < stages_.size(); ++s) {
    std::vector<torch::Tensor> in;
    for (const auto& src : inputs_[s]) in.push_back(get(src));
    outs[s] = stages_[s]->forward(in);
  }
  std::vector<torch::Tensor> result;
  for (const auto& src : outputs_) result.push_back(get(src));
  return result;
}

namespace {
tensor_meta meta_of(const Value* v) {
  tensor_meta m;
  auto tt = v->type()->cast<c10::TensorType>();
  TORCH_CHECK(tt, "boundary value %", v->debugName(), " is not a tensor");
  if (auto sizes = tt->sizes().concrete_sizes()) m.sizes = *sizes;
  if (auto st = tt->scalarType()) m.dtype = *st;
  m.requires_grad = tt->requiresGrad().value_or(false) || at::isFloatingType(m.dtype);
  return m;
}
} // namespace

std::vector<tensor_meta> pipe::stage_input_meta(int s) const {
  const auto& g = dynamic_cast<const graph_stage&>(*stage(s)).graph();
  std::vector<tensor_meta> m;
  for (size_t i = 0; i < inputs_.at(static_cast<size_t>(s)).size(); ++i) m.push_back(meta_of(g.inputs()[i]));
  return m;
}

std::vector<tensor_meta> pipe::stage_output_meta(int s) const {
  const auto& g = dynamic_cast<const graph_stage&>(*stage(s)).graph();
  std::vector<tensor_meta> m;
  for (const Value* v : g.outputs()) m.push_back(meta_of(v));
  return m;
}

std::string pipe::to_string() const {
  std::ostringstream os;
  auto src = [](const value_source& s) {
    return s.stage < 0 ? "input[" + std::to_string(s.index) + "]"
                       : "stage" + std::to_string(s.stage) + "[" + std::to_string(s.index) + "]";
  };
  os << "pipe: " << stages_.size() << " stages, " << num_inputs_ << " input(s), routing "
     << (routing_ == skip_routing::pass_through ? "pass_through" : "direct") << "\n";
  for (const auto& st : stages_) os << st->describe();
  os << "flow:\n";
  for (size_t s = 0; s < stages_.size(); ++s) {
    os << "  stage" << s << "(";
    for (size_t i = 0; i < inputs_[s].size(); ++i) os << (i ? ", " : "") << src(inputs_[s][i]);
    os << ")\n";
  }
  os << "  outputs = (";
  for (size_t i = 0; i < outputs_.size(); ++i) os << (i ? ", " : "") << src(outputs_[i]);
  os << ")\n";
  for (const auto& t : tied_) {
    os << "tied: " << t.name;
    for (const auto& a : t.aliases) os << " = " << a;
    os << " on stages";
    for (int s : t.stages) os << " " << s;
    os << "\n";
  }
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const pipe& p) { return os << p.to_string(); }

// ------------------------------------------------------------------------------------------------------

namespace {

// Cheap nodes recomputed in every stage that needs them instead of crossing a boundary: constants and
// non-tensor values built only from constants (e.g. int lists for view sizes).
bool rematerializable(const Node* n) {
  if (n->kind() == c10::prim::Constant) return true;
  if (n->kind() == c10::prim::Param || !n->blocks().empty() || n->outputs().empty()) return false;
  for (const Value* o : n->outputs())
    if (is_tensor(o)) return false;
  for (const Value* i : n->inputs())
    if (!rematerializable(i->node())) return false;
  return true;
}

struct split_state {
  const traced_model& t;
  const Graph& g;
  std::vector<Node*> nodes;           // compute nodes (not rematerializable, not markers), in order
  std::vector<size_t> marker_cuts;    // pipe_split positions (index of the next compute node)
  std::unordered_map<const Node*, size_t> index;
  std::unordered_map<const Value*, size_t> tensor_input;  // param/buffer graph input -> slot (0..P+B)
  size_t num_params;

  explicit split_state(const traced_model& tm) : t(tm), g(*tm.graph), num_params(tm.params.size()) {
    for (Node* n : tm.graph->nodes()) {
      if (n->kind() == pipe_split_symbol()) {
        marker_cuts.push_back(nodes.size());
      } else if (!rematerializable(n)) {
        index[n] = nodes.size();
        nodes.push_back(n);
      }
    }
    for (size_t i = 0; i < tm.params.size() + tm.buffers.size(); ++i)
      tensor_input[tm.graph->inputs()[tm.num_user_inputs + i]] = i;
  }
  const std::string& tensor_name(size_t slot) const {
    return slot < num_params ? t.param_names[slot] : t.buffer_names[slot - num_params];
  }
  // Parameter/buffer slots a compute node reads (directly or through rematerialized nodes: none do).
  std::vector<size_t> slots_of(const Node* n) const {
    std::vector<size_t> s;
    for (const Value* v : n->inputs())
      if (auto it = tensor_input.find(v); it != tensor_input.end()) s.push_back(it->second);
    return s;
  }
  size_t bytes(size_t slot) const {
    const auto& x = slot < num_params ? t.params[slot] : t.buffers[slot - num_params];
    return static_cast<size_t>(x.numel()) * x.element_size();
  }
};

struct cut {
  size_t position;  // index of the first compute node of the new stage
  std::string why;  // for error messages
};

const std::string root_module;

std::vector<cut> cuts_from_annotations(const split_state& st,
                                       const std::vector<std::pair<std::string, split_point>>& points) {
  std::vector<cut> cuts;
  for (const auto& [path, sp] : points) {
    auto mt = st.t.module_tensors.find(path);
    if (mt == st.t.module_tensors.end())
      throw input_error("split point '" + path + "': the model has no submodule of that name");
    std::string why = "split point '" + path + "' (" + to_string(sp) + ")";
    std::optional<size_t> first, last;
    if (!st.t.node_module.empty()) {
      // The graph knows each node's submodule: the module is exactly its nodes, parameters or not.
      for (size_t i = 0; i < st.nodes.size(); ++i) {
        // Nodes an earlier split copied into the graph (see below) are no module's.
        const auto known = st.t.node_module.find(st.nodes[i]);
        const std::string& m = known == st.t.node_module.end() ? root_module : known->second;
        if (m == path || (m.size() > path.size() && m.compare(0, path.size(), path) == 0 && m[path.size()] == '.')) {
          if (!first) first = i;
          last = i;
        }
      }
      if (!first) throw input_error(why + ": the module computes nothing in the traced forward");
      cuts.push_back({sp == split_point::beginning ? *first : *last + 1, why});
      continue;
    }
    std::set<std::string> names(mt->second.begin(), mt->second.end());
    for (size_t i = 0; i < st.nodes.size(); ++i)
      for (size_t slot : st.slots_of(st.nodes[i]))
        if (names.count(st.tensor_name(slot)) != 0) {
          if (!first) first = i;
          last = i;
        }
    if (!first)
      throw input_error("split point '" + path +
                        "': the module has no parameters or buffers used by the traced forward, and a traced C++ "
                        "forward does not record which module computed what, so it cannot be located in the graph; "
                        "call pippy::pipe_split() in the forward there instead");
    if (sp == split_point::beginning) {
      cuts.push_back({*first, why});
      continue;
    }
    // END: after the module's last parameter use, extended over parameter-free operations that consume
    // a value computed in the module (its activation, a residual add, a reshape).
    std::unordered_set<const Value*> region;
    auto add_outputs = [&](const Node* n) {
      for (const Value* o : n->outputs()) region.insert(o);
    };
    for (size_t i = *first; i <= *last; ++i) add_outputs(st.nodes[i]);
    size_t pos = *last + 1;
    while (pos < st.nodes.size()) {
      const Node* n = st.nodes[pos];
      if (!st.slots_of(n).empty()) break;
      if (std::find(st.marker_cuts.begin(), st.marker_cuts.end(), pos) != st.marker_cuts.end()) break;
      bool uses_region = false;
      for (const Value* v : n->inputs()) uses_region = uses_region || region.count(v) != 0;
      if (!uses_region) break;
      add_outputs(n);
      ++pos;
    }
    cuts.push_back({pos, why});
  }
  return cuts;
}

// Runs every compute node on its own (a one-node graph through the interpreter) in graph order on the
// example inputs and returns its wall time in seconds: the fastest of three passes over all the nodes.
// One run's time takes in whatever else held the core then (under a loaded machine a lookup was once
// timed as slow as a Linear 20 times its work), and the first pays the interpreter's warm-up. Three runs
// of a node back to back can all fall in one burst of load (a 1 ms lookup against a 5 ms Linear: the
// by-time split test failed once beside the suite, with three runs in a row); passes spread each node's
// runs over the whole profile.
std::vector<double> profile_nodes(const split_state& st) {
  torch::NoGradGuard no_grad;
  const traced_model& t = st.t;
  std::unordered_map<const Value*, c10::IValue> values;
  for (size_t i = 0; i < t.num_user_inputs; ++i) values[st.g.inputs()[i]] = t.example_inputs.at(i);
  for (size_t i = 0; i < t.params.size(); ++i) values[st.g.inputs()[t.num_user_inputs + i]] = t.params[i];
  for (size_t i = 0; i < t.buffers.size(); ++i)
    values[st.g.inputs()[t.num_user_inputs + t.params.size() + i]] = t.buffers[i];
  struct node_run {
    torch::jit::Code code;
    torch::jit::Stack inputs;
  };
  std::vector<node_run> runs;
  runs.reserve(st.nodes.size());
  auto timed = [](const node_run& r, torch::jit::Stack& s) {
    s = r.inputs;
    const auto start = std::chrono::steady_clock::now();
    torch::jit::InterpreterState(r.code).run(s);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  std::vector<double> seconds;
  for (Node* n : st.nodes) {
    auto g1 = std::make_shared<Graph>();
    std::unordered_map<const Value*, Value*> env;
    torch::jit::Stack stack;
    std::function<Value*(Value*)> map = [&](Value* v) -> Value* {
      if (auto it = env.find(v); it != env.end()) return it->second;
      if (rematerializable(v->node())) {
        for (Value* in : v->node()->inputs()) map(in);
        Node* c = g1->appendNode(g1->createClone(v->node(), [&](Value* x) { return env.at(x); }));
        for (size_t i = 0; i < c->outputs().size(); ++i) env[v->node()->outputs()[i]] = c->outputs()[i];
      } else {
        env[v] = g1->addInput()->copyMetadata(v);
        stack.push_back(values.at(v));
      }
      return env.at(v);
    };
    for (Value* in : n->inputs()) map(in);
    Node* c = g1->appendNode(g1->createClone(n, [&](Value* x) { return env.at(x); }));
    for (Value* o : c->outputs()) g1->registerOutput(o);
    const node_run& r = runs.emplace_back(node_run{torch::jit::Code(g1, "profile"), std::move(stack)});
    torch::jit::Stack outputs;
    seconds.push_back(timed(r, outputs)); // its outputs feed the nodes after it
    for (size_t i = 0; i < n->outputs().size(); ++i) values[n->outputs()[i]] = outputs.at(i);
  }
  for (int pass = 1; pass < 3; ++pass)
    for (size_t i = 0; i < runs.size(); ++i) {
      torch::jit::Stack s;
      seconds[i] = std::min(seconds[i], timed(runs[i], s));
    }
  return seconds;
}

// Balanced by parameter bytes (or measured node time): cut only before nodes that read parameters,
// minimising the largest stage.
std::vector<cut> cuts_auto(const split_state& st, int num_stages, balance by) {
  // A cut before node i is allowed when every tensor crossing it is an activation (depends on the
  // model's inputs: weights derived only from parameters, like a transposed weight, stay with their
  // user) and no crossing tensor is modified in place after the cut (it arrives as a leaf there).
  const size_t n = st.nodes.size();
  // Tensors computed from constants alone (a causal mask, position ids) may cross like activations.
  std::unordered_map<const Value*, bool> from_input, from_param;
  for (size_t i = 0; i < st.t.num_user_inputs; ++i) from_input[st.g.inputs()[i]] = true;
  for (size_t i = st.t.num_user_inputs; i < st.g.inputs().size(); ++i) from_param[st.g.inputs()[i]] = true;
  std::vector<int> blocked(n + 1, 0);  // difference array over cut positions
  auto block = [&](size_t from, size_t to) {  // positions from..to inclusive
    if (from > to) return;
    ++blocked[from];
    --blocked[to + 1];
  };
  for (size_t j = 0; j < n; ++j) {
    const Node* node = st.nodes[j];
    bool dep = false, par = false;
    for (const Value* v : node->inputs()) {
      if (auto it = from_input.find(v); it != from_input.end()) dep = dep || it->second;
      if (auto it = from_param.find(v); it != from_param.end()) par = par || it->second;
    }
    for (const Value* o : node->outputs()) {
      from_input[o] = dep;
      from_param[o] = par;
      if (!is_tensor(o)) continue;
      size_t last = j;
      for (const auto& use : o->uses()) {
        auto it = st.index.find(use.user);
        const size_t u = it == st.index.end() ? n : it->second;
        last = std::max(last, std::min(u, n - 1));
        const std::string kind = use.user->kind().toUnqualString();
        if (use.offset == 0 && kind.size() > 1 && kind.back() == '_' && kind[kind.size() - 2] != '_')
          block(j + 1, std::min(u, n - 1));
      }
      if (!dep && par) block(j + 1, last);
    }
  }
  std::vector<size_t> candidates{0};
  std::unordered_set<size_t> seen;
  int blocked_here = 0;
  for (size_t i = 0; i < n; ++i) {
    blocked_here += blocked[i];
    const bool after_first = !seen.empty();  // stage 0 holds a parameter too
    bool fresh = false;
    for (size_t slot : st.slots_of(st.nodes[i])) fresh = seen.insert(slot).second || fresh;
    if (fresh && after_first && blocked_here == 0) candidates.push_back(i);
  }
  const size_t k = candidates.size();
  if (num_stages < 1 || static_cast<size_t>(num_stages) > k)
    throw input_error("automatic split: cannot split into " + std::to_string(num_stages) + " stages; the model has " +
                      std::to_string(k) + " places where a stage can begin");
  candidates.push_back(st.nodes.size());
  // cost[a][b]: bytes of distinct tensors read by nodes in [candidates[a], candidates[b]), or their time.
  std::vector<std::vector<double>> cost(k + 1, std::vector<double>(k + 1, 0));
  if (by == balance::measured_time) {
    const std::vector<double> seconds = profile_nodes(st);
    for (size_t a = 0; a < k; ++a)
      for (size_t b = a + 1; b <= k; ++b) {
        cost[a][b] = cost[a][b - 1];
        for (size_t i = candidates[b - 1]; i < candidates[b]; ++i) cost[a][b] += seconds[i];
      }
  }
  for (size_t a = 0; a < k && by == balance::parameter_bytes; ++a) {
    std::unordered_set<size_t> used;
    double c = 0;
    for (size_t b = a + 1; b <= k; ++b) {
      for (size_t i = candidates[b - 1]; i < candidates[b]; ++i)
        for (size_t slot : st.slots_of(st.nodes[i]))
          if (used.insert(slot).second) c += static_cast<double>(st.bytes(slot));
      cost[a][b] = c;
    }
  }
  const double inf = std::numeric_limits<double>::infinity();
  const auto S = static_cast<size_t>(num_stages);
  // best[s][b]: minimal max-cost splitting [0, candidates[b]) into s stages.
  std::vector<std::vector<double>> best(S + 1, std::vector<double>(k + 1, inf));
  std::vector<std::vector<size_t>> from(S + 1, std::vector<size_t>(k + 1, 0));
  best[0][0] = 0;
  for (size_t s = 1; s <= S; ++s)
    for (size_t b = 1; b <= k; ++b)
      for (size_t a = 0; a < b; ++a) {
        double v = std::max(best[s - 1][a], cost[a][b]);
        if (v < best[s][b]) best[s][b] = v, from[s][b] = a;
      }
  std::vector<cut> cuts;
  for (size_t s = S, b = k; s > 1; --s) {
    b = from[s][b];
    cuts.push_back({candidates[b], "automatic split"});
  }
  std::reverse(cuts.begin(), cuts.end());
  return cuts;
}

} // namespace

pipe split_traced(const traced_model& t, const pipeline_options& options,
                  const std::vector<std::pair<std::string, split_point>>& points) {
  split_state st(t);
  const Graph& g = *t.graph;
  if (st.nodes.empty()) throw input_error("pipeline: the traced forward computes nothing");

  // 1. Stage boundaries.
  std::vector<cut> cuts;
  if (!points.empty()) {
    cuts = cuts_from_annotations(st, points);
  } else if (!st.marker_cuts.empty()) {
    for (size_t i = 0; i < st.marker_cuts.size(); ++i)
      cuts.push_back({st.marker_cuts[i], "pipe_split() call #" + std::to_string(i + 1)});
  } else if (options.num_stages > 1) {
    cuts = cuts_auto(st, options.num_stages, options.balance_by);
  }
  std::stable_sort(cuts.begin(), cuts.end(), [](const cut& a, const cut& b) { return a.position < b.position; });
  for (size_t i = 0; i < cuts.size(); ++i) {
    if (cuts[i].position == 0)
      throw input_error(cuts[i].why + " produces an empty stage 0 (nothing is computed before it)");
    if (cuts[i].position >= st.nodes.size())
      throw input_error(cuts[i].why + " produces an empty stage " + std::to_string(i + 1) +
                        " (nothing is computed after it)");
    if (i > 0 && cuts[i].position == cuts[i - 1].position)
      throw input_error(cuts[i - 1].why + " and " + cuts[i].why + " fall at the same place and produce an empty stage " +
                        std::to_string(i));
  }
  const int num_stages = static_cast<int>(cuts.size()) + 1;
  if (options.num_ranks > 0 && num_stages > options.num_ranks * options.stages_per_rank)
    throw input_error("pipeline: the split produces " + std::to_string(num_stages) + " stages but only " +
                      std::to_string(options.num_ranks) + " rank(s) x " + std::to_string(options.stages_per_rank) +
                      " stage(s) per rank were requested");

  // 2. Stage of every compute node. Non-tensor values cannot cross a boundary: such producers move
  //    down to the stage of their consumers (they only read earlier values, so that stays valid).
  std::unordered_map<const Node*, int> stage_of;
  for (size_t i = 0, c = 0; i < st.nodes.size(); ++i) {
    while (c < cuts.size() && cuts[c].position <= i) ++c;
    stage_of[st.nodes[i]] = static_cast<int>(c);
  }
  const int sink = num_stages;  // graph outputs
  auto consumer_stages = [&](const Value* v) {
    std::set<int> s;
    for (const auto& use : v->uses()) {
      const Node* u = use.user;
      if (u->kind() == c10::prim::Return) {
        s.insert(sink);
      } else if (auto it = stage_of.find(u); it != stage_of.end()) {
        s.insert(it->second);
      } else if (rematerializable(u)) {
        throw input_error("pipeline: a tensor feeds a constant-only node; unsupported graph");
      }
    }
    return s;
  };
  // Non-tensor values (sizes, int lists, lists of tensors) cannot cross a boundary: their producer moves
  // to the one stage that uses them, or, when several stages do, is recomputed in each of them (its
  // tensor inputs cross instead). The traced graph gains those copies; what it computes is unchanged.
  for (size_t i = st.nodes.size(); i-- > 0;) {
    Node* n = st.nodes[i];
    bool all_non_tensor = !n->outputs().empty();
    for (const Value* o : n->outputs()) all_non_tensor = all_non_tensor && !is_tensor(o);
    if (!all_non_tensor) continue;
    std::map<int, std::vector<std::pair<size_t, torch::jit::Use>>> uses;  // stage -> (output, use)
    for (size_t k = 0; k < n->outputs().size(); ++k)
      for (const auto& use : n->output(k)->uses()) {
        if (use.user->kind() == c10::prim::Return)
          throw input_error("pipeline: the model returns the non-tensor value %" + n->output(k)->debugName() +
                            "; outputs must be tensors");
        auto it = stage_of.find(use.user);
        if (it == stage_of.end()) throw input_error("pipeline: a tensor feeds a constant-only node; unsupported graph");
        uses[it->second].emplace_back(k, use);
      }
    const int own = stage_of[n];
    if (uses.empty() || (uses.size() == 1 && uses.begin()->first == own)) continue;
    if (uses.size() == 1) {
      stage_of[n] = uses.begin()->first;
      continue;
    }
    // A copy per stage is only the same value if nobody changes it (a list that aten::append grows).
    for (const auto& [s, stage_uses] : uses)
      for (const auto& [k, use] : stage_uses) {
        const std::string kind = use.user->kind().toUnqualString();
        if (kind == "append" || kind == "insert" || kind == "extend" || kind == "_set_item" || kind == "pop" ||
            kind == "clear" || (kind.size() > 1 && kind.back() == '_' && kind[kind.size() - 2] != '_'))
          throw input_error("pipeline: the non-tensor value %" + n->output(k)->debugName() +
                            " is changed in place and used in several stages; it cannot cross a stage boundary");
      }
    for (auto& [s, stage_uses] : uses) {
      if (s == own) continue;
      Node* first = stage_uses.front().second.user;
      for (const auto& [k, use] : stage_uses)
        if (use.user->isBefore(first)) first = use.user;
      Node* copy = n->owningGraph()->createClone(n, [](Value* v) { return v; });
      copy->insertBefore(first);
      for (const auto& [k, use] : stage_uses) use.user->replaceInput(use.offset, copy->output(k));
      stage_of[copy] = s;
      st.nodes.insert(std::find(st.nodes.begin(), st.nodes.end(), first), copy);
    }
  }
  st.index.clear();
  for (size_t i = 0; i < st.nodes.size(); ++i) st.index[st.nodes[i]] = i;
  for (int s = 0; s < num_stages; ++s) {
    bool any = false;
    for (const auto& [n, ns] : stage_of) any = any || ns == s;
    if (!any) throw input_error("pipeline: stage " + std::to_string(s) + " is empty");
  }

  // 3. Parameters and buffers: which stages read each, tied ones.
  pipe p;
  p.routing_ = options.routing;
  p.num_inputs_ = t.num_user_inputs;
  const size_t num_slots = t.params.size() + t.buffers.size();
  std::vector<std::set<int>> slot_stages(num_slots);
  for (const Node* n : st.nodes)
    for (size_t slot : st.slots_of(n)) slot_stages[slot].insert(stage_of[n]);
  std::unordered_map<const Value*, int> producer;  // boundary values: producing stage (-1: pipe input)
  std::vector<const Value*> order;                 // boundary values in definition order
  for (size_t i = 0; i < t.num_user_inputs; ++i) {
    producer[g.inputs()[i]] = -1;
    order.push_back(g.inputs()[i]);
  }
  std::vector<std::set<int>> slot_holders = slot_stages;  // stages that hold each tensor as their own
  // A tensor the forward never reads (a buffer of an unused branch, num_batches_tracked in eval mode)
  // still belongs to one stage, so that the stages' state together is the model's: the stage holding
  // the tensors of its nearest enclosing module, else the stage of the tensor registered before it.
  for (size_t slot = 0; slot < num_slots; ++slot) {
    if (!slot_stages[slot].empty()) continue;
    std::optional<int> chosen;
    for (std::string prefix = st.tensor_name(slot); !chosen && prefix.find('.') != std::string::npos;) {
      prefix = prefix.substr(0, prefix.rfind('.'));
      for (size_t other = 0; other < num_slots && !chosen; ++other) {
        const std::string& name = st.tensor_name(other);
        if (!slot_stages[other].empty() && name.compare(0, prefix.size() + 1, prefix + ".") == 0)
          chosen = *slot_stages[other].begin();
      }
    }
    for (size_t other = slot; !chosen && other-- > 0;)
      if (!slot_holders[other].empty()) chosen = *slot_holders[other].begin();
    slot_holders[slot] = {chosen.value_or(0)};
  }
  for (size_t slot = 0; slot < num_slots; ++slot) {
    if (slot_stages[slot].size() < 2) continue;
    if (options.tied == tied_weights::transmit) {
      const Value* v = g.inputs()[t.num_user_inputs + slot];
      producer[v] = *slot_stages[slot].begin();
      order.push_back(v);
      slot_holders[slot] = {*slot_stages[slot].begin()};
    } else if (slot < t.params.size()) {
      tied_parameter tp{st.tensor_name(slot), {}, {slot_stages[slot].begin(), slot_stages[slot].end()}};
      if (auto a = t.aliases.find(tp.name); a != t.aliases.end()) tp.aliases = a->second;
      p.tied_.push_back(std::move(tp));
    }
  }
  for (const Node* n : st.nodes)
    for (const Value* o : n->outputs())
      if (is_tensor(o)) {
        producer[o] = stage_of[n];
        order.push_back(o);
      }

  // 4. Boundary values and routing.
  std::vector<std::vector<const Value*>> stage_in(static_cast<size_t>(num_stages)),
      stage_out(static_cast<size_t>(num_stages));
  std::vector<std::vector<value_source>> sources(static_cast<size_t>(num_stages));
  std::unordered_map<const Value*, std::map<int, size_t>> out_index;  // value -> stage -> output slot
  std::vector<std::set<int>> consumers(order.size());
  for (size_t i = 0; i < order.size(); ++i) consumers[i] = consumer_stages(order[i]);
  if (options.routing == skip_routing::pass_through) {
    // Value live at the entry of stage s: produced before s, used at s or later.
    auto live = [&](int s) {
      std::vector<const Value*> l;
      for (size_t i = 0; i < order.size(); ++i)
        if (producer[order[i]] < s && !consumers[i].empty() && *consumers[i].rbegin() >= s) l.push_back(order[i]);
      return l;
    };
    for (int s = 0; s < num_stages; ++s) {
      stage_in[static_cast<size_t>(s)] = live(s);
      for (size_t i = 0; i < stage_in[static_cast<size_t>(s)].size(); ++i) {
        const Value* v = stage_in[static_cast<size_t>(s)][i];
        sources[static_cast<size_t>(s)].push_back(
            s == 0 ? value_source{-1, static_cast<int>(std::find(g.inputs().begin(), g.inputs().end(), v) -
                                                       g.inputs().begin())}
                   : value_source{s - 1, static_cast<int>(out_index[v][s - 1])});
      }
      if (s + 1 < num_stages) {
        stage_out[static_cast<size_t>(s)] = live(s + 1);
      } else {
        for (const Value* o : g.outputs()) stage_out[static_cast<size_t>(s)].push_back(o);
      }
      for (size_t i = 0; i < stage_out[static_cast<size_t>(s)].size(); ++i)
        out_index[stage_out[static_cast<size_t>(s)][i]].emplace(s, i);
    }
    for (size_t i = 0; i < g.outputs().size(); ++i) p.outputs_.push_back({num_stages - 1, static_cast<int>(i)});
  } else {
    for (size_t i = 0; i < order.size(); ++i) {
      const Value* v = order[i];
      const int ps = producer[v];
      bool leaves = false;
      for (int c : consumers[i]) {
        if (c == ps) continue;
        leaves = true;
        if (c < num_stages) stage_in[static_cast<size_t>(c)].push_back(v);
      }
      if (leaves && ps >= 0) {
        out_index[v].emplace(ps, stage_out[static_cast<size_t>(ps)].size());
        stage_out[static_cast<size_t>(ps)].push_back(v);
      }
    }
    auto source_of = [&](const Value* v) {
      const int ps = producer.at(v);
      if (ps < 0)
        return value_source{-1, static_cast<int>(std::find(g.inputs().begin(), g.inputs().end(), v) - g.inputs().begin())};
      return value_source{ps, static_cast<int>(out_index[v].at(ps))};
    };
    for (int s = 0; s < num_stages; ++s)
      for (const Value* v : stage_in[static_cast<size_t>(s)]) sources[static_cast<size_t>(s)].push_back(source_of(v));
    for (const Value* o : g.outputs()) {
      if (producer.count(o) == 0) throw input_error("pipeline: a model output is a constant or a parameter; unsupported");
      p.outputs_.push_back(source_of(o));
    }
  }

  // 5. One graph per stage.
  for (int s = 0; s < num_stages; ++s) {
    auto sg = std::make_shared<Graph>();
    std::unordered_map<const Value*, Value*> env;
    for (const Value* v : stage_in[static_cast<size_t>(s)]) env[v] = sg->addInput()->copyMetadata(const_cast<Value*>(v));
    std::vector<std::string> names;
    std::vector<torch::Tensor> tensors;
    std::vector<bool> is_param;
    for (size_t slot = 0; slot < num_slots; ++slot) {
      if (slot_holders[slot].count(s) == 0) continue;
      const Value* v = g.inputs()[t.num_user_inputs + slot];
      env[v] = sg->addInput()->copyMetadata(const_cast<Value*>(v));
      names.push_back(st.tensor_name(slot));
      const bool param = slot < t.params.size();
      torch::Tensor x = param ? t.params[slot] : t.buffers[slot - t.params.size()];
      if (options.clone_parameters) x = x.detach().clone().set_requires_grad(x.requires_grad());
      tensors.push_back(x);
      is_param.push_back(param);
    }
    std::function<Value*(Value*)> ensure = [&](Value* v) -> Value* {
      if (auto it = env.find(v); it != env.end()) return it->second;
      Node* n = v->node();
      if (!rematerializable(n))
        throw input_error("pipeline: internal error: value %" + v->debugName() + " is not available in stage " +
                          std::to_string(s));
      for (Value* in : n->inputs()) ensure(in);
      Node* c = sg->appendNode(sg->createClone(n, [&](Value* x) { return env.at(x); }));
      for (size_t i = 0; i < n->outputs().size(); ++i) env[n->outputs()[i]] = c->outputs()[i];
      return env.at(v);
    };
    for (Node* n : st.nodes) {
      if (stage_of[n] != s) continue;
      for (Value* in : n->inputs()) ensure(in);
      Node* c = sg->appendNode(sg->createClone(n, [&](Value* x) { return env.at(x); }));
      for (size_t i = 0; i < n->outputs().size(); ++i) env[n->outputs()[i]] = c->outputs()[i];
    }
    for (const Value* o : stage_out[static_cast<size_t>(s)]) sg->registerOutput(ensure(const_cast<Value*>(o)));
    p.inputs_.push_back(sources[static_cast<size_t>(s)]);
    p.stages_.push_back(std::make_shared<graph_stage>(s, sg, std::move(names), std::move(tensors), std::move(is_param),
                                                      stage_in[static_cast<size_t>(s)].size()));
  }
  return p;
}

pipe pipeline(torch::nn::Module& model, const forward_fn& forward, const std::vector<torch::Tensor>& example_inputs,
              const pipeline_options& options) {
  auto points = take(&model);
  return split_traced(trace_module(model, forward, example_inputs), options, points);
}

pipe pipeline(torch::jit::Module& model, const std::vector<torch::Tensor>& example_inputs,
              const pipeline_options& options) {
  auto points = take(model._ivalue().get());
  return split_traced(trace_script(model, example_inputs), options, points);
}

} // namespace pippy
