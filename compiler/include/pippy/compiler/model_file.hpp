#pragma once
// What the command-line tools that take a model file share (pippy split, pippy-train): reading the
// TorchScript file, the --input SHAPE[:DTYPE] examples and the split options. Errors are input_error
// naming the option and the text.
#include <pippy/compiler/compiler.hpp>

#include <torch/script.h>

#include <optional>
#include <string>
#include <vector>

namespace pippy {

// torch::jit::load of `path`; `what` names it in errors ("--model x.pt").
torch::jit::Module load_script_file(const std::string& path, const std::string& what);

// One model input as --input gives it: SHAPE[:DTYPE[:HIGH]], e.g. "8x3x32x32", "4x128:int64:50257".
// DTYPE: float32 (default) | float64 | float16 | bfloat16 | int64 | int32 | int16 | int8 | uint8 | bool. HIGH: the exclusive
// upper bound of synthetic integer values (token ids < vocabulary), default 2.
struct input_spec {
  std::vector<int64_t> sizes;
  torch::Dtype dtype = torch::kFloat;
  int64_t high = 2;
};
input_spec parse_input_spec(const std::string& text);
// A seeded synthetic tensor of that spec with `rows` in place of the first size (randn for floating
// point, uniform integers in [0, high) otherwise).
torch::Tensor synthetic_input(const input_spec& spec, int64_t rows, torch::Generator& gen);
// The examples pipeline() traces with: one micro-batch of each input (`rows` rows; 0: each spec's own
// first size), drawn in order from one generator seeded with `seed`.
std::vector<torch::Tensor> example_inputs(const std::vector<input_spec>& specs, int64_t rows, uint64_t seed);

// --stages N [--balance params|time] | --split-at NAME=begin|end ...
struct split_request {
  int stages = 0;                // automatic split into this many stages
  std::string balance = "params";  // params | time
  std::vector<std::string> split_at;  // NAME=begin|end, as given
};
// The split points of --split-at ("NAME=begin|end"); input_error naming a bad one.
std::vector<std::pair<std::string, split_point>> parse_split_points(const std::vector<std::string>& split_at);
// Annotates `model` and returns pipeline() options for the request.
pipeline_options apply_split_request(torch::jit::Module& model, const split_request& r);

} // namespace pippy
