// A causal language model given as a TorchScript file (e.g. Hugging Face's GPT2LMHeadModel traced by
// tests/peers/hf_gpt2.py), split by pipeline() and trained with a pipeline schedule on the real backend.
//   pippy run --nproc 2 -- scripted-lm --model model.pt --data batches.pt --schedule 1f1b --microbatches 6
// The model: forward(int64 [micro-batch, seq]) -> logits [micro-batch, seq, vocab], or a tuple/list whose
// first element they are. The data (torch.save of a dict): "x.K" (input ids) and "y.K" (next tokens),
// int64 [batch, seq], for each step K. Loss: cross entropy of logits.reshape(-1, V) vs y.reshape(-1);
// SGD with momentum 0.9.
// A traced file usually runs only at the shape it was traced with, so it must have been traced with one
// micro-batch ([batch / microbatches, seq]); WORLD_SIZE=1 trains the unsplit module on the micro-batches of
// each step in turn (gradients summed, each loss scaled by 1/microbatches: one step on the whole batch, as
// the pipeline takes it) and prints the same `step N loss X`.
// Split (--split): auto: the compiler's split balanced by parameter bytes; manual: stage i > 0 begins at
// block i * L / num_stages of the L numbered children of --blocks (transformer.h in Hugging Face's GPT-2).
// Tied weights (--tied, one tensor under two names in the file, as HF's embedding and LM head):
// replicate (default): each holder stage has a copy, gradients summed before the step; transmit: the
// first holder sends it forward with the activations.
#include <CLI/CLI.hpp>
#include <torch/script.h>
#include <torch/torch.h>

#include <torch/csrc/jit/runtime/graph_executor.h>

#include <algorithm>
#include <sstream>
#include <optional>
#include <nlohmann/json.hpp>
#include <set>

#include "pippy/compiler/compiler.hpp"
#include "pippy/core/error.hpp"
#include "pippy/core/text_file.hpp"
#include "pippy/runtime/run_export.hpp"
#include "pippy/runtime/sequential_stage.hpp" // even_boundaries
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
  options() : common_options{.lr = 0.1} {}
  std::string model_file, data_file;
  std::string split = "auto";
  std::string blocks = "transformer.h";
  std::string tied = "replicate";
  bool print_pipe = false;
};

// The whole batch of every step, read from --data.
struct lm_data {
  std::vector<torch::Tensor> x, y;
  int64_t rows() const { return x.front().size(0); }
};

lm_data load_data(const std::string& file, int steps) {
  const std::string text = read_text_file(file, "--data " + file + ": cannot open the file");
  const std::vector<char> bytes(text.begin(), text.end());
  c10::IValue v;
  try {
    v = torch::pickle_load(bytes);
  } catch (const c10::Error& e) {
    throw input_error("--data " + file + ": not a torch.save'd dict: " + e.what_without_backtrace());
  }
  if (!v.isGenericDict())
    throw input_error("--data " + file + ": holds a " + v.tagKind() + ", not a dict {\"x.K\": ..., \"y.K\": ...}");
  const auto dict = v.toGenericDict();
  auto get = [&](const std::string& key, int64_t rows) {
    const auto it = dict.find(c10::IValue(key));
    if (it == dict.end())
      throw input_error("--data " + file + ": no key \"" + key + "\" (--steps " + std::to_string(steps) +
                        " needs x.K and y.K for K = 0.." + std::to_string(steps - 1) + ")");
    if (!it->value().isTensor() || it->value().toTensor().scalar_type() != torch::kLong ||
        it->value().toTensor().dim() != 2 || (rows >= 0 && it->value().toTensor().size(0) != rows))
      throw input_error("--data " + file + ": \"" + key + "\" must be an int64 tensor [batch, seq]" +
                        (rows >= 0 ? " with batch " + std::to_string(rows) + " as x.0" : std::string()));
    return it->value().toTensor();
  };
  lm_data d;
  for (int k = 0; k < steps; ++k) {
    d.x.push_back(get("x." + std::to_string(k), k == 0 ? -1 : d.rows()));
    d.y.push_back(get("y." + std::to_string(k), d.rows()));
    if (!d.y.back().sizes().equals(d.x.back().sizes()))
      throw input_error("--data " + file + ": \"y." + std::to_string(k) + "\" is not shaped like \"x." +
                        std::to_string(k) + "\"");
  }
  return d;
}

