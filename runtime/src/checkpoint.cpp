#include "pippy/runtime/checkpoint.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/Generator.h>
#include <torch/serialize.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <sstream>

#include <nlohmann/json.hpp>

#include "pippy/core/error.hpp"
#include "pippy/core/json_input.hpp"
#include "pippy/core/limits.hpp"
#include "pippy/core/text_file.hpp"
#include "pippy/runtime/job_guard.hpp"

namespace pippy {

namespace fs = std::filesystem;

namespace {
// A step's directory holds files only. POSIX calls, not fs::remove_all: libtorch.so exports its own copy of
// that symbol, which the dynamic linker may bind here, and that copy crashed (a null call) with torch 2.11.
void remove_step_dir(const std::string& path) {
  std::vector<std::string> files;
  std::error_code ec;
  for (fs::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec))
    files.push_back(it->path().string());
  for (const auto& f : files)
    ::unlink(f.c_str());
  ::rmdir(path.c_str());
}

std::string manifest_path(const std::string& dir, int step) { return checkpoint_step_dir(dir, step) + "/manifest.json"; }

// The steps of DIR's step-K directories, ascending.
std::vector<int> steps_in(const std::string& dir) {
  std::vector<int> steps;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind("step-", 0) != 0 || name.size() > 15)
      continue;
    const std::string digits = name.substr(5);
    if (digits.empty() || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    steps.push_back(std::stoi(digits));
  }
  std::sort(steps.begin(), steps.end());
  return steps;
}

void describe_tensors(std::ostringstream& out, const std::string& kind,
                      const torch::OrderedDict<std::string, torch::Tensor>& tensors) {
  for (const auto& item : tensors) {
    out << kind << ' ' << item.key() << ' ' << item.value().dtype() << ' ' << item.value().sizes() << ';';
  }
}
} // namespace

nlohmann::json shards_to_json(const std::vector<checkpoint_shard>& shards) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& s : shards) {
    nlohmann::json e{{"stage", s.stage}, {"file", s.file}, {"bytes", s.bytes}, {"digest", s.digest}};
    if (s.replica >= 0)
      e["replica"] = s.replica;
    j.push_back(std::move(e));
  }
  return j;
}

std::vector<checkpoint_shard> shards_from_json(const nlohmann::json& j, int num_stages) {
  std::vector<checkpoint_shard> shards;
  for (const auto& s : j) {
    checkpoint_shard shard{.stage = static_cast<int>(json_integer(s.at("stage"), "shards[].stage", 0, num_stages - 1)),
                           .file = s.at("file").get<std::string>(),
                           .bytes = static_cast<std::uint64_t>(json_integer(s.at("bytes"), "shards[].bytes", 0, limits::max_bytes)),
                           .digest = s.at("digest").get<std::string>()};
    if (s.contains("replica"))
      shard.replica = static_cast<int>(json_integer(s.at("replica"), "shards[].replica", 0, 1 << 20));
    if (shard.file.find('/') != std::string::npos || shard.file.empty())
      throw input_error("shard file '" + shard.file + "' is not a file name in the step's directory");
    shards.push_back(shard);
  }
  return shards;
}

std::string checkpoint_step_dir(const std::string& dir, int step) { return dir + "/step-" + std::to_string(step); }

std::string model_signature(const std::vector<const torch::nn::Module*>& stages) {
  std::ostringstream out;
  for (std::size_t s = 0; s < stages.size(); ++s) {
    out << "stage " << s << ';';
    describe_tensors(out, "p", stages[s]->named_parameters());
    describe_tensors(out, "b", stages[s]->named_buffers());
  }
  const std::string text = out.str();
  return digest_of(text.data(), text.size());
}

