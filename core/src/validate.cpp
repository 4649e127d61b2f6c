#include "pippy/core/validate.hpp"

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <map>

#include "pippy/core/dependencies.hpp"
#include "pippy/core/error.hpp"

namespace pippy {

std::string violation::message() const {
  std::string out;
  if (rank >= 0) {
    out = "rank " + std::to_string(rank) + ", position " + std::to_string(position);
    if (at)
      out += " (" + to_string(*at) + ")";
    out += ": ";
  }
  return out + why;
}

double unit_costs::operator()(const action& a) const {
  switch (a.kind) {
  case action_kind::forward: return forward;
  case action_kind::backward_input: return backward_input;
  case action_kind::backward_weight: return backward_weight;
  case action_kind::full_backward: return backward_input + backward_weight;
  case action_kind::optimizer_step: return optimizer_step;
  default: return 0;
  }
}

namespace {

constexpr double not_done = std::numeric_limits<double>::quiet_NaN();

// The dry run shared by find_violation and evaluate: every rank runs its list in order, an action
// waits for its inputs, sends are posted at once and receives match them in order per rank pair.
class dry_run {
public:
  dry_run(const schedule& s, const compute_cost* cost)
      : s_(s), shape_(s.shape), cost_(cost), S_(shape_.num_stages()), M_(shape_.num_microbatches),
        lowered_(s.has_communication()) {}

  std::optional<violation> run(evaluation* out) {
    if (auto v = check_static())
      return v;
    const std::size_t R = s_.ranks.size();
    done_.assign(static_cast<std::size_t>(num_action_kinds) * S_ * M_, not_done);
    clock_.assign(R, 0.0);
    pc_.assign(R, 0);
    waiters_.assign(done_.size(), {});
    if (out) {
      out->ranks.assign(R, {});
      for (std::size_t r = 0; r < R; ++r)
        out->ranks[r].reserve(s_.ranks[r].size());
    }
    std::deque<int> ready;
    for (int r = 0; r < static_cast<int>(R); ++r)
      ready.push_back(r);
    while (!ready.empty()) {
      const int r = ready.front();
      ready.pop_front();
      const auto& list = s_.ranks[static_cast<std::size_t>(r)];
      while (pc_[r] < list.size()) {
        const action& a = list[pc_[r]];
        double inputs_at = 0;
        auto blocked = inputs_ready(r, a, inputs_at);
        if (blocked.error)
          return blocked.error;
        if (!blocked.keys.empty()) {
          for (auto k : blocked.keys)
            waiters_[k].push_back(r);
          break;
        }
        const double start = std::max(clock_[r], inputs_at);
        const double end = start + (cost_ && is_compute(a.kind) ? (*cost_)(a) : 0.0);
        clock_[r] = end;
        if (out)
          out->ranks[r].push_back({a, start, end});
        complete(r, a, end, ready);
        ++pc_[r];
      }
    }
    if (auto v = diagnose_stuck())
      return v;
    // No check for a send that is never received: its consumer's F or B needs the receive, so a missing
    // one is reported above as a receive the rank never runs.
    if (out) {
      out->makespan = 0;
      for (double c : clock_)
        out->makespan = std::max(out->makespan, c);
    }
    return std::nullopt;
  }

private:
  struct wait_result {
    std::vector<std::size_t> keys; // what the action waits for; empty when ready
    std::optional<violation> error;
  };

  std::size_t key(action_kind k, int stage, int mb) const {
    return (static_cast<std::size_t>(k) * S_ + stage) * M_ + (mb < 0 ? 0 : mb);
  }
  double done(action_kind k, int stage, int mb) const { return done_[key(k, stage, mb)]; }
  bool is_done(action_kind k, int stage, int mb) const { return !std::isnan(done(k, stage, mb)); }
  bool same_rank(int r, int stage) const { return shape_.rank_of(stage) == r; }

  int where(int rank, const action& a) const {
    const auto& list = s_.ranks[static_cast<std::size_t>(rank)];
    auto it = std::find(list.begin(), list.end(), a);
    return it == list.end() ? -1 : static_cast<int>(it - list.begin());
  }

