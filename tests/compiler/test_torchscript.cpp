#include "helpers.hpp"

#include <catch2/catch.hpp>
#include <pippy/core/error.hpp>

#include <filesystem>
#include <map>

using namespace pippy;

namespace {

// A TorchScript model built from source in C++, saved and loaded back: what torch.jit.script writes.
torch::jit::Module make_script_model() {
  torch::manual_seed(3);
  auto block = [](const std::string& name, int64_t in, int64_t out) {
    torch::jit::Module m(name);
    m.register_parameter("weight", (torch::randn({out, in}) * 0.3).requires_grad_(), false);
    m.register_parameter("bias", (torch::randn({out}) * 0.1).requires_grad_(), false);
    m.define(R"(
def forward(self, x):
    return torch.tanh(torch.matmul(x, self.weight.t()) + self.bias)
)");
    return m;
  };
  torch::jit::Module model("Net");
  model.register_module("layer0", block("Block0", 6, 8));
  model.register_module("layer1", block("Block1", 8, 8));
  model.register_module("layer2", block("Block2", 8, 4));
  model.register_buffer("scale", torch::full({4}, 1.5));
  model.define(R"(
def forward(self, x):
    h = self.layer0.forward(x)
    h = self.layer1.forward(h) + h
    return self.layer2.forward(h) * self.scale
)");
  return model;
}

} // namespace

TEST_CASE("TorchScript file round trip: load, split, equal forward and backward", "[compiler]") {
  const auto path = std::filesystem::temp_directory_path() / "pippy_test_script_model.pt";
  make_script_model().save(path.string());
  torch::jit::Module loaded = torch::jit::load(path.string());
  std::filesystem::remove(path);
  torch::Tensor x = torch::randn({5, 6});

  annotate_split_points(loaded, {{"layer0", split_point::end}, {"layer2", split_point::beginning}});
  pippy::pipe p = pipeline(loaded, {x}, {.clone_parameters = true});
  REQUIRE(p.num_stages() == 3);
  auto h = test::holders(p);
  CHECK(h["layer0.weight"] == std::vector<int>{0});
  CHECK(h["layer1.bias"] == std::vector<int>{1});
  CHECK(h["layer2.weight"] == std::vector<int>{2});
  std::vector<std::string> buffers;
  for (const auto& item : p.stage(2)->named_buffers()) buffers.push_back(item.key());
  CHECK(buffers == std::vector<std::string>{"scale"});

  torch::Tensor ref = loaded.forward({x}).toTensor();
  ref.pow(2).sum().backward();
  auto run = test::run_stages(p, {x}, [](const std::vector<torch::Tensor>& o) { return o[0].pow(2).sum(); });
  CHECK(test::close(run.outputs[0], ref));
  auto grads = test::stage_grads(p);
  for (const auto& item : loaded.named_parameters(true)) {
    INFO(item.name);
    CHECK(test::close(grads.at(item.name), item.value.grad()));
  }
  CHECK(p.to_string().find("modules: layer0\n") != std::string::npos);
}

TEST_CASE("TorchScript with control flow: traced by running, every parameter keeps its gradient", "[compiler]") {
  torch::manual_seed(4);
  torch::jit::Module model("Gated");
  auto linear = [](int64_t in, int64_t out) {
    return std::pair{(torch::randn({out, in}) * 0.3).requires_grad_(), (torch::randn({out}) * 0.1).requires_grad_()};
  };
  auto [w0, b0] = linear(6, 8);
  auto [w1, b1] = linear(8, 4);
  model.register_parameter("w0", w0, false);
  model.register_parameter("b0", b0, false);
  model.register_parameter("w1", w1, false);
  model.register_parameter("b1", b1, false);
  model.register_parameter("scale", torch::ones({4}).requires_grad_(), false);
  model.define(R"(
def forward(self, x):
    h = torch.tanh(torch.matmul(x, self.w0.t()) + self.b0)
    if bool(h.sum() > -1000.0):
        h = h * 2.0
    return (torch.matmul(h, self.w1.t()) + self.b1) * self.scale
)");
  torch::Tensor x = torch::randn({5, 6});
  // A forward with gradients before pipeline(): the executor's optimized plan would put aten::detach
  // into a trace taken under no_grad, and w0/b0 would silently get no gradient.
  for (int i = 0; i < 3; ++i) model.forward({x}).toTensor().sum().backward();
  for (const auto& item : model.named_parameters(true)) item.value.mutable_grad() = torch::Tensor();
  const traced_model traced = trace_script(model, {x});
  CHECK(traced.trace_note.find("control flow (prim::If)") != std::string::npos);
  CHECK(traced.graph->toString().find("aten::detach") == std::string::npos);
  pippy::pipe p = split_traced(traced, {.num_stages = 2, .clone_parameters = true});
  torch::Tensor ref = model.forward({x}).toTensor();
  ref.pow(2).sum().backward();
  auto run = test::run_stages(p, {x}, [](const std::vector<torch::Tensor>& o) { return o[0].pow(2).sum(); });
  CHECK(test::close(run.outputs[0], ref));
  auto grads = test::stage_grads(p);  // requires every stage parameter to have a gradient
  for (const auto& item : model.named_parameters(true)) {
    INFO(item.name);
    CHECK(test::close(grads.at(item.name), item.value.grad()));
  }
}

