#include "pippy/runtime/profile.hpp"

#include "pippy/core/text_file.hpp"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <limits>

#include <nlohmann/json.hpp>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "pippy/core/error.hpp"

namespace pippy {

std::vector<stage_cost> measure_stage_costs(const trace& t, int num_stages,
                                            const std::map<int, std::uint64_t>& activation_bytes,
                                            const std::map<int, std::uint64_t>& param_bytes) {
  struct acc {
    double sum[5] = {0, 0, 0, 0, 0};
    int n[5] = {0, 0, 0, 0, 0};
  };
  std::vector<acc> a(static_cast<std::size_t>(num_stages));
  for (const auto& e : t.events) {
    if (!is_compute(e.act.kind) || e.act.stage < 0 || e.act.stage >= num_stages)
      continue;
    const auto k = static_cast<std::size_t>(e.act.kind); // compute kinds are 0..4 in action_kind
    a[static_cast<std::size_t>(e.act.stage)].sum[k] += e.duration_us();
    a[static_cast<std::size_t>(e.act.stage)].n[k] += 1;
  }
  std::vector<stage_cost> out;
  for (int s = 0; s < num_stages; ++s) {
    const auto& x = a[static_cast<std::size_t>(s)];
    auto mean = [&](action_kind k) {
      const auto i = static_cast<std::size_t>(k);
      return x.n[i] ? x.sum[i] / x.n[i] : -1.0;
    };
    stage_cost c;
    c.forward = std::max(0.0, mean(action_kind::forward));
    double i = mean(action_kind::backward_input), w = mean(action_kind::backward_weight),
           b = mean(action_kind::full_backward);
    if (b < 0 && i >= 0 && w >= 0)
      b = i + w;
    if (i < 0 && w < 0 && b >= 0)
      i = w = b / 2;
    c.backward_input = std::max(0.0, i);
    c.backward_weight = std::max(0.0, w);
    c.full_backward = std::max(0.0, b);
    c.optimizer_step = std::max(0.0, mean(action_kind::optimizer_step));
    if (auto it = activation_bytes.find(s); it != activation_bytes.end())
      c.activation_bytes = it->second;
    if (auto it = param_bytes.find(s); it != param_bytes.end())
      c.param_bytes = it->second;
    out.push_back(c);
  }
  return out;
}

std::string cost_profile_json(const std::vector<stage_cost>& costs) {
  nlohmann::json stages = nlohmann::json::array();
  for (const auto& c : costs)
    stages.push_back({{"F", c.forward},
                      {"I", c.backward_input},
                      {"W", c.backward_weight},
                      {"B", c.full_backward},
                      {"U", c.optimizer_step},
                      {"activation_bytes", c.activation_bytes},
                      {"param_bytes", c.param_bytes}});
  return nlohmann::json{{"unit", "us"}, {"source", "measured"}, {"stages", stages}}.dump(2) + "\n";
}

void save_cost_profile(const std::vector<stage_cost>& costs, const std::string& path) {
  write_file_atomically(path, [&](std::ostream& out) { out << cost_profile_json(costs); });
}

std::uint64_t heap_bytes_in_use() {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  const auto m = ::mallinfo2();
  return static_cast<std::uint64_t>(m.uordblks) + static_cast<std::uint64_t>(m.hblkhd);
#else
  return 0;
#endif
}

measured_summary summarize(const trace& t, int steps) {
  double lo = std::numeric_limits<double>::max(), hi = std::numeric_limits<double>::lowest();
  double busy = 0;
  for (const auto& e : t.events) {
    lo = std::min(lo, e.start_us);
    hi = std::max(hi, e.end_us);
    if (is_compute(e.act.kind))
      busy += e.duration_us();
  }
  measured_summary s;
  if (t.events.empty() || steps < 1 || t.num_ranks < 1)
    return s;
  const double span = hi - lo;
  s.step_us = span / steps;
  s.bubble_fraction = span > 0 ? 1.0 - busy / (t.num_ranks * span) : 0.0;
  return s;
}

} // namespace pippy