  // Every stage forwards every micro-batch once, so a schedule holds at least S x M actions. Checked
  // before the S x M tables below are sized, so that their size follows the schedule's length, not a
  // number in it; a schedule that passes goes on to the full checks, which report in their own order.
  std::optional<violation> check_length() const {
    if (static_cast<std::int64_t>(s_.num_actions()) >= static_cast<std::int64_t>(S_) * M_)
      return std::nullopt;
    std::vector<std::pair<int, int>> forwards; // (stage, micro-batch), no more than the actions
    for (const auto& list : s_.ranks)
      for (const auto& a : list)
        if (a.kind == action_kind::forward)
          forwards.emplace_back(a.stage, a.microbatch);
    std::sort(forwards.begin(), forwards.end());
    std::pair<int, int> want{0, 0}; // the first (stage, micro-batch) in order that no F names
    for (const auto& f : forwards) {
      if (f > want)
        break;
      if (f == want)
        want = want.second + 1 < M_ ? std::pair{want.first, want.second + 1} : std::pair{want.first + 1, 0};
    }
    return violation{.why = "stage " + std::to_string(want.first) + " micro-batch " + std::to_string(want.second) +
                            " is never forwarded (no " + to_string(action{want.first, action_kind::forward, want.second}) +
                            "; " + std::to_string(S_) + " stages x " + std::to_string(M_) +
                            " micro-batches need that many forwards, and the schedule holds " +
                            std::to_string(s_.num_actions()) + " actions)"};
  }

  std::optional<violation> check_static() {
    try {
      shape_.validate();
    } catch (const input_error& e) {
      return violation{.why = e.what()};
    }
    if (static_cast<int>(s_.ranks.size()) != shape_.num_ranks)
      return violation{.why = "the schedule lists " + std::to_string(s_.ranks.size()) + " ranks but its shape has " +
                              std::to_string(shape_.num_ranks)};
    if (auto v = check_length())
      return v;
    // First (rank, position) of every action, indexed like done_; rank -1 where it never appears.
    std::vector<std::pair<int, int>> seen(static_cast<std::size_t>(num_action_kinds) * S_ * M_, {-1, -1});
    for (int r = 0; r < static_cast<int>(s_.ranks.size()); ++r) {
      const auto& list = s_.ranks[static_cast<std::size_t>(r)];
      for (int i = 0; i < static_cast<int>(list.size()); ++i) {
        const action& a = list[static_cast<std::size_t>(i)];
        auto at = [&](std::string why) { return violation{.rank = r, .position = i, .at = a, .why = std::move(why)}; };
        if (a.stage < 0 || a.stage >= S_)
          return at("stage " + std::to_string(a.stage) + " is out of range (the schedule has " + std::to_string(S_) +
                    " stages)");
        if (a.kind == action_kind::reduce_grad)
          return at("REDUCE_GRAD is not scheduled: the runtime sums a stage's gradients over its replicas itself "
                    "(--dp) and traces record it");
        if (a.kind == action_kind::optimizer_step) {
          if (a.microbatch != no_microbatch)
            return at("U takes no micro-batch");
        } else if (a.microbatch < 0 || a.microbatch >= M_) {
          return at("micro-batch " + std::to_string(a.microbatch) + " is out of range (the schedule has " +
                    std::to_string(M_) + " micro-batches)");
        }
        if (!same_rank(r, a.stage))
          return at("stage " + std::to_string(a.stage) + " sits on rank " + std::to_string(shape_.rank_of(a.stage)) +
                    ", not on rank " + std::to_string(r));
        if (a.kind == action_kind::recv_f && (a.stage == 0 || same_rank(r, a.stage - 1)))
          return at(a.stage == 0 ? "stage 0 has no previous stage to receive from"
                                 : "needs no receive: stage " + std::to_string(a.stage - 1) + " is on the same rank");
        if (a.kind == action_kind::recv_b && (a.stage == S_ - 1 || same_rank(r, a.stage + 1)))
          return at(a.stage == S_ - 1 ? "the last stage has no next stage to receive a gradient from"
                                      : "needs no receive: stage " + std::to_string(a.stage + 1) + " is on the same rank");
        if (a.kind == action_kind::send_f && (a.stage == S_ - 1 || same_rank(r, a.stage + 1)))
          return at(a.stage == S_ - 1 ? "the last stage has no next stage to send to"
                                      : "needs no send: stage " + std::to_string(a.stage + 1) + " is on the same rank");
        if (a.kind == action_kind::send_b && (a.stage == 0 || same_rank(r, a.stage - 1)))
          return at(a.stage == 0 ? "stage 0 has no previous stage to send a gradient to"
                                 : "needs no send: stage " + std::to_string(a.stage - 1) + " is on the same rank");
        auto& first = seen[key(a.kind, a.stage, a.microbatch)];
        if (first.first >= 0)
          return at("appears twice (first at rank " + std::to_string(first.first) + ", position " +
                    std::to_string(first.second) + ")");
        first = {r, i};
      }
    }
    auto has = [&](action_kind k, int st, int mb) { return seen[key(k, st, mb)].first >= 0; };
    // A schedule without any backward is a forward-only one (inference): every F, nothing else owed.
    bool any_backward = false;
    for (const auto& rank : s_.ranks)
      for (const auto& a : rank)
        any_backward = any_backward || (is_compute(a.kind) && a.kind != action_kind::forward);
    for (int st = 0; st < S_; ++st) {
      for (int mb = 0; mb < M_; ++mb) {
        const std::string which = "stage " + std::to_string(st) + " micro-batch " + std::to_string(mb);
        const bool b = has(action_kind::full_backward, st, mb), i = has(action_kind::backward_input, st, mb),
                   w = has(action_kind::backward_weight, st, mb);
        if (!has(action_kind::forward, st, mb))
          return violation{.why = which + " is never forwarded (no " + to_string(action{st, action_kind::forward, mb}) + ")"};
        if (!any_backward)
          continue;
        if (b && (i || w))
          return violation{.why = which + " has both B and I/W"};
        if (!b && !i && !w)
          return violation{.why = which + " is never backwarded (no B, or I and W)"};
        if (i != w)
          return violation{.why = which + " has " + (i ? "I without W" : "W without I")};
      }
    }
    return std::nullopt;
  }

