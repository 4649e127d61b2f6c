#include "pippy/core/topology.hpp"

#include <sched.h>

#include <algorithm>
#include <map>
#include <cerrno>
#include <limits>
#include <string>

#include "pippy/core/error.hpp"
#include "pippy/core/limits.hpp"

namespace pippy {

std::string_view to_string(placement_style p) { return p == placement_style::looped ? "looped" : "v"; }

int pipeline_shape::rank_of(int stage) const {
  if (placement == placement_style::v_shape) {
    const int lap = stage / num_ranks, pos = stage % num_ranks;
    return lap % 2 == 0 ? pos : num_ranks - 1 - pos;
  }
  return stage % num_ranks;
}

std::vector<int> pipeline_shape::stages_of(int rank) const {
  // One stage per lap of R stages (the inverse of rank_of), so a call costs V, not R x V.
  std::vector<int> out;
  if (rank < 0 || rank >= num_ranks)
    return out;
  out.reserve(static_cast<std::size_t>(stages_per_rank));
  for (int lap = 0; lap < stages_per_rank; ++lap) {
    const bool folded = placement == placement_style::v_shape && lap % 2 == 1;
    out.push_back(lap * num_ranks + (folded ? num_ranks - 1 - rank : rank));
  }
  return out;
}

void pipeline_shape::validate() const {
  if (num_ranks < 1)
    throw input_error("ranks must be at least 1 (got " + std::to_string(num_ranks) + ")");
  if (stages_per_rank < 1)
    throw input_error("stages-per-rank must be at least 1 (got " + std::to_string(stages_per_rank) + ")");
  if (num_microbatches < 1)
    throw input_error("microbatches must be at least 1 (got " + std::to_string(num_microbatches) + ")");
  if (placement == placement_style::v_shape && stages_per_rank % 2 != 0)
    throw input_error("stages-per-rank must be even for a V-shaped placement (got " +
                      std::to_string(stages_per_rank) + ")");
  // Bounds before anything is sized by them; the products are checked, so they cannot wrap.
  if (num_ranks > limits::max_ranks)
    throw input_error("ranks must be at most " + std::to_string(limits::max_ranks) + " (got " +
                      std::to_string(num_ranks) + ")");
  if (num_microbatches > limits::max_microbatches)
    throw input_error("microbatches must be at most " + std::to_string(limits::max_microbatches) + " (got " +
                      std::to_string(num_microbatches) + ")");
  const std::int64_t stages = limits::checked_mul(num_ranks, stages_per_rank).value_or(std::numeric_limits<std::int64_t>::max());
  if (stages > limits::max_stages)
    throw input_error("ranks x stages-per-rank must be at most " + std::to_string(limits::max_stages) + " stages (got " +
                      std::to_string(num_ranks) + " x " + std::to_string(stages_per_rank) + " = " +
                      std::to_string(stages) + ")");
  if (*limits::checked_mul(stages, num_microbatches) > limits::max_stage_microbatches) // both at most 2^20 here
    throw input_error("stages x microbatches must be at most " + std::to_string(limits::max_stage_microbatches) +
                      " (got " + std::to_string(stages) + " x " + std::to_string(num_microbatches) + " = " +
                      std::to_string(stages * num_microbatches) + ")");
}

std::vector<std::int64_t> chunk_sizes(std::int64_t rows, int chunks) {
  if (chunks < 1)
    throw input_error("chunks must be at least 1, got " + std::to_string(chunks));
  if (rows < chunks)
    throw input_error("cannot split " + std::to_string(rows) + " rows into " + std::to_string(chunks) +
                      " micro-batches");
  std::vector<std::int64_t> sizes(static_cast<std::size_t>(chunks), rows / chunks);
  for (std::int64_t i = 0; i < rows % chunks; ++i)
    ++sizes[static_cast<std::size_t>(i)];
  return sizes;
}

std::vector<int> cpu_share(std::vector<int> allowed, int r, int n) {
  if (n < 1 || r < 0 || r >= n)
    throw input_error("cpu_share: rank " + std::to_string(r) + " of " + std::to_string(n) + " ranks");
  std::sort(allowed.begin(), allowed.end());
  allowed.erase(std::unique(allowed.begin(), allowed.end()), allowed.end());
  const auto k = static_cast<long long>(allowed.size());
  if (k == 0)
    return {};
  if (n >= k)
    return {allowed[static_cast<std::size_t>(r % k)]};
  return {allowed.begin() + r * k / n, allowed.begin() + (r + 1) * k / n};
}

std::vector<std::vector<int>> ranks_sharing_bound_cpus(int num_ranks, int cpus) {
  if (num_ranks < 1 || cpus < 1)
    throw input_error("ranks on bound CPUs: " + std::to_string(num_ranks) + " ranks on " + std::to_string(cpus) +
                      " CPUs (each at least 1)");
  std::vector<int> all(static_cast<std::size_t>(std::min(cpus, num_ranks)));
  for (std::size_t c = 0; c < all.size(); ++c)
    all[c] = static_cast<int>(c);
  std::vector<rank_cpus> ranks;
  for (int r = 0; r < num_ranks; ++r)
    ranks.push_back({"host", cpu_share(all, r, num_ranks)});
  return ranks_sharing_cpus(ranks);
}

std::vector<std::vector<int>> ranks_sharing_cpus(const std::vector<rank_cpus>& ranks) {
  std::map<std::pair<std::string, int>, std::vector<int>> on; // (host, CPU) -> its ranks
  for (std::size_t r = 0; r < ranks.size(); ++r)
    if (ranks[r].cpus.size() == 1)
      on[{ranks[r].host, ranks[r].cpus.front()}].push_back(static_cast<int>(r));
  std::vector<std::vector<int>> out;
  for (auto& [cpu, group] : on)
    if (group.size() > 1)
      out.push_back(std::move(group));
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<int> allowed_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) != 0)
    return {};
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &set))
      cpus.push_back(c);
  return cpus;
}

int bind_to_cpus(const std::vector<int>& cpus) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int c : cpus) {
    if (c < 0 || c >= CPU_SETSIZE)
      return EINVAL;
    CPU_SET(c, &set);
  }
  if (cpus.empty())
    return EINVAL;
  return ::sched_setaffinity(0, sizeof set, &set) == 0 ? 0 : errno;
}

} // namespace pippy
