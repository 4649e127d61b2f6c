#pragma once
// The real backend behind the actors' two seams (pippy/actors/seams.hpp): the same stage and
// micro-batch actors that the simulator drives in virtual time run real training here.
//   torch_executor      actors::executor on libtorch autograd (stage_executor), one worker thread per
//                       rank, so compute never blocks a CAF handler.
//   memory_transport    actors::transport when every rank lives in this process (tensors handed over).
//   gloo_actor_transport actors::transport over c10d Gloo: sends are posted from the handler (isend),
//                       a receiver thread walks the rank's RECV actions in order, waits for each and
//                       delivers it to the stage actor as a `payload`.
//   actor_pipeline      one training step = spawn the actors of the lowered schedule, start, wait for
//                       every local rank (or a failure), stop.
#include <torch/torch.h>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
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

// Per-step inputs of the first stage and targets/loss scales of the last, by micro-batch.
struct step_batch {
  std::vector<std::vector<torch::Tensor>> inputs;
  std::vector<torch::Tensor> targets;
  std::vector<double> scales;
};

class torch_executor : public actors::executor {
public:
  // stages: by stage id, set for the stages of `rank`. The executor borrows `batch` and `log`.
  // sample_memory: log the process heap after each action (when the process hosts only this rank).
  torch_executor(int rank, std::vector<std::shared_ptr<stage_executor>> stages, const step_batch& batch,
                 event_log& log, bool sample_memory = false);
  ~torch_executor() override;
  void run(const action& a, actors::opaque input, const caf::actor& reply_to) override;

private:
  struct job {
    action act;
    actors::opaque input;
    caf::actor reply_to;
  };
  void loop();
  void execute(job& j);

  int rank_;
  std::vector<std::shared_ptr<stage_executor>> stages_;
  const step_batch& batch_;
  event_log& log_;
  bool sample_memory_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<job> jobs_;
  bool stop_ = false;
  std::thread worker_;
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

// Runs steps of a schedule through the actors. Without a channel, every rank runs in this process.
class actor_pipeline {
public:
  actor_pipeline(caf::actor_system& sys, const schedule& compute_only,
                 std::vector<std::shared_ptr<stage_executor>> stages, tensor_channel* channel = nullptr,
                 std::chrono::milliseconds timeout = std::chrono::seconds(300));
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
  std::vector<int> local_ranks_;
  step_batch batch_;
  event_log log_;
  std::vector<std::unique_ptr<torch_executor>> executors_;
  std::unique_ptr<memory_transport> memory_;
  std::unique_ptr<gloo_actor_transport> gloo_;
};

} // namespace pippy