torch::jit::Module load_model(const std::string& file) {
  // Read through read_text_file, which refuses a directory (torch::jit::load on one throws bad_alloc).
  std::istringstream in(read_text_file(file, "--model " + file + ": cannot open the file"));
  try {
    return torch::jit::load(in);
  } catch (const c10::Error& e) {
    throw input_error("--model " + file + ": not a TorchScript file: " + e.what_without_backtrace());
  } catch (const std::exception& e) { // a file that is not a zip archive can make the reader allocate wildly
    throw input_error("--model " + file + ": not a TorchScript file (" + e.what() + ")");
  }
}

// A forward that fails (usually: a traced model at another shape) as an input_error naming the shape.
template <class F>
auto at_shape(const std::string& file, const torch::Tensor& x, F&& run) {
  try {
    return run();
  } catch (const input_error&) {
    throw;
  } catch (const std::exception& e) { // the interpreter's error (with TorchScript's traceback) or c10::Error
    const std::string msg = e.what();
    std::string last;
    for (size_t a = 0, b; a < msg.size(); a = b + 1) {
      b = std::min(msg.find('\n', a), msg.size());
      if (b > a) last = msg.substr(a, b - a);
    }
    throw input_error("--model " + file + ": forward failed on a micro-batch of shape " + c10::str(x.sizes()) +
                      " (a traced model runs at the shape it was traced with: [batch / microbatches, seq]): " + last);
  }
}

torch::Tensor logits_of(const c10::IValue& out) {
  if (out.isTensor())
    return out.toTensor();
  if (out.isTuple() && !out.toTupleRef().elements().empty() && out.toTupleRef().elements()[0].isTensor())
    return out.toTupleRef().elements()[0].toTensor();
  if (out.isTensorList() && !out.toTensorVector().empty())
    return out.toTensorVector()[0];
  throw input_error("--model: forward must return the logits, or a tuple or list whose first element they are");
}

// The file's parameters by name, a tensor under two names (a tied weight) once, under its first name.
named_tensors unique_named_parameters(const torch::jit::Module& m) {
  named_tensors out;
  std::set<const c10::TensorImpl*> seen;
  for (const auto& p : m.named_parameters())
    if (seen.insert(p.value.unsafeGetTensorImpl()).second)
      out.emplace_back(p.name, p.value);
  return out;
}

std::vector<torch::Tensor> tensors_of(const named_tensors& named) {
  std::vector<torch::Tensor> out;
  for (const auto& [name, t] : named)
    out.push_back(t);
  return out;
}

int64_t check_microbatches(const lm_data& d, int microbatches) {
  if (d.rows() % microbatches != 0)
    throw input_error("the data's batch " + std::to_string(d.rows()) + " must be a multiple of --microbatches " +
                      std::to_string(microbatches) + " (the traced graph has a fixed micro-batch shape)");
  return d.rows() / microbatches;
}

int run_unsplit(const options& o, const training_job& job, const lm_data& data) {
  auto model = load_model(o.model_file);
  const auto params = unique_named_parameters(model);
  auto opt = sgd(tensors_of(params), o.lr);
  const int64_t mb = check_microbatches(data, job.microbatches);
  if (!job.export_dir.empty())
    export_job(job, params, 1, 1);
  for (int k = 0; k < job.steps; ++k) {
    double step_loss = 0;
    for (int i = 0; i < job.microbatches; ++i) {
      auto x = data.x[k].narrow(0, i * mb, mb), y = data.y[k].narrow(0, i * mb, mb);
      auto logits = at_shape(o.model_file, x, [&] { return logits_of(model.forward({x})); });
      auto loss = lm_loss(logits, y) / job.microbatches;
      loss.backward();
      step_loss += loss.item<double>();
    }
    opt->step();
    opt->zero_grad();
    print_loss(k, step_loss);
  }
  if (!job.export_dir.empty())
    export_final(job, 0, params);
  return 0;
}

