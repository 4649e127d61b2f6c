#include "pippy/core/schedule.hpp"

#include <algorithm>
#include <map>
#include <tuple>

namespace pippy {

bool schedule::has_communication() const {
  for (const auto& list : ranks)
    for (const auto& a : list)
      if (is_communication(a.kind))
        return true;
  return false;
}

std::size_t schedule::num_actions() const {
  std::size_t n = 0;
  for (const auto& list : ranks)
    n += list.size();
  return n;
}

schedule strip_communication(const schedule& s) {
  schedule out{.name = s.name, .shape = s.shape, .ranks = {}};
  out.ranks.resize(s.ranks.size());
  for (std::size_t r = 0; r < s.ranks.size(); ++r)
    for (const auto& a : s.ranks[r])
      if (is_compute(a.kind))
        out.ranks[r].push_back(a);
  return out;
}

schedule forward_only(const schedule& s) {
  schedule out{.name = s.name + "-forward", .shape = s.shape, .ranks = {}};
  out.ranks.resize(s.ranks.size());
  for (std::size_t r = 0; r < s.ranks.size(); ++r)
    for (const auto& a : s.ranks[r])
      if (a.kind == action_kind::forward)
        out.ranks[r].push_back(a);
  return out;
}

bool runs_forward_only(const schedule& s) {
  for (const auto& list : s.ranks)
    for (const auto& a : list)
      if (is_compute(a.kind) && a.kind != action_kind::forward)
        return false;
  return true;
}

schedule add_communication(const schedule& compute_only) {
  schedule out = strip_communication(compute_only);
  const auto& shape = out.shape;
  const int last = shape.num_stages() - 1;
  const auto R = out.ranks.size();
  auto remote = [&](int rank, int stage) { return stage >= 0 && stage <= last && shape.rank_of(stage) != rank; };
  // Where each F and each I/B sits on its rank, to find the consumer of every message.
  const std::size_t S = static_cast<std::size_t>(shape.num_stages()), M = static_cast<std::size_t>(shape.num_microbatches);
  constexpr std::size_t absent = static_cast<std::size_t>(-1);
  std::vector<std::size_t> forward_at(S * M, absent), backward_at(S * M, absent);
  auto slot = [&](const action& a) -> std::size_t {
    const bool in_range = a.stage >= 0 && static_cast<std::size_t>(a.stage) < S && a.microbatch >= 0 &&
                          static_cast<std::size_t>(a.microbatch) < M;
    return in_range ? static_cast<std::size_t>(a.stage) * M + static_cast<std::size_t>(a.microbatch) : absent;
  };
  for (const auto& list : out.ranks)
    for (std::size_t i = 0; i < list.size(); ++i) {
      const auto k = slot(list[i]);
      if (k == absent)
        continue; // the validator reports it
      if (list[i].kind == action_kind::forward)
        forward_at[k] = i;
      else if (is_input_backward(list[i].kind))
        backward_at[k] = i;
    }
  auto consumer_position = [&](const action& a, std::size_t fallback) {
    const auto k = slot(a);
    const auto pos = k == absent ? absent : (a.kind == action_kind::forward ? forward_at : backward_at)[k];
    return pos == absent ? fallback : pos;
  };
  struct receive {
    std::size_t before; // index of the compute action it must precede on the receiving rank
    int src;
    std::size_t order; // position in the channel's message sequence
    action act;
  };
  std::vector<std::vector<receive>> receives(R);
  for (std::size_t src = 0; src < R; ++src) {
    // Messages on each channel src -> dst, in the order src sends them.
    std::map<int, std::vector<receive>> channels;
    for (const auto& a : out.ranks[src]) {
      const int r = static_cast<int>(src);
      if (a.kind == action_kind::forward && remote(r, a.stage + 1)) {
        const int dst = shape.rank_of(a.stage + 1);
        const action consumer{a.stage + 1, action_kind::forward, a.microbatch};
        channels[dst].push_back({consumer_position(consumer, out.ranks[dst].size()), r, 0,
                                 {a.stage + 1, action_kind::recv_f, a.microbatch}});
      }
      if (is_input_backward(a.kind) && remote(r, a.stage - 1)) {
        const int dst = shape.rank_of(a.stage - 1);
        const action consumer{a.stage - 1, action_kind::backward_input, a.microbatch};
        channels[dst].push_back({consumer_position(consumer, out.ranks[dst].size()), r, 0,
                                 {a.stage - 1, action_kind::recv_b, a.microbatch}});
      }
    }
    // A receive goes right before its consumer, or earlier where needed so that each pair of ranks
    // receives in the order it sends (point-to-point messages between two ranks match in order).
    for (auto& [dst, msgs] : channels) {
      std::size_t bound = out.ranks[dst].size();
      for (std::size_t k = msgs.size(); k-- > 0;) {
        msgs[k].before = std::min(msgs[k].before, bound);
        msgs[k].order = k;
        bound = msgs[k].before;
      }
      receives[dst].insert(receives[dst].end(), msgs.begin(), msgs.end());
    }
  }
  for (std::size_t r = 0; r < R; ++r) {
    auto& recvs = receives[r];
    std::stable_sort(recvs.begin(), recvs.end(), [](const receive& x, const receive& y) {
      return std::tie(x.before, x.src, x.order) < std::tie(y.before, y.src, y.order);
    });
    std::vector<action> lowered;
    lowered.reserve(out.ranks[r].size() * 2);
    std::size_t next_recv = 0;
    const auto& list = out.ranks[r];
    for (std::size_t i = 0; i <= list.size(); ++i) {
      while (next_recv < recvs.size() && recvs[next_recv].before == i)
        lowered.push_back(recvs[next_recv++].act);
      if (i == list.size())
        break;
      const action& a = list[i];
      lowered.push_back(a);
      if (a.kind == action_kind::forward && remote(static_cast<int>(r), a.stage + 1))
        lowered.push_back({a.stage, action_kind::send_f, a.microbatch});
      if (is_input_backward(a.kind) && remote(static_cast<int>(r), a.stage - 1))
        lowered.push_back({a.stage, action_kind::send_b, a.microbatch});
    }
    out.ranks[r] = std::move(lowered);
  }
  return out;
}

} // namespace pippy
