// PiPPy README's MyNetwork (512 -> 512 -> 1024 -> 256 -> 10 classes) trained with a pipeline schedule.
//   pippy run --nproc 3 -- mynetwork --schedule 1f1b --microbatches 6 --steps 5 --seed 0 [--trace t.json]
// With WORLD_SIZE=1 it trains the unsplit model on the same data; every schedule and the unsplit run
// print the same `step N loss X` lines (to float32 rounding). --in-process R runs all R ranks of the
// schedule in this one process instead. --split auto cuts the compiler's MyNetwork (examples/models)
// with pipeline(), balanced into the schedule's stages; --split manual (default) slices a
// torch::nn::Sequential by hand.
#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <csignal>
#include <iostream>
#include <nlohmann/json.hpp>

#if PIPPY_WITH_COMPILER
#include "models/mynetwork.hpp"
#include "pippy/compiler/compiler.hpp"
#endif
#include "pippy/core/error.hpp"
#include "pippy/runtime/environment.hpp"
#include "pippy/runtime/gloo_group.hpp"
#include "pippy/runtime/pipeline_engine.hpp"
#include "pippy/runtime/reference_models.hpp"
#include "pippy/runtime/run_export.hpp"
#include "pippy/runtime/sequential_stage.hpp"
#include "pippy/runtime/training.hpp"

#include "example_options.hpp"

using namespace pippy;
using examples::sgd;

namespace {

struct options : examples::common_options {
  options() : common_options{.batch = 64, .lr = 0.05} {}
  int64_t in_dim = 512;
  std::vector<int64_t> dims = {512, 1024, 256};
  std::string split = "manual";
};

torch::Tensor ce(const torch::Tensor& out, const torch::Tensor& y) {
  return torch::nn::functional::cross_entropy(out, y);
}

int run_unsplit(const options& o, const training_job& job) {
  const mynetwork_options net{.in_dim = o.in_dim, .dims = o.dims};
  auto model = make_mynetwork(o.seed, net);
  auto opt = sgd(model->parameters(), o.lr);
  if (!job.export_dir.empty())
    export_job(job, parameters_by_name({model.get()}), 1, 1);
  unsplit_run run;
  for (int k = 0; k < job.steps; ++k) {
    auto data = synthetic_batch(o.seed, k, o.batch, net.in_dim, net.classes);
    run.step(k, [&] { return ce(model->forward(data.x), data.y); }, *opt);
  }
  if (!job.export_dir.empty())
    export_final(job, 0, parameters_by_name({model.get()}));
  run.report(job, *model, o.batch);
  return 0;
}

#if PIPPY_WITH_COMPILER
// The compiler's path: the unmodified MyNetwork module, balanced into the schedule's stages by pipeline().
std::vector<std::shared_ptr<stage_module>> compiler_stages(const options& o, const schedule& s, const training_job& job,
                                                           torch::nn::AnyModule& keep_alive) {
  torch::manual_seed(o.seed); // the same initial weights as make_mynetwork (same layers, same order)
  auto net = models::MyNetwork(o.in_dim, o.dims);
  keep_alive = torch::nn::AnyModule(net);
  const int S = s.shape.num_stages();
  auto p = pipeline(
      *net, [&](const std::vector<torch::Tensor>& xs) { return std::vector<torch::Tensor>{net(xs[0])}; },
      traced_microbatch(job, {torch::zeros({o.batch, o.in_dim})}, s.shape.num_microbatches), {.num_stages = S, .num_ranks = s.shape.num_ranks,
                                         .stages_per_rank = s.shape.stages_per_rank});
  if (p.num_stages() != S)
    throw input_error("the compiler split MyNetwork into " + std::to_string(p.num_stages()) + " stages, the schedule needs " +
                      std::to_string(S));
  std::vector<std::shared_ptr<stage_module>> stages;
  for (int i = 0; i < S; ++i)
    stages.push_back(p.stage(i));
  return stages;
}
#else
std::vector<std::shared_ptr<stage_module>> compiler_stages(const options&, const schedule&, const training_job&,
                                                           torch::nn::AnyModule&) {
  throw input_error("--split auto: built without the compiler (pippy::models)");
}
#endif

} // namespace

