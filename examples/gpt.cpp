// The compiler's small GPT (examples/models/gpt.hpp: token + position embeddings, pre-norm causal
// self-attention blocks, LM head tied to the token embedding) split by pipeline() and trained with a
// pipeline schedule on the real backend.
//   pippy run --nproc 3 -- gpt --schedule 1f1b --microbatches 4 --steps 10 [--trace t.json]
// The tied weight (--tied): transmit (default): stage 0 owns it and sends it forward with the
// activations, its gradient comes back through the stage boundaries; replicate: the first and last
// stages hold copies whose gradients the runtime sums before the optimizer step (tied_sync).
// Data: sequences counting up from a random token by a random stride (1..3) mod vocab; the model learns
// to continue them. WORLD_SIZE=1 trains the unsplit model on the same data: same `step N loss X`.
#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>

#include "models/gpt.hpp"
#include "pippy/compiler/compiler.hpp"
#include "pippy/core/error.hpp"
#include "pippy/runtime/environment.hpp"
#include "pippy/runtime/gloo_group.hpp"
#include "pippy/runtime/pipeline_engine.hpp"
#include "pippy/runtime/run_export.hpp"
#include "pippy/runtime/training.hpp"

#include "example_options.hpp"
#include "language_model.hpp"

using namespace pippy;
using examples::lm_loss;
using examples::sgd;
using examples::split_options;
using examples::stages_for;

