#pragma once
// The message protocol of stage and micro-batch actors, in one screen. Messages are values (copyable);
// the `data` they carry is shared, never copied, and must not be modified after it is sent.
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <typeinfo>

#include "pippy/core/action.hpp"
#include "pippy/core/failure.hpp"

namespace pippy::actors {

// The readable name of a C++ type (demangled).
std::string type_name(const std::type_info& type);

// Backend data that travels with a message (CPU tensors, CUDA tensors with their ready event...); the
// simulator leaves it empty. Owned jointly by whoever holds it; immutable once sent. It remembers the
// type it was made from: as<T>() on anything else throws failure_error (type_mismatch) naming both
// types, so a CPU payload reaching a CUDA executor is an error, never a misread.
class payload_data {
public:
  payload_data() = default;
  template <class T>
  static payload_data of(T value) {
    payload_data d;
    d.ptr_ = std::make_shared<const T>(std::move(value));
    d.type_ = &typeid(T);
    return d;
  }
  explicit operator bool() const { return ptr_ != nullptr; }
  // The held value; `none` when empty.
  template <class T>
  const T& as(const T& none) const {
    if (!ptr_)
      return none;
    if (*type_ != typeid(T))
      throw failure_error({failure_kind::type_mismatch,
                           "payload holds " + type_name(*type_) + ", expected " + type_name(typeid(T))});
    return *static_cast<const T*>(ptr_.get());
  }
  template <class T>
  const T* get_if() const {
    return ptr_ && *type_ == typeid(T) ? static_cast<const T*>(ptr_.get()) : nullptr;
  }

private:
  std::shared_ptr<const void> ptr_;
  const std::type_info* type_ = &typeid(void);
};

// start_atom: the pipeline sends it to the stage actor that owns its rank's first action.
using start_atom = caf::atom_constant<caf::atom("pp_start")>;

// What travels from one stage to the next: F's output (kind send_f) or I/B's input gradient (send_b).
// Transport -> receiving stage actor; also stage -> stage on one rank (in-memory hand-over).
struct payload {
  int src_stage = -1;
  int dst_stage = -1;
  int microbatch = no_microbatch;
  action_kind kind = action_kind::send_f; // send_f: activation forward; send_b: gradient backward
  std::uint64_t bytes = 0;
  payload_data data;
};

// Executor -> stage actor, exactly once per executor::run. Times in microseconds on the executor's
// clock (virtual in the simulator, wall clock in the real backend).
struct completion {
  action act;
  double start_us = 0;
  double end_us = 0;
  payload_data output;         // F: activation for the next stage; I/B: gradient for the previous one
  std::uint64_t output_bytes = 0;
  std::optional<double> loss;  // F of the last stage, where the backend computes one
  std::optional<failure> error; // the action failed (out of memory, backend error)
};

// Transport -> sending stage actor, only for blocking transports: the transfer is over.
struct send_done {
  action act;
  double end_us = 0;
  std::optional<failure> error;
};

// Stage actor -> stage actor of the same rank: the rank's list continues at `position`, which is yours.
struct turn {
  std::size_t position = 0;
  double last_end_us = 0; // end of the rank's latest compute action so far
};

// Stage actor -> micro-batch actor, once per stage and micro-batch: when the stage is done with it
// (its B, or its W, ended). One message per stage rather than per action keeps tracking cheap.
struct progress {
  int stage = 0;
  int microbatch = 0;
  double forward_start_us = 0;
  double forward_end_us = 0;
  double input_grad_end_us = 0;  // end of I, or of B
  double weight_grad_end_us = 0; // end of W, or of B
  std::optional<double> loss;    // from F, where the backend computes one (last stage)
};

// To the supervisor (whoever spawned the pipeline).
struct rank_finished { // the rank ran its whole list
  int rank = 0;
  double end_us = 0;   // end of its last compute action
};
struct stage_failed {  // an action failed; the stage actor quits
  int rank = 0;
  action act;
  failure error;
};
struct microbatch_finished { // every stage ran F and all backward work on it
  int microbatch = 0;
  double end_us = 0;
  std::optional<double> loss;
};

} // namespace pippy::actors

// Local-only messages (the real backend moves tensors with c10d, not CAF serialization).
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(pippy::actors::payload)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(pippy::actors::completion)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(pippy::actors::send_done)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(pippy::actors::turn)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(pippy::actors::progress)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(pippy::actors::rank_finished)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(pippy::actors::stage_failed)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(pippy::actors::microbatch_finished)
