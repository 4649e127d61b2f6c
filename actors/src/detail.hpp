#pragma once
// Internal: what the stage actors of one rank share. Written once while wiring, before start(), and
// only read afterwards (the turn token makes one actor of the rank active at a time).
#include <caf/event_based_actor.hpp>
#include <memory>
#include <utility>
#include <vector>

#include "pippy/actors/seams.hpp"

namespace pippy::actors::detail {

struct rank_context {
  int rank = 0;
  int num_stages = 0;
  int num_microbatches = 0;
  const std::vector<action>* list = nullptr; // the rank's lowered actions, in order
  // This rank's V stages and their actors: V entries, not one per stage of the job (R x V over a process
  // that simulates R ranks).
  std::vector<std::pair<int, caf::actor>> stage_actors;
  // The actor of `stage` when it is this rank's, else none.
  caf::actor stage_actor(int stage) const {
    for (const auto& [s, a] : stage_actors)
      if (s == stage)
        return a;
    return {};
  }
  std::vector<caf::actor> microbatch_actors; // empty when not tracked
  executor* exec = nullptr;
  transport* net = nullptr;
  caf::actor supervisor;
};

caf::actor spawn_stage_actor(caf::actor_system& sys, int stage, std::shared_ptr<rank_context> ctx);
caf::actor spawn_microbatch_actor(caf::actor_system& sys, int microbatch, int expected_stages,
                                  caf::actor supervisor);

} // namespace pippy::actors::detail