namespace {

struct options : examples::common_options {
  options() : common_options{.batch = 8, .lr = 0.1} {}
  std::string split = "manual";
  std::string tied = "transmit";
  models::gpt_config config{.vocab_size = 64, .block_size = 16, .n_layer = 6, .n_head = 2, .n_embd = 32};
};

std::pair<torch::Tensor, torch::Tensor> counting_batch(const options& o, int step) {
  auto gen = at::detail::createCPUGenerator(o.seed * 1000003ULL + static_cast<std::uint64_t>(step));
  const int64_t T = o.config.block_size, V = o.config.vocab_size;
  auto start = at::randint(0, V, {o.batch, 1}, gen, torch::kLong);
  auto stride = at::randint(1, 4, {o.batch, 1}, gen, torch::kLong);
  auto seq = (start + stride * torch::arange(T + 1, torch::kLong).unsqueeze(0)).remainder(V);
  return {seq.narrow(1, 0, T).contiguous(), seq.narrow(1, 1, T).contiguous()};
}

models::GPT make_model(const options& o) {
  torch::manual_seed(o.seed);
  return models::GPT(o.config);
}

int run_unsplit(const options& o, const training_job& job) {
  auto model = make_model(o);
  auto opt = sgd(unique_parameters(*model), o.lr); // the tied embedding/head weight once
  if (!job.export_dir.empty())
    export_job(job, parameters_by_name({model.get()}), 1, 1);
  unsplit_run run;
  for (int k = 0; k < job.steps; ++k) {
    auto [x, y] = counting_batch(o, k);
    run.step(k, [&] { return lm_loss(model->forward(x), y); }, *opt);
  }
  if (!job.export_dir.empty())
    export_final(job, 0, parameters_by_name({model.get()}));
  run.report(job, *model, o.batch);
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  options o;
  training_job job;
  job.microbatches = 4;
  job.steps = 10;
  CLI::App app{"A small GPT split by the compiler and trained with a pipeline schedule"};
  app.option_defaults()->always_capture_default(); // every option's help shows its default
  examples::add_schedule_options(app, job);
  examples::add_split_option(app, o.split, "PiPPy-style split points at block beginnings");
  app.add_option("--tied", o.tied, "tied embedding/head weight: transmit | replicate")
      ->check(CLI::IsMember({"transmit", "replicate"}));
  app.add_option("--microbatches", job.microbatches, "micro-batches per step (must divide --batch)")
      ->check(CLI::PositiveNumber);
  app.add_option("--steps", job.steps, "training steps")->check(CLI::PositiveNumber);
  app.add_option("--seed", o.seed, "seed of the model and the data");
  app.add_option("--batch", o.batch, "sequences per step")->check(CLI::PositiveNumber);
  app.add_option("--stages-per-rank", job.stages_per_rank, "0 = the schedule's default");
  app.add_option("--layers", o.config.n_layer, "transformer blocks (>= number of stages)")->check(CLI::PositiveNumber);
  app.add_option("--embd", o.config.n_embd, "embedding width")->check(CLI::PositiveNumber);
  app.add_option("--heads", o.config.n_head, "attention heads")->check(CLI::PositiveNumber);
  app.add_option("--seq", o.config.block_size, "sequence length")->check(CLI::PositiveNumber);
  examples::add_optimizer_options(app, o);
  examples::add_run_options(app, job);
  std::string plan_dir;
  examples::add_plan_option(app, plan_dir);
  CLI11_PARSE(app, argc, argv);
  job.settings = examples::settings_of(app);
  std::vector<int> planned_split; // the plan's blocks where stages 1.. begin
  try {
    if (!plan_dir.empty() && o.split != "manual")
      throw input_error("--plan needs --split manual (the plan's boundaries index the blocks)");
    planned_split = examples::apply_plan(plan_dir, job);
  } catch (const input_error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
  // The layers of a per-layer profile: one block per stage (the embeddings go with the first, the head
  // with the last).
  if (o.split == "manual") {
    job.num_layers = static_cast<int>(o.config.n_layer);
    job.stage_first_layers = [&](int num_stages) { // as make_stages splits
      std::vector<int> first{0};
      if (!planned_split.empty() && static_cast<int>(planned_split.size()) + 1 == num_stages)
        first.insert(first.end(), planned_split.begin(), planned_split.end());
      else
        for (const auto b : models::gpt_stage_first_blocks(o.config, num_stages))
          first.push_back(static_cast<int>(b));
      return first;
    };
  }

  models::GPT model{nullptr}; // the stages share its tensors (replicate: copies)
  std::vector<tied_group> tied;
  job.make_stages = [&](const pippy::schedule& s) {
    const int S = s.shape.num_stages();
    if (o.batch % (job.data_parallel * s.shape.num_microbatches) != 0)
      throw input_error("--batch " + std::to_string(o.batch) + " must be a multiple of --microbatches " +
                        std::to_string(s.shape.num_microbatches) +
                        (job.data_parallel > 1 ? " x --dp " + std::to_string(job.data_parallel) : std::string()) +
                        " (the traced graph has a fixed micro-batch shape)");
    model = make_model(o);
    if (o.split == "manual" && !planned_split.empty() && static_cast<int>(planned_split.size()) + 1 == S) {
      std::vector<std::pair<std::string, split_point>> points;
      for (int b : planned_split)
        points.emplace_back("blocks." + std::to_string(b), split_point::beginning);
      annotate_split_points(*model, points);
    } else if (o.split == "manual") {
      annotate_split_points(*model, models::gpt_manual_split(o.config, S));
    }
    auto [x, y] = counting_batch(o, 0);
    auto p = pippy::pipeline(
        *model, [&](const std::vector<torch::Tensor>& xs) { return std::vector<torch::Tensor>{model->forward(xs[0])}; },
        pippy::traced_microbatch(job, {x}, s.shape.num_microbatches), split_options(s, o.split, o.tied));
    return stages_for(p, s, tied);
  };
  job.tied_groups = [&] { return tied; };
  job.make_optimizer = [&](std::vector<torch::Tensor> params) { return sgd(std::move(params), o.lr); };
  job.describe_model = [&](int num_stages) {
    const auto& c = o.config;
    nlohmann::json m{{"model", "gpt"}, {"vocab_size", c.vocab_size}, {"block_size", c.block_size},
                     {"n_layer", c.n_layer}, {"n_head", c.n_head}, {"n_embd", c.n_embd}, {"batch", o.batch},
                     {"lr", o.lr}, {"momentum", examples::sgd_momentum}, {"split", o.split}, {"tied", o.tied}};
    if (o.split == "manual")
      m["stage_first_blocks"] = models::gpt_stage_first_blocks(c, num_stages);
    return m.dump();
  };
  job.loss = lm_loss;
  job.batch = [&](int step) {
    auto [x, y] = counting_batch(o, step);
    return std::pair{std::vector<torch::Tensor>{x}, y};
  };
  return run_example(job, o.threads, [&] { return run_unsplit(o, job); });
}
