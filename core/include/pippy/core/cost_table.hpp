#pragma once
// Compute costs and sizes per stage. Plain values: copy freely; const methods are thread-safe.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "pippy/core/action.hpp"

namespace pippy::sim {

// Times in microseconds, sizes in bytes, for one stage and one micro-batch.
struct stage_cost {
  double F = 1, I = 1, W = 1, B = 2, U = 0;
  std::uint64_t activation_bytes = 0;  // held from F until I/B; also the size sent to the next stage
  std::uint64_t weight_input_bytes = 0; // part of the activations kept from I until W (the cost file and
                                        // pippy sim --activation-bytes default it to half the activations)
  std::uint64_t param_bytes = 0;        // parameters of the stage
};

struct cost_table {
  std::vector<stage_cost> stages;
  double jitter = 0;       // each compute time scaled by (1 + jitter * u), u uniform in [-1, 1]
  std::uint64_t seed = 0;  // ... drawn from a hash of (seed, action): deterministic, order-free
  // Size of micro-batch m relative to the one the costs describe (empty: all 1). Compute times and
  // activation bytes scale with it: an uneven last micro-batch is cheaper, its transfers smaller.
  std::vector<double> microbatch_scale;

  // Micro-batches of a batch of `rows` split into `microbatches` (core's chunk_sizes): the costs are
  // those of an average micro-batch (rows / microbatches rows). Throws input_error when rows < M.
  void scale_by_rows(std::int64_t rows, int microbatches);
  double scale(int microbatch) const {
    return microbatch >= 0 && static_cast<std::size_t>(microbatch) < microbatch_scale.size()
               ? microbatch_scale[static_cast<std::size_t>(microbatch)]
               : 1.0;
  }
  std::uint64_t activation_bytes(int stage, int microbatch) const {
    return static_cast<std::uint64_t>(static_cast<double>(stages.at(static_cast<std::size_t>(stage)).activation_bytes) *
                                      scale(microbatch));
  }
  std::uint64_t weight_input_bytes(int stage, int microbatch) const {
    return static_cast<std::uint64_t>(
        static_cast<double>(stages.at(static_cast<std::size_t>(stage)).weight_input_bytes) * scale(microbatch));
  }

  // Cost of a compute action (0 for communication). Throws input_error if the stage is out of range.
  double operator()(const action& a) const;
  // Throws input_error naming the field when a value is negative or the size mismatches num_stages.
  void validate(int num_stages, const std::string& source) const;
};

// The same costs for every stage.
cost_table uniform_costs(int num_stages, const stage_cost& c);

// "F=1,B=2,I=1,W=1,U=0" (--cost). Missing B = I + W; missing I and W = B / 2; missing F = 1.
// Throws input_error naming the field ("--cost: ...").
stage_cost parse_cost_spec(std::string_view spec);

// {"stages":[{"F":..,"I":..,"W":..,"B":..,"U":..,"activation_bytes":..,"param_bytes":..}, ...]}, with the
// same defaults per stage. Throws input_error naming the source and field ("stages[2].F").
cost_table parse_cost_json(std::string_view text, const std::string& source);
cost_table load_cost_file(const std::string& path);
std::string to_cost_json(const cost_table& t);

// Roofline: time = max(FLOPs / peak FLOP/s, bytes / memory bandwidth) per action.
struct roofline_stage {
  double forward_flops = 0, forward_bytes = 0; // per micro-batch
  double backward_factor = 2;                  // B = factor * F, split evenly into I and W
  std::uint64_t activation_bytes = 0, param_bytes = 0;
};
struct device_spec {
  double peak_flops = 100e12;     // FLOP/s
  double memory_bandwidth = 2e12; // bytes/s
};
// Throws input_error unless the device's rates are positive and each stage's forward_flops, forward_bytes
// and backward_factor are finite and non-negative (naming the stage and field).
cost_table roofline_costs(const std::vector<roofline_stage>& stages, const device_spec& device);

} // namespace pippy::sim
