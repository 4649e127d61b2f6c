#include "pippy/core/topology.hpp"

#include <string>

#include "pippy/core/error.hpp"

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
  std::vector<int> out;
  for (int s = 0; s < num_stages(); ++s)
    if (rank_of(s) == rank)
      out.push_back(s);
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

} // namespace pippy
