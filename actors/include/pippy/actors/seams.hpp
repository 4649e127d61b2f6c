#pragma once
// The two seams between the (shared) actor code and a backend: the simulator implements them in
// virtual time, the real backend with libtorch autograd and c10d. Thread safety: the actors call them
// from their handlers, possibly from several CAF worker threads at once (one call per actor at a
// time); an implementation shared by several actors must be thread-safe. Ownership: the pipeline
// borrows them; they must outlive every actor of the pipeline.
#include <caf/actor.hpp>

#include <optional>

#include "pippy/actors/protocol.hpp"

namespace pippy::actors {

// Runs the compute actions (F, I, W, B, U) of the stages of one rank.
class executor {
public:
  virtual ~executor() = default;
  // Runs `a`. `input` is what the action consumes: for F of a stage > 0 the activation received from
  // the previous stage, for I/B of a stage < last the gradient received from the next one, else empty.
  // Either the action runs in the caller's thread and its completion is returned, or run returns
  // nothing at once and exactly one `completion` is later sent to `reply_to` (from any thread). Both
  // also on failure (with `error` set). The rank's actions are started one at a time, in schedule
  // order: run is not called again for this rank before the previous completion arrived.
  virtual std::optional<completion> run(const action& a, payload_data input, const caf::actor& reply_to) = 0;
};

// Carries payloads between stages on different ranks, step by step: begin_step, the step's sends and
// deliveries, end_step.
class transport {
public:
  virtual ~transport() = default;
  // Registers the actor of a stage living in this process; payloads for it are delivered to it as
  // `payload` messages. Called by spawn_pipeline before any send.
  virtual void attach(int stage, const caf::actor& stage_actor) = 0;
  // Before the step's first send: a transport that fails between sends (a lost peer) reports it to
  // `supervisor` as stage_failed.
  virtual void begin_step(const caf::actor& supervisor) = 0;
  // Said before begin_step when another step will follow this one: a transport may then post the next
  // step's first receives as soon as this step's are in, so that a peer already in the next step finds
  // them posted. Without it nothing is posted past the step (a receive never matched would stay posted).
  virtual void another_step_follows() {}
  // After every local rank finished the step: waits until this step's transfers are over; what failed.
  virtual std::optional<failure> end_step() = 0;
  // Starts carrying `p` to the actor of stage p.dst_stage and returns at once. The receiving actor
  // gets exactly one `payload` message. When blocking() is true, the sender waits for a `send_done`
  // sent to `sender` once the transfer is over; otherwise it goes on at once (isend semantics).
  virtual void send(payload p, const caf::actor& sender) = 0;
  virtual bool blocking() const = 0;
};

} // namespace pippy::actors
