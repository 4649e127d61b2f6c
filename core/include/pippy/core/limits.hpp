#pragma once
// The stated bounds on every size a user or a file may give, and overflow-checked arithmetic. A size is
// checked here before anything is allocated for it, and the error says the bound: memory follows the
// input's size, never a number written inside it.
#include <cstdint>
#include <optional>

namespace pippy::limits {

inline constexpr std::int64_t max_ranks = std::int64_t{1} << 20;         // pipeline ranks of one schedule
inline constexpr std::int64_t max_stages = std::int64_t{1} << 20;        // ranks x stages per rank
inline constexpr std::int64_t max_trace_replicas = std::int64_t{1} << 12; // pp x dp replicas one trace holds
inline constexpr std::int64_t max_microbatches = std::int64_t{1} << 20;  // per step
// Stages x micro-batches: each pair is at least an F and a B, so this bounds a schedule's actions
// (about 2^23 compute actions, a few hundred MB once lowered and timed).
inline constexpr std::int64_t max_stage_microbatches = std::int64_t{1} << 22;

// Bytes in one size of a cost file or option (a stage's parameters, one micro-batch's activations):
// 1 TiB. With the bounds above, no sum of them over a rank's stages and micro-batches can wrap 64 bits.
inline constexpr std::int64_t max_bytes = std::int64_t{1} << 40;

// Microseconds of one action, transfer latency or overhead: 10^12 us, about 11.6 days. Sums over the
// largest schedule stay finite (a makespan of inf would print as null).
inline constexpr double max_time_us = 1e12;

// Quantiles of a cost file's step-to-step noise (cost_table::noise), and draws averaged per prediction.
inline constexpr std::int64_t max_noise_quantiles = 1024;
inline constexpr std::int64_t max_noise_samples = 4096;

// Micro-batch sizes a layer of a cost file is measured at besides its main one (layer_cost::other_sizes).
inline constexpr std::int64_t max_layer_sizes = 16;

// a * b, or nullopt when it does not fit in 64 bits.
inline std::optional<std::int64_t> checked_mul(std::int64_t a, std::int64_t b) {
  std::int64_t out = 0;
  if (__builtin_mul_overflow(a, b, &out))
    return std::nullopt;
  return out;
}

} // namespace pippy::limits