  wait_result inputs_ready(int r, const action& a, double& at) {
    wait_result w;
    // Ready when any of the dependency's kinds is done; otherwise it waits on all of them.
    auto need = [&](const dependency& d, int mb) {
      for (int i = 0; i < d.num_kinds; ++i) {
        const double t = done(d.kinds[static_cast<std::size_t>(i)], d.stage, mb);
        if (!std::isnan(t)) {
          at = std::max(at, t);
          return true;
        }
      }
      for (int i = 0; i < d.num_kinds; ++i)
        w.keys.push_back(key(d.kinds[static_cast<std::size_t>(i)], d.stage, mb));
      return false;
    };
    for (const dependency& d : inputs_of(a, S_, lowered_ ? &shape_ : nullptr)) {
      if (d.role == input_role::message) {
        if (!receive_ready(r, a, d, at, w))
          return w;
      } else if (d.microbatch == no_microbatch) {
        for (int mb = 0; mb < M_; ++mb)
          if (!need(d, mb))
            return w;
      } else if (!need(d, d.microbatch)) {
        return w;
      }
    }
    return w;
  }

  // A receive takes the next message from its source rank, which must be the send it expects.
  bool receive_ready(int r, const action& a, const dependency& d, double& at, wait_result& w) {
    const action expected{d.stage, d.kinds[0], a.microbatch};
    const int src = shape_.rank_of(expected.stage);
    auto& queue = channels_[{src, r}];
    if (queue.empty()) {
      w.keys.push_back(key(expected.kind, expected.stage, expected.microbatch));
      return false;
    }
    if (queue.front().first != expected) {
      w.error = violation{.rank = r, .position = static_cast<int>(pc_[r]), .at = a,
                          .why = "receives out of order: the next message from rank " + std::to_string(src) + " is " +
                                 to_string(queue.front().first) + ", not " + to_string(expected)};
      return false;
    }
    at = std::max(at, queue.front().second);
    return true;
  }

