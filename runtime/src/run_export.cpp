#include "pippy/runtime/run_export.hpp"

#include <torch/serialize.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "pippy/core/error.hpp"
#include "pippy/core/text_file.hpp"
#include "pippy/runtime/training.hpp"

namespace pippy {

namespace {

std::string in_dir(const training_job& job, const std::string& file) {
  std::error_code ec;
  std::filesystem::create_directories(job.export_dir, ec);
  if (ec)
    throw input_error("--export-dir " + job.export_dir + ": " + ec.message());
  return (std::filesystem::path(job.export_dir) / file).string();
}

// A dict of tensors in torch.save's format (torch.load reads it; weights_only loading accepts it).
void save_tensor_dict(const std::string& path, const named_tensors& tensors) {
  c10::Dict<std::string, at::Tensor> dict;
  for (const auto& [name, t] : tensors)
    dict.insert(name, t.detach().contiguous().cpu());
  const std::vector<char> bytes = torch::pickle_save(c10::IValue(dict));
  write_file_atomically(path, [&](std::ostream& out) { out.write(bytes.data(), static_cast<std::streamsize>(bytes.size())); });
}

} // namespace

named_tensors parameters_by_name(const std::vector<const torch::nn::Module*>& modules) {
  named_tensors out;
  std::set<std::string> seen;
  for (const auto* m : modules)
    for (const auto& item : m->named_parameters())
      if (seen.insert(item.key()).second)
        out.emplace_back(item.key(), item.value());
  return out;
}

void export_job(const training_job& job, const named_tensors& initial, int num_stages, int stages_per_rank) {
  save_tensor_dict(in_dir(job, "init.pt"), initial);
  named_tensors data;
  for (int k = 0; k < job.steps; ++k) {
    auto [inputs, target] = job.batch(k);
    if (inputs.size() != 1)
      throw input_error("--export-dir: a step has " + std::to_string(inputs.size()) + " inputs; only one is exported");
    data.emplace_back("x." + std::to_string(k), inputs[0]);
    data.emplace_back("y." + std::to_string(k), target);
  }
  save_tensor_dict(in_dir(job, "batches.pt"), data);
  auto config = job.describe_model ? nlohmann::json::parse(job.describe_model(num_stages)) : nlohmann::json::object();
  config["schedule"] = job.schedule;
  config["microbatches"] = job.microbatches;
  config["steps"] = job.steps;
  config["num_stages"] = num_stages;
  config["stages_per_rank"] = stages_per_rank;
  write_file_atomically(in_dir(job, "config.json"), [&](std::ostream& out) { out << config.dump(2) << "\n"; });
}

void export_final(const training_job& job, int rank, const named_tensors& parameters) {
  save_tensor_dict(in_dir(job, "final.rank" + std::to_string(rank) + ".pt"), parameters);
}

} // namespace pippy
