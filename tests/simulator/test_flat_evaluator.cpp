// The flat evaluator (core) against the actor simulator: the same start and end of every compute action
// and transfer, the same step time, peaks and out-of-memory action, over every generator at several R,
// V and M and every model the simulator has (random costs, jitter, uneven micro-batches, latency,
// bandwidth with contention, same-host and cross-host links, measured pairs, blocking sends, per-action
// overhead, arrivals that cost compute, sends that take their rank's time, ranks sharing CPUs, memory
// caps, forward-only schedules).
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <random>
#include <tuple>

#include "pippy/core/error.hpp"
#include "pippy/core/flat_evaluator.hpp"
#include "pippy/core/topology.hpp"
#include "pippy/traces/metrics.hpp"
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
  add("pp x dp with ZeRO-1, at the step, 2 hosts", [&](sim::sim_options& o) {
    o.links.intra_host = {0.2, 1};
    o.links.inter_host = {1.5, 0.5};
    o.links.ranks_per_host = R;
    o.data_parallel = {.replicas = 4, .sync = grad_sync_mode::at_step, .zero1 = true};
  });
  add("pp x dp with ZeRO-1, overlapped, arrivals cost compute, Gloo's reduce-scatter", [](sim::sim_options& o) {
    o.links = link_model::uniform(0.3, 0.6);
    o.costs.arrival_cost_us = 0.35;
    o.costs.replica_reduce_scatter_by_allreduce = true;
    o.data_parallel = {.replicas = 2, .sync = grad_sync_mode::overlap, .zero1 = true};
  });
  add("blocking sends", [](sim::sim_options& o) {
    o.links = link_model::uniform(0.4, 2);
    o.links.blocking_send = true;
    o.costs.action_overhead_us = 0.2;
  });
  // Arrivals lengthen the compute they land in, which the flat evaluator can only settle in time order.
  add("arrivals cost compute, bandwidth with contention", [](sim::sim_options& o) {
    o.links = link_model::uniform(0.3, 0.5);
    o.costs.arrival_cost_us = 0.45;
    o.costs.action_overhead_us = 0.05;
  });
  add("arrivals cost compute, jitter, pp x dp, no overhead", [](sim::sim_options& o) {
    o.links = link_model::uniform(0.6, 0);
    o.costs.jitter = 0.3, o.costs.seed = 4;
    o.costs.arrival_cost_us = 1.3;
    o.data_parallel = {.replicas = 2, .sync = grad_sync_mode::overlap};
  });
  add("step-to-step noise drawn from quantiles, arrivals cost compute", [](sim::sim_options& o) {
    o.links = link_model::uniform(0.4, 0);
    o.costs.noise = {0.3, 0.7, 0.9, 1.0, 1.1, 1.4, 2.6};
    o.costs.seed = 11;
    o.costs.arrival_cost_us = 0.2;
  });
  add("arrivals cost compute, blocking sends", [](sim::sim_options& o) {
    o.links = link_model::uniform(0.2, 1);
    o.links.blocking_send = true;
    o.costs.arrival_cost_us = 0.3;
  });
  add("sends posted from the rank's time, bandwidth with contention", [](sim::sim_options& o) {
    o.links = link_model::uniform(0.3, 0.5);
    o.costs.send_posting = {.latency_us = 0.25, .bandwidth_gbps = 2};
    o.costs.action_overhead_us = 0.05;
  });
  add("sends posted from the rank's time, blocking sends, arrivals cost compute", [](sim::sim_options& o) {
    o.links = link_model::uniform(0.1, 8);
    o.links.blocking_send = true;
    o.costs.send_posting = {.latency_us = 0.4, .bandwidth_gbps = 1};
    o.costs.arrival_cost_us = 0.3;
  });
  // Ranks bound to shared CPUs (shared_processor: the newest action first), as `pippy run --bind-cores`
  // puts R ranks on 2 CPUs, or all on one.
  add("ranks sharing 2 CPUs, latency, overhead", [&](sim::sim_options& o) {
    o.links = link_model::uniform(0.3, 0);
    o.costs.action_overhead_us = 0.1;
    o.costs.shared_cpus = ranks_sharing_bound_cpus(R, 2);
  });
  add("every rank on one CPU, arrivals cost compute, bandwidth", [&](sim::sim_options& o) {
    o.links = link_model::uniform(0.2, 1);
    o.costs.arrival_cost_us = 0.3;
    o.costs.shared_cpus = ranks_sharing_bound_cpus(R, 1);
  });
  add("inputs received from another rank cost more, arrivals cost compute, uneven micro-batches", [&](sim::sim_options& o) {
    o.links = link_model::uniform(0.3, 0.5);
    o.costs.received_input = {.F = 0.35, .B = 0.6};
    o.costs.arrival_cost_us = 0.2;
    o.costs.scale_by_rows(2 * M + 1, M);
  });
  add("ranks sharing 2 CPUs, noise, posting, blocking sends, pp x dp", [&](sim::sim_options& o) {
    o.links = link_model::uniform(0.4, 2);
    o.links.blocking_send = true;
    o.costs.noise = {0.5, 0.9, 1.0, 1.2, 2.0};
    o.costs.seed = 3;
    o.costs.send_posting = {.latency_us = 0.2, .bandwidth_gbps = 4};
    o.costs.arrival_cost_us = 0.15;
    o.costs.shared_cpus = ranks_sharing_bound_cpus(R, 2);
    o.data_parallel = {.replicas = 2, .sync = grad_sync_mode::overlap};
  });
  // The mesh as `pippy run --bind-cores` binds pp x dp on 2 CPUs: the replicas' ranks share them (the twin
  // replicas of a stage on one CPU when R is even), each replica drawing its own noise.
  add("pp x dp, the replicas' ranks sharing 2 CPUs, noise, overhead", [&](sim::sim_options& o) {
    o.links = link_model::uniform(0.3, 1);
    o.costs.noise = {0.6, 0.9, 1.0, 1.1, 1.8};
    o.costs.seed = 5;
    o.costs.action_overhead_us = 0.1;
    o.costs.shared_cpus = ranks_sharing_bound_cpus(2 * R, 2);
    o.data_parallel = {.replicas = 2, .sync = grad_sync_mode::overlap};
  });
  add("pp x dp with ZeRO-1 on 3 replicas sharing 2 CPUs, at the step, arrivals cost compute", [&](sim::sim_options& o) {
    o.links = link_model::uniform(0.2, 2);
    o.costs.jitter = 0.25, o.costs.seed = 9;
    o.costs.arrival_cost_us = 0.2;
    o.costs.shared_cpus = ranks_sharing_bound_cpus(3 * R, 2);
    o.data_parallel = {.replicas = 3, .sync = grad_sync_mode::at_step, .zero1 = true};
  });
  add("pp x dp with ZeRO-1, overlapped, replicas on hosts of their own", [&](sim::sim_options& o) {
    o.links = {.intra_host = {0.1, 4}, .inter_host = {0.8, 0.5}, .ranks_per_host = R};
    o.costs.jitter = 0.2, o.costs.seed = 2;
    o.data_parallel = {.replicas = 2, .sync = grad_sync_mode::overlap, .zero1 = true};
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
  // pp x dp: every replica's ranks (mesh rank d x R + r runs rank r's list)
  const int R = s.shape.num_ranks;
  for (int rank = 0; rank < R * o.data_parallel.replicas; ++rank) {
    const auto& list = lowered.ranks[static_cast<std::size_t>(rank % R)];
    for (std::size_t i = 0; i < list.size(); ++i) {
      const action& a = list[i];
      if (is_receive(a.kind))
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
  // Less the replicas' all-reduces, which the simulator records as REDUCE_GRAD and the evaluator times
  // as U's wait (the makespans below agree on them).
  CHECK(matched == static_cast<std::size_t>(std::count_if(ref.timeline.events.begin(), ref.timeline.events.end(), [](const trace_event& e) {
          return e.act.kind != action_kind::reduce_grad;
        })));
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
  std::size_t charged = 0, lengthened = 0; // configurations with an arrival cost, and those it changed
  for (const auto& s : schedules)
    for (const auto& c : configurations(s, seed++)) {
      INFO(s.name << " R=" << s.shape.num_ranks << " V=" << s.shape.stages_per_rank << " M="
                  << s.shape.num_microbatches << ": " << c.name);
      check_same(s, c.options);
      // (On shared CPUs a longer action can nest others differently, so there only the engines agree.)
      if (c.options.costs.arrival_cost_us > 0 && c.options.costs.shared_cpus.empty()) {
        auto free = c.options;
        free.costs.arrival_cost_us = 0;
        flat_evaluator ev;
        const double with = ev.evaluate(s, c.options.costs, c.options.links, {}, c.options.data_parallel).makespan_us;
        const double without = ev.evaluate(s, free.costs, free.links, {}, free.data_parallel).makespan_us;
        CHECK(with >= without); // arrivals only ever lengthen compute
        ++charged;
        lengthened += with > without ? 1 : 0;
      }
    }
  CHECK(lengthened > charged / 2); // the sweep does exercise the rule
}

// On shared CPUs an action waits while the ones that started inside it run: sharing only lengthens the
// step, and the simulated trace read backwards (traces' work_alone) gives every action its cost alone.
TEST_CASE("ranks sharing a CPU: the step only grows, and work_alone gives each action's cost back",
          "[simulator][flat][processor]") {
  std::size_t slowed = 0, runs = 0;
  for (const auto& s : sweep()) {
    INFO(s.name << " R=" << s.shape.num_ranks << " V=" << s.shape.stages_per_rank << " M=" << s.shape.num_microbatches);
    sim::sim_options o{.costs = uniform_costs(s.shape.num_stages(), stage_cost{.F = 1, .I = 1.25, .W = 0.75, .B = 2, .U = 0.5})};
    for (int st = 0; st < s.shape.num_stages(); ++st) // no two actions alike
      o.costs.stages[static_cast<std::size_t>(st)].F += 0.1 * st;
    o.links = link_model::uniform(0.3, 0);
    o.costs.action_overhead_us = 0.15;
    const double alone = sim::simulate(s, o).makespan_us;
    o.costs.shared_cpus = ranks_sharing_bound_cpus(s.shape.num_ranks, 2);
    const sim::sim_result shared = sim::simulate(s, o);
    CHECK(shared.makespan_us >= alone);
    slowed += shared.makespan_us > alone ? 1 : 0;
    ++runs;
    const trace back = work_alone(shared.timeline, o.costs.shared_cpus, o.costs.action_overhead_us);
    for (const auto& e : back.events)
      if (is_compute(e.act.kind)) {
        INFO("rank " << e.rank << " " << to_string(e.act));
        CHECK(e.duration_us() == Approx(o.costs(e.act)).margin(1e-9));
      }
  }
  CHECK(slowed > runs / 2);
}

// The mesh of pp x dp as --bind-cores puts it on 2 CPUs (the replicas' ranks round robin): read backwards,
// the simulated trace of every replica gives each action its cost alone, and the all-reduce waits for
// the replica that posts last.
TEST_CASE("pp x dp on shared CPUs: every replica's actions give their cost back, and U waits for the last post",
          "[simulator][flat][processor]") {
  std::size_t runs = 0;
  for (const auto& s : sweep()) {
    if (s.ranks[0].empty() || s.ranks[0].back().kind != action_kind::optimizer_step)
      continue; // pp x dp needs the step
    INFO(s.name << " R=" << s.shape.num_ranks << " V=" << s.shape.stages_per_rank << " M=" << s.shape.num_microbatches);
    sim::sim_options o{.costs = uniform_costs(s.shape.num_stages(), stage_cost{.F = 1, .I = 1.25, .W = 0.75, .B = 2, .U = 0.5,
                                                                              .param_bytes = 4000})};
    for (int st = 0; st < s.shape.num_stages(); ++st)
      o.costs.stages[static_cast<std::size_t>(st)].F += 0.1 * st;
    o.links = link_model::uniform(0.3, 2);
    o.costs.action_overhead_us = 0.15;
    o.data_parallel = {.replicas = 2, .sync = grad_sync_mode::overlap};
    o.costs.shared_cpus = ranks_sharing_bound_cpus(2 * s.shape.num_ranks, 2);
    const sim::sim_result r = sim::simulate(s, o);
    REQUIRE(r.timeline.num_ranks == 2 * s.shape.num_ranks);
    CHECK(r.timeline.replicas == 2);
    const trace back = work_alone(r.timeline, o.costs.shared_cpus, o.costs.action_overhead_us);
    std::map<std::pair<int, int>, double> last_post, done; // (replica, stage) -> posted, and the sum's end
    for (const auto& e : back.events) {
      if (is_compute(e.act.kind)) {
        INFO("rank " << e.rank << " " << to_string(e.act));
        CHECK(e.duration_us() == Approx(o.costs(e.act, e.rank / s.shape.num_ranks)).margin(1e-9));
      }
      if (e.act.kind == action_kind::reduce_grad) {
        last_post[{e.rank / s.shape.num_ranks, e.act.stage}] = e.start_us;
        done[{e.rank / s.shape.num_ranks, e.act.stage}] = e.end_us;
      }
    }
    for (int st = 0; st < s.shape.num_stages(); ++st) { // both replicas' sums end together, after both posted
      CHECK(done.at({0, st}) == done.at({1, st}));
      CHECK(done.at({0, st}) >= std::max(last_post.at({0, st}), last_post.at({1, st})));
    }
    ++runs;
  }
  CHECK(runs > 20);
}

// With an arrival cost the evaluator settles an action's end as soon as no sender can still land a
// transfer before it, and keeps the rest for the clock: chains of blocked ranks and many neighbours
// matter there, so more ranks than the sweep's four.
TEST_CASE("flat evaluator = actor simulator with arrival costs on 8 and 16 ranks", "[simulator][flat]") {
  std::uint32_t seed = 900;
  std::size_t checked = 0;
  for (auto name : schedule_names())
    for (int R : {8, 16})
      for (int V : {1, 2}) {
        schedule s;
        try {
          s = make_schedule({.name = std::string(name), .num_ranks = R, .num_microbatches = 2 * R, .stages_per_rank = V});
        } catch (const input_error&) {
          continue;
        }
        for (const auto& c : configurations(s, seed++))
          if (c.options.costs.arrival_cost_us > 0) {
            INFO(s.name << " R=" << R << " V=" << V << ": " << c.name);
            check_same(s, c.options);
            ++checked;
          }
      }
  CHECK(checked >= 30);
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
    for (std::size_t k : {std::size_t{0}, std::size_t{3}, std::size_t{5}, std::size_t{8}}) {
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

// Issue 14: link state was an R x R table (R = 8000: 1 GB; R = 100000: 80 GB, never finished) and each
// rank's static memory walked every stage. Now both are linear in ranks: 100000 ranks take a second.
// GPipe with latency L between neighbours: (M + R - 1)(F + B) + 2 (R - 1) L.
TEST_CASE("flat evaluator: 100000 ranks, GPipe with latency, in linear memory", "[simulator][flat][scale]") {
  const int R = 100000, M = 2;
  const auto s = make_schedule({.name = "gpipe", .num_ranks = R, .num_microbatches = M, .optimizer_steps = false});
  const auto o = pippy::test::uniform_options(s, 1, 1, 1, 0.5); // F = 1, B = 2
  flat_evaluator ev;
  const flat_result& r = ev.evaluate(s, o.costs, o.links);
  REQUIRE(r.completed);
  CHECK(r.makespan_us == (M + R - 1) * 3.0 + 2 * (R - 1) * 0.5); // 400002
  CHECK(r.makespan_us == 400002);
  REQUIRE(r.ranks.size() == static_cast<std::size_t>(R));
  CHECK(r.ranks[0].first_start_us == 0);
  CHECK(r.ranks[R - 1].first_start_us == (R - 1) * 1.5); // F + L per hop
  CHECK(r.ranks[R - 1].busy_us == M * 3.0);
  CHECK(r.actions == s.num_actions() + 4u * static_cast<std::size_t>(M) * (R - 1)); // SEND and RECV, F and B
  // 1F1B needs M >= R, and limits caps stages x micro-batches at 2^22: 500 ranks and micro-batches.
  const int R2 = 500;
  const auto s2 = make_schedule({.name = "1f1b", .num_ranks = R2, .num_microbatches = R2, .optimizer_steps = false});
  const auto o2 = pippy::test::uniform_options(s2, 1, 1, 1);
  CHECK(ev.evaluate(s2, o2.costs, o2.links).makespan_us == (2.0 * R2 - 1) * 3); // 2997
}

TEST_CASE("static_memory_bytes sums the stages that rank_of places on the rank, looped and V-shaped",
          "[simulator][flat]") {
  // stages_of lists a rank's stages directly (not by walking all stages); the sums must still be over
  // exactly the stages rank_of puts there.
  for (auto [R, V, placement] : {std::tuple{4, 1, placement_style::looped}, {3, 3, placement_style::looped},
                                 {4, 2, placement_style::v_shape}, {5, 4, placement_style::v_shape}}) {
    const pipeline_shape shape{.num_ranks = R, .stages_per_rank = V, .num_microbatches = 1, .placement = placement};
    cost_table costs;
    for (int st = 0; st < shape.num_stages(); ++st)
      costs.stages.push_back(stage_cost{.param_bytes = 1000u + 37u * static_cast<std::uint64_t>(st * st)});
    const memory_model memory{.state_factor = 3.7};
    std::vector<std::uint64_t> by_walk(static_cast<std::size_t>(R), 0);
    for (int st = 0; st < shape.num_stages(); ++st)
      by_walk[static_cast<std::size_t>(shape.rank_of(st))] += static_cast<std::uint64_t>(
          static_cast<double>(costs.stages[static_cast<std::size_t>(st)].param_bytes) * memory.state_factor);
    for (int r = 0; r < R; ++r) {
      INFO("R=" << R << " V=" << V << " rank " << r);
      CHECK(by_walk[static_cast<std::size_t>(r)] == static_memory_bytes(costs, memory, shape, r));
    }
  }
  // By hand: R = 2, V = 2 in a V, stages 0..3 of 10, 20, 30, 40 bytes, factor 4: rank 0 holds stages 0
  // and 3 (200 bytes), rank 1 stages 1 and 2 (200 bytes); looped, rank 0 holds 0 and 2 (160), rank 1 240.
  cost_table c{.stages = {stage_cost{.param_bytes = 10}, stage_cost{.param_bytes = 20}, stage_cost{.param_bytes = 30},
                          stage_cost{.param_bytes = 40}}};
  const pipeline_shape vee{.num_ranks = 2, .stages_per_rank = 2, .placement = placement_style::v_shape};
  const pipeline_shape looped{.num_ranks = 2, .stages_per_rank = 2};
  CHECK(static_memory_bytes(c, {}, vee, 0) == 200);
  CHECK(static_memory_bytes(c, {}, vee, 1) == 200);
  CHECK(static_memory_bytes(c, {}, looped, 0) == 160);
  CHECK(static_memory_bytes(c, {}, looped, 1) == 240);
}
