#include "helpers.hpp"

#include "models/mynetwork.hpp"
#include <pippy/core/error.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <map>
#include <string>

using namespace pippy;

namespace {

models::MyNetwork make_net() {
  torch::manual_seed(0);
  return models::MyNetwork(512, std::vector<int64_t>{512, 1024, 256});
}

forward_fn call(models::MyNetwork& net) {
  return [net](const std::vector<torch::Tensor>& xs) mutable { return std::vector<torch::Tensor>{net(xs[0])}; };
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const input_error& e) {
    return e.what();
  }
  return "<no input_error>";
}

} // namespace

TEST_CASE("MyNetwork split with annotate_split_points reproduces forward and backward", "[compiler]") {
  auto net = make_net();
  torch::Tensor x = torch::randn({8, 512});
  annotate_split_points(*net, {{"layer0", split_point::end}, {"layer1", split_point::end}});
  pippy::pipe p = pipeline(*net, call(net), {x}, {.clone_parameters = true});
  REQUIRE(p.num_stages() == 3);

  // Each stage owns exactly its parameters, under their original names.
  auto h = test::holders(p);
  CHECK(h.size() == 8);
  CHECK(h["layer0.lin.weight"] == std::vector<int>{0});
  CHECK(h["layer0.lin.bias"] == std::vector<int>{0});
  CHECK(h["layer1.lin.weight"] == std::vector<int>{1});
  CHECK(h["layer2.lin.weight"] == std::vector<int>{2});
  CHECK(h["output_proj.weight"] == std::vector<int>{2});
  CHECK(p.tied_parameters().empty());
  // One boundary tensor between neighbours, shaped like the layer outputs.
  CHECK(p.stage_inputs(0) == std::vector<value_source>{{-1, 0}});
  CHECK(p.stage_inputs(1) == std::vector<value_source>{{0, 0}});
  CHECK(p.stage_inputs(2) == std::vector<value_source>{{1, 0}});

  torch::Tensor ref = net(x);
  torch::Tensor target = torch::randn({8, 10});
  auto loss_fn = [&](const std::vector<torch::Tensor>& o) { return torch::mse_loss(o[0], target); };
  loss_fn({ref}).backward();
  auto run = test::run_stages(p, {x}, loss_fn);
  REQUIRE(run.outputs.size() == 1);
  CHECK(test::close(run.outputs[0], ref));
  CHECK(test::close(run.loss, loss_fn({ref})));
  test::check_stage_grads(p, *net);
  // Cloned: the stages' tensors are copies, not the model's.
  CHECK(p.stage(0)->named_parameters()["layer0.lin.weight"].data_ptr() != net->layers[0]->lin->weight.data_ptr());

  // Whole-pipe forward in one process (autograd across stages).
  CHECK(test::close(p.forward({x})[0], ref));
}

TEST_CASE("MyNetwork pipe shares the model's tensors by default and prints like print(pipe)", "[compiler]") {
  auto net = make_net();
  torch::Tensor x = torch::randn({4, 512});
  annotate_split_points(*net, {{"layer0", split_point::end}, {"layer1", split_point::end}});
  pippy::pipe p = pipeline(*net, call(net), {x});
  CHECK(p.stage(0)->named_parameters()["layer0.lin.weight"].data_ptr() == net->layers[0]->lin->weight.data_ptr());
  const std::string text = p.to_string();
  CAPTURE(text);
  CHECK(text.find("pipe: 3 stages, 1 input(s), routing pass_through") != std::string::npos);
  CHECK(text.find("stage 0: 1 input(s), 1 output(s)") != std::string::npos);
  CHECK(text.find("modules: layer0.lin\n") != std::string::npos);
  CHECK(text.find("parameter layer0.lin.weight [512, 512]") != std::string::npos);
  CHECK(text.find("modules: layer2.lin output_proj\n") != std::string::npos);
  CHECK(text.find("stage1(stage0[0])") != std::string::npos);
  CHECK(text.find("outputs = (stage2[0])") != std::string::npos);
  // END extends over the block's parameter-free ReLU: stage 0 ends with it, stage 2 has none left...
  auto* s0 = dynamic_cast<graph_stage*>(p.stage(0).get());
  auto* s2 = dynamic_cast<graph_stage*>(p.stage(2).get());
  REQUIRE(s0 != nullptr);
  REQUIRE(s2 != nullptr);
  CHECK(s0->graph().toString().find("aten::relu") != std::string::npos);
  // Both of stage 2's Linear layers are there (libtorch 1.13's tracer records t + addmm, 2.x linear).
  const std::string g2 = s2->graph().toString();
  auto count = [&](const std::string& what) {
    int c = 0;
    for (auto pos = g2.find(what); pos != std::string::npos; pos = g2.find(what, pos + 1)) ++c;
    return c;
  };
  CHECK(count("aten::addmm(") + count("aten::linear(") == 2);
  CHECK(count("aten::relu(") == 1);
  std::ostringstream os;
  os << p;
  CHECK(os.str() == text);
}

