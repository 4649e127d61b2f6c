#pragma once
// What the examples that split with the compiler (gpt, pippy-train) share: the LM loss, pipeline() options from the
// command line's --split and --tied, and the stages of a pipe for a schedule. Header-only.
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "pippy/compiler/compiler.hpp"
#include "pippy/core/error.hpp"
#include "pippy/core/schedule.hpp"
#include "pippy/runtime/tied_weights.hpp"

namespace pippy::examples {

// Next-token cross entropy: logits [batch, seq, vocab] against targets [batch, seq].
inline torch::Tensor lm_loss(const torch::Tensor& logits, const torch::Tensor& target) {
  return torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}), target.reshape({-1}));
}

// pipeline() options for schedule s: split "auto" (balanced into the schedule's stages) or by the model's
// annotations; tied weights "replicate" (each holder its own copy, as on separate ranks) or "transmit".
inline pipeline_options split_options(const pippy::schedule& s, const std::string& split, const std::string& tied) {
  return {.num_stages = split == "auto" ? s.shape.num_stages() : 0, .num_ranks = s.shape.num_ranks,
          .stages_per_rank = s.shape.stages_per_rank,
          .tied = tied == "replicate" ? tied_weights::replicate : tied_weights::transmit,
          .clone_parameters = tied == "replicate"};
}

// The stages of p, as many as schedule s has (else input_error); p's replicated tied weights go to `tied`.
inline std::vector<std::shared_ptr<stage_module>> stages_for(const pippy::pipe& p, const pippy::schedule& s,
                                                             std::vector<tied_group>& tied) {
  const int S = s.shape.num_stages();
  if (p.num_stages() != S)
    throw input_error("the compiler made " + std::to_string(p.num_stages()) + " stages, the schedule needs " +
                      std::to_string(S));
  for (const auto& t : p.tied_parameters())
    tied.push_back(tied_group{t.name, t.stages});
  std::vector<std::shared_ptr<stage_module>> stages;
  for (int i = 0; i < S; ++i)
    stages.push_back(p.stage(i));
  return stages;
}

} // namespace pippy::examples
