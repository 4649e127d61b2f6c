#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "pippy/core/action.hpp"

namespace pippy {

enum class event_source : std::uint8_t { simulated, measured };

// One action as it ran (or was predicted to run) on a rank. Compute actions sit on stream 0 of their
// rank; a transfer (SEND_F/SEND_B) is recorded on the sending rank's stream 1 with its peer (a measured
// trace also records each RECV on the receiver's), and a stage's collectives over its data-parallel
// replicas (REDUCE_GRAD) on its rank's stream 1 without one.
struct trace_event {
  int rank = 0;
  action act;
  double start_us = 0;
  double end_us = 0;
  std::uint64_t bytes = 0; // payload of a transfer or of REDUCE_GRAD; 0 for compute
  int peer = -1;           // receiving rank of a SEND (sending rank of a RECV); -1 otherwise
  event_source source = event_source::simulated;

  double duration_us() const { return end_us - start_us; }
  friend bool operator==(const trace_event&, const trace_event&) = default;
};

// Bytes a rank holds (parameters, optimizer state, activations) from t_us on.
struct memory_sample {
  int rank = 0;
  double t_us = 0;
  std::uint64_t bytes = 0;
  friend bool operator==(const memory_sample&, const memory_sample&) = default;
};

// A point in time on a rank worth pointing at (the simulator's "OOM" at the failing action): written as
// a Chrome instant event ("ph":"i", "s":"p", "cat":"marker", pid = rank, args.detail).
struct trace_marker {
  int rank = 0;
  double t_us = 0;
  std::string name;   // short label ("OOM")
  std::string detail; // the full message
  friend bool operator==(const trace_marker&, const trace_marker&) = default;
};

// Everything one run emits, simulated or measured. Not thread-safe: one writer at a time.
struct trace {
  std::string run;  // a name for the run ("1f1b R=4 M=8 simulated")
  int num_ranks = 0;
  // pp x dp: the data-parallel replicas whose ranks it holds, rank = replica x (num_ranks / replicas) + its
  // rank in the replica (the runtime's global rank). Their actions repeat once per replica: the metrics'
  // dependencies stay inside a replica. Divides num_ranks.
  int replicas = 1;
  // The ranks of one replica, 0 when the trace is one pipeline (or its replicas do not divide its ranks).
  int replica_ranks() const { return replicas > 1 && num_ranks % replicas == 0 ? num_ranks / replicas : 0; }
  std::vector<trace_event> events;
  std::vector<memory_sample> memory;
  std::vector<trace_marker> markers;
  friend bool operator==(const trace&, const trace&) = default;
};

} // namespace pippy
