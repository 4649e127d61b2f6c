#include <algorithm>
#include "pippy/runtime/reference_models.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include "pippy/runtime/sequential_stage.hpp"

namespace pippy {

torch::nn::Sequential make_mynetwork(std::uint64_t seed, const mynetwork_options& o) {
  torch::manual_seed(seed);
  torch::nn::Sequential seq;
  int64_t prev = o.in_dim;
  for (std::size_t i = 0; i < o.dims.size(); ++i) {
    seq->push_back("layer" + std::to_string(i) + "_lin", torch::nn::Linear(prev, o.dims[i]));
    seq->push_back("layer" + std::to_string(i) + "_relu", torch::nn::ReLU());
    prev = o.dims[i];
  }
  seq->push_back("output_proj", torch::nn::Linear(prev, o.classes));
  return seq;
}

std::vector<std::size_t> mynetwork_boundaries(const mynetwork_options& o, int num_stages) {
  if (num_stages == 3 && o.dims.size() >= 2)
    return {2, 4}; // after layer0 and after layer1, as PiPPy's README splits it
  return even_boundaries(2 * o.dims.size() + 1, num_stages);
}

batch_data synthetic_batch(std::uint64_t seed, int step, int64_t batch, int64_t in_dim, int64_t classes) {
  auto gen = at::detail::createCPUGenerator(seed * 1000003ULL + static_cast<std::uint64_t>(step));
  batch_data b;
  b.x = at::randn({batch, in_dim}, gen, torch::kFloat32);
  // Labels from a fixed random linear teacher (same for every step) that reads only the first few
  // features, so that a few steps on fresh batches of 64 already show the loss going down.
  const int64_t informative = std::min<int64_t>(in_dim, 8);
  auto teacher_gen = at::detail::createCPUGenerator(seed * 7919ULL + 1);
  auto teacher = at::randn({informative, classes}, teacher_gen, torch::kFloat32);
  b.y = b.x.narrow(1, 0, informative).matmul(teacher).argmax(1);
  return b;
}

} // namespace pippy
