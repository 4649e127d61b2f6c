#pragma once
#include <torch/csrc/autograd/edge.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <vector>

#include "pippy/compiler/stage_module.hpp"
#include "pippy/core/action.hpp"

namespace pippy {

// A module's parameters with each tensor once (libtorch's parameters() lists a tied tensor under every
// name it is registered with; an optimizer given both would update it twice, as Python's would not).
std::vector<torch::Tensor> unique_parameters(const torch::nn::Module& m);

// Loss of one micro-batch: mean over its rows (as torch's default reduction does).
using loss_function = std::function<torch::Tensor(const torch::Tensor& output, const torch::Tensor& target)>;

// Runs the compute actions of one pipeline stage on libtorch autograd:
//   F  forward one micro-batch, keeping its graph (inputs are detached copies that require grad);
//   I  gradients w.r.t. the stage inputs only, graph retained. On the way it captures the gradient
//      flowing into each node that uses a weight (e.g. a Linear's addmm): the zero-bubble split;
//   W  gradients w.r.t. the weights, accumulated into .grad: from each captured gradient, one small
//      backward of that node's weight branch only (no second pass through the activation chain), on
//      the graph that I kept. Graphs where that split is not exact fall back to a backward from the
//      outputs to the weights (still correct, costs the activation chain again);
//   B  both at once (one backward pass, graph freed);
//   U  optimizer step, then zero grads.
// On the last stage F also computes the loss, scaled by rows(micro-batch)/rows(batch), so the gradients
// of one pipelined step equal those of one step on the whole batch. Not thread-safe: one caller at a
// time, and every call sets the grad mode it needs (thread-local state does not follow actors).
class stage_executor {
public:
  stage_executor(int stage, int num_stages, std::shared_ptr<stage_module> module,
                 std::shared_ptr<torch::optim::Optimizer> optimizer, loss_function loss = {});

  int stage() const { return stage_; }
  bool is_first() const { return stage_ == 0; }
  bool is_last() const { return stage_ == num_stages_ - 1; }
  stage_module& module() { return *module_; }

  // F. target and loss_scale matter on the last stage only. Returns the tensors to hand to the next
  // stage (on the last stage: the model output, which nobody receives).
  std::vector<torch::Tensor> forward(int mb, const std::vector<torch::Tensor>& inputs,
                                     const torch::Tensor& target = {}, double loss_scale = 1.0);
  // I. grad_outputs: gradients of this stage's outputs from the next stage (ignored on the last
  // stage). Returns gradients for the stage inputs (empty on the first stage).
  std::vector<torch::Tensor> backward_input(int mb, const std::vector<torch::Tensor>& grad_outputs);
  // W, after I of the same micro-batch.
  void backward_weight(int mb);
  // B = I + W in one pass.
  std::vector<torch::Tensor> full_backward(int mb, const std::vector<torch::Tensor>& grad_outputs);
  // U. Its step gate (data parallelism, tied weights) may first wait for the other ranks' gradients.
  void step();
  // When the last U's own work began, after its gate's wait (now_us's clock): a trace draws the wait
  // before U as idle, as the simulator does (U starts once the all-reduce is over). Where the gate
  // defers the step to another holder's U (tied_sync), the time U was called; the deferred step may set
  // it later, from that holder's thread.
  double last_step_began_us() const { return step_began_us_.load(std::memory_order_relaxed); }
  // The start a trace records for U, called at `called_us` and returned at `returned_us`: when its step
  // began, within the call (a deferred step may begin after the call returned).
  static double step_start_within(double began_us, double called_us, double returned_us) {
    return std::min(std::max(called_us, began_us), returned_us);
  }
  // Inference (a forward-only schedule): F runs without autograd, keeps nothing for a backward, and the
  // last stage keeps each micro-batch's outputs instead of computing a loss.
  void set_forward_only(bool on) { forward_only_ = on; }
  bool forward_only() const { return forward_only_; }
  // The last stage's outputs of the micro-batches forwarded since the previous call, in micro-batch
  // order (forward-only mode).
  std::vector<std::vector<torch::Tensor>> take_outputs();
  // Forgets the previous step's losses (call before the first F of a step).
  void begin_step();

