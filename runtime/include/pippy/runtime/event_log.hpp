#pragma once
// Thread-safe sink of the measured events of one process: the executors and transports of every local
// rank add to it while a step runs; the driver reads it between steps.
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "pippy/core/schedule.hpp"
#include "pippy/traces/trace.hpp"

namespace pippy {

class event_log {
public:
  void add(const trace_event& e);
  void add(const memory_sample& m);
  std::vector<trace_event> all() const;
  std::vector<memory_sample> memory() const;
  void set_activation_bytes(int stage, std::uint64_t bytes);
  std::map<int, std::uint64_t> activation_bytes() const;
  // Forgets the events and samples so far (a long job that only watches the latest steps).
  void clear();
  // Also hands each event and sample to these as it is added (from the adding thread, after it is
  // stored; they must not block). Set before the first add.
  void forward_to(std::function<void(const trace_event&)> on_event, std::function<void(const memory_sample&)> on_memory);

private:
  mutable std::mutex mu_;
  std::vector<trace_event> events_;
  std::vector<memory_sample> memory_;
  std::map<int, std::uint64_t> activation_bytes_;
  std::function<void(const trace_event&)> on_event_;
  std::function<void(const memory_sample&)> on_memory_;
};

// The trace of what `log` measured while running `plan`; its run is named "... measured (<how>)".
trace measured_trace(const schedule& plan, const event_log& log, const std::string& how);

} // namespace pippy
