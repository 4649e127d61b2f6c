// The inference API in PiPPy's shape, end to end on R processes (run by `pippy run --nproc R`):
//   inference_api MODEL.pt STAGES
// Every rank loads the TorchScript file, splits it into STAGES stages traced on a 2-row example, and
// makes its pipeline_stage; the first rank feeds a 7-row batch in 3 micro-batches (3, 2, 2: uneven, and
// not the traced 2 rows); the last rank compares the joined output with the unsplit module's on the same
// batch and exits 1 if they differ by more than 1e-5 relative.
#include <torch/script.h>

#include <cstdio>
#include <iostream>

#include "pippy/compiler/compiler.hpp"
#include "pippy/compiler/model_file.hpp"
#include "pippy/runtime/environment.hpp"
#include "pippy/runtime/inference.hpp"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: inference_api MODEL.pt STAGES\n";
    return 2;
  }
  try {
    torch::manual_seed(5);
    const torch::Tensor example = torch::randn({2, 3, 16, 16});
    const torch::Tensor batch = torch::randn({7, 3, 16, 16});
    auto model = pippy::load_script_file(argv[1], argv[1]);
    pippy::pipe p = pippy::pipeline(model, {example}, {.num_stages = std::stoi(argv[2]), .clone_parameters = true});
    pippy::pipeline_stage stage(p, pippy::read_dist_env(), torch::kCPU, {.microbatches = 3});
    const auto out = stage.is_first() ? stage({batch}) : stage();
    if (!stage.is_last()) {
      if (!out.empty())
        throw std::runtime_error("a rank that is not the last got outputs");
      return 0;
    }
    torch::NoGradGuard no_grad;
    const torch::Tensor want = model.forward({batch}).toTensor();
    if (out.size() != 1 || !out[0].sizes().equals(want.sizes()))
      throw std::runtime_error("the last rank got " + std::to_string(out.size()) + " outputs of the wrong shape");
    const double diff = ((out[0] - want).abs().max() / want.abs().max()).item<double>();
    std::printf("inference_api: %d stages, output [%ld, %ld], max relative difference %.3g\n", std::stoi(argv[2]),
                static_cast<long>(out[0].size(0)), static_cast<long>(out[0].size(1)), diff);
    return diff <= 1e-5 ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
