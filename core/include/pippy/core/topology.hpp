#pragma once
#include <cstdint>
#include <string_view>
#include <vector>

namespace pippy {

// How stages sit on ranks. looped: stage s on rank s mod R (Megatron's interleaving).
// v_shape: two stages per rank folded back, rank r holds r and 2R-1-r (ZB-V, DualPipe-V).
enum class placement_style { looped, v_shape };

std::string_view to_string(placement_style p);

struct pipeline_shape {
  int num_ranks = 1;
  int stages_per_rank = 1;
  int num_microbatches = 1;
  placement_style placement = placement_style::looped;

  int num_stages() const { return num_ranks * stages_per_rank; }
  int rank_of(int stage) const;
  // Local stages of a rank, in increasing stage order.
  std::vector<int> stages_of(int rank) const;
  // Throws input_error naming the field when a size is impossible.
  void validate() const;
  friend bool operator==(const pipeline_shape&, const pipeline_shape&) = default;
};

// Rows of each micro-batch when `rows` are split into `chunks` (torch.tensor_split sizes: they differ by
// at most one, earlier chunks larger). The runtime cuts batches so and the simulator scales costs so.
// Throws input_error when chunks < 1 or rows < chunks.
std::vector<std::int64_t> chunk_sizes(std::int64_t rows, int chunks);

} // namespace pippy
