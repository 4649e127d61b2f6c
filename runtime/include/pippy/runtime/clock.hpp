#pragma once
// The runtime's one clock: wall time in microseconds since the epoch. The system clock, not a steady
// one, so that the ranks of a job in several processes of one host share a time axis in the trace.
#include <chrono>

namespace pippy {

inline double now_us() {
  using namespace std::chrono;
  return static_cast<double>(duration_cast<nanoseconds>(system_clock::now().time_since_epoch()).count()) / 1000.0;
}

} // namespace pippy
