#pragma once
// The compiler: trace an unmodified model into a torch::jit::Graph (parameters and buffers become graph
// inputs), cut the graph into pipeline stages and build one stage_module per stage (PiPPy's pipeline()).
// Functions here are not thread-safe unless stated; a pipe is used by one caller at a time.
#include <pippy/compiler/stage_module.hpp>

#include <torch/script.h>
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <unordered_map>
#include <vector>

namespace pippy {

// --- Front ends --------------------------------------------------------------------------------------

// A model traced into one graph. Graph inputs are, in order: the user inputs, the parameters, the
// buffers. Tied parameters (one tensor registered under several names) appear once, under the first name.
struct traced_model {
  std::shared_ptr<torch::jit::Graph> graph;
  size_t num_user_inputs = 0;
  std::vector<std::string> param_names;  // qualified names, e.g. "layer0.lin.weight"
  std::vector<torch::Tensor> params;     // the model's own tensors (shared storage)
  std::vector<std::string> buffer_names;
  std::vector<torch::Tensor> buffers;
  // Other names of tied tensors: canonical name -> aliases.
  std::map<std::string, std::vector<std::string>> aliases;
  // Every submodule path ("" is the root) with the qualified names of the parameters and buffers it
  // owns (recursively). Used to locate annotated split points in the graph.
  std::map<std::string, std::vector<std::string>> module_tensors;
  // The inputs the model was traced with (used by the profiling pass of balance::measured_time).
  std::vector<torch::Tensor> example_inputs;
  // The submodule each node was computed in ("blocks.0.attn", "" for the root), when known: a
  // TorchScript file's own graph records it; a traced C++ forward does not (then empty).
  std::unordered_map<const torch::jit::Node*, std::string> node_module;
  // True when the graph computes sizes from its inputs (aten::size), so stages accept micro-batches
  // shaped unlike the example; false when tracing baked the example's sizes in.
  bool sizes_recorded = false;
  // How the graph was obtained when that limits it (printed by pippy split).
  std::string trace_note;
};

// Traces a libtorch C++ module. `forward` calls the module on the inputs (any C++ forward signature)
// and returns its tensor outputs. Shapes and Python-free control flow are baked in, as with
// torch.jit.trace: the pipe is valid for inputs shaped like `example_inputs`.
using forward_fn = std::function<std::vector<torch::Tensor>(const std::vector<torch::Tensor>&)>;
traced_model trace_module(torch::nn::Module& model, const forward_fn& forward,
                          const std::vector<torch::Tensor>& example_inputs);

// Brings a TorchScript module (e.g. from torch::jit::load) into the same graph form: its own forward
// graph, inlined, with attributes turned into inputs (sizes stay computed, every node knows its
// submodule, nothing runs on the module but one forward on copies of its buffers to learn the
// boundary shapes). A forward with control flow is traced by running it instead, like a C++ module;
// either way the module is left exactly as it was.
traced_model trace_script(torch::jit::Module& model, const std::vector<torch::Tensor>& example_inputs);

// --- Split points ------------------------------------------------------------------------------------

enum class split_point { beginning, end };

// Records split points for `model` by submodule path (PiPPy's annotate_split_points). Checked against
// the model's submodules now: an unknown path throws input_error naming it. Stored beside the model
// (keyed by its address) until pipeline() consumes them or clear_split_points() is called.
void annotate_split_points(torch::nn::Module& model,
                           const std::vector<std::pair<std::string, split_point>>& points);
void annotate_split_points(torch::jit::Module& model,
                           const std::vector<std::pair<std::string, split_point>>& points);
void clear_split_points(const void* model);

// Called inside a forward: while tracing it records a marker (pippy::pipe_split) where a stage ends;
// outside tracing it does nothing.
void pipe_split();

// --- The pipe ----------------------------------------------------------------------------------------

enum class skip_routing {
  // Stage s receives exactly what stage s-1 sends (stage 0 receives the pipe inputs); a value used
  // two or more stages later is passed through the stages between. Default: a schedule then only
  // moves tensors between neighbours, which is what 1F1B / interleaved schedules' send/recv assume.
  pass_through,
  // A value goes from its producer straight to every stage that uses it (fewer copies, needs
  // point-to-point links between any two stages).
  direct,
};

enum class tied_weights {
  replicate,  // each stage that uses the parameter holds a copy; sum their grads before the update
  transmit,   // the first user stage owns it and sends it onward like an activation
};

enum class balance {
  parameter_bytes,  // bytes of the parameters and buffers each stage holds (tied ones on every holder)
  measured_time,    // forward time of each graph node, measured once on the example inputs
};

struct pipeline_options {
  // Automatic split into this many stages when the model has no annotations and no pipe_split().
  int num_stages = 0;
  balance balance_by = balance::parameter_bytes;
  // If > 0: error when the split produces more stages than num_ranks * stages_per_rank.
  int num_ranks = 0;
  int stages_per_rank = 1;
  skip_routing routing = skip_routing::pass_through;
  tied_weights tied = tied_weights::replicate;
  // false: stages share the original module's tensors (an optimizer on the original still works);
  // true: every stage gets its own detached copy (what separate ranks hold).
  bool clone_parameters = false;
};

// Where a stage input (or a pipe output) comes from.
struct value_source {
  int stage = -1;  // -1: the pipe's inputs
  int index = 0;   // output index of that stage, or pipe input index
  bool operator==(const value_source&) const = default;
};
inline std::ostream& operator<<(std::ostream& os, const value_source& s) {
  return s.stage < 0 ? os << "input[" << s.index << "]" : os << "stage" << s.stage << "[" << s.index << "]";
}

// Shape and dtype of a boundary tensor as traced (what a receiver allocates for a microbatch).
struct tensor_meta {
  std::vector<int64_t> sizes;
  torch::Dtype dtype = torch::kFloat;
  bool requires_grad = false;  // floating point and computed from parameters or float inputs
};

// Parameters that several stages hold (tied weights under tied_weights::replicate).
struct tied_parameter {
  std::string name;                  // qualified name in the original model (first registration)
  std::vector<std::string> aliases;  // other names the same tensor is registered under
  std::vector<int> stages;           // stages holding a copy, ascending
};

class pipe {
public:
  int num_stages() const { return static_cast<int>(stages_.size()); }
  std::shared_ptr<stage_module> stage(int i) const { return stages_.at(static_cast<size_t>(i)); }
  const std::vector<value_source>& stage_inputs(int i) const { return inputs_.at(static_cast<size_t>(i)); }
  const std::vector<value_source>& outputs() const { return outputs_; }
  // Traced shapes and dtypes of stage s's boundary inputs and outputs, in order.
  std::vector<tensor_meta> stage_input_meta(int s) const;
  std::vector<tensor_meta> stage_output_meta(int s) const;
  size_t num_inputs() const { return num_inputs_; }
  const std::vector<tied_parameter>& tied_parameters() const { return tied_; }
  skip_routing routing() const { return routing_; }