TEST_CASE("TorchScript: unknown module names are rejected", "[compiler]") {
  auto model = make_script_model();
  try {
    annotate_split_points(model, {{"layer7", split_point::end}});
    FAIL("no error");
  } catch (const input_error& e) {
    CHECK(std::string(e.what()) ==
          "annotate_split_points: the model has no submodule named 'layer7' (nearest: layer0, layer1, layer2)");
  }
}

namespace {

// A C++ model that marks its own stage boundaries with pipe_split().
struct SplitInForwardImpl : torch::nn::Module {
  SplitInForwardImpl()
      : a(register_module("a", torch::nn::Linear(4, 6))), b(register_module("b", torch::nn::Linear(6, 6))),
        c(register_module("c", torch::nn::Linear(6, 2))), act(register_module("act", torch::nn::ReLU())) {}
  torch::Tensor forward(torch::Tensor x) {
    torch::Tensor h = torch::relu(a(x));
    pipe_split();
    h = act(b(h.view({-1, 2, 3}).flatten(1)));  // int-list constants, rebuilt in stage 1
    pipe_split();
    return c(h) * 0.5 + x.sum(1, true) + offset;  // x skips to the last stage; offset is a tensor constant
  }
  torch::nn::Linear a, b, c;
  torch::nn::ReLU act;
  torch::Tensor offset = torch::tensor({0.25f, -1.0f});  // not registered: the tracer bakes it in
};
TORCH_MODULE(SplitInForward);

} // namespace

TEST_CASE("pipe_split() inside a forward marks stage boundaries", "[compiler]") {
  torch::manual_seed(4);
  SplitInForward net;
  torch::Tensor x = torch::randn({3, 4});
  pipe_split();  // outside tracing: nothing happens
  pippy::pipe p = pipeline(*net, [&](const std::vector<torch::Tensor>& xs) { return std::vector<torch::Tensor>{net(xs[0])}; },
                    {x}, {.clone_parameters = true});
  REQUIRE(p.num_stages() == 3);
  auto h = test::holders(p);
  CHECK(h["a.weight"] == std::vector<int>{0});
  CHECK(h["b.weight"] == std::vector<int>{1});
  CHECK(h["c.weight"] == std::vector<int>{2});
  for (int s = 0; s < 3; ++s) {
    auto* gs = dynamic_cast<graph_stage*>(p.stage(s).get());
    REQUIRE(gs != nullptr);
    CHECK(gs->graph().toString().find("pipe_split") == std::string::npos);
  }
  torch::Tensor ref = net(x);
  ref.pow(2).sum().backward();
  auto run = test::run_stages(p, {x}, [](const std::vector<torch::Tensor>& o) { return o[0].pow(2).sum(); });
  CHECK(test::close(run.outputs[0], ref));
  test::check_stage_grads(p, *net);
  auto* last = dynamic_cast<graph_stage*>(p.stage(2).get());
  REQUIRE(last != nullptr);
  CHECK(last->graph().toString().find("0.2500") != std::string::npos);  // the baked-in offset
  // Automatic splitting is not used when the forward has markers... and annotations take priority.
  annotate_split_points(*net, {{"c", split_point::beginning}});
  CHECK(pipeline(*net, [&](const std::vector<torch::Tensor>& xs) { return std::vector<torch::Tensor>{net(xs[0])}; },
                 {x})
            .num_stages() == 2);
}

TEST_CASE("A split point on a C++ module without parameters is rejected with advice", "[compiler]") {
  SplitInForward net;
  torch::Tensor x = torch::randn({3, 4});
  annotate_split_points(*net, {{"act", split_point::end}});
  try {
    pipeline(*net, [&](const std::vector<torch::Tensor>& xs) { return std::vector<torch::Tensor>{net(xs[0])}; }, {x});
    FAIL("no error");
  } catch (const input_error& e) {
    CHECK(std::string(e.what()) ==
          "split point 'act': the module has no parameters or buffers used by the traced forward, and a traced C++ "
          "forward does not record which module computed what, so it cannot be located in the graph; call "
          "pippy::pipe_split() in the forward there instead");
  }
}

TEST_CASE("Tracing a C++ module with train-mode BatchNorm leaves its buffers as they were", "[compiler]") {
  torch::manual_seed(6);
  torch::nn::Sequential net(torch::nn::Linear(4, 8), torch::nn::BatchNorm1d(8), torch::nn::ReLU(),
                            torch::nn::Linear(8, 2));
  net->train();
  std::map<std::string, torch::Tensor> before;
  for (const auto& item : net->named_buffers()) before[item.key()] = item.value().clone();
  const torch::Tensor x = torch::randn({5, 4});
  annotate_split_points(*net, {{"3", split_point::beginning}});
  pippy::pipe p = pipeline(*net, [&](const std::vector<torch::Tensor>& xs) { return std::vector<torch::Tensor>{net->forward(xs[0])}; },
                           {x}, {.clone_parameters = true});
  CHECK(p.num_stages() == 2);
  CHECK(p.stage(0)->uses_batch_statistics());
  for (const auto& item : net->named_buffers()) {
    INFO(item.key());
    CHECK(torch::equal(item.value(), before.at(item.key())));  // num_batches_tracked still 0, statistics unmoved
  }
}
