#include "pippy/runtime/transports.hpp"

#include <caf/all.hpp>

#include <utility>

#include "pippy/runtime/clock.hpp"
#include "pippy/runtime/executors.hpp" // cpu_tensors

namespace pippy {

namespace {
// A transfer that threw: its own failure where it carries one, else a lost peer.
failure transfer_failure(const std::exception& e, int peer) {
  if (const auto* f = dynamic_cast<const failure_error*>(&e))
    return f->what_failed();
  return failure{failure_kind::peer_lost, e.what(), peer};
}
} // namespace

// ---- memory_transport

void memory_transport::attach(int stage, const caf::actor& stage_actor) {
  std::lock_guard lock(mu_);
  if (stages_.size() <= static_cast<std::size_t>(stage))
    stages_.resize(static_cast<std::size_t>(stage) + 1);
  stages_[static_cast<std::size_t>(stage)] = stage_actor;
}

void memory_transport::send(actors::payload p, const caf::actor&) {
  caf::actor dst;
  {
    std::lock_guard lock(mu_);
    dst = stages_.at(static_cast<std::size_t>(p.dst_stage));
  }
  caf::anon_send(dst, std::move(p));
}

// ---- gloo_transport

gloo_transport::gloo_transport(tensor_channel& channel, const schedule& lowered, event_log& log)
    : channel_(channel), plan_(lowered), log_(log), rank_(channel.transport().rank()) {
  stages_.resize(static_cast<std::size_t>(lowered.shape.num_stages()));
  receiver_ = std::thread([this] { receive_loop(); });
}

gloo_transport::~gloo_transport() {
  {
    std::lock_guard lock(step_mu_);
    stop_ = true;
  }
  step_cv_.notify_all();
  receiver_.join(); // after a failure, once its receive has failed too (the transport's timeout)
}

void gloo_transport::attach(int stage, const caf::actor& stage_actor) {
  std::lock_guard lock(mu_);
  stages_.at(static_cast<std::size_t>(stage)) = stage_actor;
}

void gloo_transport::send(actors::payload p, const caf::actor&) {
  static const cpu_tensors none;
  const bool fwd = p.kind == action_kind::send_f;
  const int dst = plan_.shape.rank_of(p.dst_stage);
  const double t0 = now_us();
  try {
    channel_.send(fwd ? tensor_channel::direction::forward : tensor_channel::direction::backward, p.src_stage,
                  p.microbatch, p.data.as<cpu_tensors>(none), dst);
  } catch (const std::exception& e) {
    std::lock_guard lock(mu_);
    if (!send_error_)
      send_error_ = transfer_failure(e, dst);
  }
  log_.add(trace_event{.rank = rank_, .act = {p.src_stage, p.kind, p.microbatch}, .start_us = t0,
                       .end_us = now_us(), .bytes = p.bytes, .peer = dst, .source = event_source::measured});
}

void gloo_transport::another_step_follows() {
  std::lock_guard lock(step_mu_);
  another_follows_ = true;
}

void gloo_transport::begin_step(const caf::actor& supervisor) {
  {
    std::lock_guard lock(step_mu_);
    supervisor_ = supervisor;
    step_posted_ = true;
    step_done_ = false;
    post_ahead_ = std::exchange(another_follows_, false);
  }
  step_cv_.notify_all();
}

void gloo_transport::receive_loop() {
  for (;;) {
    caf::actor supervisor;
    bool post_ahead = false;
    {
      std::unique_lock lock(step_mu_);
      step_cv_.wait(lock, [&] { return stop_ || step_posted_; });
      if (stop_) // a step still posted was abandoned (its driver failed): nothing waits for it
        return;
      step_posted_ = false;
      supervisor = supervisor_;
      post_ahead = post_ahead_;
    }
    const bool received = receive_step(supervisor);
    {
      std::lock_guard lock(step_mu_);
      step_done_ = true;
    }
    step_cv_.notify_all();
    // A rank posted a step's receives when the step began, after its previous U; a peer already in that
    // step had sent by then (GPT, an interleaved-zb plan whose rank 0 runs a step ahead: the forward waited
    // 0.9 ms for rank 0's next forward to end).
    if (received && post_ahead)
      channel_.post_step_ahead(plan_, rank_);
  }
}

bool gloo_transport::receive_step(const caf::actor& supervisor) {
  for (const auto& a : plan_.ranks[static_cast<std::size_t>(rank_)]) {
    if (!is_receive(a.kind))
      continue;
    const auto [dir, from, src] = tensor_channel::incoming_of(a, plan_.shape);
    const double t0 = now_us();
    try {
      auto t = channel_.recv(dir, from, a.microbatch, src);
      const auto bytes = bytes_of(t);
      log_.add(trace_event{.rank = rank_, .act = a, .start_us = t0, .end_us = now_us(), .bytes = bytes,
                           .peer = src, .source = event_source::measured});
      caf::actor dst;
      {
        std::lock_guard lock(mu_);
        dst = stages_.at(static_cast<std::size_t>(a.stage));
      }
      caf::anon_send(dst, actors::payload{.src_stage = from, .dst_stage = a.stage, .microbatch = a.microbatch,
                                          .kind = dir == tensor_channel::direction::forward ? action_kind::send_f
                                                                                            : action_kind::send_b,
                                          .bytes = bytes, .data = actors::payload_data::of<cpu_tensors>(std::move(t))});
    } catch (const std::exception& e) {
      caf::anon_send(supervisor, actors::stage_failed{rank_, a, transfer_failure(e, src)});
      return false;
    }
  }
  return true;
}

std::optional<failure> gloo_transport::end_step() {
  {
    std::unique_lock lock(step_mu_);
    step_cv_.wait(lock, [&] { return step_done_; });
  }
  try {
    channel_.transport().flush();
  } catch (const std::exception& e) {
    std::lock_guard lock(mu_);
    if (!send_error_)
      send_error_ = transfer_failure(e, -1);
  }
  std::lock_guard lock(mu_);
  return send_error_;
}

} // namespace pippy