checkpoint_shard save_stage_shard(const std::string& dir, int step, int stage, const torch::nn::Module& module,
                                  const torch::optim::Optimizer* optimizer, int replica) {
  torch::serialize::OutputArchive archive;
  c10::List<std::string> param_names, buffer_names;
  int i = 0;
  for (const auto& p : module.named_parameters()) {
    param_names.push_back(p.key());
    archive.write("param_" + std::to_string(i++), p.value().detach(), /*is_buffer=*/true);
  }
  i = 0;
  for (const auto& b : module.named_buffers()) {
    buffer_names.push_back(b.key());
    archive.write("buffer_" + std::to_string(i++), b.value().detach(), /*is_buffer=*/true);
  }
  archive.write("param_names", c10::IValue(param_names));
  archive.write("buffer_names", c10::IValue(buffer_names));
  if (optimizer) {
    torch::serialize::OutputArchive state;
    optimizer->save(state);
    archive.write("optimizer", state);
  }
  {
    auto generator = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(generator.mutex());
    archive.write("rng", generator.get_state(), /*is_buffer=*/true);
  }
  archive.write("step", c10::IValue(static_cast<std::int64_t>(step)));
  archive.write("stage", c10::IValue(static_cast<std::int64_t>(stage)));
  std::ostringstream bytes;
  archive.save_to(bytes);
  const std::string data = bytes.str();
  const std::string step_dir = checkpoint_step_dir(dir, step);
  std::error_code ec;
  fs::create_directories(step_dir, ec);
  if (ec)
    throw input_error("checkpoint: cannot make " + step_dir + ": " + ec.message());
  const std::string file = "stage-" + std::to_string(stage) + (replica >= 0 ? ".replica-" + std::to_string(replica) : "") + ".pt";
  checkpoint_shard shard{.stage = stage, .replica = replica, .file = file, .bytes = data.size(),
                         .digest = digest_of(data.data(), data.size())};
  write_file_atomically(step_dir + "/" + shard.file, [&](std::ostream& out) { out.write(data.data(), static_cast<std::streamsize>(data.size())); });
  return shard;
}

void commit_checkpoint(const std::string& dir, const checkpoint_manifest& m, int keep) {
  const nlohmann::json shards = shards_to_json(m.shards);
  const nlohmann::json j{{"format", "pippy-checkpoint 1"}, {"step", m.step},     {"num_stages", m.num_stages},
                         {"model", m.model},                 {"schedule", m.schedule}, {"shards", shards}};
  write_file_atomically(manifest_path(dir, m.step), [&](std::ostream& out) { out << j.dump(2) << "\n"; });
  // Keep the newest `keep` complete ones; an incomplete one older than this will never complete.
  std::vector<int> complete;
  for (int step : steps_in(dir)) {
    if (step > m.step)
      continue; // a later attempt's, or another writer's: not ours to judge
    if (fs::exists(manifest_path(dir, step)))
      complete.push_back(step);
    else if (step < m.step)
      remove_step_dir(checkpoint_step_dir(dir, step));
  }
  for (std::size_t k = 0; k + static_cast<std::size_t>(std::max(keep, 1)) < complete.size(); ++k)
    remove_step_dir(checkpoint_step_dir(dir, complete[k]));
}

std::optional<checkpoint_manifest> latest_checkpoint(const std::string& dir) {
  if (!fs::is_directory(dir))
    return std::nullopt;
  const auto steps = steps_in(dir);
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    const std::string path = manifest_path(dir, *it);
    if (!fs::exists(path))
      continue; // incomplete: its writers were stopped before rank 0 committed it
    const auto j = parse_json(read_text_file(path, path + ": cannot open checkpoint manifest"), path);
    checkpoint_manifest m;
    try {
      if (j.at("format") != "pippy-checkpoint 1")
        throw input_error("format is not \"pippy-checkpoint 1\"");
      m.step = static_cast<int>(json_integer(j.at("step"), "step", 0, std::numeric_limits<int>::max()));
      m.num_stages = static_cast<int>(json_integer(j.at("num_stages"), "num_stages", 1, limits::max_stages));
      m.model = j.at("model").get<std::string>();
      m.schedule = j.at("schedule").get<std::string>();
      m.shards = shards_from_json(j.at("shards"), m.num_stages);
    } catch (const input_error& e) {
      throw input_error(path + ": " + e.what());
    } catch (const std::exception& e) {
      throw input_error(path + ": not a checkpoint manifest: " + e.what());
    }
    if (m.step != *it)
      throw input_error(path + ": step " + std::to_string(m.step) + " in the directory of step " + std::to_string(*it));
    return m;
  }
  return std::nullopt;
}

