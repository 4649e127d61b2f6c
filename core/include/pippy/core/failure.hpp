#pragma once
// Why a step failed, as a value: a kind that callers branch on, a message for people, and the lost rank
// where one is known. Carried by the actors' completion and stage_failed messages, returned by the step
// driver, and thrown (failure_error) only where an API has no other way out.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace pippy {

enum class failure_kind : std::uint8_t {
  compute_error,  // an action threw (libtorch, CUDA, the model)
  out_of_memory,  // an action did not fit (the simulator's cap, or the allocator)
  peer_lost,      // a rank of another process died or closed its link
  timeout,        // nothing arrived within the timeout
  shape_mismatch, // the ranks disagree on a transfer's shapes or dtypes
  type_mismatch,  // a payload reached an executor that expects another kind of data
};

std::string_view to_string(failure_kind kind);

struct failure {
  failure_kind kind = failure_kind::compute_error;
  std::string message;
  int peer = -1; // the lost or silent rank, where known

  std::string describe() const { return std::string(to_string(kind)) + ": " + message; }
};

class failure_error : public std::runtime_error {
public:
  explicit failure_error(failure f) : std::runtime_error(f.message), failure_(std::move(f)) {}
  const failure& what_failed() const { return failure_; }

private:
  failure failure_;
};

// A failure_error of kind peer_lost: a peer cannot be reached (died, closed its link, timed out); the
// message names both ranks. Callers catch it to exit at once (peers wait on this process until it does).
class peer_error : public failure_error {
public:
  peer_error(int peer, const std::string& what) : failure_error({failure_kind::peer_lost, what, peer}) {}
  int peer() const { return what_failed().peer; }
};

// The exit status of a rank that stopped because it lost a peer: `pippy run` takes such a rank for a witness,
// not the cause, and blames the rank that failed for a reason of its own.
inline constexpr int lost_peer_exit_status = 3;

} // namespace pippy
