// The flat evaluator (core) against the actor simulator: the same start and end of every compute action
// and transfer, the same step time, peaks and out-of-memory action, over every generator at several R,
// V and M and every model the simulator has (random costs, jitter, uneven micro-batches, latency,
// bandwidth with contention, same-host and cross-host links, measured pairs, blocking sends, per-action
// overhead, memory caps, forward-only schedules).
#include <catch2/catch.hpp>
#include <map>
#include <random>

#include "pippy/core/error.hpp"
#include "pippy/core/flat_evaluator.hpp"
#include "sim_helpers.hpp"

using namespace pippy;

namespace {

struct configuration {
  std::string name;
  sim::sim_options options;
};

// Random per-stage costs and sizes, so that no two actions take the same time by accident.
cost_table random_table(const schedule& s, std::mt19937& rng) {
  std::uniform_real_distribution<double> t(0.1, 5.0);
  std::uniform_int_distribution<std::uint64_t> bytes(200, 4000);
  cost_table c;
  for (int i = 0; i < s.shape.num_stages(); ++i) {
    stage_cost st{.F = t(rng), .I = t(rng), .W = t(rng), .U = t(rng)};
    st.B = st.I + st.W;
    st.activation_bytes = bytes(rng);
    st.weight_input_bytes = st.activation_bytes / 3;
    st.output_bytes = bytes(rng);
    st.param_bytes = bytes(rng);
    c.stages.push_back(st);
  }
  return c;
}

std::vector<configuration> configurations(const schedule& s, std::uint32_t seed) {
  std::mt19937 rng(seed);
  const int R = s.shape.num_ranks, M = s.shape.num_microbatches;
  std::vector<configuration> out;
  auto add = [&](std::string name, auto&& change) {
    sim::sim_options o{.costs = random_table(s, rng)};
    change(o);
    out.push_back({std::move(name), std::move(o)});
  };
  add("random costs, free links", [](sim::sim_options&) {});
  add("jitter and action overhead", [](sim::sim_options& o) {
    o.costs.jitter = 0.5, o.costs.seed = 9, o.costs.action_overhead_us = 0.37;
  });
  add("uneven micro-batches, latency", [&](sim::sim_options& o) {
    o.costs.scale_by_rows(2 * M + 1, M);
    o.links = link_model::uniform(0.7, 0);
  });
  add("bandwidth with contention", [](sim::sim_options& o) { o.links = link_model::uniform(0.3, 0.5); });
  add("hosts and measured pairs", [&](sim::sim_options& o) {
    o.links.ranks_per_host = 2;
    o.links.intra_host = {0.1, 50};
    o.links.inter_host = {2.0, 1};
    if (R > 1)
      o.costs.links = {link_cost{.src = 0, .dst = 1, .latency_us = 0.05, .bandwidth_gbps = 0.25},
                       link_cost{.src = R - 1, .dst = 0, .latency_us = 3, .bandwidth_gbps = 0}};
  });
  add("pp x dp, all-reduce overlapped, 2 hosts", [&](sim::sim_options& o) {
    o.links.intra_host = {0.2, 1};
    o.links.inter_host = {1.5, 0.5};
    o.links.ranks_per_host = R; // the replicas on the next host
    o.data_parallel = {.replicas = 3, .sync = grad_sync_mode::overlap};
  });
  add("pp x dp, all-reduce at the step, with overhead", [](sim::sim_options& o) {
    o.links = link_model::uniform(0.3, 0.8);
    o.costs.action_overhead_us = 0.11;
    o.data_parallel = {.replicas = 2, .sync = grad_sync_mode::at_step};
  });
  add("blocking sends", [](sim::sim_options& o) {
    o.links = link_model::uniform(0.4, 2);
    o.links.blocking_send = true;
    o.costs.action_overhead_us = 0.2;
  });
  return out;
}

// The schedules of the sweep: every generator at R = 2, 3, 4, V = 1..3, M in a few sizes (what a
// generator refuses is skipped), with and without the optimizer step.
std::vector<schedule> sweep() {
  std::vector<schedule> out;
  for (auto name : schedule_names())
    for (int R : {2, 3, 4})
      for (int V : {1, 2, 3})
        for (int M : {1, 3, 4, 8, 9}) {
          try {
            out.push_back(make_schedule({.name = std::string(name), .num_ranks = R, .num_microbatches = M,
                                         .stages_per_rank = V, .optimizer_steps = (M + R) % 2 == 0}));
          } catch (const input_error&) {
          }
        }
  return out;
}

// Every compute action and transfer: the same start and end; actions that never ran, the same ones.
void check_same(const schedule& s, const sim::sim_options& o) {
  const sim::sim_result ref = sim::simulate(s, o);
  flat_evaluator ev;
  const flat_result& r = ev.evaluate(s, o.costs, o.links, o.memory, o.data_parallel);
  std::map<std::pair<int, action>, const trace_event*> at;
  for (const auto& e : ref.timeline.events)
    at[{e.rank, e.act}] = &e;
  const schedule& lowered = ev.evaluated();
  REQUIRE(lowered == add_communication(s));
  std::size_t matched = 0;
  for (int rank = 0; rank < s.shape.num_ranks; ++rank) {
    const auto& list = lowered.ranks[static_cast<std::size_t>(rank)];
    for (std::size_t i = 0; i < list.size(); ++i) {
      const action& a = list[i];
      if (a.kind == action_kind::recv_f || a.kind == action_kind::recv_b)
        continue; // the simulator records transfers under the sender
      INFO("rank " << rank << " " << to_string(a));
      const auto it = at.find({rank, a});
      CHECK((it != at.end()) == (ev.start_us(rank, i) >= 0));
      if (it == at.end())
        continue;
      CHECK(ev.start_us(rank, i) == it->second->start_us);
      CHECK(ev.end_us(rank, i) == it->second->end_us);
      ++matched;
    }
  }
  CHECK(matched == ref.timeline.events.size());
  CHECK(r.actions == ref.actions);
  CHECK(r.makespan_us == ref.makespan_us);
  CHECK(r.completed == ref.completed);
  CHECK(r.bubble_fraction == Approx(ref.bubble_fraction).margin(1e-12));
  REQUIRE(r.ranks.size() == ref.ranks.size());
  for (std::size_t k = 0; k < r.ranks.size(); ++k) {
    INFO("rank " << k);
    CHECK(r.ranks[k].busy_us == Approx(ref.ranks[k].busy_us).margin(1e-9));
    CHECK(r.ranks[k].first_start_us == ref.ranks[k].first_start_us);
    CHECK(r.ranks[k].last_end_us == ref.ranks[k].end_us);
    CHECK(r.ranks[k].bubble_fraction == Approx(ref.ranks[k].bubble_fraction).margin(1e-12));
    CHECK(r.ranks[k].peak_memory_bytes == ref.ranks[k].peak_memory_bytes);
    CHECK(r.ranks[k].peak_activations == ref.ranks[k].peak_activations);
  }
  REQUIRE(r.oom.has_value() == ref.oom.has_value());
  if (r.oom) {
    CHECK(r.oom->rank == ref.oom->rank);
    CHECK(r.oom->at == ref.oom->at);
    CHECK(r.oom->t_us == ref.oom->t_us);
    CHECK(r.oom->needed_bytes == ref.oom->needed_bytes);
    CHECK(r.oom->message() == ref.oom->message());
  }
}

} // namespace

