#pragma once
// The real backend behind the actors' two seams (pippy/actors/seams.hpp): the same stage and
// micro-batch actors that the simulator drives in virtual time run real training here.
//   threaded_executor   actors::executor whose actions run on a worker thread of its own, so compute
//                       never blocks a CAF handler (base of torch_executor and gpu/'s cuda_executor).
//   torch_executor      threaded_executor on libtorch autograd (stage_executor), one per rank.
//   memory_transport    actors::transport when every rank lives in this process (tensors handed over).
//   gloo_actor_transport actors::transport over c10d Gloo: sends are posted from the handler (isend),
//                       a receiver thread walks the rank's RECV actions in order, waits for each and
//                       delivers it to the stage actor as a `payload`.
//   actor_pipeline      one training step = spawn the actors of the lowered schedule, start, wait for
//                       every local rank (or a failure), stop. Its pieces (lower_for_actors,
//                       make_step_batch, run_actor_step, ...) also serve gpu/'s cuda_pipeline.
#include <torch/torch.h>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "pippy/actors/seams.hpp"
#include "pippy/core/schedule.hpp"
#include "pippy/runtime/microbatch.hpp"
#include "pippy/runtime/stage_executor.hpp"
#include "pippy/runtime/tensor_channel.hpp"
#include "pippy/traces/trace.hpp"

namespace pippy {

// Settings of a CAF system that hosts real training: `max_threads` workers (libtorch's threads come on
// top), quiet logging, and no "moderate" polling phase: an idle worker goes from a short busy poll
// straight to waiting on a condition variable that the next message signals, instead of sleeping
// 50 us between polls (measured: per-action overhead 70-106 us -> 36 us, bench/RESULTS-runtime.md).
void configure_for_training(caf::actor_system_config& cfg, int max_threads = 2);

// Thread-safe sink of measured events shared by the executors and transports of one process.
class event_log {
public:
  void add(const trace_event& e);
  void add(const memory_sample& m);
  std::vector<trace_event> all() const;
  std::vector<memory_sample> memory() const;
  void set_activation_bytes(int stage, std::uint64_t bytes);
  std::map<int, std::uint64_t> activation_bytes() const;

private:
  mutable std::mutex mu_;
  std::vector<trace_event> events_;
  std::vector<memory_sample> memory_;
  std::map<int, std::uint64_t> activation_bytes_;
};

// What a compute action produced on its stage: the tensors to hand on (none after the last stage's
// forward, the first stage's backward, W and U), and the micro-batch's loss after the last stage's forward.
struct stage_action_result {
  std::optional<std::vector<torch::Tensor>> output;
  std::optional<double> loss;
};

// An actors::executor for the stages of one rank whose actions run one at a time, in order, on a worker
// thread of its own, so compute never blocks a CAF handler. run() may be called from any thread. A
// derived class (torch_executor, gpu/'s cuda_executor) implements execute() and calls stop_worker() first
// in its destructor (the worker may still be inside execute()).
class threaded_executor : public actors::executor {
public:
  ~threaded_executor() override;
  threaded_executor(const threaded_executor&) = delete;
  threaded_executor& operator=(const threaded_executor&) = delete;
  void run(const action& a, actors::opaque input, const caf::actor& reply_to) final;

protected:
  struct job {
    action act;
    actors::opaque input;
    caf::actor reply_to;
  };
  // stages: by stage id, set for the stages of `rank`. The executor borrows `batch` and `log`. Starts
  // the worker.
  threaded_executor(int rank, std::vector<std::shared_ptr<stage_executor>> stages, const step_batch& batch,
                    event_log& log);
  // Lets the worker run the jobs still queued, then joins it. Idempotent.
  void stop_worker();
  // Runs compute action `a` on its stage executor with the step's batch; `received()` gives the tensors
  // from the neighbouring stage and is called only when the action takes some. Throws for a stage that
  // the rank lacks or an action that is not compute.
  stage_action_result run_stage_action(const action& a,
                                       const std::function<const std::vector<torch::Tensor>&()>& received) const;

  const int rank_;
  const std::vector<std::shared_ptr<stage_executor>> stages_;
  const step_batch& batch_;
  event_log& log_;

private:
  // On the worker thread; sends the completion to j.reply_to.
  virtual void execute(job& j) = 0;
  void loop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<job> jobs_;
  bool stop_ = false;
  const bool yields_; // compute_yields(): the worker gives way to the transport's threads
  std::thread worker_;
};

class torch_executor : public threaded_executor {
public:
  // sample_memory: log the process heap after each action (when the process hosts only this rank).
  torch_executor(int rank, std::vector<std::shared_ptr<stage_executor>> stages, const step_batch& batch,
                 event_log& log, bool sample_memory = false);
  ~torch_executor() override;

private:
  void execute(job& j) override;

