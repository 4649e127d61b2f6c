// pippy-train: trains (or, with --eval, runs forward) a model given as a TorchScript file, split by the
// compiler and run with a pipeline schedule on the real backend. No C++ to write.
//   pippy run --nproc 2 -- pippy-train --model model.pt --input 32x3x32x32 --schedule 1f1b --microbatches 4
//   pippy run --nproc 4 -- pippy-train --model lm.pt --data data.pt --split-at transformer.h.2=begin ...
// Data: --input SHAPE[:DTYPE[:HIGH]] per model input gives the whole batch of a step (synthetic, seeded
// by --seed and the step: class indices over the output's last dimension for cross-entropy, normal values
// shaped like the output for mse), or --data FILE: torch.save of a dict {"x0.K", "x1.K", ..., "y.K"} (or
// "x.K" for a single input) per step K. Steps may differ in sequence length; micro-batches may be uneven
// (torch.tensor_split sizes). Loss: cross-entropy of output.reshape(-1, C) vs y.reshape(-1), or mse,
// on the model's first output; each micro-batch's loss is weighted by its share of the batch's rows.
// WORLD_SIZE=1 (pippy run --nproc 1) trains the unsplit module on the same micro-batches in turn
// (gradients accumulated): the same `step N loss X` as any schedule.
#include <CLI/CLI.hpp>
#include <torch/script.h>
#include <torch/torch.h>

#include <torch/csrc/jit/runtime/graph_executor.h>

#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <optional>
#include <set>

#include "pippy/compiler/compiler.hpp"
#include "pippy/compiler/model_file.hpp"
#include "pippy/core/error.hpp"
#include "pippy/core/text_file.hpp"
#include "pippy/runtime/microbatch.hpp"
#include "pippy/runtime/run_export.hpp"
#include "pippy/runtime/training.hpp"

#include "example_options.hpp"
#include "language_model.hpp"

using namespace pippy;

