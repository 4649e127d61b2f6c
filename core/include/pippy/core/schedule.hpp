#pragma once
#include <string>
#include <vector>

#include "pippy/core/action.hpp"
#include "pippy/core/topology.hpp"

namespace pippy {

// A pipeline schedule as data: per rank, the ordered list of actions it runs.
struct schedule {
  std::string name;
  pipeline_shape shape;
  std::vector<std::vector<action>> ranks; // ranks[r] = actions of rank r, in order

  bool has_communication() const;
  std::size_t num_actions() const;
  friend bool operator==(const schedule&, const schedule&) = default;
};

// Inserts SEND_F/RECV_F/SEND_B/RECV_B between stages on different ranks, the way PyTorch's runtime
// lowers a compute-only schedule: a send right after the action that produced the tensor, a receive
// right before the action that consumes it, or earlier where a pair of ranks must receive in the order
// it sends. Stages on one rank hand over in memory (no comm action).
schedule add_communication(const schedule& compute_only);

// Drops communication actions, leaving the compute order.
schedule strip_communication(const schedule& s);

// Inference (PiPPy's schedule.eval()): the same placement and order with the forwards only: no
// backward, no optimizer step, so no activation waits for a gradient. Named "<name>-forward".
schedule forward_only(const schedule& s);

// True when every compute action is a forward (inference): no activation waits for a gradient.
bool runs_forward_only(const schedule& s);

} // namespace pippy
