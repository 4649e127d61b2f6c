#pragma once
// Spawns the stage and micro-batch actors of one schedule. Not thread-safe (call from one thread); the
// returned handles are plain CAF handles, safe to copy and use from any thread.
#include <caf/actor.hpp>
#include <caf/fwd.hpp>
#include <vector>

#include "pippy/actors/seams.hpp"
#include "pippy/core/schedule.hpp"

namespace pippy::actors {

struct pipeline_setup {
  const schedule* plan = nullptr;         // lowered (add_communication) and validated; must outlive start()
  std::vector<executor*> executors;       // one per rank; nullptr for ranks not in this process
  transport* net = nullptr;               // carries payloads between ranks
  caf::actor supervisor;                  // receives rank_finished, stage_failed, microbatch_finished
  bool track_microbatches = true;         // spawn one actor per micro-batch and report progress to it
};

struct pipeline_handles {
  std::vector<caf::actor> stages;       // by stage id; empty handle where the stage is not local
  std::vector<caf::actor> microbatches; // by micro-batch id; empty unless tracked
  std::vector<int> local_ranks;
  // Starts a step: sends start_atom to the actor owning each local rank's first action (a rank with
  // nothing to do reports rank_finished at once).
  void start() const;
  // Asks every actor to quit (for good).
  void stop() const;

  const schedule* plan_ = nullptr;
  caf::actor supervisor_;
};

// The actors are spawned once and serve every step: each start() runs the schedule once (one training
// step); start the next step only after every local rank finished (rank_finished) the previous one. A
// stage that failed has quit: spawn a new pipeline. Throws input_error when the setup does not fit the
// schedule (ranks, missing transport...).
pipeline_handles spawn_pipeline(caf::actor_system& sys, const pipeline_setup& setup);

} // namespace pippy::actors