  void complete(int r, const action& a, double end, std::deque<int>& ready) {
    if (is_receive(a.kind)) {
      const int src = shape_.rank_of(a.kind == action_kind::recv_f ? a.stage - 1 : a.stage + 1);
      channels_[{src, r}].pop_front();
    }
    if (is_send(a.kind)) {
      const int dst = shape_.rank_of(a.kind == action_kind::send_f ? a.stage + 1 : a.stage - 1);
      channels_[{r, dst}].push_back({a, end});
    }
    const std::size_t k = key(a.kind, a.stage, a.microbatch);
    done_[k] = end;
    for (int waiter : waiters_[k])
      ready.push_back(waiter);
    waiters_[k].clear();
  }

  // Names the first blocked rank and what it waits for, in the most useful words available.
  std::optional<violation> diagnose_stuck() {
    std::vector<std::string> cycle;
    std::optional<violation> first;
    for (int r = 0; r < static_cast<int>(s_.ranks.size()); ++r) {
      const auto& list = s_.ranks[static_cast<std::size_t>(r)];
      if (pc_[r] >= list.size())
        continue;
      const action& a = list[pc_[r]];
      double ignored = 0;
      auto w = inputs_ready(r, a, ignored);
      // Of the alternatives it waits for (I or B, say), name one that some rank runs.
      action shown{};
      int owner = -1, pos = -1;
      for (std::size_t k : w.keys) {
        shown = action{static_cast<int>((k / M_) % S_), static_cast<action_kind>(k / (static_cast<std::size_t>(S_) * M_)),
                       static_cast<int>(k % M_)};
        owner = shape_.rank_of(shown.stage);
        pos = where(owner, shown);
        if (pos >= 0)
          break;
      }
      violation v{.rank = r, .position = static_cast<int>(pc_[r]), .at = a, .why = ""};
      if (pos < 0) {
        v.why = "needs " + to_string(shown) + ", which rank " + std::to_string(owner) + " never runs";
        return v;
      }
      if (owner == r && pos > static_cast<int>(pc_[r])) {
        v.why = "needs " + to_string(shown) + ", which comes later on the same rank (position " + std::to_string(pos) + ")";
        return v;
      }
      cycle.push_back("rank " + std::to_string(r) + " at position " + std::to_string(pc_[r]) + " (" + to_string(a) +
                      ") waits for " + to_string(shown) + " on rank " + std::to_string(owner));
      if (!first)
        first = v;
    }
    if (!first)
      return std::nullopt;
    std::string why = "deadlock: ";
    for (std::size_t i = 0; i < cycle.size(); ++i)
      why += (i ? "; " : "") + cycle[i];
    first->why = why;
    first->rank = -1; // the message names every blocked rank
    return first;
  }

  const schedule& s_;
  const pipeline_shape& shape_;
  const compute_cost* cost_;
  const int S_, M_;
  const bool lowered_;
  std::vector<double> done_;
  std::vector<double> clock_;
  std::vector<std::size_t> pc_;
  std::vector<std::vector<int>> waiters_;
  std::map<std::pair<int, int>, std::deque<std::pair<action, double>>> channels_;
};

} // namespace

std::optional<violation> find_violation(const schedule& s) { return dry_run(s, nullptr).run(nullptr); }

void validate(const schedule& s) {
  if (auto v = find_violation(s))
    throw input_error("invalid schedule '" + s.name + "': " + v->message());
}

evaluation evaluate(const schedule& s, const compute_cost& cost) {
  evaluation out;
  if (auto v = dry_run(s, &cost).run(&out))
    throw input_error("invalid schedule '" + s.name + "': " + v->message());
  return out;
}

std::vector<int> peak_in_flight(const schedule& s) {
  std::vector<int> peaks(s.ranks.size(), 0);
  for (std::size_t r = 0; r < s.ranks.size(); ++r) {
    int live = 0;
    for (const auto& a : s.ranks[r]) {
      if (a.kind == action_kind::forward)
        ++live;
      else if (a.kind == action_kind::full_backward || a.kind == action_kind::backward_weight)
        --live;
      peaks[r] = std::max(peaks[r], live);
    }
  }
  return peaks;
}

} // namespace pippy