  // Runs all stages in order in this process (autograd flows across stages).
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& inputs);
  // PiPPy's print(pipe): every stage's modules, parameters and graph, then the top-level flow.
  std::string to_string() const;

private:
  friend pipe split_traced(const traced_model&, const pipeline_options&,
                           const std::vector<std::pair<std::string, split_point>>&);
  std::vector<std::shared_ptr<stage_module>> stages_;
  std::vector<std::vector<value_source>> inputs_;
  std::vector<value_source> outputs_;
  size_t num_inputs_ = 0;
  std::vector<tied_parameter> tied_;
  skip_routing routing_ = skip_routing::pass_through;
};

std::ostream& operator<<(std::ostream& os, const pipe& p);

// Splits a traced model. Stage boundaries come from, in priority order: `points` (annotations),
// pippy::pipe_split markers in the graph, or options.num_stages (balanced by parameter bytes).
pipe split_traced(const traced_model& traced, const pipeline_options& options,
                  const std::vector<std::pair<std::string, split_point>>& points = {});

// PiPPy's pipeline(): trace, then split using the annotations recorded for `model`.
pipe pipeline(torch::nn::Module& model, const forward_fn& forward,
              const std::vector<torch::Tensor>& example_inputs, const pipeline_options& options = {});
pipe pipeline(torch::jit::Module& model, const std::vector<torch::Tensor>& example_inputs,
              const pipeline_options& options = {});

// The stage_module the splitter builds: a graph slice run by the TorchScript interpreter. Its
// parameters and buffers are registered under their original qualified names (nested modules).
class graph_stage : public stage_module {
public:
  graph_stage(int index, std::shared_ptr<torch::jit::Graph> graph, std::vector<std::string> tensor_names,
              std::vector<torch::Tensor> tensors, std::vector<bool> is_param, size_t num_boundary_inputs);
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& inputs) override;
  std::string describe() const override;
  bool uses_batch_statistics() const override { return batch_statistics_; }
  const torch::jit::Graph& graph() const { return *graph_; }
  // Original qualified names of the stage's parameters and buffers, in graph-input order.
  const std::vector<std::string>& tensor_names() const { return names_; }

private:
  int index_;
  std::shared_ptr<torch::jit::Graph> graph_;
  std::vector<std::string> names_;
  std::vector<bool> is_param_;
  std::vector<torch::Tensor> tensors_;  // handles to the registered parameters and buffers
  size_t num_boundary_inputs_;
  bool batch_statistics_ = false;
  std::unique_ptr<torch::jit::Code> code_;
};

} // namespace pippy
