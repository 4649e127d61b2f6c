// The micro-batch actor: follows one micro-batch through the pipeline (which stages ran F, I, W or B
// on it and when), and reports it finished, with its loss where the backend computes one.
#include <caf/all.hpp>

#include "detail.hpp"

namespace pippy::actors::detail {
namespace {

struct microbatch_state {
  int id = 0;
  int expected = 0; // stages that will report on this micro-batch
  int seen = 0;
  double end_us = 0;
  std::optional<double> loss;
  std::vector<progress> stages; // one report per stage, in arrival order
};

caf::behavior microbatch_actor(caf::stateful_actor<microbatch_state>* self, int id, int expected,
                               caf::actor supervisor) {
  self->state.id = id;
  self->state.expected = expected;
  return {
      [self, supervisor](const progress& p) {
        auto& st = self->state;
        st.stages.push_back(p);
        st.end_us = std::max(st.end_us, std::max(p.input_grad_end_us, p.weight_grad_end_us));
        if (p.loss)
          st.loss = p.loss;
        if (++st.seen == st.expected) { // done for this step; the actor serves the next one
          self->send(supervisor, microbatch_finished{st.id, st.end_us, st.loss});
          st.seen = 0;
          st.end_us = 0;
          st.loss.reset();
          st.stages.clear();
        }
      },
  };
}

} // namespace

caf::actor spawn_microbatch_actor(caf::actor_system& sys, int microbatch, int expected_stages,
                                  caf::actor supervisor) {
  return sys.spawn(microbatch_actor, microbatch, expected_stages, std::move(supervisor));
}

} // namespace pippy::actors::detail
