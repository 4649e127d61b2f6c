#pragma once
// What an action waits for: PyTorch's runtime rule, written once. The validator's dry run, the flat
// evaluator, the trace metrics, the stage actors and the pipeline engine all ask here.
#include <array>
#include <cstdint>

#include "pippy/core/action.hpp"
#include "pippy/core/topology.hpp"

namespace pippy {

enum class input_role : std::uint8_t {
  activation,     // F(s,m): stage s-1's output of micro-batch m (or RECV_F(s,m) where it crosses ranks)
  gradient,       // I/B(s,m): the gradient of stage s's output, from I/B(s+1,m) (or RECV_B(s,m))
  saved_forward,  // I/B(s,m): its own F(s,m), whose activations it differentiates
  input_backward, // W(s,m): its own I(s,m)
  stage_backward, // U(s): the B or W of every micro-batch of stage s
  produced,       // SEND_F/SEND_B: the action that produced the tensor it sends
  message,        // RECV_F/RECV_B: the matching send of the neighbour stage
};

// One input of an action: produced by an action of `stage` whose kind is any of kinds[0..num_kinds).
struct dependency {
  input_role role = input_role::activation;
  int stage = 0;
  int microbatch = no_microbatch; // no_microbatch: every micro-batch (U)
  std::array<action_kind, 2> kinds{};
  int num_kinds = 1;

  // Data that comes from another stage (or another rank): the rest follows from a rank's own order.
  bool from_neighbour() const {
    return role == input_role::activation || role == input_role::gradient || role == input_role::message;
  }
  bool forward_data() const { // activation, or a forward message (RECV_F)
    return role == input_role::activation || (role == input_role::message && kinds[0] == action_kind::send_f);
  }
};

// At most two inputs per action.
struct dependencies {
  std::array<dependency, 2> items{};
  int size = 0;
  const dependency* begin() const { return items.data(); }
  const dependency* end() const { return items.data() + size; }
};

// The inputs of `a` in a schedule of `num_stages` stages. With `lowered_on` (the shape of a schedule with
// communication actions), an input from a stage on another rank is the rank's own RECV action instead.
inline dependencies inputs_of(const action& a, int num_stages, const pipeline_shape* lowered_on = nullptr) {
  dependencies out;
  auto add = [&](input_role role, int stage, int mb, action_kind k0, action_kind k1, int n) {
    out.items[static_cast<std::size_t>(out.size++)] = dependency{role, stage, mb, {k0, k1}, n};
  };
  auto crosses = [&](int s, int t) { return lowered_on && lowered_on->rank_of(s) != lowered_on->rank_of(t); };
  const int s = a.stage, m = a.microbatch;
  switch (a.kind) {
  case action_kind::forward:
    if (s > 0) {
      if (crosses(s - 1, s))
        add(input_role::activation, s, m, action_kind::recv_f, action_kind::recv_f, 1);
      else
        add(input_role::activation, s - 1, m, action_kind::forward, action_kind::forward, 1);
    }
    break;
  case action_kind::backward_input:
  case action_kind::full_backward:
    add(input_role::saved_forward, s, m, action_kind::forward, action_kind::forward, 1);
    if (s < num_stages - 1) {
      if (crosses(s, s + 1))
        add(input_role::gradient, s, m, action_kind::recv_b, action_kind::recv_b, 1);
      else
        add(input_role::gradient, s + 1, m, action_kind::backward_input, action_kind::full_backward, 2);
    }
    break;
  case action_kind::backward_weight:
    add(input_role::input_backward, s, m, action_kind::backward_input, action_kind::backward_input, 1);
    break;
  case action_kind::optimizer_step:
  case action_kind::reduce_grad: // the replicas' sum of the step's weight gradients
    add(input_role::stage_backward, s, no_microbatch, action_kind::full_backward, action_kind::backward_weight, 2);
    break;
  case action_kind::send_f:
    add(input_role::produced, s, m, action_kind::forward, action_kind::forward, 1);
    break;
  case action_kind::send_b:
    add(input_role::produced, s, m, action_kind::backward_input, action_kind::full_backward, 2);
    break;
  case action_kind::recv_f:
    add(input_role::message, s - 1, m, action_kind::send_f, action_kind::send_f, 1);
    break;
  case action_kind::recv_b:
    add(input_role::message, s + 1, m, action_kind::send_b, action_kind::send_b, 1);
    break;
  }
  return out;
}

} // namespace pippy