  bool sample_memory_;
};

class memory_transport : public actors::transport {
public:
  void attach(int stage, const caf::actor& stage_actor) override;
  void send(actors::payload p, const caf::actor& sender) override;
  bool blocking() const override { return false; }

private:
  std::mutex mu_;
  std::vector<caf::actor> stages_;
};

class gloo_actor_transport : public actors::transport {
public:
  // lowered: the schedule with communication; the transport serves rank channel.transport().rank().
  gloo_actor_transport(tensor_channel& channel, const schedule& lowered, event_log& log);
  ~gloo_actor_transport() override;
  void attach(int stage, const caf::actor& stage_actor) override;
  void send(actors::payload p, const caf::actor& sender) override;
  bool blocking() const override { return false; }

  // Starts the receiver thread of one step; a lost peer is reported to `supervisor` as stage_failed.
  void begin_step(const caf::actor& supervisor);
  // Joins the receiver and waits for this step's sends. Throws the first peer_error.
  void end_step();

private:
  tensor_channel& channel_;
  const schedule& plan_;
  event_log& log_;
  int rank_;
  std::mutex mu_;
  std::vector<caf::actor> stages_;
  std::thread receiver_;
  std::string send_error_;
};

// Pieces of a pipeline over the actors, shared by actor_pipeline and gpu/'s cuda_pipeline.

// `compute_only` with its communication added, checked against `num_stage_executors` (one per stage).
// `who` names the caller in the input_error thrown otherwise.
schedule lower_for_actors(const schedule& compute_only, std::size_t num_stage_executors, const std::string& who);
// The executors of the stages that `rank` runs in `plan` (the other entries null); throws input_error if
// one of them is missing from `stages`.
std::vector<std::shared_ptr<stage_executor>> stages_of_rank(const schedule& plan,
                                                            const std::vector<std::shared_ptr<stage_executor>>& stages,
                                                            int rank);
// One step of `plan` through freshly spawned stage actors: `executors` by rank (null for the ranks of
// other processes), `net` between them. `before_start(supervisor)` runs once the actors exist and before
// they start (a transport's begin_step). Waits until every local rank finished, a stage failed, or
// nothing arrived for `watchdog`, then stops the actors. Returns what failed ("" if nothing did).
// `on_failure(why)` runs as soon as something failed, before the actors are stopped: stopping waits for
// transfers in flight, which across processes only a peer's exit or the c10d timeout ends, so a
// multi-process caller reports and exits there (a stage error then stops the run at once).
std::string run_actor_step(caf::actor_system& sys, const schedule& plan, const std::vector<actors::executor*>& executors,
                           actors::transport& net, std::chrono::milliseconds watchdog,
                           const std::function<void(const caf::actor& supervisor)>& before_start = {},
                           const std::function<void(const std::string& why)>& on_failure = {});
// The trace of what `log` measured while running `plan`; its run is named "... measured (<how>)".
trace measured_trace(const schedule& plan, const event_log& log, const std::string& how);

// Runs steps of a schedule through the actors. Without a channel, every rank runs in this process.
class actor_pipeline {
public:
  // on_failure(why): called as soon as a step fails, before the actors are stopped (see run_actor_step);
  // a multi-process caller that reports and exits there stops its peers at once.
  actor_pipeline(caf::actor_system& sys, const schedule& compute_only,
                 std::vector<std::shared_ptr<stage_executor>> stages, tensor_channel* channel = nullptr,
                 std::chrono::milliseconds timeout = std::chrono::seconds(300),
                 std::function<void(const std::string& why)> on_failure = {});
  ~actor_pipeline();
  // Same contract as pipeline_engine::step.
  std::optional<double> step(const std::vector<torch::Tensor>& inputs, const torch::Tensor& target,
                             const std::vector<chunk_spec>& specs = {});
  trace events() const;
  std::map<int, std::uint64_t> activation_bytes() const { return log_.activation_bytes(); }

private:
  caf::actor_system& sys_;
  schedule plan_; // lowered
  std::vector<std::shared_ptr<stage_executor>> stages_;
  tensor_channel* channel_;
  std::chrono::milliseconds timeout_;
  std::function<void(const std::string&)> on_failure_;
  std::vector<int> local_ranks_;
  step_batch batch_;
  event_log log_;
  std::vector<std::unique_ptr<torch_executor>> executors_;
  std::unique_ptr<memory_transport> memory_;
  std::unique_ptr<gloo_actor_transport> gloo_;
};

} // namespace pippy
