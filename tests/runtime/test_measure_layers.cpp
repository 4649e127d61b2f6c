// measure_layers: each layer timed alone at the run's micro-batch and at the other sizes a planner tries,
// a layer traced at one shape made again for each size, and its optimizer step timed.
#include <catch2/catch.hpp>

#include <torch/torch.h>

#include "pippy/core/error.hpp"
#include "pippy/core/schedule.hpp"
#include "pippy/runtime/training.hpp"

using namespace pippy;

namespace {
// A Linear layer that, like a graph traced at a micro-batch's shape, runs only on the rows it was made
// for.
class fixed_rows_stage : public stage_module {
public:
  fixed_rows_stage(std::int64_t rows, std::int64_t in, std::int64_t out) : rows_(rows) {
    linear_ = register_module("linear", torch::nn::Linear(in, out));
  }
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& inputs) override {
    if (inputs.at(0).size(0) != rows_)
      throw input_error("traced at " + std::to_string(rows_) + " rows, got " + std::to_string(inputs.at(0).size(0)));
    return {linear_->forward(inputs.at(0))};
  }
  std::string describe() const override { return "fixed rows " + std::to_string(rows_); }

private:
  std::int64_t rows_;
  torch::nn::Linear linear_{nullptr};
};

class free_stage : public stage_module {
public:
  free_stage(std::int64_t in, std::int64_t out, bool relu) : relu_(relu) {
    if (!relu)
      linear_ = register_module("linear", torch::nn::Linear(in, out));
  }
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& inputs) override {
    return {relu_ ? torch::relu(inputs.at(0)) : linear_->forward(inputs.at(0))};
  }
  std::string describe() const override { return relu_ ? "relu" : "linear"; }

private:
  bool relu_;
  torch::nn::Linear linear_{nullptr};
};

// Three layers (a free Linear, a ReLU without parameters, then a Linear that runs only at its traced
// rows, or a free one), a batch of 32 rows in 4 micro-batches.
training_job three_layers(bool traced_last) {
  training_job job;
  job.microbatches = 4;
  job.num_layers = 3;
  job.make_stages = [traced_last](const schedule& s) {
    const std::int64_t rows = 32 / s.shape.num_microbatches;
    std::vector<std::shared_ptr<stage_module>> out{std::make_shared<free_stage>(16, 32, false),
                                                   std::make_shared<free_stage>(32, 32, true)};
    if (traced_last)
      out.push_back(std::make_shared<fixed_rows_stage>(rows, 32, 4));
    else
      out.push_back(std::make_shared<free_stage>(32, 4, false));
    return out;
  };
  job.make_optimizer = [](std::vector<torch::Tensor> params) {
    return std::make_shared<torch::optim::SGD>(params, torch::optim::SGDOptions(0.01).momentum(0.9));
  };
  job.loss = [](const torch::Tensor& out, const torch::Tensor& target) { return torch::mse_loss(out, target); };
  job.batch = [](int) {
    return std::pair{std::vector<torch::Tensor>{torch::randn({32, 16})}, torch::randn({32, 4})};
  };
  return job;
}
} // namespace

TEST_CASE("measure_layers: the run's micro-batch and every other size a planner tries, a traced layer made again "
          "for each, and each layer's optimizer step",
          "[runtime][profile]") {
  for (bool traced_last : {false, true}) {
    INFO("traced last layer: " << traced_last);
    const auto layers = measure_layers(three_layers(traced_last), 2);
    REQUIRE(layers.size() == 3);
    // The run's count 4 halved down to 1 (16, 32 rows) and doubled twice (4, 2 rows), by rows.
    for (const auto& l : layers) {
      std::vector<std::int64_t> rows;
      for (const auto& z : l.other_sizes)
        rows.push_back(z.rows);
      CHECK(rows == std::vector<std::int64_t>{2, 4, 16, 32});
      CHECK(l.F > 0);
      CHECK(l.B > 0);
      for (const auto& z : l.other_sizes) {
        CHECK(z.F > 0);
        CHECK(z.B > 0);
      }
    }
    CHECK(layers[0].U > 0); // a Linear's step
    CHECK(layers[1].U < layers[0].U); // the ReLU has no parameters, no optimizer: nothing but the call
    CHECK(layers[2].U > 0);
    CHECK(layers[1].param_bytes == 0);
    CHECK(layers[2].param_bytes == (32 * 4 + 4) * 4);
    CHECK(layers[0].output_bytes == 8 * 32 * 4); // the run's 8-row micro-batch
  }
}
