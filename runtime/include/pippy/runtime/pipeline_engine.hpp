#pragma once
#include <torch/torch.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "pippy/core/schedule.hpp"
#include "pippy/runtime/clock.hpp"
#include "pippy/runtime/gloo_group.hpp"
#include "pippy/runtime/microbatch.hpp"
#include "pippy/runtime/stage_executor.hpp"
#include "pippy/runtime/tensor_channel.hpp"
#include "pippy/traces/trace.hpp"

namespace pippy {

// Runs a schedule for real, one training step per call.
// - In one process (transport == nullptr): every rank of the schedule runs here; ranks take turns,
//   each running its next action as soon as that action's inputs exist (activations and gradients are
//   handed over in memory). The result is that of the same schedule run on R processes.
// - On R processes (transport != nullptr): this process runs rank transport->rank() of the schedule
//   lowered with add_communication: SEND_x post a Gloo send, RECV_x post a receive and wait for it.
//   Shapes and dtypes travel by the shape handshake (tensor_channel, tensor_header.hpp). Stages of one
//   rank hand over in memory.
// Every action is timed (wall clock, microseconds since the epoch) and recorded as a measured trace
// event. Not thread-safe.
class pipeline_engine {
public:
  // stages[s] must be set for every stage this process runs (all stages without a transport).
  pipeline_engine(const schedule& compute_only, std::vector<std::shared_ptr<stage_executor>> stages,
                  gloo_group* transport = nullptr);

  // One step on a whole batch: inputs (stage 0's arguments, split into micro-batches with specs) and
  // target (split along dim 0; the last stage's loss). Returns the batch's loss where this process
  // owns the last stage. Throws peer_error when a peer is lost.
  std::optional<double> step(const std::vector<torch::Tensor>& inputs, const torch::Tensor& target,
                             const std::vector<chunk_spec>& specs = {});

  // Before step(): another step will follow it. Then each rank posts that step's first receives once its
  // last receive of this step is in (tensor_channel::post_step_ahead), as the actors' transport does.
  void another_step_follows() { another_step_follows_ = true; }

  // The last stage's outputs of the latest step, merged in micro-batch order (empty elsewhere).
  const std::vector<torch::Tensor>& outputs() const { return merged_outputs_; }
  // Everything measured so far (this process's ranks only), and per-stage activation bytes of one
  // micro-batch (forward outputs) for the stages run here.
  const trace& events() const { return trace_; }
  const std::map<int, std::uint64_t>& activation_bytes() const { return activation_bytes_; }
  const std::vector<int>& local_ranks() const { return local_ranks_; }

private:
  using key = std::pair<int, int>; // (stage, micro-batch)
  bool ready(const action& a) const;
  void run(int rank, const action& a);
  void record(int rank, const action& a, double start, double end, std::uint64_t bytes = 0, int peer = -1);

  schedule sched_;
  std::vector<std::shared_ptr<stage_executor>> stages_;
  gloo_group* transport_;
  std::vector<int> local_ranks_;
  int num_stages_;
  int microbatches_;

  // Per step.
  std::vector<std::vector<torch::Tensor>> mb_inputs_;
  std::vector<torch::Tensor> mb_targets_;
  std::vector<double> mb_scale_;
  std::map<key, std::vector<torch::Tensor>> fwd_in_, bwd_in_, fwd_out_, bwd_out_;
  std::map<int, std::vector<torch::Tensor>> last_out_;
  std::vector<torch::Tensor> merged_outputs_;

  std::unique_ptr<tensor_channel> channel_; // with a transport
  bool another_step_follows_ = false;
  std::vector<std::size_t> last_receive_; // per local rank: the index of its last receive in its list (or none)
  std::map<int, std::uint64_t> activation_bytes_;
  trace trace_;
};

} // namespace pippy
