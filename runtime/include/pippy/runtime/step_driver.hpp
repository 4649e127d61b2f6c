#pragma once
// One driver of training steps through the stage actors, for every backend. A step_backend says which
// ranks live in this process and makes their executors and the transport (CPU: torch_executor with a
// memory or Gloo transport, cpu_backend(); GPU: gpu/'s cuda_backend()). The driver lowers the schedule,
// spawns the actors once, and runs each step through the same lifecycle: the batch, every executor's
// and the transport's begin_step, the actors' start, the wait for every local rank or a failure, and
// end_step everywhere.
#include <torch/torch.h>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pippy/actors/pipeline.hpp"
#include "pippy/core/failure.hpp"
#include "pippy/core/schedule.hpp"
#include "pippy/runtime/event_log.hpp"
#include "pippy/runtime/executors.hpp"
#include "pippy/runtime/microbatch.hpp"
#include "pippy/runtime/stage_executor.hpp"
#include "pippy/runtime/tensor_channel.hpp"

namespace pippy {

// Settings of a CAF system that hosts real training: `max_threads` workers (libtorch's threads come on
// top), quiet logging, and one shared queue whose idle workers sleep on a condition variable that the
// next message signals (bench/RESULTS-runtime.md), after polling it for `poll` (0: at once).
void configure_for_training(caf::actor_system_config& cfg, int max_threads = 2,
                            std::chrono::microseconds poll = std::chrono::microseconds(0));
// The poll of a process that hosts every rank: its workers have the cores to themselves. Across
// processes the cores are shared with the other ranks' compute, which a poll would slow down.
inline constexpr std::chrono::microseconds in_process_poll{50};

// `compute_only` with its communication added, checked against `num_stage_executors` (one per stage).
// `who` names the caller in the input_error thrown otherwise.
schedule lower_for_actors(const schedule& compute_only, std::size_t num_stage_executors, const std::string& who);

struct step_backend {
  std::string name;                    // names the measured trace: "... measured (<name>)"
  std::optional<int> rank;             // this process is this rank; nullopt: every rank lives here
  std::optional<torch::Device> device; // where each step's batch goes; nullopt: where it is
  // The executor of `rank`, given its stages (by stage id, the others null), the step's batch and the log.
  std::function<std::unique_ptr<compute_executor>(int rank, std::vector<std::shared_ptr<stage_executor>> stages,
                                                  const step_batch& batch, event_log& log)>
      make_executor;
  // The transport between this process's ranks and the others, for the lowered schedule.
  std::function<std::unique_ptr<actors::transport>(const schedule& lowered, event_log& log)> make_transport;
};

// The CPU backend: torch_executor (its compute in the stage actor's thread, or on a thread of its own
// when the compute must yield, PIPPY_COMPUTE_YIELDS), memory_transport without a channel, else
// gloo_transport for the channel's rank.
step_backend cpu_backend(tensor_channel* channel = nullptr);

class step_driver {
public:
  // on_failure(what): called as soon as a step fails, before step() throws. A multi-process caller
  // reports and exits there: its peers wait on this process's transfers until it does.
  step_driver(caf::actor_system& sys, const schedule& compute_only, std::vector<std::shared_ptr<stage_executor>> stages,
              step_backend backend, std::chrono::milliseconds timeout = std::chrono::seconds(300),
              std::function<void(const failure& what)> on_failure = {});
  ~step_driver();
  step_driver(const step_driver&) = delete;
  step_driver& operator=(const step_driver&) = delete;
  // Same contract as pipeline_engine::step. Throws peer_error for a lost peer or a timeout, failure_error
  // for any other failure; the driver is unusable afterwards.
  std::optional<double> step(const std::vector<torch::Tensor>& inputs, const torch::Tensor& target,
                             const std::vector<chunk_spec>& specs = {});
  // Before step(): another step will follow it, so the transport may post that step's first receives
  // early (actors::transport::another_step_follows).
  void another_step_follows() { transport_->another_step_follows(); }
  trace events() const { return measured_trace(plan_, log_, backend_.name); }
  // Forgets the events so far (between steps).
  void clear_events() { log_.clear(); }
  // Hands every measured event and sample to these as it happens too (set before the first step; they
  // run on the executors' and the transport's threads and must not block).
  void forward_events_to(std::function<void(const trace_event&)> on_event,
                         std::function<void(const memory_sample&)> on_memory) {
    log_.forward_to(std::move(on_event), std::move(on_memory));
  }
  std::map<int, std::uint64_t> activation_bytes() const { return log_.activation_bytes(); }
  const schedule& lowered() const { return plan_; }

private:
  schedule plan_; // lowered
  std::vector<std::shared_ptr<stage_executor>> stages_;
  step_backend backend_;
  std::chrono::milliseconds watchdog_;
  std::function<void(const failure&)> on_failure_;
  std::vector<int> local_ranks_;
  step_batch batch_;
  event_log log_;
  std::vector<std::unique_ptr<compute_executor>> executors_; // by rank, null for the ranks of other processes
  std::unique_ptr<actors::transport> transport_;
  caf::scoped_actor supervisor_;
  actors::pipeline_handles actors_;
  std::optional<failure> failed_;
};

} // namespace pippy
