#include "gloo_backend.hpp"

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

#include <cstdlib>
#include <mutex>

#include "pippy/runtime/environment.hpp"

namespace pippy {

namespace {
bool is_loopback(const std::string& addr) {
  return addr == "127.0.0.1" || addr == "localhost" || addr == "::1";
}
} // namespace

c10::intrusive_ptr<c10d::Backend> make_gloo_backend(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                                                    std::chrono::milliseconds timeout, const std::string& master_addr) {
  // c10d 2.11's flight recorder (FlightRecorder::recordWithResetEnabled, which every Gloo collective and
  // send calls) adds a group to its std::map before it takes its lock: two groups of one process making
  // their first call at once corrupt the map. The tests' two ranks in one process segfaulted there (1
  // in about 30 runs of a test that makes four pairs of groups), and a pp x dp process holds its
  // pipeline's group and its replicas' group. We read none of its records: it is off unless the user
  // set TORCH_FR_BUFFER_SIZE, before the first group reads it.
  static std::once_flag recorder_off;
  std::call_once(recorder_off, [] { ::setenv("TORCH_FR_BUFFER_SIZE", "0", /*overwrite=*/0); });
  auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
  auto make_device = [&] {
    if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"))
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    else if (is_loopback(master_addr))
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    else
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  };
  // The device starts Gloo's socket loop thread. When another thread holds a pair's lock, that thread
  // spins (it tries the lock and polls again, the socket still readable); on a rank bound to one core,
  // woken while the holder posts a transfer, it preempted the holder and spun through its whole time
  // slice: 2-3 ms, in 4 of 39 zbv steps at a step's first transfer. At nice 19 it still did after a long
  // sleep (perf's sched_switch: a sender preempted mid-post, the loop thread on the core 4.5 ms, until the
  // tick; 2-5 ms sends in 2-5 of 40 interleaved-1f1b steps). As SCHED_BATCH it waits for the tick instead
  // of preempting the holder, and still preempts the compute thread, which yields (SCHED_IDLE) under the
  // same setting.
  if (compute_yields())
    start_threads_at_lowest_normal_priority(make_device);
  else
    make_device();
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, opts);
}

} // namespace pippy
