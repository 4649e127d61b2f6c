#pragma once
// What travels between stages on the GPU backend (an actors::payload_data of cuda_tensors: a CPU payload
// reaching a CUDA executor is a type_mismatch failure, not a misread): the boundary tensors, on the
// device, and the CUDA event after which they are valid. Nothing is copied when a payload is handed
// from one stage to another in the same process (same rank, or another rank on the same GPU): the
// consumer makes its stream wait for the event (on the GPU, the CPU does not block) and records its
// stream on the tensors so that the caching allocator does not reuse their memory too early.
// Immutable once wrapped; shared by whoever holds the payload; thread-safe to read.
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/torch.h>

#include <memory>
#include <vector>

#include "pippy/actors/protocol.hpp"

namespace pippy::gpu {

struct cuda_tensors {
  std::vector<torch::Tensor> tensors;
  // Recorded on the producing stream after the tensors were written; null: valid at once.
  std::shared_ptr<at::cuda::CUDAEvent> ready;
};

inline actors::payload_data wrap(std::vector<torch::Tensor> t, std::shared_ptr<at::cuda::CUDAEvent> ready) {
  return actors::payload_data::of(cuda_tensors{std::move(t), std::move(ready)});
}

// The payload's CUDA tensors (none when empty); throws failure_error (type_mismatch) for anything else.
inline const cuda_tensors& unwrap(const actors::payload_data& o) {
  static const cuda_tensors none;
  return o.as<cuda_tensors>(none);
}

// Makes `stream` wait (on the device) until `in` is ready, and tells the caching allocator that the
// tensors are used on `stream`. Returns the tensors.
inline const std::vector<torch::Tensor>& consume_on(const cuda_tensors& in, const c10::cuda::CUDAStream& stream) {
  if (in.ready)
    in.ready->block(stream);
  for (const auto& t : in.tensors)
    if (t.defined() && t.is_cuda())
      t.record_stream(stream);
  return in.tensors;
}

// A timing-capable event (at::cuda::CUDAEvent defaults to cudaEventDisableTiming).
inline std::shared_ptr<at::cuda::CUDAEvent> timed_event() {
  return std::make_shared<at::cuda::CUDAEvent>(cudaEventDefault);
}
// An ordering-only event (cheaper).
inline std::shared_ptr<at::cuda::CUDAEvent> sync_event() {
  return std::make_shared<at::cuda::CUDAEvent>(cudaEventDisableTiming);
}

} // namespace pippy::gpu
