#include "pippy/gpu/nccl_collectives.hpp"

#include <c10/cuda/CUDAGuard.h>

#include <memory>
#include <thread>

#include "pippy/core/error.hpp"
#include "pippy/core/failure.hpp" // peer_error
#include "pippy/runtime/clock.hpp"

namespace pippy::gpu {

ncclDataType_t nccl_type_of(c10::ScalarType type) {
  switch (type) {
  case c10::ScalarType::Float: return ncclFloat32;
  case c10::ScalarType::Double: return ncclFloat64;
  case c10::ScalarType::Half: return ncclFloat16;
  case c10::ScalarType::BFloat16: return ncclBfloat16;
  case c10::ScalarType::Int: return ncclInt32;
  case c10::ScalarType::Long: return ncclInt64;
  case c10::ScalarType::Char: return ncclInt8;
  case c10::ScalarType::Byte: return ncclUint8;
  default: throw input_error(std::string("NCCL has no type for dtype ") + c10::toString(type));
  }
}

nccl_collectives::nccl_collectives(c10d::Store& store, const std::string& key, int replica, int replicas,
                                   c10::DeviceIndex device, std::chrono::milliseconds timeout)
    : owned_(device), comm_(store, key, replica, replicas, device),
      stream_(c10::cuda::getStreamFromExternal(owned_.raw, device)), timeout_(timeout) {}

void nccl_collectives::check(const torch::Tensor& t, const char* what) const {
  if (!t.defined() || !t.is_cuda() || t.get_device() != comm_.device() || !t.is_contiguous())
    throw input_error(std::string("NCCL ") + what + ": each tensor must be contiguous on cuda:" +
                      std::to_string(comm_.device()) + " (got " + (t.defined() ? t.toString() : "an undefined tensor") +
                      (t.defined() ? " on " + t.device().str() : "") + ")");
  nccl_type_of(t.scalar_type());
}

std::shared_future<double> nccl_collectives::post(const std::vector<torch::Tensor>& tensors, const char* what,
                                                const std::function<void(ncclComm_t, cudaStream_t)>& collective) {
  for (const auto& t : tensors)
    check(t, what);
  c10::cuda::CUDAGuard guard(comm_.device());
  auto done = std::make_shared<at::cuda::CUDAEvent>();
  {
    std::lock_guard lock(post_mu_);
    at::cuda::CUDAEvent made; // the caller's kernels that wrote the tensors
    made.record(c10::cuda::getCurrentCUDAStream(comm_.device()));
    made.block(stream_);
    for (const auto& t : tensors)
      t.record_stream(stream_);
    nccl_check(ncclGroupStart(), "ncclGroupStart");
    collective(comm_.get(), stream_.stream());
    nccl_check(ncclGroupEnd(), (std::string("ncclGroupEnd (") + what + ")").c_str(), comm_.get());
    done->record(stream_);
  }
  // Waited for by whoever calls get() first (U's gate), on its own thread: the host polls the event, so a
  // lost replica's NCCL error or silence ends the wait instead of hanging it. The time it gives is when
  // that poll saw the event: no earlier than the collective's end nor than the first get() (U's gate),
  // so an overlapped collective that ended before looks as long as the wait until U asked.
  return std::async(std::launch::deferred,
                    [this, done, keep = tensors, what = std::string(what)] {
                      const auto since = std::chrono::steady_clock::now();
                      auto pause = std::chrono::microseconds(20);
                      while (!done->query()) {
                        std::string why;
                        if (const ncclResult_t r = comm_.async_error(); r != ncclSuccess && r != ncclInProgress)
                          why = std::string("NCCL error: ") + ncclGetErrorString(r);
                        else if (std::chrono::steady_clock::now() - since > timeout_)
                          why = "not done within " + std::to_string(timeout_.count()) + " ms";
                        if (!why.empty()) {
                          comm_.abort();
                          throw peer_error(-1, "replica " + std::to_string(comm_.rank()) + " of " +
                                                   std::to_string(comm_.size()) + ": the replicas' " + what + " failed (" +
                                                   why + "): a replica died or hangs");
                        }
                        std::this_thread::sleep_for(pause);
                        pause = std::min<std::chrono::microseconds>(2 * pause, std::chrono::milliseconds(1));
                      }
                      return now_us();
                    })
      .share();
}

std::shared_future<double> nccl_collectives::allreduce_sum_async(std::vector<torch::Tensor> tensors) {
  return post(tensors, "all-reduce", [&](ncclComm_t comm, cudaStream_t stream) {
    for (const auto& t : tensors)
      nccl_check(ncclAllReduce(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()), nccl_type_of(t.scalar_type()),
                               ncclSum, comm, stream),
                 "ncclAllReduce", comm);
  });
}

std::shared_future<double> nccl_collectives::reduce_scatter_sum_async(torch::Tensor input, torch::Tensor output) {
  if (input.numel() != output.numel() * world_size() || input.scalar_type() != output.scalar_type())
    throw input_error("NCCL reduce-scatter: the input must hold " + std::to_string(world_size()) +
                      " parts of the output's size and dtype (got " + std::to_string(input.numel()) + " and " +
                      std::to_string(output.numel()) + " elements)");
  return post({input, output}, "reduce-scatter", [&](ncclComm_t comm, cudaStream_t stream) {
    nccl_check(ncclReduceScatter(input.data_ptr(), output.data_ptr(), static_cast<size_t>(output.numel()),
                                 nccl_type_of(output.scalar_type()), ncclSum, comm, stream),
               "ncclReduceScatter", comm);
  });
}

torch::Tensor nccl_collectives::allgather(const torch::Tensor& mine) {
  const auto in = mine.contiguous();
  auto out = torch::empty({world_size() * in.numel()}, in.options());
  post({in, out}, "all-gather", [&](ncclComm_t comm, cudaStream_t stream) {
    nccl_check(ncclAllGather(in.data_ptr(), out.data_ptr(), static_cast<size_t>(in.numel()), nccl_type_of(in.scalar_type()),
                             comm, stream),
               "ncclAllGather", comm);
  }).get();
  return out;
}

} // namespace pippy::gpu
