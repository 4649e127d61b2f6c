#include "pippy/gpu/cuda_executor.hpp"

#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <caf/all.hpp>

#include "pippy/gpu/cuda_payload.hpp"
#include "pippy/runtime/clock.hpp"
#include "pippy/runtime/tensor_channel.hpp"

namespace pippy::gpu {

using tensors = std::vector<torch::Tensor>;

// The caching allocator's statistics; index 0 of each StatArray is StatType::AGGREGATE (all pools).
std::uint64_t allocated_bytes(c10::DeviceIndex device) {
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device);
  return static_cast<std::uint64_t>(stats.allocated_bytes[0].current);
}
std::uint64_t peak_allocated_bytes(c10::DeviceIndex device) {
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device);
  return static_cast<std::uint64_t>(stats.allocated_bytes[0].peak);
}
void reset_peak(c10::DeviceIndex device) { c10::cuda::CUDACachingAllocator::resetPeakStats(device); }

cuda_executor::cuda_executor(int rank, std::vector<std::shared_ptr<stage_executor>> stages, const step_batch& batch,
                             event_log& log, cuda_executor_options options)
    : compute_executor(rank, std::move(stages), batch, log, compute_thread::own), options_(options),
      stream_(c10::cuda::getStreamFromPool(options.high_priority_stream, options.device)) {}

cuda_executor::~cuda_executor() { stop_worker(); }

void cuda_executor::begin_step() {
  c10::cuda::CUDAGuard device(options_.device);
  // The batch was copied to the device on the driver thread's current stream; the rank's stream starts after it.
  c10::cuda::getCurrentCUDAStream(options_.device).synchronize();
  stream_.synchronize(); // idle, so the anchor runs (almost) at once
  anchor_ = timed_event();
  anchor_us_ = now_us();
  anchor_->record(stream_);
  std::lock_guard lock(timed_mu_);
  timed_.clear();
}

void cuda_executor::end_step() {
  c10::cuda::CUDAGuard device(options_.device);
  stream_.synchronize();
  std::vector<timed> done;
  {
    std::lock_guard lock(timed_mu_);
    done.swap(timed_);
  }
  if (!anchor_)
    return;
  for (const auto& t : done) {
    const double s = anchor_us_ + 1000.0 * anchor_->elapsed_time(*t.start);
    const double e = anchor_us_ + 1000.0 * anchor_->elapsed_time(*t.end);
    log_.add(trace_event{.rank = rank_, .act = t.act, .start_us = s, .end_us = e, .source = event_source::measured});
    log_.add(memory_sample{.rank = rank_, .t_us = e, .bytes = t.allocated_bytes});
  }
}

actors::completion cuda_executor::compute(const action& a, const actors::payload_data& input) {
  actors::completion c;
  c.act = a;
  c.start_us = now_us();
  timed t{.act = a, .start = timed_event(), .end = timed_event()};
  try {
    // Thread-local CUDA state, set here for this action (the worker is ours, but nothing else may rely
    // on what a previous action left behind).
    c10::cuda::CUDAGuard device_guard(options_.device);
    c10::cuda::CUDAStreamGuard stream_guard(stream_);
    t.start->record(stream_);
    auto r = run_stage_action(a, [&]() -> const tensors& { return consume_on(unwrap(input), stream_); });
    c.loss = r.loss;
    t.end->record(stream_);
    recorded(a); // after the end event, on this stream: the collective it posts follows the action's kernels
    if (r.output && !r.output->empty()) {
      c.output_bytes = bytes_of(*r.output);
      if (a.kind == action_kind::forward)
        log_.set_activation_bytes(a.stage, c.output_bytes);
      c.output = wrap(std::move(*r.output), t.end); // valid once the action's kernels ran
    }
    t.allocated_bytes = allocated_bytes(options_.device);
    if (options_.synchronous)
      t.end->synchronize();
  } catch (const std::exception& e) {
    c.error = failure_of(a, e, " on cuda:" + std::to_string(options_.device));
  }
  c.end_us = now_us(); // launch time; finish_step() logs the GPU times
  if (!c.error && t.end->isCreated()) {
    std::lock_guard lock(timed_mu_);
    timed_.push_back(std::move(t));
  }
  return c;
}

} // namespace pippy::gpu