TEST_CASE("flat evaluator = actor simulator, action by action, over every generator and link model",
          "[simulator][flat]") {
  const auto schedules = sweep();
  REQUIRE(schedules.size() > 80);
  std::uint32_t seed = 1;
  for (const auto& s : schedules)
    for (const auto& c : configurations(s, seed++)) {
      INFO(s.name << " R=" << s.shape.num_ranks << " V=" << s.shape.stages_per_rank << " M="
                  << s.shape.num_microbatches << ": " << c.name);
      check_same(s, c.options);
    }
}

TEST_CASE("flat evaluator = actor simulator on forward-only schedules", "[simulator][flat]") {
  std::uint32_t seed = 100;
  for (const auto& s : sweep()) {
    const schedule f = forward_only(s);
    for (const auto& c : configurations(f, seed++)) {
      INFO(f.name << " R=" << f.shape.num_ranks << " V=" << f.shape.stages_per_rank << " M="
                  << f.shape.num_microbatches << ": " << c.name);
      check_same(f, c.options);
    }
  }
}

// Caps between the smallest rank's parameters and the largest peak: some rank runs out of memory at some
// F, and both stop it there; the one reported first is the same.
TEST_CASE("flat evaluator = actor simulator under memory caps: the same out-of-memory action", "[simulator][flat][oom]") {
  std::uint32_t seed = 500;
  std::size_t ooms = 0;
  for (const auto& s : sweep()) {
    auto configs = configurations(s, seed++);
    for (std::size_t k : {std::size_t{0}, std::size_t{3}, std::size_t{5}}) {
      auto o = configs[k].options;
      flat_evaluator ev;
      const flat_result& free = ev.evaluate(s, o.costs, o.links, o.memory);
      std::uint64_t lowest = free.ranks[0].peak_memory_bytes;
      for (const auto& rk : free.ranks)
        lowest = std::min(lowest, rk.peak_memory_bytes);
      const std::uint64_t highest = free.peak_memory_bytes();
      for (double f : {0.0, 0.5, 0.9}) {
        o.memory.cap_bytes = lowest + static_cast<std::uint64_t>(f * static_cast<double>(highest - lowest)) - 1;
        INFO(s.name << " R=" << s.shape.num_ranks << " V=" << s.shape.stages_per_rank << " M="
                    << s.shape.num_microbatches << ": " << configs[k].name << ", cap " << o.memory.cap_bytes);
        check_same(s, o);
        const flat_result& capped = ev.evaluate(s, o.costs, o.links, o.memory);
        CHECK(capped.oom.has_value()); // below a peak: the F that reaches it cannot start
        ooms += capped.oom ? 1 : 0;
      }
      o.memory.cap_bytes = highest; // exactly the peak fits
      CHECK_FALSE(ev.evaluate(s, o.costs, o.links, o.memory).oom);
    }
  }
  CHECK(ooms > 300);
}

