#pragma once
// actors::executor on a CUDA device, by composition over the CPU backend's stage_executor (libtorch
// autograd does the work; the tensors and modules just live on the GPU).
//   - One worker thread per rank (a compute_executor with compute_thread::own), so CAF handlers never
//     wait for the GPU; it sets
//     c10::cuda::CUDAGuard and CUDAStreamGuard around every action (the current device and stream are
//     thread-local and would not follow an actor across threads).
//   - Each rank computes on its own stream from the pool. An action's completion is sent as soon as its
//     kernels are queued: the CPU runs ahead and the outputs carry a CUDA event (cuda_tensors), which the
//     consumer's stream waits for, on the device. Only the last stage's loss (.item() inside
//     stage_executor::forward) synchronizes the CPU with its stream.
//   - Times: CUDA events around every action; end_step() turns them into wall-clock trace events
//     (anchored to one host timestamp per step), so the trace shows when the GPU ran the action, not
//     when it was launched. Memory: the caching allocator's allocated bytes (device-wide) after each action.
// Thread safety: run() may be called from any thread (one action of the rank at a time, per the
// executor contract); begin_step() and end_step() from the driver's thread (step_driver).
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAStream.h>

#include <memory>
#include <mutex>
#include <vector>

#include "pippy/actors/seams.hpp"
#include "pippy/runtime/executors.hpp"
#include "pippy/runtime/stage_executor.hpp"
#include "pippy/traces/trace.hpp"

namespace pippy::gpu {

struct cuda_executor_options {
  c10::DeviceIndex device = 0;
  bool high_priority_stream = false;
  // Wait for every action's kernels before sending its completion (debugging, or to compare the launch-
  // ahead mode against a synchronous one).
  bool synchronous = false;
};

class cuda_executor : public compute_executor {
public:
  // stages: by stage id, set for the stages of `rank` (their modules already on `options.device`). The
  // executor borrows `batch` (inputs and targets on the device) and `log`.
  cuda_executor(int rank, std::vector<std::shared_ptr<stage_executor>> stages, const step_batch& batch,
                event_log& log, cuda_executor_options options = {});
  ~cuda_executor() override;

  // Before the step's first run(): waits for the step's batch (copied on the driver thread's stream) and
  // records the timing anchor.
  void begin_step() override;
  // After the rank's last completion: waits for its stream, writes the step's GPU-timed trace events and
  // memory samples into the log. Throws if a CUDA error surfaced.
  void end_step() override;

  const c10::cuda::CUDAStream& stream() const { return stream_; }
  c10::DeviceIndex device() const { return options_.device; }

private:
  struct timed {
    action act;
    std::shared_ptr<at::cuda::CUDAEvent> start, end;
    std::uint64_t allocated_bytes = 0;
  };
  actors::completion compute(const action& a, const actors::payload_data& input) override;

  cuda_executor_options options_;
  c10::cuda::CUDAStream stream_;
  std::shared_ptr<at::cuda::CUDAEvent> anchor_;
  double anchor_us_ = 0;
  std::mutex timed_mu_;
  std::vector<timed> timed_; // this step's actions (worker thread; read by finish_step after it)
};

// Bytes the caching allocator has handed out on `device` now (its "allocated_bytes", all pools).
std::uint64_t allocated_bytes(c10::DeviceIndex device);
// Peak of the same since the last reset_peak(device).
std::uint64_t peak_allocated_bytes(c10::DeviceIndex device);
void reset_peak(c10::DeviceIndex device);

} // namespace pippy::gpu
