#include <catch2/catch.hpp>

#include "pippy/runtime/reference_models.hpp"
#include "pippy/runtime/sequential_stage.hpp"
#include "pippy/runtime/stage_executor.hpp"

using namespace pippy;

namespace {
torch::Tensor ce(const torch::Tensor& out, const torch::Tensor& y) {
  return torch::nn::functional::cross_entropy(out, y);
}
double rel(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).norm().item<double>() / std::max(b.norm().item<double>(), 1e-30);
}
const mynetwork_options small{.in_dim = 16, .dims = {16, 32, 8}, .classes = 5};
} // namespace

TEST_CASE("I then W equals B: input and weight gradients", "[runtime][executor]") {
  auto data = synthetic_batch(3, 0, 6, 16, 5);
  auto run = [&](bool split_backward) {
    auto seq = make_mynetwork(11, small);
    auto stages = split_sequential(seq, {2, 4});
    stage_executor mid(1, 3, stages[1], nullptr);
    auto h = torch::relu(data.x.matmul(torch::ones({16, 16}) * 0.1));
    auto out = mid.forward(0, {h});
    auto g_out = torch::ones_like(out[0]) * 0.25;
    std::vector<torch::Tensor> g_in;
    if (split_backward) {
      g_in = mid.backward_input(0, {g_out});
      // I alone leaves the weights untouched...
      for (auto& p : stages[1]->parameters())
        CHECK(!p.grad().defined());
      CHECK(mid.in_flight() == 1);
      mid.backward_weight(0);
      CHECK(mid.split_weight_passes() == 1); // W from the gradients I captured, not a second pass
      CHECK(mid.fallback_weight_passes() == 0);
    } else {
      g_in = mid.full_backward(0, {g_out});
    }
    CHECK(mid.in_flight() == 0);
    std::vector<torch::Tensor> grads{g_in[0]};
    for (auto& p : stages[1]->parameters())
      grads.push_back(p.grad().clone());
    return grads;
  };
  auto iw = run(true);
  auto b = run(false);
  REQUIRE(iw.size() == b.size());
  for (std::size_t i = 0; i < iw.size(); ++i) {
    INFO("tensor " << i);
    CHECK(rel(iw[i], b[i]) < 1e-6);
    CHECK(b[i].abs().sum().item<double>() > 0);
  }
}

TEST_CASE("last stage: scaled loss: W before I and double forward are errors", "[runtime][executor]") {
  auto seq = make_mynetwork(5, small);
  auto stages = split_sequential(seq, {4});
  stage_executor last(1, 2, stages[1], nullptr, ce);
  auto h = torch::randn({4, 32});
  auto y = torch::tensor({0, 1, 2, 3}, torch::kLong);
  last.begin_step();
  last.forward(0, {h.narrow(0, 0, 2)}, y.narrow(0, 0, 2), 0.5);
  last.forward(1, {h.narrow(0, 2, 2)}, y.narrow(0, 2, 2), 0.5);
  const double whole = ce(stages[1]->forward({h})[0], y).item<double>();
  CHECK(last.step_loss() == Approx(whole).epsilon(1e-6));
  CHECK_THROWS(last.forward(0, {h}, y, 1.0));
  CHECK_THROWS(last.backward_weight(1));
  last.full_backward(0, {});
  last.backward_input(1, {});
  last.backward_weight(1);
  CHECK(last.in_flight() == 0);
}

namespace {
// A stage that uses one weight twice (tied): the split W would count it twice, so W falls back.
class tied_stage : public stage_module {
public:
  tied_stage() { w_ = register_parameter("w", torch::randn({8, 8}) * 0.3); }
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& in) override {
    return {torch::tanh(in[0].matmul(w_)).matmul(w_)};
  }
  std::string describe() const override { return "tied"; }

private:
  torch::Tensor w_;
};
} // namespace

TEST_CASE("tied weights: W falls back to a second pass and still equals B", "[runtime][executor]") {
  torch::manual_seed(1);
  auto x = torch::randn({4, 8});
  auto g_out = torch::randn({4, 8});
  auto run = [&](bool split) {
    torch::manual_seed(2);
    auto m = std::make_shared<tied_stage>();
    stage_executor ex(1, 3, m, nullptr);
    ex.forward(0, {x});
    std::vector<torch::Tensor> gi;
    if (split) {
      gi = ex.backward_input(0, {g_out});
      ex.backward_weight(0);
      CHECK(ex.fallback_weight_passes() == 1);
      CHECK(ex.split_weight_passes() == 0);
    } else {
      gi = ex.full_backward(0, {g_out});
    }
    return std::pair{gi[0], m->parameters()[0].grad().clone()};
  };
  auto [gi_s, gw_s] = run(true);
  auto [gi_b, gw_b] = run(false);
  CHECK(rel(gi_s, gi_b) < 1e-6);
  CHECK(rel(gw_s, gw_b) < 1e-6);
}

TEST_CASE("a tensor registered under two names is one parameter (one gradient, one update)",
          "[runtime][executor]") {
  struct twice : stage_module {
    torch::Tensor w;
    twice() {
      w = register_parameter("a", torch::full({2}, 3.0));
      register_parameter("b", w);
    }
    std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& in) override { return {in[0] * w}; }
    std::string describe() const override { return "twice"; }
  };
  auto m = std::make_shared<twice>();
  CHECK(m->parameters().size() == 2); // libtorch lists it under both names...
  CHECK(unique_parameters(*m).size() == 1); // ...the runtime holds it once
  stage_executor ex(0, 2, m, std::make_shared<torch::optim::SGD>(unique_parameters(*m), torch::optim::SGDOptions(1.0)));
  CHECK(ex.parameter_bytes() == 2 * sizeof(float));
  ex.begin_step();
  ex.forward(0, {torch::ones({1, 2})});
  ex.full_backward(0, {torch::full({1, 2}, 0.5)});
  CHECK(m->w.grad().allclose(torch::full({2}, 0.5)));
  ex.step();
  CHECK(m->w.allclose(torch::full({2}, 2.5))); // one SGD update of lr 1
}