TEST_CASE("flat evaluator: reuses its buffers across schedules of other sizes, and names bad input",
          "[simulator][flat]") {
  flat_evaluator ev;
  const auto big = pippy::test::make("interleaved-1f1b", 4, 8, 2);
  const auto small = pippy::test::make("1f1b", 2, 2);
  const auto o_big = pippy::test::uniform_options(big, 1, 1, 1);
  const auto o_small = pippy::test::uniform_options(small, 1, 1, 1);
  const double big_makespan = ev.evaluate(big, o_big.costs).makespan_us;
  CHECK(ev.evaluate(small, o_small.costs).makespan_us == 9); // (M + R - 1)(F + B) = 3 * 3
  CHECK(ev.evaluate(big, o_big.costs).makespan_us == big_makespan);
  CHECK(big_makespan == sim::simulate(big, o_big).makespan_us);
  CHECK_THROWS_WITH(ev.evaluate(big, o_small.costs), "costs: 'stages' has 2 entries but the schedule has 8 stages");
  link_model bad;
  bad.inter_host.bandwidth_gbps = -1;
  CHECK_THROWS_WITH(ev.evaluate(small, o_small.costs, bad), Catch::Contains("links.inter_host.bandwidth_gbps must be non-negative"));
  schedule broken = small;
  broken.ranks[1][0].microbatch = 7;
  CHECK_THROWS_WITH(ev.evaluate(broken, o_small.costs), "schedule: rank 1 has 1F7, outside 2 stages and 2 micro-batches");
}
