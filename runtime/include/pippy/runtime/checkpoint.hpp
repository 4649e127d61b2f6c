#pragma once
// Checkpoints of a pipelined training run: DIR/step-K/ holds one shard per stage (stage-S.pt: its parameters
// and buffers by name, its optimizer's state, the writer's RNG state and K, the next step to run, which is
// also the data's position: a step's batch is a function of its index) and manifest.json, written last by
// rank 0 once every shard is in, with each shard's size and digest. A step directory without a manifest is
// incomplete and never resumed from. Shards are per stage, not per rank, so a run may resume with another
// schedule over the same split. With ZeRO-1 each replica writes its own shard of each stage
// (stage-S.replica-D.pt: the same parameters, its part of the optimizer state), and resumes from it.
#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace pippy {

struct checkpoint_shard {
  int stage = 0;
  int replica = -1; // ZeRO-1: the replica whose optimizer shard it holds; -1: the stage's whole state
  std::string file; // within the step's directory
  std::uint64_t bytes = 0;
  std::string digest; // digest_of the file's bytes
};

struct checkpoint_manifest {
  int step = 0;        // the next step to run
  int num_stages = 0;
  std::string model;   // the split's signature (model_signature)
  std::string schedule; // what wrote it (informative: another schedule over the same split may resume)
  std::vector<checkpoint_shard> shards; // one per stage, by stage
};

// Shards as JSON, the manifest's "shards" and what a rank reports to rank 0, and back: from_json throws
// input_error naming the field (a stage outside [0, num_stages), a size past 1 TiB, a file name with '/').
nlohmann::json shards_to_json(const std::vector<checkpoint_shard>& shards);
std::vector<checkpoint_shard> shards_from_json(const nlohmann::json& j, int num_stages);

// Names, shapes and dtypes of every stage's parameters and buffers, in stage order: equal for the same
// model split the same way.
std::string model_signature(const std::vector<const torch::nn::Module*>& stages);

// Writes stage `stage`'s shard of the checkpoint before step `step` into DIR/step-K/ (atomically); with
// replica >= 0, that replica's (ZeRO-1).
checkpoint_shard save_stage_shard(const std::string& dir, int step, int stage, const torch::nn::Module& module,
                                  const torch::optim::Optimizer* optimizer, int replica = -1);

// DIR/step-K/manifest.json, written last (atomically); then removes all but the newest `keep` complete
// checkpoints and any incomplete one older than this.
void commit_checkpoint(const std::string& dir, const checkpoint_manifest& manifest, int keep);

// The newest complete checkpoint in DIR, or none. Throws input_error naming the manifest when it is not
// one of ours.
std::optional<checkpoint_manifest> latest_checkpoint(const std::string& dir);

// Throws input_error naming the manifest when it was written for another split than (num_stages, model).
void check_split(const std::string& dir, const checkpoint_manifest& m, int num_stages, const std::string& model);

// Loads stage `stage`'s shard (with replica >= 0, that replica's ZeRO-1 shard) into `module` and
// `optimizer`; restores the RNG state when `restore_rng`. Throws input_error naming the shard when it is
// missing, its size or digest differs from the manifest's, or it does not hold this stage's parameters,
// and naming the manifest when it holds ZeRO-1 shards for a run without, or the other way round.
void load_stage_shard(const std::string& dir, const checkpoint_manifest& m, int stage, torch::nn::Module& module,
                      torch::optim::Optimizer* optimizer, bool restore_rng, int replica = -1);

// DIR/step-K
std::string checkpoint_step_dir(const std::string& dir, int step);

} // namespace pippy
