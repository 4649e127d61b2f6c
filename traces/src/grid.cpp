#include <cmath>
#include <cstdio>

#include "pippy/traces/metrics.hpp"

namespace pippy {

std::string render_grid(const schedule& s, const evaluation& e) {
  const auto m = compute_metrics(trace_from_evaluation(e, s.name, 1.0), metrics_depth::summary);
  const auto columns = static_cast<std::size_t>(std::ceil(e.makespan));
  std::size_t width = 1;
  for (const auto& list : e.ranks)
    for (const auto& t : list)
      width = std::max(width, to_string(t.act).size());
  std::string out;
  for (std::size_t r = 0; r < e.ranks.size(); ++r) {
    std::vector<std::string> cells(columns, ".");
    for (const auto& t : e.ranks[r]) {
      if (!is_compute(t.act.kind) || t.end <= t.start)
        continue;
      for (auto c = static_cast<std::size_t>(std::floor(t.start)); c < columns && c < t.end; ++c)
        cells[c] = to_string(t.act);
    }
    char label[32];
    std::snprintf(label, sizeof label, "rank %zu |", r);
    out += label;
    for (const auto& c : cells)
      out += " " + c + std::string(width - c.size(), ' ');
    char tail[64];
    std::snprintf(tail, sizeof tail, " | bubble %.3f\n", m.ranks[r].bubble_fraction);
    out += tail;
  }
  char footer[128];
  std::snprintf(footer, sizeof footer, "%s: %d ranks, %d stages, %d micro-batches, makespan %g, bubble %.3f\n",
                s.name.c_str(), s.shape.num_ranks, s.shape.num_stages(), s.shape.num_microbatches, e.makespan,
                m.bubble_fraction);
  return out + footer;
}

} // namespace pippy
