#pragma once
// Replicated tied weights (the compiler's tied_weights::replicate): every stage that uses the weight
// holds its own copy; before the optimizer step the copies' gradients are summed over all holders
// (in memory for stages of this process, through c10d for the others), so every copy takes the same
// update and the copies stay equal, as the one tensor of the unsplit model does.
#include <torch/torch.h>

#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "pippy/core/topology.hpp"
#include "pippy/runtime/gloo_group.hpp"

namespace pippy {

struct tied_group {
  std::string name;        // for messages
  std::vector<int> stages; // stages holding a copy, ascending
};

// Thread-safe: holders' U may come from several threads (the actors' rank workers).
class tied_sync {
public:
  // local: for each local holder stage, its copy of each group's tensor (group index -> tensor).
  // net: the transport when the holders span processes (nullptr: every holder is local).
  tied_sync(std::vector<tied_group> groups, std::map<int, std::map<std::size_t, torch::Tensor>> local,
            const pipeline_shape& shape, gloo_group* net);
  // Whether stage s holds a tied copy (then its U goes through before_step).
  bool holds(int stage) const { return local_.count(stage) > 0; }
  // Stage s's U: `step` runs once every local holder has reached its U and the gradients are summed
  // (on the thread of the last one; possibly right now). Throws peer_error when a holder is lost.
  void before_step(int stage, std::function<void()> step);

private:
  void sum_and_step();
  std::vector<tied_group> groups_;
  std::map<int, std::map<std::size_t, torch::Tensor>> local_;
  pipeline_shape shape_;
  gloo_group* net_;
  std::mutex mu_;
  std::map<int, std::function<void()>> waiting_;
};

} // namespace pippy