// Split points of --split manual: the beginnings of the blocks that start stages 1..num_stages-1.
std::vector<std::pair<std::string, split_point>> manual_split(const torch::jit::Module& model,
                                                               const std::string& blocks, int num_stages) {
  std::optional<torch::jit::Module> list;
  for (const auto& m : model.named_modules())
    if (m.name == blocks)
      list = m.value;
  if (!list)
    throw input_error("--blocks " + blocks + ": no such submodule in the model");
  const auto n = static_cast<int>(list->children().size());
  if (num_stages < 1 || num_stages > n)
    throw input_error("--split manual: cannot split the " + std::to_string(n) + " blocks of " + blocks + " into " +
                      std::to_string(num_stages) + " stages");
  std::vector<std::pair<std::string, split_point>> points;
  for (std::size_t b : even_boundaries(static_cast<std::size_t>(n), num_stages))
    points.emplace_back(blocks + "." + std::to_string(b), split_point::beginning);
  return points;
}

} // namespace

int main(int argc, char** argv) {
  options o;
  training_job job;
  job.microbatches = 6;
  job.steps = 3;
  CLI::App app{"A causal LM from a TorchScript file, split by the compiler and trained with a pipeline schedule"};
  app.add_option("--model", o.model_file, "TorchScript file: forward(int64 [micro-batch, seq]) -> logits")->required();
  app.add_option("--data", o.data_file, "torch.save'd dict {\"x.K\", \"y.K\"}: int64 [batch, seq] per step")
      ->required();
  examples::add_schedule_options(app, job);
  app.add_option("--split", o.split, "auto: balanced by parameter bytes; manual: at the blocks of --blocks")
      ->check(CLI::IsMember({"manual", "auto"}));
  app.add_option("--blocks", o.blocks, "--split manual: the module list whose numbered children are the blocks");
  app.add_option("--tied", o.tied, "tied weights: replicate | transmit")
      ->check(CLI::IsMember({"transmit", "replicate"}));
  app.add_option("--microbatches", job.microbatches, "micro-batches per step (the model's traced batch = batch / this)")
      ->check(CLI::PositiveNumber);
  app.add_option("--steps", job.steps, "training steps")->check(CLI::PositiveNumber);
  app.add_option("--seed", o.seed, "libtorch's seed (the model and the data come from the files)");
  app.add_option("--stages-per-rank", job.stages_per_rank, "0 = the schedule's default");
  app.add_flag("--print-pipe", o.print_pipe, "print the split (PiPPy's print(pipe)) on stderr (rank 0)");
  examples::add_optimizer_options(app, o);
  examples::add_run_options(app, job);
  CLI11_PARSE(app, argc, argv);

  // The stages run their graphs with the plain interpreter; the whole module must too (no profiling
  // executor specialising it, as torch.jit.optimized_execution(False) in Python).
  torch::jit::setGraphExecutorOptimize(false);
  torch::manual_seed(o.seed);
  std::optional<lm_data> loaded; // read on first use, inside run_example (its errors are reported there)
  auto data = [&]() -> const lm_data& {
    if (!loaded)
      loaded = load_data(o.data_file, job.steps);
    return *loaded;
  };
  torch::jit::Module model; // the stages share its tensors (replicate: copies)
  std::vector<tied_group> tied;
  job.make_stages = [&](const pippy::schedule& s) {
    const int S = s.shape.num_stages();
    const int64_t mb = check_microbatches(data(), s.shape.num_microbatches);
    model = load_model(o.model_file);
    if (o.split == "manual")
      annotate_split_points(model, manual_split(model, o.blocks, S));
    const auto x = data().x[0].narrow(0, 0, mb);
    auto p = at_shape(o.model_file, x, [&] { return pippy::pipeline(model, {x}, split_options(s, o.split, o.tied)); });
    if (o.print_pipe && read_dist_env().rank == 0)
      say(p.to_string());
    return stages_for(p, s, tied);
  };
  job.tied_groups = [&] { return tied; };
  job.make_optimizer = [&](std::vector<torch::Tensor> params) { return sgd(std::move(params), o.lr); };
  job.describe_model = [&](int) {
    return nlohmann::json{{"model", "scripted-lm"}, {"file", o.model_file}, {"batch", data().rows()},
                          {"lr", o.lr}, {"momentum", examples::sgd_momentum}, {"split", o.split}, {"tied", o.tied}}
        .dump();
  };
  job.loss = lm_loss;
  job.batch = [&](int step) {
    return std::pair{std::vector<torch::Tensor>{data().x.at(static_cast<size_t>(step))},
                     data().y.at(static_cast<size_t>(step))};
  };
  return run_example(job, o.threads, [&] { return run_unsplit(o, job, data()); });
}
