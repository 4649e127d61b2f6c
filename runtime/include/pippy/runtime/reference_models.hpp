#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace pippy {

// PiPPy README's MyNetwork as a flat Sequential: layer{i} = Linear + ReLU for each hidden dim, then
// output_proj Linear(dims.back(), classes). Parameters are initialised from `seed` (same seed, same
// model on every rank and in the unsplit run).
struct mynetwork_options {
  int64_t in_dim = 512;
  std::vector<int64_t> dims = {512, 1024, 256};
  int64_t classes = 10;
};
torch::nn::Sequential make_mynetwork(std::uint64_t seed, const mynetwork_options& o = {});
// Stage boundaries for num_stages: 3 -> PiPPy's split after layer0 and layer1; otherwise spread evenly.
std::vector<std::size_t> mynetwork_boundaries(const mynetwork_options& o, int num_stages);

// Synthetic classification data for step `step`: x ~ N(0,1) [batch, in_dim], y = argmax(x W) for a
// random teacher W fixed by the seed (a learnable task).
// A pure function of (seed, step), so every rank and the unsplit run see the same batch.
struct batch_data {
  torch::Tensor x;
  torch::Tensor y;
};
batch_data synthetic_batch(std::uint64_t seed, int step, int64_t batch, int64_t in_dim, int64_t classes);

} // namespace pippy
