#pragma once
// The actors' executor seam (pippy/actors/seams.hpp) on libtorch.
//   compute_executor  runs a rank's compute actions on its stage executors, one at a time, in order:
//                     either in the stage actor's own thread, returning the completion (no hand-off:
//                     the default on CPU), or on a worker thread of its own that sends the completion
//                     back (compute never holds a CAF worker: for a compute thread that must yield to
//                     the transport's threads, and for gpu/'s cuda_executor, whose CUDA state is
//                     thread-local).
//   torch_executor    compute_executor on CPU tensors; its payloads are `cpu_tensors`.
#include <torch/torch.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "pippy/actors/seams.hpp"
#include "pippy/runtime/event_log.hpp"
#include "pippy/runtime/microbatch.hpp"
#include "pippy/runtime/stage_executor.hpp"

namespace pippy {

// What the CPU backend's payloads hold: the tensors that cross a stage boundary.
using cpu_tensors = std::vector<torch::Tensor>;

// Where a compute_executor runs its actions.
enum class compute_thread : std::uint8_t {
  caller, // in the thread that calls run() (the stage actor's CAF worker)
  own,    // on a worker thread of the executor's own
};

// What a compute action produced on its stage: the tensors to hand on (none after the last stage's
// forward, the first stage's backward, W and U), and the micro-batch's loss after the last stage's forward.
struct stage_action_result {
  std::optional<std::vector<torch::Tensor>> output;
  std::optional<double> loss;
  std::optional<double> began_us; // U: when its own work began, after its step gate's wait
};

class compute_executor : public actors::executor {
public:
  ~compute_executor() override;
  compute_executor(const compute_executor&) = delete;
  compute_executor& operator=(const compute_executor&) = delete;
  std::optional<actors::completion> run(const action& a, actors::payload_data input, const caf::actor& reply_to) final;
  // The step's lifecycle, on the driver's thread: before the rank's first action of a step, and after
  // its last completion.
  virtual void begin_step() {}
  virtual void end_step() {}

protected:
  // stages: by stage id, set for the stages of `rank`. The executor borrows `batch` and `log`. With
  // compute_thread::own, starts the worker.
  compute_executor(int rank, std::vector<std::shared_ptr<stage_executor>> stages, const step_batch& batch,
                   event_log& log, compute_thread where);
  // Lets the worker run the actions still queued, then joins it. Idempotent. A derived class calls it
  // first in its destructor (the worker may still be inside compute()).
  void stop_worker();
  // Runs compute action `a` on its stage executor with the step's batch; `received()` gives the tensors
  // from the neighbouring stage and is called only when the action takes some. Throws for a stage that
  // the rank lacks or an action that is not compute.
  stage_action_result run_stage_action(const action& a,
                                       const std::function<const std::vector<torch::Tensor>&()>& received) const;
  // The failure of action `a` that threw `e`: out_of_memory, type_mismatch or compute_error.
  failure failure_of(const action& a, const std::exception& e, const std::string& where = {}) const;
  // Once `a` ran and its time was taken: stage_executor::weight_grads_recorded.
  void recorded(const action& a) const { stages_.at(static_cast<std::size_t>(a.stage))->weight_grads_recorded(a); }

  const int rank_;
  const std::vector<std::shared_ptr<stage_executor>> stages_;
  const step_batch& batch_;
  event_log& log_;

private:
  // Runs `a`; never throws (a failure goes into the completion).
  virtual actors::completion compute(const action& a, const actors::payload_data& input) = 0;
  void loop();

  struct job {
    action act;
    actors::payload_data input;
    caf::actor reply_to;
  };
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<job> jobs_;
  bool stop_ = false;
  std::thread worker_; // with compute_thread::own
};

class torch_executor : public compute_executor {
public:
  // sample_memory: log the process heap after each action (when the process hosts only this rank).
  torch_executor(int rank, std::vector<std::shared_ptr<stage_executor>> stages, const step_batch& batch,
                 event_log& log, compute_thread where, bool sample_memory = false);
  ~torch_executor() override;

private:
  actors::completion compute(const action& a, const actors::payload_data& input) override;

  bool sample_memory_;
};

} // namespace pippy