int main(int argc, char** argv) {
  options o;
  training_job job;
  CLI::App app{"MyNetwork (PiPPy README) trained with a pipeline schedule on the real backend"};
  app.option_defaults()->always_capture_default(); // every option's help shows its default
  examples::add_schedule_options(app, job);
  examples::add_split_option(app, o.split, "slices of a torch::nn::Sequential at the layers");
  app.add_option("--microbatches", job.microbatches, "micro-batches per step")->check(CLI::PositiveNumber);
  app.add_option("--steps", job.steps, "training steps")->check(CLI::PositiveNumber);
  app.add_option("--seed", o.seed, "seed of the model and the synthetic data");
  app.add_option("--batch", o.batch, "rows per step")->check(CLI::PositiveNumber);
  app.add_option("--stages-per-rank", job.stages_per_rank, "0 = the schedule's default");
  app.add_option("--in-dim", o.in_dim, "input features (README: 512)")->check(CLI::PositiveNumber);
  app.add_option("--dims", o.dims, "hidden layer sizes (README: 512,1024,256)")->delimiter(',');
  examples::add_optimizer_options(app, o);
  examples::add_run_options(app, job);
  std::string plan_dir;
  examples::add_plan_option(app, plan_dir);
  CLI11_PARSE(app, argc, argv);
  job.settings = examples::settings_of(app);
  std::vector<std::size_t> planned_split; // the plan's Sequential modules where stages 1.. begin
  try {
    if (!plan_dir.empty() && o.split != "manual")
      throw input_error("--plan needs --split manual (the plan's boundaries index the Sequential's modules)");
    for (int b : examples::apply_plan(plan_dir, job))
      planned_split.push_back(static_cast<std::size_t>(b));
  } catch (const input_error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }

  const mynetwork_options net{.in_dim = o.in_dim, .dims = o.dims};
  torch::nn::AnyModule compiled_model; // keeps the compiler's model (shared weights) alive
  // The Sequential's modules where stages 1.. begin: the plan's split where it has one for this many
  // stages (measure_layers asks for the finest), else the default.
  auto boundaries_for = [&](int num_stages) {
    const bool planned = !planned_split.empty() && static_cast<int>(planned_split.size()) + 1 == num_stages;
    return planned ? planned_split : mynetwork_boundaries(net, num_stages);
  };
  job.make_stages = [&](const schedule& s) {
    if (o.split == "auto")
      return compiler_stages(o, s, job, compiled_model);
    auto model = make_mynetwork(o.seed, net);
    return split_sequential(model, boundaries_for(s.shape.num_stages()));
  };
  if (o.split == "manual") {
    job.num_layers = static_cast<int>(2 * net.dims.size() + 1); // the Sequential's modules
    job.stage_first_layers = [&](int num_stages) {
      std::vector<int> first{0};
      for (const auto b : boundaries_for(num_stages))
        first.push_back(static_cast<int>(b));
      return first;
    };
  }
  job.make_optimizer = [&](std::vector<torch::Tensor> params) { return sgd(std::move(params), o.lr); };
  job.describe_model = [&](int num_stages) {
    nlohmann::json m{{"model", "mynetwork"}, {"in_dim", net.in_dim}, {"dims", net.dims}, {"classes", net.classes},
                     {"batch", o.batch}, {"lr", o.lr}, {"momentum", examples::sgd_momentum}, {"split", o.split}};
    if (o.split == "manual") // indices of the Sequential's modules where stages 1.. begin
      m["stage_boundaries"] = boundaries_for(num_stages);
    return m.dump();
  };
  job.loss = ce;
  job.batch = [&](int step) {
    auto data = synthetic_batch(o.seed, step, o.batch, net.in_dim, net.classes);
    return std::pair{std::vector<torch::Tensor>{data.x}, data.y};
  };
  return run_example(job, o.threads, [&] { return run_unsplit(o, job); });
}
