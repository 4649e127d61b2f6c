#pragma once
// The GPU backend of the step driver (runtime's step_driver, the same actors and lifecycle as on CPU):
// one cuda_executor per local rank, and
//   - without a store: every rank in this process, all on `device` (one GPU), payloads handed over in
//     memory without copies (runtime's memory_transport; the CUDA events in the payloads order the ranks'
//     streams);
//   - with a store: this process is rank `rank`, on its own GPU, NCCL between ranks.
#include <c10/util/intrusive_ptr.h>

#include <chrono>

#include "pippy/gpu/nccl_transport.hpp"
#include "pippy/runtime/step_driver.hpp"

namespace pippy::gpu {

struct cuda_backend_options {
  c10::DeviceIndex device = 0;                 // this process's GPU
  c10::intrusive_ptr<c10d::Store> store;       // null: every rank in this process
  int rank = 0;                                // with a store
  std::chrono::milliseconds timeout = std::chrono::seconds(300); // a transfer pending longer fails the step
  delivery deliver = delivery::on_post;
  bool synchronous_actions = false;            // cuda_executor_options::synchronous
};

// Each step's inputs and target may be on the CPU or the device: the driver moves them to the device.
step_backend cuda_backend(cuda_backend_options options = {});

} // namespace pippy::gpu
