#pragma once
// A residual MLP with two inputs, two outputs, a normalisation buffer and a long skip connection:
//   h0 = in_proj((x - mean) / std) + cond_proj(c)
//   h  = h0; for each block: h = h + fc2(relu(fc1(h)))
//   out = head(h + h0)            (h0 skips over every block)
//   returns {out, h}
// Split at the end of blocks.0 and blocks.2 (4 blocks), h0 crosses two stage boundaries.
#include <torch/torch.h>

#include <vector>

namespace pippy::models {

struct ResidualBlockImpl : torch::nn::Module {
  explicit ResidualBlockImpl(int64_t dim);
  torch::Tensor forward(torch::Tensor h);
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(ResidualBlock);

struct ResidualMLPImpl : torch::nn::Module {
  ResidualMLPImpl(int64_t in_dim, int64_t cond_dim, int64_t hidden, int64_t out_dim, int64_t num_blocks);
  std::vector<torch::Tensor> forward(torch::Tensor x, torch::Tensor c);
  torch::nn::Linear in_proj{nullptr}, cond_proj{nullptr}, head{nullptr};
  torch::nn::ModuleList blocks;
  torch::Tensor mean, std;  // buffers (input normalisation statistics)
};
TORCH_MODULE(ResidualMLP);

} // namespace pippy::models
