#pragma once
// MyNetwork from the PiPPy README: MyNetworkBlock(Linear + ReLU) layers and a 10-class output layer.
#include <torch/torch.h>

#include <vector>

namespace pippy::models {

struct MyNetworkBlockImpl : torch::nn::Module {
  MyNetworkBlockImpl(int64_t in_dim, int64_t out_dim);
  torch::Tensor forward(torch::Tensor x);
  torch::nn::Linear lin{nullptr};
};
TORCH_MODULE(MyNetworkBlock);

// layer0..layer{n-1} (MyNetworkBlock) then output_proj (Linear to 10 classes). The README uses
// in_dim 512 and layer_dims {512, 1024, 256} and splits at the end of layer0 and layer1.
struct MyNetworkImpl : torch::nn::Module {
  MyNetworkImpl(int64_t in_dim, const std::vector<int64_t>& layer_dims);
  torch::Tensor forward(torch::Tensor x);
  std::vector<MyNetworkBlock> layers;
  torch::nn::Linear output_proj{nullptr};
};
TORCH_MODULE(MyNetwork);

} // namespace pippy::models
