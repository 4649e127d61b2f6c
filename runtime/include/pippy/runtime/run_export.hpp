#pragma once
// --export-dir: what a peer (torch.distributed.pipelining in tests/peers) needs to train the same model on
// the same data, and what to compare afterwards. Files (torch.load reads the .pt ones: dicts of tensors):
//   init.pt            every parameter before training, by its name in the unsplit model
//   batches.pt         "x.K" (stage 0's input) and "y.K" (the target) of every step K
//   config.json        the job (schedule, sizes, lr) and the example's model object
//   final.rankR.pt     rank R's parameters after training (each rank writes its own stages')
// Every file is written whole or not at all.
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

namespace pippy {

struct training_job;
using named_tensors = std::vector<std::pair<std::string, torch::Tensor>>;

// Parameters of modules, by name, each name once (the first holder's: tied copies hold equal values).
named_tensors parameters_by_name(const std::vector<const torch::nn::Module*>& modules);

// init.pt, batches.pt and config.json; num_stages is 1 for the unsplit run.
void export_job(const training_job& job, const named_tensors& initial, int num_stages, int stages_per_rank);
// final.rankR.pt.
void export_final(const training_job& job, int rank, const named_tensors& parameters);

} // namespace pippy
