#include "helpers.hpp"

#include "models/residual_mlp.hpp"

#include <catch2/catch.hpp>

using namespace pippy;

namespace {

struct fixture {
  models::ResidualMLP net{nullptr};
  torch::Tensor x, c, target;
  fixture() {
    torch::manual_seed(1);
    net = models::ResidualMLP(12, 5, 16, 3, 4);
    x = torch::randn({6, 12});
    c = torch::randn({6, 5});
    target = torch::randn({6, 3});
  }
  forward_fn call() {
    return [n = net](const std::vector<torch::Tensor>& xs) mutable { return n(xs[0], xs[1]); };
  }
  torch::Tensor loss(const std::vector<torch::Tensor>& o) const {
    return torch::mse_loss(o[0], target) + 0.1 * o[1].pow(2).mean();
  }
  void check(pippy::pipe& p) {
    auto ref = net(x, c);
    loss(ref).backward();
    auto run = test::run_stages(p, {x, c}, [&](const std::vector<torch::Tensor>& o) { return loss(o); });
    REQUIRE(run.outputs.size() == 2);
    CHECK(test::close(run.outputs[0], ref[0]));
    CHECK(test::close(run.outputs[1], ref[1]));
    test::check_stage_grads(p, *net);
  }
};

} // namespace

TEST_CASE("Residual MLP: skip over two stages passed through, two inputs, two outputs, buffers", "[compiler]") {
  fixture f;
  annotate_split_points(*f.net, {{"blocks.0", split_point::end}, {"blocks.2", split_point::end}});
  pippy::pipe p = pipeline(*f.net, f.call(), {f.x, f.c}, {.clone_parameters = true});
  REQUIRE(p.num_stages() == 3);
  // Stage 0 takes both pipe inputs and owns the normalisation buffers.
  CHECK(p.stage_inputs(0) == std::vector<value_source>{{-1, 0}, {-1, 1}});
  std::vector<std::string> buffers;
  for (const auto& item : p.stage(0)->named_buffers()) buffers.push_back(item.key());
  CHECK(buffers == std::vector<std::string>{"mean", "std"});
  CHECK(p.stage(1)->named_buffers().is_empty());
  // h0 (used by the head in stage 2) and the running h cross both boundaries; with pass-through every
  // stage reads only its predecessor.
  REQUIRE(p.stage_inputs(1).size() == 2);
  REQUIRE(p.stage_inputs(2).size() == 2);
  for (const auto& src : p.stage_inputs(1)) CHECK(src.stage == 0);
  for (const auto& src : p.stage_inputs(2)) CHECK(src.stage == 1);
  CHECK(p.outputs() == std::vector<value_source>{{2, 0}, {2, 1}});
  // Receivers can allocate from the traced metadata: [6, 16] float activations.
  auto in1 = p.stage_input_meta(1);
  REQUIRE(in1.size() == 2);
  for (const auto& m : in1) {
    CHECK(m.sizes == std::vector<int64_t>{6, 16});
    CHECK(m.dtype == torch::kFloat);
    CHECK(m.requires_grad);
  }
  auto out2 = p.stage_output_meta(2);
  REQUIRE(out2.size() == 2);
  CHECK(out2[0].sizes == std::vector<int64_t>{6, 3});
  auto h = test::holders(p);
  CHECK(h["blocks.0.fc1.weight"] == std::vector<int>{0});
  CHECK(h["blocks.1.fc2.bias"] == std::vector<int>{1});
  CHECK(h["blocks.2.fc1.weight"] == std::vector<int>{1});
  CHECK(h["head.weight"] == std::vector<int>{2});
  // Stage 1 hands h0 on untouched: one of its outputs is one of its inputs.
  auto* s1 = dynamic_cast<graph_stage*>(p.stage(1).get());
  REQUIRE(s1 != nullptr);
  bool passes = false;
  for (const auto* o : s1->graph().outputs()) passes = passes || o->node()->kind() == c10::prim::Param;
  CHECK(passes);
  f.check(p);
}

TEST_CASE("Residual MLP: direct routing sends the skip from stage 0 to stage 2", "[compiler]") {
  fixture f;
  annotate_split_points(*f.net, {{"blocks.0", split_point::end}, {"blocks.2", split_point::end}});
  pippy::pipe p = pipeline(*f.net, f.call(), {f.x, f.c}, {.routing = skip_routing::direct, .clone_parameters = true});
  REQUIRE(p.num_stages() == 3);
  CHECK(p.stage_inputs(1).size() == 1);
  REQUIRE(p.stage_inputs(2).size() == 2);
  CHECK(p.stage_inputs(2)[0].stage == 0);  // h0, straight from stage 0
  CHECK(p.stage_inputs(2)[1].stage == 1);
  CHECK(p.to_string().find("routing direct") != std::string::npos);
  f.check(p);
}

TEST_CASE("Residual MLP: buffers are shared with the model unless cloned", "[compiler]") {
  fixture f;
  annotate_split_points(*f.net, {{"blocks.1", split_point::beginning}});
  pippy::pipe p = pipeline(*f.net, f.call(), {f.x, f.c});
  REQUIRE(p.num_stages() == 2);
  CHECK(p.stage(0)->named_buffers()["mean"].data_ptr() == f.net->mean.data_ptr());
  // Changing the model's statistics in place changes what the pipe computes, identically.
  {
    torch::NoGradGuard g;
    f.net->mean.add_(0.25);
  }
  auto ref = f.net(f.x, f.c);
  auto out = p.forward({f.x, f.c});
  CHECK(test::close(out[0], ref[0]));
  CHECK(test::close(out[1], ref[1]));
}
