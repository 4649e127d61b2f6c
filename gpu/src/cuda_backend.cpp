#include "pippy/gpu/cuda_backend.hpp"

#include "pippy/gpu/cuda_executor.hpp"
#include "pippy/runtime/transports.hpp"

namespace pippy::gpu {

step_backend cuda_backend(cuda_backend_options o) {
  step_backend b{.name = "cuda", .device = torch::Device(torch::kCUDA, o.device)};
  if (o.store)
    b.rank = o.rank;
  b.make_executor = [o](int rank, std::vector<std::shared_ptr<stage_executor>> stages, const step_batch& batch,
                        event_log& log) -> std::unique_ptr<compute_executor> {
    return std::make_unique<cuda_executor>(rank, std::move(stages), batch, log,
                                           cuda_executor_options{.device = o.device, .synchronous = o.synchronous_actions});
  };
  b.make_transport = [o](const schedule& lowered, event_log& log) -> std::unique_ptr<actors::transport> {
    if (!o.store)
      return std::make_unique<memory_transport>(); // payloads pass as they are: no copies
    return std::make_unique<nccl_transport>(o.store, o.rank, lowered.shape.num_ranks, lowered, log,
                                            nccl_options{.device = o.device, .timeout = o.timeout, .deliver = o.deliver});
  };
  return b;
}

} // namespace pippy::gpu
