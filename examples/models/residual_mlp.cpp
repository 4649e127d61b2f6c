#include "models/residual_mlp.hpp"

namespace pippy::models {

ResidualBlockImpl::ResidualBlockImpl(int64_t dim)
    : fc1(register_module("fc1", torch::nn::Linear(dim, 2 * dim))),
      fc2(register_module("fc2", torch::nn::Linear(2 * dim, dim))) {}

torch::Tensor ResidualBlockImpl::forward(torch::Tensor h) { return h + fc2(torch::relu(fc1(h))); }

ResidualMLPImpl::ResidualMLPImpl(int64_t in_dim, int64_t cond_dim, int64_t hidden, int64_t out_dim,
                                 int64_t num_blocks)
    : in_proj(register_module("in_proj", torch::nn::Linear(in_dim, hidden))),
      cond_proj(register_module("cond_proj", torch::nn::Linear(cond_dim, hidden))),
      head(register_module("head", torch::nn::Linear(hidden, out_dim))),
      blocks(register_module("blocks", torch::nn::ModuleList())) {
  for (int64_t i = 0; i < num_blocks; ++i) blocks->push_back(ResidualBlock(hidden));
  mean = register_buffer("mean", torch::linspace(-0.5, 0.5, in_dim));
  std = register_buffer("std", torch::linspace(0.5, 2.0, in_dim));
}

std::vector<torch::Tensor> ResidualMLPImpl::forward(torch::Tensor x, torch::Tensor c) {
  torch::Tensor h0 = in_proj((x - mean) / std) + cond_proj(c);
  torch::Tensor h = h0;
  for (const auto& block : *blocks) h = block->as<ResidualBlock>()->forward(h);
  return {head(h + h0), h};
}

} // namespace pippy::models
