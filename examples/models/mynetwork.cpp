#include "models/mynetwork.hpp"

#include <string>

namespace pippy::models {

MyNetworkBlockImpl::MyNetworkBlockImpl(int64_t in_dim, int64_t out_dim)
    : lin(register_module("lin", torch::nn::Linear(in_dim, out_dim))) {}

torch::Tensor MyNetworkBlockImpl::forward(torch::Tensor x) { return torch::relu(lin(x)); }

MyNetworkImpl::MyNetworkImpl(int64_t in_dim, const std::vector<int64_t>& layer_dims) {
  int64_t prev = in_dim;
  for (size_t i = 0; i < layer_dims.size(); ++i) {
    layers.push_back(register_module("layer" + std::to_string(i), MyNetworkBlock(prev, layer_dims[i])));
    prev = layer_dims[i];
  }
  output_proj = register_module("output_proj", torch::nn::Linear(prev, 10));
}

torch::Tensor MyNetworkImpl::forward(torch::Tensor x) {
  for (auto& layer : layers) x = layer(x);
  return output_proj(x);
}

} // namespace pippy::models
