#pragma once
// The actors' transport seam (pippy/actors/seams.hpp) for the CPU backend.
//   memory_transport  every rank in this process: payloads are handed to the receiving stage actor as
//                     they are (no copies); nothing can fail.
//   gloo_transport    over c10d Gloo (tensor_channel): sends are posted from the handler (isend); a
//                     receiver thread, started once, walks the rank's RECV actions of each step in order,
//                     waits for each and delivers it to the stage actor as a `payload` of cpu_tensors.
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "pippy/actors/seams.hpp"
#include "pippy/core/schedule.hpp"
#include "pippy/runtime/event_log.hpp"
#include "pippy/runtime/tensor_channel.hpp"

namespace pippy {

class memory_transport : public actors::transport {
public:
  void attach(int stage, const caf::actor& stage_actor) override;
  void begin_step(const caf::actor&) override {}
  void send(actors::payload p, const caf::actor& sender) override;
  std::optional<failure> end_step() override { return std::nullopt; }
  bool blocking() const override { return false; }

private:
  std::mutex mu_;
  std::vector<caf::actor> stages_;
};

class gloo_transport : public actors::transport {
public:
  // lowered: the schedule with communication; the transport serves rank channel.transport().rank().
  gloo_transport(tensor_channel& channel, const schedule& lowered, event_log& log);
  ~gloo_transport() override;
  void attach(int stage, const caf::actor& stage_actor) override;
  // Starts the receiver thread on one step's receives (a thread started per step cost 40-140 us of the
  // step's start); a lost peer is reported to `supervisor` as stage_failed.
  void begin_step(const caf::actor& supervisor) override;
  // Then the receiver posts the next step's receives that come before this rank's first compute action
  // (tensor_channel::post_step_ahead) once this step's are in.
  void another_step_follows() override;
  void send(actors::payload p, const caf::actor& sender) override;
  // Waits for the receiver's step and this step's sends: the first failure (peer_lost, naming the peer).
  std::optional<failure> end_step() override;
  bool blocking() const override { return false; }

private:
  tensor_channel& channel_;
  const schedule& plan_;
  event_log& log_;
  int rank_;
  std::mutex mu_;
  std::vector<caf::actor> stages_;
  std::optional<failure> send_error_;
  // The receiver's steps: begin_step posts one, end_step waits until it is done.
  void receive_loop();
  bool receive_step(const caf::actor& supervisor); // false: a receive failed (reported)
  std::mutex step_mu_;
  std::condition_variable step_cv_;
  caf::actor supervisor_;
  bool step_posted_ = false, step_done_ = true, stop_ = false;
  bool another_follows_ = false, post_ahead_ = false; // said for the next step; for the posted one
  std::thread receiver_; // started by the constructor, stopped and joined by the destructor
};

} // namespace pippy
