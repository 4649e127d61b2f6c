// Vision models written as model zoos write them, traced to TorchScript in Python (vision_models.py,
// run by the CTest fixture into vision/), loaded and split the way a new user would.
#include "helpers.hpp"

#include <catch2/catch.hpp>
#include <pippy/core/error.hpp>

#include <set>

using namespace pippy;

namespace {

torch::jit::Module load(const std::string& name) { return torch::jit::load("vision/" + name + ".pt"); }

std::map<std::string, torch::Tensor> state_of(const torch::jit::Module& m) {
  std::map<std::string, torch::Tensor> s;
  for (const auto& item : m.named_parameters(true)) s[item.name] = item.value.detach().clone();
  for (const auto& item : m.named_buffers(true)) s[item.name] = item.value.detach().clone();
  return s;
}

std::map<std::string, torch::Tensor> script_grads(const torch::jit::Module& m) {
  std::map<std::string, torch::Tensor> g;
  for (const auto& item : m.named_parameters(true)) g[item.name] = item.value.grad();
  return g;
}

// The unsplit module forward and backward on x; the split one stage by stage as ranks would. Outputs and
// every gradient must agree (and every stage parameter must have one: test::stage_grads checks it).
void check_split(torch::jit::Module& model, pippy::pipe& p, const torch::Tensor& x) {
  auto loss = [](const std::vector<torch::Tensor>& out) { return out[0].pow(2).mean(); };
  for (int s = 0; s < p.num_stages(); ++s)
    for (auto& param : p.stage(s)->parameters()) param.mutable_grad() = torch::Tensor();
  auto split = test::run_stages(p, {x}, loss);
  for (const auto& item : model.named_parameters(true)) item.value.mutable_grad() = torch::Tensor();
  const torch::Tensor ref = model.forward({x}).toTensor();
  loss({ref}).backward();
  CHECK(test::close(split.outputs[0], ref));
  const auto want = script_grads(model);
  const auto got = test::stage_grads(p);
  REQUIRE(got.size() == want.size());
  for (const auto& [name, g] : want) {
    INFO("gradient of " << name);
    REQUIRE(g.defined());
    CHECK(test::close(got.at(name), g));
  }
}

// Each parameter and buffer of the model is held by exactly one stage.
void check_owned_once(const torch::jit::Module& model, const pippy::pipe& p) {
  std::map<std::string, int> count;
  for (int s = 0; s < p.num_stages(); ++s) {
    for (const auto& item : p.stage(s)->named_parameters(true)) ++count[item.key()];
    for (const auto& item : p.stage(s)->named_buffers(true)) ++count[item.key()];
  }
  size_t expected = 0;
  for (const auto& item : model.named_parameters(true)) {
    ++expected;
    CHECK(count[item.name] == 1);
  }
  for (const auto& item : model.named_buffers(true)) {
    ++expected;
    INFO("buffer " << item.name);
    CHECK(count[item.name] == 1);
  }
  CHECK(count.size() == expected);
}

void run_forward_with_grad(torch::jit::Module& m, const torch::Tensor& x) {
  for (int i = 0; i < 3; ++i) m.forward({x}).toTensor().sum().backward();  // the executor optimizes by then
  for (const auto& item : m.named_parameters(true)) item.value.mutable_grad() = torch::Tensor();
}

} // namespace

TEST_CASE("vision models: split automatically 2 and 4 ways, with and without a prior forward", "[compiler][vision]") {
  for (const std::string name : {"resnet_eval", "vit", "resnet"})
    for (int stages : {2, 4})
      for (bool prior_forward : {false, true}) {
        INFO(name << ", " << stages << " stages, prior forward " << prior_forward);
        torch::manual_seed(1);
        auto model = load(name);
        const torch::Tensor x = torch::randn({2, 3, 16, 16});
        if (prior_forward) run_forward_with_grad(model, x);
        pippy::pipe p = pipeline(model, {x}, {.num_stages = stages, .clone_parameters = true});
        REQUIRE(p.num_stages() == stages);
        check_owned_once(model, p);
        check_split(model, p, x);
      }
}

