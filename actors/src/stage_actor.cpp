// The stage actor: runs its stage's part of the rank's action list, in order, handing the turn to the
// rank's other stage actors where the list switches stage. Identical in simulation and on hardware.
#include <caf/all.hpp>

#include <stdexcept>

#include "detail.hpp"
#include "pippy/core/dependencies.hpp"

namespace pippy::actors::detail {
namespace {

class stage_actor : public caf::event_based_actor {
public:
  stage_actor(caf::actor_config& cfg, int stage, std::shared_ptr<rank_context> ctx)
      : caf::event_based_actor(cfg), stage_(stage), ctx_(std::move(ctx)) {
    const auto m = static_cast<std::size_t>(ctx_->num_microbatches);
    in_f_.resize(m);
    in_b_.resize(m);
    out_f_.resize(m);
    out_b_.resize(m);
    has_in_f_.assign(m, 0);
    has_in_b_.assign(m, 0);
    if (!ctx_->microbatch_actors.empty())
      progress_.resize(m);
  }

  caf::behavior make_behavior() override {
    return {
        [this](start_atom) { // a new step: the inputs of the last one were all consumed
          pos_ = 0;
          last_end_ = 0;
          state_ = state::idle;
          advance();
        },
        [this](const turn& t) {
          pos_ = t.position;
          last_end_ = t.last_end_us;
          advance();
        },
        [this](completion& c) {
          if (finish(c))
            advance();
        },
        [this](payload& p) { on_payload(p); },
        [this](const send_done& d) {
          if (d.error)
            return fail(d.act, *d.error);
          state_ = state::idle;
          ++pos_;
          advance();
        },
    };
  }

  // The actor lives for the whole job; the rank context it shares with its rank's other stage actors
  // holds their handles, so it lets go of the context when it exits (no reference cycle).
  void on_exit() override { ctx_.reset(); }

private:
  int last_stage() const { return ctx_->num_stages - 1; }
  caf::actor me() { return caf::actor_cast<caf::actor>(this); }
  bool local(int stage) const {
    return stage >= 0 && stage <= last_stage() && ctx_->stage_actor(stage);
  }
  static std::size_t mb(const action& a) { return static_cast<std::size_t>(a.microbatch); }

  // Runs the list from pos_ until an action must wait or the turn goes to another stage.
  void advance() {
    const auto& list = *ctx_->list;
    while (pos_ < list.size()) {
      const action& a = list[pos_];
      if (a.stage != stage_) {
        send(ctx_->stage_actor(a.stage), turn{pos_, last_end_});
        return;
      }
      if (!inputs_arrived(a))
        return wait();
      switch (a.kind) {
      case action_kind::forward:
      case action_kind::backward_input:
      case action_kind::full_backward:
      case action_kind::backward_weight:
      case action_kind::optimizer_step: {
        auto done = ctx_->exec->run(a, take_input(a), me());
        if (!done) { // its completion comes as a message
          state_ = state::busy;
          return;
        }
        if (!finish(*done))
          return;
        continue; // finish moved past it
      }
      case action_kind::send_f:
      case action_kind::send_b: {
        const bool fwd = a.kind == action_kind::send_f;
        auto& out = fwd ? out_f_[mb(a)] : out_b_[mb(a)];
        payload p{.src_stage = stage_, .dst_stage = fwd ? stage_ + 1 : stage_ - 1, .microbatch = a.microbatch,
                  .kind = a.kind, .bytes = out.bytes, .data = std::move(out.data)};
        out = {};
        ctx_->net->send(std::move(p), me());
        if (ctx_->net->blocking()) {
          state_ = state::busy;
          return;
        }
        break;
      }
      case action_kind::recv_f:
      case action_kind::recv_b:
        break; // inputs_arrived: the message is here
      case action_kind::reduce_grad:
        throw std::logic_error("REDUCE_GRAD in a schedule (validate refuses it): " + to_string(a));
      }
      ++pos_;
    }
    send(ctx_->supervisor, rank_finished{ctx_->rank, last_end_});
  }

