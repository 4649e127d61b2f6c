#include "pippy/core/schedule.hpp"

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

schedule add_communication(const schedule& compute_only) {
  schedule out = strip_communication(compute_only);
  const auto& shape = out.shape;
  const int last = shape.num_stages() - 1;
  for (int r = 0; r < static_cast<int>(out.ranks.size()); ++r) {
    std::vector<action> lowered;
    lowered.reserve(out.ranks[r].size() * 2);
    auto remote = [&](int stage) { return stage >= 0 && stage <= last && shape.rank_of(stage) != r; };
    for (const auto& a : out.ranks[r]) {
      const bool fwd = a.kind == action_kind::forward;
      const bool bwd = is_input_backward(a.kind);
      if (fwd && remote(a.stage - 1))
        lowered.push_back({a.stage, action_kind::recv_f, a.microbatch});
      if (bwd && remote(a.stage + 1))
        lowered.push_back({a.stage, action_kind::recv_b, a.microbatch});
      lowered.push_back(a);
      if (fwd && remote(a.stage + 1))
        lowered.push_back({a.stage, action_kind::send_f, a.microbatch});
      if (bwd && remote(a.stage - 1))
        lowered.push_back({a.stage, action_kind::send_b, a.microbatch});
    }
    out.ranks[r] = std::move(lowered);
  }
  return out;
}

} // namespace pippy