TEST_CASE("Split point errors name the module or stage", "[compiler]") {
  auto net = make_net();
  torch::Tensor x = torch::randn({2, 512});
  CHECK(error_of([&] { annotate_split_points(*net, {{"layer9", split_point::end}}); }) ==
        "annotate_split_points: the model has no submodule named 'layer9' (nearest: layer0, layer1, layer2, "
        "layer0.lin, layer1.lin, layer2.lin)");
  CHECK(error_of([&] {
          annotate_split_points(*net, {{"layer0", split_point::end}, {"layer1", split_point::beginning}});
          pipeline(*net, call(net), {x});
        }) == "split point 'layer0' (end) and split point 'layer1' (beginning) fall at the same place and produce "
              "an empty stage 1");
  CHECK(error_of([&] {
          annotate_split_points(*net, {{"layer0", split_point::beginning}});
          pipeline(*net, call(net), {x});
        }) == "split point 'layer0' (beginning) produces an empty stage 0 (nothing is computed before it)");
  CHECK(error_of([&] {
          annotate_split_points(*net, {{"layer0", split_point::end}, {"output_proj", split_point::end}});
          pipeline(*net, call(net), {x});
        }) == "split point 'output_proj' (end) produces an empty stage 2 (nothing is computed after it)");
  CHECK(error_of([&] {
          annotate_split_points(*net, {{"layer0", split_point::end}, {"layer1", split_point::end}});
          pipeline(*net, call(net), {x}, {.num_ranks = 2});
        }) == "pipeline: the split produces 3 stages but only 2 rank(s) x 1 stage(s) per rank were requested");
  CHECK(error_of([&] { pipeline(*net, call(net), {x}, {.num_stages = 5}); }) ==
        "automatic split: cannot split into 5 stages; the model has 4 places where a stage can begin");
  // Annotations are consumed by pipeline(), also when it fails: this one is unannotated.
  CHECK(pipeline(*net, call(net), {x}).num_stages() == 1);
}

TEST_CASE("MyNetwork automatic split balances parameter bytes", "[compiler]") {
  auto net = make_net();
  torch::Tensor x = torch::randn({2, 512});
  pippy::pipe p = pipeline(*net, call(net), {x}, {.num_stages = 2});
  REQUIRE(p.num_stages() == 2);
  // Parameter counts: layer0 262,656, layer1 525,312, layer2 262,400, output_proj 2,570. Cutting before
  // layer1 / layer2 / output_proj gives a largest stage of 790k / 788k / 1,050k: the cut goes before layer2.
  auto h = test::holders(p);
  std::size_t bytes[2] = {0, 0};
  for (int s = 0; s < 2; ++s)
    for (const auto& item : p.stage(s)->named_parameters()) bytes[s] += static_cast<std::size_t>(item.value().numel());
  CHECK(h["layer1.lin.weight"] == std::vector<int>{0});
  CHECK(h["layer2.lin.weight"] == std::vector<int>{1});
  CHECK(bytes[0] == 512 * 512 + 512 + 512 * 1024 + 1024);
  torch::Tensor ref = net(x);
  CHECK(test::close(p.forward({x})[0], ref));
}

namespace {
// An embedding with many parameters that costs almost nothing (a lookup), then two equal Linear layers with
// few parameters that cost nearly all the time: bytes and time call for different splits.
struct bytes_vs_time : torch::nn::Module {
  torch::nn::Embedding emb{nullptr};
  torch::nn::Linear l1{nullptr}, l2{nullptr};
  bytes_vs_time() {
    emb = register_module("emb", torch::nn::Embedding(10000, 512));
    l1 = register_module("l1", torch::nn::Linear(512, 512));
    l2 = register_module("l2", torch::nn::Linear(512, 512));
  }
  torch::Tensor forward(const torch::Tensor& idx) { return l2(torch::relu(l1(emb(idx)))); }
};
} // namespace

TEST_CASE("automatic split balanced by measured node time: the cheap embedding joins the first heavy layer",
          "[compiler]") {
  torch::manual_seed(0);
  auto net = std::make_shared<bytes_vs_time>();
  forward_fn call = [net](const std::vector<torch::Tensor>& xs) { return std::vector<torch::Tensor>{net->forward(xs[0])}; };
  const torch::Tensor idx = torch::randint(10000, {2048}, torch::kLong);
  // Three places a stage can begin (before emb, l1, l2) and 2 stages. Independent expectation from the
  // work: the lookup copies 2048 rows (4 MB); each Linear does 2048 x 512 x 512 multiply-adds (0.5 G), some
  // 20 times longer. By time, {emb, l1} | {l2} (largest stage: one Linear and the lookup) beats
  // {emb} | {l1, l2} (two Linears) unless the lookup is measured as slow as a Linear. By parameter bytes
  // (20 MB against 1 MB each) the embedding stands alone instead.
  const auto holder = [](const pippy::pipe& p) {
    std::map<std::string, int> h;
    for (const auto& [name, stages] : test::holders(p))
      if (name.ends_with(".weight"))
        h[name] = stages.size() == 1 ? stages[0] : -1;
    return h;
  };
  pippy::pipe by_time = pipeline(*net, call, {idx}, {.num_stages = 2, .balance_by = balance::measured_time});
  REQUIRE(by_time.num_stages() == 2);
  CHECK(holder(by_time) == std::map<std::string, int>{{"emb.weight", 0}, {"l1.weight", 0}, {"l2.weight", 1}});
  CHECK(test::close(by_time.forward({idx})[0], net->forward(idx)));
  // The same model balanced by bytes splits the other way: the expectation above tells the two apart.
  pippy::pipe by_bytes = pipeline(*net, call, {idx}, {.num_stages = 2});
  REQUIRE(by_bytes.num_stages() == 2);
  CHECK(holder(by_bytes) == std::map<std::string, int>{{"emb.weight", 0}, {"l1.weight", 1}, {"l2.weight", 1}});
}

TEST_CASE("test::close fails on any nan or inf, on either side", "[compiler]") {
  const auto a = torch::tensor({1.0, 2.0, 3.0});
  CHECK(test::close(a, a.clone()));
  CHECK_FALSE(test::close(a, a + 1e-3));
  for (double bad : {std::nan(""), std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity()}) {
    INFO("value " << bad);
    const auto b = torch::tensor({1.0, bad, 3.0});
    CHECK_FALSE(test::close(a, b));
    CHECK_FALSE(test::close(b, a));
    CHECK_FALSE(test::close(b, b.clone()));
  }
}
