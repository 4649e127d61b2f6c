#pragma once
// Training steps of a schedule on GPUs through the same stage actors as every other backend: one
// cuda_executor per local rank, and
//   - without a store: every rank in this process, all on `device` (one GPU), payloads handed over in
//     memory without copies (runtime's memory_transport; the CUDA events in the payloads order the ranks'
//     streams);
//   - with a store: this process is rank `rank` of `world_size`, on its own GPU, NCCL between ranks.
// Mirrors pippy::actor_pipeline (runtime/), which builds CPU executors itself, from the same pieces
// (lower_for_actors, make_step_batch, run_actor_step in actor_backend.hpp). Not thread-safe.
#include <c10/util/intrusive_ptr.h>

#include <caf/actor_system.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "pippy/core/schedule.hpp"
#include "pippy/gpu/cuda_executor.hpp"
#include "pippy/gpu/nccl_transport.hpp"
#include "pippy/runtime/actor_backend.hpp"
#include "pippy/runtime/microbatch.hpp"

namespace pippy::gpu {

struct cuda_pipeline_options {
  c10::DeviceIndex device = 0;                 // this process's GPU
  c10::intrusive_ptr<c10d::Store> store;       // null: every rank in this process
  int rank = 0;                                // with a store
  std::chrono::milliseconds timeout = std::chrono::seconds(300);
  delivery deliver = delivery::on_post;
  bool synchronous_actions = false;            // cuda_executor_options::synchronous
};

class cuda_pipeline {
public:
  // stages: one stage_executor per stage (the local ones set), modules and optimizer state on `device`.
  cuda_pipeline(caf::actor_system& sys, const schedule& compute_only,
                std::vector<std::shared_ptr<stage_executor>> stages, cuda_pipeline_options options = {});
  ~cuda_pipeline();
  // Same contract as actor_pipeline::step; inputs and target may be on the CPU or the device (they are
  // moved to the device once per step). Returns the batch loss on the rank that owns the last stage.
  std::optional<double> step(const std::vector<torch::Tensor>& inputs, const torch::Tensor& target,
                             const std::vector<chunk_spec>& specs = {});
  // Trace events so far (compute: GPU times; transfers: posted .. observed complete) and memory samples.
  trace events() const;
  const schedule& lowered() const { return plan_; }

private:
  caf::actor_system& sys_;
  schedule plan_;
  std::vector<std::shared_ptr<stage_executor>> stages_;
  cuda_pipeline_options opt_;
  std::vector<int> local_ranks_;
  step_batch batch_;
  event_log log_;
  std::vector<std::unique_ptr<cuda_executor>> executors_;
  std::unique_ptr<memory_transport> memory_;
  std::unique_ptr<nccl_transport> nccl_;
};

} // namespace pippy::gpu