namespace {

struct options : examples::common_options {
  options() : common_options{.lr = 0.1} {}
  std::string model_file, data_file;
  std::vector<std::string> inputs;  // --input specs
  std::string loss = "cross-entropy";
  std::string optimizer = "sgd";
  split_request split;
  std::string tied = "replicate";
  bool print_pipe = false;
  std::string output_file;  // --eval: the outputs of every step, {"out.K": tensor}
};

// --eval's report of one step's outputs (the model's first output over the whole batch): two sums
// (the plain one catches sign errors the absolute one hides), and the tensor kept for --output.
class eval_report {
public:
  explicit eval_report(std::string file) : file_(std::move(file)) {}
  void add(int step, const torch::Tensor& out) {
    const auto y = out.to(torch::kDouble);
    std::ostringstream os;
    os << std::setprecision(9) << "step " << step << " output sum " << y.sum().item<double>() << " abs_sum "
       << y.abs().sum().item<double>();
    say_stdout(os.str());
    outputs_.insert("out." + std::to_string(step), out.detach().contiguous());
  }
  // Writes --output (atomically: a reader never sees half a file).
  void save() const {
    if (file_.empty() || outputs_.empty())
      return;
    const auto bytes = torch::pickle_save(c10::IValue(outputs_));
    write_file_atomically(file_, [&](std::ostream& os) { os.write(bytes.data(), static_cast<std::streamsize>(bytes.size())); });
  }
  eval_report(const eval_report&) = delete;
  eval_report& operator=(const eval_report&) = delete;

private:
  static void say_stdout(const std::string& line) { std::cout << line << "\n" << std::flush; }
  std::string file_;
  // Python reads it with torch.load under torch.serialization.safe_globals([torch.jit._pickle.restore_type_tag])
  // (libtorch's pickler tags dicts with their type).
  c10::Dict<std::string, torch::Tensor> outputs_;
};

// The whole batch of every step.
struct step_data {
  std::vector<torch::Tensor> x;
  torch::Tensor y;
};

std::vector<step_data> load_data(const std::string& file, int steps) {
  const std::string text = read_text_file(file, "--data " + file + ": cannot open the file");
  const std::vector<char> bytes(text.begin(), text.end());
  c10::IValue v;
  try {
    v = torch::pickle_load(bytes);
  } catch (const c10::Error& e) {
    throw input_error("--data " + file + ": not a torch.save'd dict: " + e.what_without_backtrace());
  }
  if (!v.isGenericDict())
    throw input_error("--data " + file + ": holds a " + v.tagKind() + ", not a dict {\"x0.K\": ..., \"y.K\": ...}");
  const auto dict = v.toGenericDict();
  auto find = [&](const std::string& key) -> std::optional<torch::Tensor> {
    const auto it = dict.find(c10::IValue(key));
    if (it == dict.end())
      return std::nullopt;
    if (!it->value().isTensor())
      throw input_error("--data " + file + ": \"" + key + "\" is not a tensor");
    return it->value().toTensor();
  };
  std::vector<step_data> out;
  for (int k = 0; k < steps; ++k) {
    const std::string K = std::to_string(k);
    step_data d;
    if (auto x = find("x." + K)) {
      d.x.push_back(*x);
    } else {
      for (int i = 0;; ++i) {
        auto xi = find("x" + std::to_string(i) + "." + K);
        if (!xi)
          break;
        d.x.push_back(*xi);
      }
    }
    auto y = find("y." + K);
    if (d.x.empty() || !y)
      throw input_error("--data " + file + ": no \"x0." + K + "\" (or \"x." + K + "\") and \"y." + K + "\" (--steps " +
                        std::to_string(steps) + " needs K = 0.." + std::to_string(steps - 1) + ")");
    d.y = *y;
    for (const auto& x : d.x)
      if (x.dim() == 0 || x.size(0) != d.y.size(0))
        throw input_error("--data " + file + ": step " + K + "'s inputs and \"y." + K +
                          "\" must have the same number of rows (their first dimension)");
    out.push_back(std::move(d));
  }
  return out;
}

// The model's first output, whatever container forward returns.
torch::Tensor first_output(const c10::IValue& out) {
  if (out.isTensor())
    return out.toTensor();
  if (out.isTuple() && !out.toTupleRef().elements().empty() && out.toTupleRef().elements()[0].isTensor())
    return out.toTupleRef().elements()[0].toTensor();
  if (out.isTensorList() && !out.toTensorVector().empty())
    return out.toTensorVector()[0];
  throw input_error("--model: forward must return a tensor, or a tuple or list whose first element is one");
}

loss_function make_loss(const std::string& name) {
  if (name == "mse")
    return [](const torch::Tensor& out, const torch::Tensor& y) { return torch::mse_loss(out, y); };
  return [](const torch::Tensor& out, const torch::Tensor& y) {
    return torch::nn::functional::cross_entropy(out.reshape({-1, out.size(-1)}), y.reshape({-1}));
  };
}

std::shared_ptr<torch::optim::Optimizer> make_optimizer(const options& o, std::vector<torch::Tensor> params) {
  if (o.optimizer == "adamw")
    return std::make_shared<torch::optim::AdamW>(params, torch::optim::AdamWOptions(o.lr));
  return examples::sgd(std::move(params), o.lr);
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

// The steps' data: read from --data, or synthetic from --input and the model's output shape.
class data_source {
public:
  data_source(const options& o, int steps) : o_(o), steps_(steps) {}
  const step_data& at(int step) {
    if (steps_data_.empty())
      load();
    return steps_data_.at(static_cast<size_t>(step));
  }

private:
  void load() {
    if (!o_.data_file.empty()) {
      steps_data_ = load_data(o_.data_file, steps_);
      return;
    }
    std::vector<input_spec> specs;
    for (const auto& s : o_.inputs)
      specs.push_back(parse_input_spec(s));
    // The output's shape for the batch, from the model's graph (nothing runs on the module itself).
    auto model = load_script_file(o_.model_file, "--model " + o_.model_file);
    const auto traced = trace_script(model, example_inputs(specs, specs.front().sizes[0], o_.seed));
    const auto type = traced.graph->outputs().at(0)->type()->cast<c10::TensorType>();
    const auto sizes = type ? type->sizes().concrete_sizes() : std::nullopt;
    if (!sizes || sizes->empty())
      throw input_error("--model " + o_.model_file + ": cannot tell the shape of its first output for synthetic targets");
    for (int k = 0; k < steps_; ++k) {
      auto gen = at::make_generator<at::CPUGeneratorImpl>(o_.seed * 1000003 + static_cast<uint64_t>(k) + 1);
      step_data d;
      for (const auto& spec : specs)
        d.x.push_back(synthetic_input(spec, spec.sizes[0], gen));
      auto y_sizes = *sizes;
      y_sizes[0] = specs.front().sizes[0];
      if (o_.loss == "mse") {
        d.y = torch::randn(y_sizes, gen);
      } else {
        const int64_t classes = y_sizes.back();
        y_sizes.pop_back();
        d.y = torch::randint(0, classes, y_sizes, gen, torch::kLong);
      }
      steps_data_.push_back(std::move(d));
    }
  }
  const options& o_;
  int steps_;
  std::vector<step_data> steps_data_;
};

// A forward that fails (a shape the model cannot take) as an input_error naming the shapes.
template <class F>
auto at_shapes(const std::string& file, const std::vector<torch::Tensor>& xs, F&& run) {
  try {
    return run();
  } catch (const input_error&) {
    throw;
  } catch (const std::exception& e) {  // the interpreter's error (with TorchScript's traceback) or c10::Error
    const std::string last = last_message_line(e.what());
    std::string shapes;
    for (const auto& x : xs)
      shapes += (shapes.empty() ? "" : ", ") + c10::str(x.sizes());
    throw input_error("--model " + file + ": forward failed on a micro-batch of shape " + shapes + ": " + last);
  }
}

int run_unsplit_eval(const options& o, const training_job& job, data_source& data) {
  auto model = load_script_file(o.model_file, "--model " + o.model_file);
  eval_report report(o.output_file);
  for (int k = 0; k < job.steps; ++k) {
    c10::InferenceMode no_autograd;
    std::vector<torch::Tensor> outs;
    for (const auto& x : split_tensors(data.at(k).x, job.microbatches)) {
      std::vector<c10::IValue> args(x.begin(), x.end());
      outs.push_back(at_shapes(o.model_file, x, [&] { return first_output(model.forward(args)); }));
    }
    report.add(k, torch::cat(outs));
  }
  report.save();
  return 0;
}

int run_unsplit(const options& o, const training_job& job, data_source& data) {
  if (job.forward_only)
    return run_unsplit_eval(o, job, data);
  auto model = load_script_file(o.model_file, "--model " + o.model_file);
  const auto params = unique_named_parameters(model);
  std::vector<torch::Tensor> tensors;
  for (const auto& [name, t] : params)
    tensors.push_back(t);
  auto opt = make_optimizer(o, tensors);
  const auto loss = make_loss(o.loss);
  if (!job.export_dir.empty())
    export_job(job, params, 1, 1);
  for (int k = 0; k < job.steps; ++k) {
    const auto& d = data.at(k);
    const auto xs = split_tensors(d.x, job.microbatches);
    const auto ys = split_tensors({d.y}, job.microbatches);
    double step_loss = 0;
    for (int i = 0; i < job.microbatches; ++i) {
      const auto& x = xs[static_cast<size_t>(i)];
      const auto& y = ys[static_cast<size_t>(i)][0];
      const double share = static_cast<double>(y.size(0)) / static_cast<double>(d.y.size(0));
      std::vector<c10::IValue> args(x.begin(), x.end());
      auto out = at_shapes(o.model_file, x, [&] { return first_output(model.forward(args)); });
      auto l = loss(out, y) * share;
      l.backward();
      step_loss += l.item<double>();
    }
    opt->step();
    opt->zero_grad();
    print_loss(k, step_loss);
  }
  if (!job.export_dir.empty())
    export_final(job, 0, params);
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  options o;
  training_job job;
  job.microbatches = 4;
  job.steps = 3;
  CLI::App app{"pippy-train: a TorchScript model split by the compiler and trained with a pipeline schedule"};
  app.option_defaults()->always_capture_default(); // every option's help shows its default
  app.add_option("--model", o.model_file, "TorchScript file (torch.jit.trace / torch.jit.script)")->required();
  auto* input = app.add_option("--input", o.inputs, "SHAPE[:DTYPE[:HIGH]] of each input's whole batch (synthetic data)");
  auto* data = app.add_option("--data", o.data_file, "torch.save'd dict {\"x0.K\", ..., \"y.K\"} per step K");
  input->excludes(data);
  app.add_option("--loss", o.loss, "cross-entropy | mse")->check(CLI::IsMember({"cross-entropy", "mse"}));
  app.add_option("--optimizer", o.optimizer, "sgd (momentum 0.9) | adamw")->check(CLI::IsMember({"sgd", "adamw"}));
  examples::add_schedule_options(app, job);
  app.add_option("--stages", o.split.stages, "split automatically into this many stages (default: the schedule's)");
  app.add_option("--balance", o.split.balance, "automatic split balanced by params (bytes) or time")
      ->check(CLI::IsMember({"params", "time"}));
  app.add_option("--split-at", o.split.split_at, "NAME=begin|end: a split point at a submodule (repeatable)");
  app.add_option("--tied", o.tied, "tied weights: replicate | transmit")->check(CLI::IsMember({"transmit", "replicate"}));
  app.add_option("--microbatches", job.microbatches, "micro-batches per step")->check(CLI::PositiveNumber);
  app.add_option("--steps", job.steps, "training steps")->check(CLI::PositiveNumber);
  app.add_option("--seed", o.seed, "seed of the synthetic data and of libtorch");
  app.add_option("--stages-per-rank", job.stages_per_rank, "0 = the schedule's default");
  app.add_flag("--print-pipe", o.print_pipe, "print the split (PiPPy's print(pipe)) on stderr (rank 0)");
  app.add_flag("--eval", job.forward_only,
               "inference: the schedule's forwards only; print `step K output sum X abs_sum Y` of the model's "
               "first output");
  app.add_option("--output", o.output_file, "--eval: write every step's output here (torch.save'd dict \"out.K\")");
  examples::add_optimizer_options(app, o);
  examples::add_run_options(app, job);
  std::string plan_dir;
  examples::add_plan_option(app, plan_dir);
  CLI11_PARSE(app, argc, argv);
  job.settings = examples::settings_of(app);
  try {
    // The trainer's profile has no per-layer costs, so its plans keep the profile's stages: a plan that
    // regroups layers needs a split this program cannot name yet.
    if (!examples::apply_plan(plan_dir, job).empty())
      throw input_error("--plan " + plan_dir + ": the plan splits layers; pippy-train runs plans of the profile's own "
                        "stages (planned from a profile without \"layers\")");
  } catch (const input_error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
  if (!o.output_file.empty() && !job.forward_only) {
    std::cerr << "error: --output writes the outputs of --eval; add --eval\n";
    return 2;
  }
  if (o.inputs.empty() && o.data_file.empty()) {
    std::cerr << "error: give --input SHAPE[:DTYPE[:HIGH]] for each model input, or --data FILE\n";
    return 2;
  }

  // The stages run their graphs with the plain interpreter; the whole module must too (no profiling
  // executor specialising it, as torch.jit.optimized_execution(False) in Python).
  torch::jit::setGraphExecutorOptimize(false);
  torch::manual_seed(o.seed);
  data_source steps(o, job.steps);
  torch::jit::Module model;  // the stages share its tensors (replicate: copies)
  std::vector<tied_group> tied;
  job.make_stages = [&](const pippy::schedule& s) {
    const auto& d = steps.at(0);
    const auto example = traced_microbatch(job, d.x, s.shape.num_microbatches);
    model = load_script_file(o.model_file, "--model " + o.model_file);
    auto split = o.split;
    if (split.stages == 0 && split.split_at.empty())
      split.stages = s.shape.num_stages();
    auto opts = apply_split_request(model, split);
    opts.num_ranks = s.shape.num_ranks;
    opts.stages_per_rank = s.shape.stages_per_rank;
    opts.tied = o.tied == "replicate" ? tied_weights::replicate : tied_weights::transmit;
    opts.clone_parameters = o.tied == "replicate";
    auto p = at_shapes(o.model_file, example, [&] { return pippy::pipeline(model, example, opts); });
    if (o.print_pipe && read_dist_env().rank == 0)
      say(p.to_string());
    return examples::stages_for(p, s, tied);
  };
  job.tied_groups = [&] { return tied; };
  job.make_optimizer = [&](std::vector<torch::Tensor> params) { return make_optimizer(o, std::move(params)); };
  job.describe_model = [&](int) {
    return nlohmann::json{{"model", "pippy-train"}, {"file", o.model_file}, {"loss", o.loss},
                          {"optimizer", o.optimizer}, {"lr", o.lr}, {"momentum", examples::sgd_momentum},
                          {"tied", o.tied}}
        .dump();
  };
  job.loss = make_loss(o.loss);
  std::optional<eval_report> report;
  job.on_outputs = [&](int step, const std::vector<torch::Tensor>& outputs) {
    if (!report)
      report.emplace(o.output_file);
    report->add(step, outputs.at(0));
  };
  job.batch = [&](int step) {
    const auto& d = steps.at(step);
    return std::pair{d.x, d.y};
  };
  const int status = run_example(job, o.threads, [&] { return run_unsplit(o, job, steps); });
  if (status == 0 && report) {
    try {
      report->save();
    } catch (const std::exception& e) {
      say(std::string("error: ") + e.what());
      return 2;
    }
  }
  return status;
}