TEST_CASE("vision models: split at named submodules, with and without parameters", "[compiler][vision]") {
  struct named_split {
    std::string model;
    std::vector<std::pair<std::string, split_point>> points;
  };
  const std::vector<named_split> cases = {
      {"resnet_eval", {{"layer2", split_point::beginning}}},
      {"resnet_eval", {{"stem_relu", split_point::end}, {"layer2", split_point::beginning}, {"avgpool", split_point::beginning}}},
      {"resnet", {{"stem_relu", split_point::beginning}, {"layer1.1", split_point::beginning}, {"avgpool", split_point::end}}},
      {"vit", {{"blocks.1", split_point::beginning}}},
      {"vit", {{"patch", split_point::end}, {"blocks.2", split_point::beginning}, {"norm", split_point::beginning}}},
  };
  for (const auto& c : cases)
    for (bool prior_forward : {false, true}) {
      INFO(c.model << " with " << c.points.size() << " split points, prior forward " << prior_forward);
      torch::manual_seed(2);
      auto model = load(c.model);
      const torch::Tensor x = torch::randn({2, 3, 16, 16});
      if (prior_forward) run_forward_with_grad(model, x);
      annotate_split_points(model, c.points);
      pippy::pipe p = pipeline(model, {x}, {.clone_parameters = true});
      REQUIRE(p.num_stages() == static_cast<int>(c.points.size()) + 1);
      check_owned_once(model, p);
      check_split(model, p, x);
    }
}

TEST_CASE("vision models: a parameterless split point is exactly where the module runs", "[compiler][vision]") {
  auto model = load("resnet_eval");
  const torch::Tensor x = torch::randn({2, 3, 16, 16});
  annotate_split_points(model, {{"avgpool", split_point::beginning}});
  pippy::pipe p = pipeline(model, {x}, {.clone_parameters = true});
  REQUIRE(p.num_stages() == 2);
  // Stage 1 is avgpool, flatten and fc: it receives layer2's [2, 16, 8, 8] activation.
  const auto in = p.stage_input_meta(1);
  REQUIRE(in.size() == 1);
  CHECK(in[0].sizes == std::vector<int64_t>{2, 16, 8, 8});
  std::vector<std::string> params;
  for (const auto& item : p.stage(1)->named_parameters(true)) params.push_back(item.key());
  CHECK(params == std::vector<std::string>{"fc.weight", "fc.bias"});
}

TEST_CASE("vision models: pipeline() leaves the user's module exactly as it was", "[compiler][vision]") {
  for (const std::string name : {"resnet", "vit"}) {
    INFO(name);
    auto model = load(name);
    const torch::Tensor x = torch::randn({2, 3, 16, 16});
    run_forward_with_grad(model, x);  // also takes the re-trace path's optimized plan into account
    const auto before = state_of(model);
    pippy::pipe p = pipeline(model, {x}, {.num_stages = 2});
    const auto after = state_of(model);
    REQUIRE(before.size() == after.size());
    for (const auto& [k, v] : before) {
      INFO(k);
      CHECK(torch::equal(v, after.at(k)));
    }
  }
}

TEST_CASE("vision models: stages take batch sizes other than the traced one", "[compiler][vision]") {
  for (const std::string name : {"resnet_eval", "vit", "resnet"}) {
    auto model = load(name);
    pippy::pipe p = pipeline(model, {torch::randn({2, 3, 16, 16})}, {.num_stages = 3, .clone_parameters = true});
    for (int64_t batch : {1, 3, 5}) {
      INFO(name << " batch " << batch);
      check_split(model, p, torch::randn({batch, 3, 16, 16}));
    }
  }
}

TEST_CASE("vision models: train-mode BatchNorm is reported per stage", "[compiler][vision]") {
  const torch::Tensor x = torch::randn({2, 3, 16, 16});
  auto train = load("resnet");
  annotate_split_points(train, {{"avgpool", split_point::beginning}});
  pippy::pipe p = pipeline(train, {x});
  CHECK(p.stage(0)->uses_batch_statistics());
  CHECK_FALSE(p.stage(1)->uses_batch_statistics());  // avgpool and fc
  auto eval = load("resnet_eval");
  pippy::pipe q = pipeline(eval, {x}, {.num_stages = 2});
  CHECK_FALSE(q.stage(0)->uses_batch_statistics());
  CHECK_FALSE(q.stage(1)->uses_batch_statistics());
}

