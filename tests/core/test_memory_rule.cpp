// The memory rule (core's memory_effect_of and rank_memory): what each action holds and frees, the cap
// checked at F with the parameters counted, and the parameters of a rank's stages held throughout.
#include <catch2/catch.hpp>

#include "pippy/core/cost_table.hpp"

using namespace pippy;

TEST_CASE("memory rule: F holds from its start, I keeps what W needs, W and B free", "[core][memory]") {
  cost_table t = uniform_costs(2, stage_cost{.activation_bytes = 100, .weight_input_bytes = 30});
  t.microbatch_scale = {1.0, 0.5}; // micro-batch 1 has half the rows
  const auto f = memory_effect_of(t, {0, action_kind::forward, 0}, false);
  CHECK(f.held_at_start == 100);
  CHECK(f.activations_at_start == 1);
  CHECK(f.freed_at_end == 0);
  CHECK_FALSE(f.changes_at_end);
  const auto i = memory_effect_of(t, {0, action_kind::backward_input, 1}, false);
  CHECK(i.held_at_start == 0);
  CHECK(i.freed_at_end == 50 - 15);
  CHECK(i.activations_freed_at_end == 0);
  CHECK(i.changes_at_end);
  const auto w = memory_effect_of(t, {0, action_kind::backward_weight, 1}, false);
  CHECK(w.freed_at_end == 15);
  CHECK(w.activations_freed_at_end == 1);
  const auto b = memory_effect_of(t, {1, action_kind::full_backward, 0}, false);
  CHECK(b.freed_at_end == 100);
  CHECK(b.activations_freed_at_end == 1);
  const auto u = memory_effect_of(t, {1, action_kind::optimizer_step, no_microbatch}, false);
  CHECK(u.held_at_start == 0);
  CHECK(u.freed_at_end == 0);
  CHECK_FALSE(u.changes_at_end);
  // Inference: F lets its activations go at its own end.
  const auto fi = memory_effect_of(t, {1, action_kind::forward, 1}, true);
  CHECK(fi.held_at_start == 50);
  CHECK(fi.freed_at_end == 50);
  CHECK(fi.activations_freed_at_end == 1);
  CHECK(fi.changes_at_end);
}

TEST_CASE("rank memory: peaks, and the cap refuses the F that would exceed it", "[core][memory]") {
  cost_table t = uniform_costs(4, stage_cost{.activation_bytes = 100, .weight_input_bytes = 40, .param_bytes = 10});
  t.stages[2].param_bytes = 20;
  const pipeline_shape shape{.num_ranks = 2, .stages_per_rank = 2, .num_microbatches = 4};
  CHECK(static_memory_bytes(t, memory_model{}, shape, 0) == 4 * (10 + 20)); // stages 0 and 2
  CHECK(static_memory_bytes(t, memory_model{.state_factor = 2}, shape, 1) == 2 * (10 + 10));
  rank_memory m(120, 330);
  const auto f = memory_effect_of(t, {0, action_kind::forward, 0}, false);
  REQUIRE(m.start(f));
  m.end(f);
  REQUIRE(m.start(f));
  m.end(f);
  CHECK(m.bytes() == 320);
  CHECK(m.needed(f) == 420);
  CHECK_FALSE(m.start(f)); // 420 > 330: refused, nothing changes
  CHECK(m.bytes() == 320);
  const auto i = memory_effect_of(t, {0, action_kind::backward_input, 0}, false);
  REQUIRE(m.start(i));
  m.end(i);
  CHECK(m.bytes() == 260); // 60 of 100 freed, 40 kept for W
  const auto w = memory_effect_of(t, {0, action_kind::backward_weight, 0}, false);
  m.start(w);
  m.end(w);
  CHECK(m.bytes() == 220);
  CHECK(m.peak_bytes() == 320);
  CHECK(m.peak_activations() == 2);
  rank_memory exact(120, 320); // a cap exactly at the need fits
  REQUIRE(exact.start(f));
  REQUIRE(exact.start(f));
  CHECK(exact.peak_bytes() == 320);
  rank_memory below_params(120, 100); // below the parameters: the first F fails
  CHECK_FALSE(below_params.start(f));
  CHECK(below_params.peak_bytes() == 120);
  const out_of_memory oom{1, {2, action_kind::forward, 3}, 420, 330, 7.5};
  CHECK(oom.message() == "out of memory on rank 1 at 2F3 (t=7.5 us): needs 420 bytes, cap 330 bytes");
}
