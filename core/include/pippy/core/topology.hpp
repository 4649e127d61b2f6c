#pragma once
#include <cstdint>
#include <string_view>
#include <string>
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

// How ranks sit on CPUs when each is bound to its own (`pippy run --bind-cores`, a rank's own --bind-cores
// under torchrun): rank r of n on one host takes an even share of the CPUs it may use (`allowed`, in any
// order: they are taken in increasing order), or one CPU each, round robin, when the ranks outnumber them.
// Empty `allowed`: empty. Throws input_error unless 0 <= r < n.
std::vector<int> cpu_share(std::vector<int> allowed, int r, int n);
// Where a rank computes: its host and the CPUs it may run on (allowed_cpus).
struct rank_cpus {
  std::string host;
  std::vector<int> cpus;
};
// The ranks (indices of `ranks`) bound to the same single CPU of one host, as `pippy run --bind-cores`
// binds more ranks than CPUs (cpu_share): groups of two or more, each in increasing rank order, ordered
// by their first rank. Ranks that may run on several CPUs share none (the OS moves them).
std::vector<std::vector<int>> ranks_sharing_cpus(const std::vector<rank_cpus>& ranks);
// The ranks that share a CPU when `num_ranks` processes of one host are bound to `cpus` CPUs as `pippy run
// --bind-cores` binds them (cpu_share over CPUs 0..cpus-1; with pp x dp, the mesh's ranks): round robin
// where the ranks outnumber the CPUs. Throws input_error unless num_ranks >= 1 and cpus >= 1.
std::vector<std::vector<int>> ranks_sharing_bound_cpus(int num_ranks, int cpus);
// The CPUs the calling thread may run on (sched_getaffinity), in increasing order; empty where unknown.
std::vector<int> allowed_cpus();
// Binds the calling thread, and the threads it starts from then on, to `cpus`. Returns 0, or the errno
// of sched_setaffinity (EINVAL for an empty list or one outside the system's CPUs).
int bind_to_cpus(const std::vector<int>& cpus);

// Rows of each micro-batch when `rows` are split into `chunks` (torch.tensor_split sizes: they differ by
// at most one, earlier chunks larger). The runtime cuts batches so and the simulator scales costs so.
// Throws input_error when chunks < 1 or rows < chunks.
std::vector<std::int64_t> chunk_sizes(std::int64_t rows, int chunks);

} // namespace pippy