void check_split(const std::string& dir, const checkpoint_manifest& m, int num_stages, const std::string& model) {
  const std::string path = manifest_path(dir, m.step);
  if (m.num_stages != num_stages)
    throw input_error(path + ": the checkpoint is of a split into " + std::to_string(m.num_stages) +
                      " stages; this run has " + std::to_string(num_stages) +
                      " (resume with the same split: the same number of stages and split points)");
  if (m.model != model)
    throw input_error(path + ": the checkpoint is of another model or split (signature " + m.model + ", this run's " +
                      model + ")");
}

void load_stage_shard(const std::string& dir, const checkpoint_manifest& m, int stage, torch::nn::Module& module,
                      torch::optim::Optimizer* optimizer, bool restore_rng, int replica) {
  const auto entry = std::find_if(m.shards.begin(), m.shards.end(),
                                  [&](const auto& s) { return s.stage == stage && s.replica == replica; });
  if (entry == m.shards.end()) {
    const bool sharded = std::any_of(m.shards.begin(), m.shards.end(), [&](const auto& s) { return s.stage == stage && s.replica >= 0; });
    const std::string where = manifest_path(dir, m.step) + ": ";
    if (sharded && replica < 0)
      throw input_error(where + "stage " + std::to_string(stage) +
                        "'s optimizer state is in ZeRO-1 shards, one per replica: resume with --zero1 and the same --dp");
    if (!sharded && replica >= 0 && std::any_of(m.shards.begin(), m.shards.end(), [&](const auto& s) { return s.stage == stage; }))
      throw input_error(where + "stage " + std::to_string(stage) +
                        "'s optimizer state is whole, not in ZeRO-1 shards: resume without --zero1");
    throw input_error(where + "no shard for stage " + std::to_string(stage) +
                      (replica >= 0 ? " of replica " + std::to_string(replica) : ""));
  }
  const std::string path = checkpoint_step_dir(dir, m.step) + "/" + entry->file;
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec)
    throw input_error(path + ": checkpoint shard of stage " + std::to_string(stage) + " is missing (" + ec.message() + ")");
  if (size != entry->bytes)
    throw input_error(path + ": checkpoint shard is " + std::to_string(size) + " bytes, the manifest says " +
                      std::to_string(entry->bytes) + " (truncated or replaced)");
  const std::string data = read_text_file(path, path + ": cannot read checkpoint shard");
  if (digest_of(data.data(), data.size()) != entry->digest)
    throw input_error(path + ": checkpoint shard is corrupt (its digest differs from the manifest's)");
  try {
    torch::serialize::InputArchive archive;
    std::istringstream in(data);
    archive.load_from(in);
    c10::IValue names;
    auto restore = [&](const char* list, const char* prefix, const torch::OrderedDict<std::string, torch::Tensor>& into) {
      archive.read(list, names);
      const auto stored = names.toList();
      if (stored.size() != into.size())
        throw input_error(std::string("it holds ") + std::to_string(stored.size()) + " " + list + ", stage " +
                          std::to_string(stage) + " has " + std::to_string(into.size()));
      torch::NoGradGuard no_grad;
      for (std::size_t i = 0; i < into.size(); ++i) {
        const auto& item = into[i];
        if (stored.get(i).toStringRef() != item.key())
          throw input_error(std::string(list) + "[" + std::to_string(i) + "] is '" + stored.get(i).toStringRef() +
                            "', stage " + std::to_string(stage) + " has '" + item.key() + "'");
        torch::Tensor t;
        archive.read(prefix + std::to_string(i), t, /*is_buffer=*/true);
        if (!t.sizes().equals(item.value().sizes()) || t.dtype() != item.value().dtype())
          throw input_error("'" + item.key() + "' has another shape or dtype than stage " + std::to_string(stage) + "'s");
        item.value().copy_(t);
      }
    };
    restore("param_names", "param_", module.named_parameters());
    restore("buffer_names", "buffer_", module.named_buffers());
    if (optimizer) {
      torch::serialize::InputArchive state;
      if (!archive.try_read("optimizer", state))
        throw input_error("it holds no optimizer state");
      optimizer->load(state);
    }
    if (restore_rng) {
      torch::Tensor rng;
      archive.read("rng", rng, /*is_buffer=*/true);
      auto generator = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(generator.mutex());
      generator.set_state(rng);
    }
  } catch (const input_error& e) {
    throw input_error(path + ": " + e.what());
  } catch (const std::exception& e) {
    throw input_error(path + ": not a checkpoint shard: " + last_message_line(e.what()));
  }
}

} // namespace pippy
