// Replicated tied weights: two stages hold copies of one weight; tied_sync sums their gradients before
// U, so K pipelined steps equal K steps of the model that uses the one tensor twice.
#include <catch2/catch.hpp>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include "pippy/core/generators.hpp"
#include "pippy/runtime/step_driver.hpp"
#include "pippy/runtime/pipeline_engine.hpp"
#include "pippy/runtime/tied_weights.hpp"

using namespace pippy;

namespace {
class first_use : public stage_module { // h = tanh(x W)
public:
  explicit first_use(torch::Tensor w) { w_ = register_parameter("w", w); }
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& in) override { return {torch::tanh(in[0].matmul(w_))}; }
  std::string describe() const override { return "tanh(x W)"; }
  torch::Tensor w_;
};
class second_use : public stage_module { // logits = h W^T
public:
  explicit second_use(torch::Tensor w) { w_ = register_parameter("w", w); }
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& in) override { return {in[0].matmul(w_.t())}; }
  std::string describe() const override { return "h W^T"; }
  torch::Tensor w_;
};
torch::Tensor ce(const torch::Tensor& out, const torch::Tensor& y) { return torch::nn::functional::cross_entropy(out, y); }
std::shared_ptr<torch::optim::Optimizer> sgd(std::vector<torch::Tensor> p) {
  return std::make_shared<torch::optim::SGD>(p, torch::optim::SGDOptions(0.2).momentum(0.9));
}
} // namespace

TEST_CASE("replicated tied weight: copies get the summed gradient and stay equal to the unsplit weight",
          "[runtime][tied]") {
  torch::manual_seed(3);
  const auto w0 = torch::randn({6, 6}) * 0.5;
  constexpr int K = 3;
  std::vector<std::pair<torch::Tensor, torch::Tensor>> data;
  for (int k = 0; k < K; ++k)
    data.emplace_back(torch::randn({8, 6}), torch::randint(0, 6, {8}, torch::kLong));
  // Unsplit: one tensor used twice.
  auto w = w0.clone().requires_grad_(true);
  auto opt = sgd({w});
  std::vector<double> ref;
  for (auto& [x, y] : data) {
    opt->zero_grad();
    auto loss = ce(torch::tanh(x.matmul(w)).matmul(w.t()), y);
    loss.backward();
    opt->step();
    ref.push_back(loss.item<double>());
  }
  for (const char* rt : {"engine", "actors"})
    for (const char* name : {"gpipe", "1f1b"}) {
      DYNAMIC_SECTION(name << " " << rt) {
        auto s = make_schedule({.name = name, .num_ranks = 2, .num_microbatches = 4});
        auto a = std::make_shared<first_use>(w0.clone());
        auto b = std::make_shared<second_use>(w0.clone());
        std::vector<std::shared_ptr<stage_executor>> ex{std::make_shared<stage_executor>(0, 2, a, sgd(a->parameters())),
                                                        std::make_shared<stage_executor>(1, 2, b, sgd(b->parameters()), ce)};
        tied_sync tied({tied_group{"w", {0, 1}}}, {{0, {{0, a->w_}}}, {1, {{0, b->w_}}}}, s.shape, nullptr);
        for (auto& e : ex)
          e->set_step_gate([&](int st, std::function<void()> f) { tied.before_step(st, std::move(f)); });
        caf::actor_system_config cfg;
        configure_for_training(cfg);
        caf::actor_system sys{cfg};
        std::unique_ptr<pipeline_engine> engine;
        std::unique_ptr<step_driver> actors;
        if (std::string(rt) == "engine")
          engine = std::make_unique<pipeline_engine>(s, ex);
        else
          actors = std::make_unique<step_driver>(sys, s, ex, cpu_backend());
        for (int k = 0; k < K; ++k) {
          auto& [x, y] = data[static_cast<std::size_t>(k)];
          auto loss = engine ? engine->step({x}, y) : actors->step({x}, y);
          REQUIRE(loss);
          CHECK(std::abs(*loss - ref[static_cast<std::size_t>(k)]) <= 1e-5 * ref[static_cast<std::size_t>(k)]);
        }
        // Each rank's actions follow one another in the trace: the U a holder's gate deferred to the other
        // holder (tied_sync) still starts after the rank's previous action and ends after it starts.
        const trace t = engine ? engine->events() : actors->events();
        for (int r = 0; r < 2; ++r) {
          double last_end = 0;
          for (const auto& e : t.events)
            if (e.rank == r && is_compute(e.act.kind)) {
              INFO("rank " << r << " " << to_string(e.act) << " " << e.start_us << ".." << e.end_us);
              CHECK(e.start_us >= last_end);
              CHECK(e.end_us >= e.start_us);
              last_end = e.end_us;
            }
        }
        CHECK(a->w_.allclose(b->w_, 0, 0)); // the copies took identical updates
        CHECK((a->w_ - w).norm().item<double>() <= 1e-5 * w.norm().item<double>());
      }
    }
}