  // What compute action `a` consumes, taken out of the stage (each input is consumed once per step, so
  // the next step starts clean).
  payload_data take_input(const action& a) {
    if (a.kind == action_kind::forward) {
      has_in_f_[mb(a)] = 0;
      return std::move(in_f_[mb(a)]);
    }
    if (is_input_backward(a.kind)) {
      has_in_b_[mb(a)] = 0;
      return std::move(in_b_[mb(a)]);
    }
    return {};
  }

  void wait() { state_ = state::blocked; }

  // Core's rule: inputs from a neighbour stage must have arrived (in memory or received); the rest
  // follows from the rank's order, which the validator has checked.
  bool inputs_arrived(const action& a) const {
    for (const dependency& d : inputs_of(a, ctx_->num_stages))
      if (d.from_neighbour() && !(d.forward_data() ? has_in_f_ : has_in_b_)[mb(a)])
        return false;
    return true;
  }

  void on_payload(payload& p) {
    const auto m = static_cast<std::size_t>(p.microbatch);
    if (p.kind == action_kind::send_f) {
      in_f_[m] = std::move(p.data);
      has_in_f_[m] = 1;
    } else {
      in_b_[m] = std::move(p.data);
      has_in_b_[m] = 1;
    }
    if (state_ == state::blocked) { // the current action may have waited for exactly this input
      state_ = state::idle;
      advance();
    }
  }

  // Takes in the completion of the current action and moves past it; false when it failed.
  bool finish(completion& c) {
    if (c.error) {
      fail(c.act, *c.error);
      return false;
    }
    last_end_ = c.end_us;
    const action& a = c.act;
    if (a.kind == action_kind::forward && a.stage < last_stage())
      hand_over(a.stage + 1, action_kind::send_f, a.microbatch, c);
    if (is_input_backward(a.kind) && a.stage > 0)
      hand_over(a.stage - 1, action_kind::send_b, a.microbatch, c);
    if (!ctx_->microbatch_actors.empty() && a.microbatch != no_microbatch)
      track(c);
    state_ = state::idle;
    ++pos_;
    return true;
  }

  // An output for a neighbour stage: in memory if it is on this rank, else kept for the SEND action.
  void hand_over(int to, action_kind kind, int microbatch, completion& c) {
    if (local(to)) {
      send(ctx_->stage_actor(to),
           payload{stage_, to, microbatch, kind, c.output_bytes, std::move(c.output)});
      return;
    }
    auto& out = kind == action_kind::send_f ? out_f_ : out_b_;
    out[static_cast<std::size_t>(microbatch)] = {c.output_bytes, std::move(c.output)};
  }

  void track(const completion& c) {
    progress& p = progress_[mb(c.act)];
    switch (c.act.kind) {
    case action_kind::forward:
      p.forward_start_us = c.start_us;
      p.forward_end_us = c.end_us;
      p.loss = c.loss;
      return;
    case action_kind::backward_input:
      p.input_grad_end_us = c.end_us;
      return;
    case action_kind::full_backward:
      p.input_grad_end_us = c.end_us;
      [[fallthrough]];
    case action_kind::backward_weight:
      p.weight_grad_end_us = c.end_us;
      p.stage = stage_;
      p.microbatch = c.act.microbatch;
      send(ctx_->microbatch_actors[mb(c.act)], p);
      return;
    default:
      return;
    }
  }

  void fail(const action& a, const failure& error) {
    send(ctx_->supervisor, stage_failed{ctx_->rank, a, error});
    quit();
  }

  struct output {
    std::uint64_t bytes = 0;
    payload_data data;
  };

  const int stage_;
  std::shared_ptr<rank_context> ctx_;
  std::size_t pos_ = 0;
  enum class state : std::uint8_t { idle, blocked, busy } state_ = state::idle;
  double last_end_ = 0;
  std::vector<payload_data> in_f_, in_b_;
  std::vector<char> has_in_f_, has_in_b_; // the payload for this micro-batch arrived
  std::vector<output> out_f_, out_b_;
  std::vector<progress> progress_; // per micro-batch, until the stage is done with it
};

} // namespace

caf::actor spawn_stage_actor(caf::actor_system& sys, int stage, std::shared_ptr<rank_context> ctx) {
  return sys.spawn<stage_actor>(stage, std::move(ctx));
}

} // namespace pippy::actors::detail