TEST_CASE("vision models: pipe_split() called in Python marks the stage boundary", "[compiler][vision]") {
  for (const std::string name : {"resnet_marked", "resnet_marked_scripted"}) {
    INFO(name);
    auto model = load(name);
    const torch::Tensor x = torch::randn({2, 3, 16, 16});
    pippy::pipe p = pipeline(model, {x}, {.clone_parameters = true});
    REQUIRE(p.num_stages() == 2);
    std::set<std::string> second;
    for (const auto& item : p.stage(1)->named_parameters(true)) second.insert(item.key().substr(0, item.key().find('.')));
    CHECK(second == std::set<std::string>{"fc", "layer2"});
    check_owned_once(model, p);
    check_split(model, p, x);
    check_split(model, p, torch::randn({3, 3, 16, 16}));
  }
}

// transformers' GPT-2 (tests/peers/hf_models.py: 4 blocks, its embedding and LM head one tensor), traced in
// Python: split 2 and 4 ways, automatically and at blocks, with and without a prior forward.
TEST_CASE("GPT-2 from transformers: outputs and every gradient equal unsplit", "[compiler][vision]") {
  for (int stages : {2, 4})
    for (bool named : {false, true})
      for (bool prior_forward : {false, true}) {
        INFO(stages << " stages, " << (named ? "at blocks" : "automatic") << ", prior forward " << prior_forward);
        auto model = torch::jit::load("hf_gpt2/model.pt");
        torch::manual_seed(3);
        const torch::Tensor ids = torch::randint(0, 64, {2, 16});
        if (prior_forward) {
          for (int i = 0; i < 3; ++i) model.forward({ids}).toTupleRef().elements()[0].toTensor().sum().backward();
          for (const auto& item : model.named_parameters(true)) item.value.mutable_grad() = torch::Tensor();
        }
        pipeline_options opts{.clone_parameters = true};
        if (named) {
          std::vector<std::pair<std::string, split_point>> points;
          for (int s = 1; s < stages; ++s) points.emplace_back("transformer.h." + std::to_string(s * 4 / stages), split_point::beginning);
          annotate_split_points(model, points);
        } else {
          opts.num_stages = stages;
        }
        pippy::pipe p = pipeline(model, {ids}, opts);
        REQUIRE(p.num_stages() == stages);
        REQUIRE(p.tied_parameters().size() == 1);
        CHECK(p.tied_parameters()[0].name == "transformer.wte.weight");
        for (const torch::Tensor& x : {ids, torch::randint(0, 64, {3, 11})}) {  // and another shape
          INFO("input " << x.sizes());
          for (int s = 0; s < p.num_stages(); ++s)
            for (auto& param : p.stage(s)->parameters()) param.mutable_grad() = torch::Tensor();
          auto loss = [](const std::vector<torch::Tensor>& out) { return out[0].pow(2).mean(); };
          auto split = test::run_stages(p, {x}, loss);
          for (const auto& item : model.named_parameters(true)) item.value.mutable_grad() = torch::Tensor();
          const torch::Tensor ref = model.forward({x}).toTupleRef().elements()[0].toTensor();
          loss({ref}).backward();
          CHECK(test::close(split.outputs[0], ref));
          const auto got = test::stage_grads(p);  // every stage parameter has one; tied copies summed
          size_t compared = 0;
          for (const auto& item : model.named_parameters(true)) {
            if (got.count(item.name) == 0) continue;  // lm_head.weight: the tie's second name
            INFO("gradient of " << item.name);
            REQUIRE(item.value.grad().defined());
            CHECK(test::close(got.at(item.name), item.value.grad()));
            ++compared;
          }
          CHECK(compared == got.size());
        }
      }
}