  // Unscaled loss of a forwarded micro-batch (last stage), and its rows.
  torch::Tensor loss(int mb) const;
  // Sum over micro-batches of loss * scale: the whole batch's loss. Cleared by begin_step().
  double step_loss() const { return step_loss_; }
  // Micro-batches forwarded whose backward has not finished (held activations).
  std::size_t in_flight() const { return state_.size(); }
  std::uint64_t parameter_bytes() const;
  // How many W ran the split way (from the gradients I captured) and how many had to fall back to a
  // second backward pass from the outputs (graphs the split does not cover, e.g. a weight used twice).
  std::size_t split_weight_passes() const { return split_w_; }
  // U goes through `gate` (it calls the given step now or later), e.g. tied_sync::before_step.
  void set_step_gate(std::function<void(int stage, std::function<void()> step)> gate) { gate_ = std::move(gate); }
  // Called after each micro-batch's weight gradients were accumulated (its W, or its B), once the
  // runtime took the action's time (weight_grads_recorded): e.g. to start the data-parallel all-reduce
  // once the step's last one is in. After the time, since what it starts may hold this core: a yielding
  // compute thread waited behind Gloo's all-reduce of the twin replicas sharing it, and the last B of
  // each step was timed 2-3x the others, all-reduce included.
  void set_after_weight_grads(std::function<void(int mb)> f) { after_weight_grads_ = std::move(f); }
  // `a` ran on this stage and its time was taken: a B or W calls the after-weight-grads hook.
  void weight_grads_recorded(const action& a) {
    if (after_weight_grads_ && (a.kind == action_kind::full_backward || a.kind == action_kind::backward_weight))
      after_weight_grads_(a.microbatch);
  }
  // Off: W always makes the second pass (for comparisons; on by default).
  void set_split_weight(bool on) { split_enabled_ = on; }
  std::size_t fallback_weight_passes() const { return fallback_w_; }

private:
  // W of one weight-using node: its incoming gradients (captured by I) and the weights below it.
  struct weight_job {
    std::vector<torch::autograd::Edge> roots;
    std::vector<torch::Tensor> grads;
    std::vector<torch::autograd::Edge> param_edges;
    std::vector<std::size_t> params; // indices into params_
  };
  struct mb_state {
    std::vector<torch::Tensor> inputs;       // detached, requires grad where differentiable
    std::vector<torch::Tensor> roots;        // tensors backward starts from (outputs, or the scaled loss)
    std::vector<torch::Tensor> root_grads;   // their gradients (empty for the loss)
    torch::Tensor loss;                      // unscaled, last stage only
    bool input_grads_done = false;
    bool split = false;                      // W runs weight_jobs (else the fallback)
    std::vector<weight_job> weight_jobs;
  };
  // Plans the split for st's graph: fills st.weight_jobs, returns the edges I must capture, or nothing
  // when the split would not be exact.
  std::optional<std::vector<torch::autograd::Edge>> plan_split(mb_state& st) const;
  mb_state& at(int mb, const char* what);
  void set_root_grads(mb_state& st, const std::vector<torch::Tensor>& grad_outputs);
  std::vector<torch::Tensor> input_grads(mb_state& st, const std::vector<torch::Tensor>& all,
                                         std::size_t count) const;

  int stage_;
  int num_stages_;
  std::shared_ptr<stage_module> module_;
  std::shared_ptr<torch::optim::Optimizer> optimizer_;
  loss_function loss_;
  std::vector<torch::Tensor> params_; // those that require grad
  std::map<int, mb_state> state_;
  std::map<int, torch::Tensor> losses_;
  double step_loss_ = 0;
  std::size_t split_w_ = 0, fallback_w_ = 0;
  bool split_enabled_ = true;
  bool forward_only_ = false;
  std::map<int, std::vector<torch::Tensor>> outputs_; // forward-only, last stage
  std::function<void(int, std::function<void()>)> gate_;
  std::atomic<double> step_began_us_{0};
  std::function<void(int)> after_weight_grads_;
  void optimizer_step();
};

} // namespace pippy
