#pragma once
// Internal: what the stage actors of one rank share. Written once while wiring, before start(), and
// only read afterwards (the turn token makes one actor of the rank active at a time).
#include <caf/event_based_actor.hpp>
#include <memory>
#include <vector>

#include "pippy/actors/seams.hpp"

namespace pippy::actors::detail {

struct rank_context {
  int rank = 0;
  int num_stages = 0;
  int num_microbatches = 0;
  const std::vector<action>* list = nullptr; // the rank's lowered actions, in order
  std::vector<caf::actor> stage_actors;      // by stage id; set for this rank's stages
  std::vector<caf::actor> microbatch_actors; // empty when not tracked
  executor* exec = nullptr;
  transport* net = nullptr;
  caf::actor supervisor;
};

caf::actor spawn_stage_actor(caf::actor_system& sys, int stage, std::shared_ptr<rank_context> ctx);
caf::actor spawn_microbatch_actor(caf::actor_system& sys, int microbatch, int expected_stages,
                                  caf::actor supervisor);

} // namespace pippy::actors::detail
