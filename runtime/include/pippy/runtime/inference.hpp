#pragma once
// Pipelined inference in PiPPy's shape: every process builds the same pipe, makes its stage from the
// pipe, its rank and the device, then calls it: with the whole batch on the first rank, with nothing
// elsewhere; the last rank gets the outputs of all micro-batches joined.
//   pippy::pipe p = pippy::pipeline(model, {example_microbatch}, {.num_stages = world_size});
//   pippy::pipeline_stage stage(p, pippy::read_dist_env(), torch::kCPU, {.microbatches = 4});
//   auto out = stage.is_first() ? stage({batch}) : stage();   // out: the outputs on the last rank
// Runs the forwards of a schedule only (core's forward_only), without autograd, over c10d Gloo.
#include <torch/torch.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "pippy/compiler/stage_module.hpp"
#include "pippy/core/error.hpp"
#include "pippy/runtime/environment.hpp"

namespace pippy {

class gloo_group;
class pipeline_engine;
class stage_executor;

struct inference_options {
  int microbatches = 4;
  // The schedule whose forwards run: "" = gpipe for one stage per rank, looped-bfs for several.
  std::string schedule;
  std::chrono::milliseconds timeout{60000}; // a lost peer is reported by then
};

class pipeline_stage {
public:
  // `all_stages`: every stage of the pipe, in order (each process builds all, keeps those of its rank;
  // stages are placed in loops over the ranks: stage s on rank s mod R).
  pipeline_stage(std::vector<std::shared_ptr<stage_module>> all_stages, const dist_env& env, torch::Device device,
                 const inference_options& options = {});
  // From a pipe (pippy::pipe, or anything with num_stages() and stage(i)) whose stages talk only to
  // their neighbours (skip_routing::pass_through, the default).
  template <class Pipe>
  pipeline_stage(const Pipe& p, const dist_env& env, torch::Device device, const inference_options& options = {})
      : pipeline_stage(stages_of(p), env, device, options) {}
  ~pipeline_stage();
  pipeline_stage(const pipeline_stage&) = delete;
  pipeline_stage& operator=(const pipeline_stage&) = delete;

  bool is_first() const { return first_; }
  bool is_last() const { return last_; }
  // One forward-only step. inputs: the whole batch on the first rank (split into micro-batches along
  // dim 0), ignored elsewhere. Returns the joined outputs on the last rank, nothing elsewhere. Throws
  // peer_error when a peer is lost.
  std::vector<torch::Tensor> operator()(const std::vector<torch::Tensor>& inputs = {});

private:
  template <class Pipe>
  static std::vector<std::shared_ptr<stage_module>> stages_of(const Pipe& p) {
    for (int s = 0; s < p.num_stages(); ++s)
      for (const auto& src : p.stage_inputs(s))
        if (src.stage >= 0 && src.stage != s - 1)
          throw input_error("pipeline_stage: stage " + std::to_string(s) + " receives from stage " +
                            std::to_string(src.stage) + "; split with skip_routing::pass_through");
    std::vector<std::shared_ptr<stage_module>> all;
    for (int s = 0; s < p.num_stages(); ++s)
      all.push_back(p.stage(s));
    return all;
  }
  std::unique_ptr<gloo_group> net_;
  std::vector<std::shared_ptr<stage_executor>> executors_;
  std::unique_ptr<pipeline_engine> engine_;
  int num_stages_ = 0;
  bool first_ = false, last_ = false;
};

} // namespace pippy
