// The planner: balanced splits against brute force, the best plan against an exhaustive search of every
// split, memory caps, micro-batch scaling, profiles without per-layer costs, and errors naming the option.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <tuple>

#include "pippy/core/error.hpp"
#include "pippy/core/flat_evaluator.hpp"
#include "pippy/core/generators.hpp"
#include "pippy/core/planner.hpp"
#include "pippy/core/topology.hpp"

using namespace pippy;

namespace {

// Every way of cutting L layers into S non-empty contiguous stages (boundaries as balanced_split gives
// them). Brute force: only for the tests.
void each_split(int L, int S, const std::function<void(const std::vector<int>&)>& visit) {
  std::vector<int> b{0};
  std::function<void(int)> rec = [&](int next) {
    if (static_cast<int>(b.size()) == S) {
      visit(b);
      return;
    }
    const int left = S - static_cast<int>(b.size()); // stages still to start
    for (int start = next; start <= L - left; ++start) {
      b.push_back(start);
      rec(start + 1);
      b.pop_back();
    }
  };
  rec(1);
}

double largest_stage(const std::vector<double>& t, const std::vector<int>& b) {
  double worst = 0;
  for (std::size_t k = 0; k < b.size(); ++k) {
    const int end = k + 1 < b.size() ? b[k + 1] : static_cast<int>(t.size());
    double sum = 0;
    for (int i = b[k]; i < end; ++i)
      sum += t[static_cast<std::size_t>(i)];
    worst = std::max(worst, sum);
  }
  return worst;
}

cost_table layered_profile(const std::vector<double>& forward) {
  cost_table p;
  p.stages = {stage_cost{}};
  for (std::size_t i = 0; i < forward.size(); ++i)
    p.layers.push_back(layer_cost{.name = "h." + std::to_string(i), .F = forward[i], .I = forward[i],
                                  .W = forward[i], .B = 2 * forward[i], .activation_bytes = 1000 * (i + 1),
                                  .output_bytes = 500, .param_bytes = 100 * (i + 1)});
  return p;
}

} // namespace

TEST_CASE("balanced split: the smallest largest stage, as brute force finds it", "[core][planner]") {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> length(1, 10), small(0, 4);
  std::uniform_real_distribution<double> real(0.0, 10.0);
  int cases = 0;
  for (int round = 0; round < 300; ++round) {
    const int L = length(rng);
    std::vector<double> t(static_cast<std::size_t>(L));
    for (auto& x : t) // integers make ties (several best splits), reals make none
      x = round % 2 ? static_cast<double>(small(rng)) : real(rng);
    for (int S = 1; S <= L; ++S) {
      double best = std::numeric_limits<double>::infinity();
      each_split(L, S, [&](const std::vector<int>& b) { best = std::min(best, largest_stage(t, b)); });
      const auto b = balanced_split(t, S);
      INFO("round " << round << " L=" << L << " S=" << S);
      REQUIRE(b.size() == static_cast<std::size_t>(S));
      CHECK(b[0] == 0);
      for (int k = 1; k < S; ++k)
        CHECK(b[static_cast<std::size_t>(k)] > b[static_cast<std::size_t>(k) - 1]);
      CHECK(b.back() < L);
      CHECK(largest_stage(t, b) == Approx(best).margin(1e-12));
      ++cases;
    }
  }
  CHECK(cases > 1000);
  CHECK(balanced_split({1, 1, 1, 1, 1, 1}, 3) == std::vector<int>{0, 2, 4});
  CHECK(balanced_split({4, 1, 1, 1, 1}, 2) == std::vector<int>{0, 1});
  CHECK_THROWS_WITH(balanced_split({1, 2}, 3), "stages: cannot cut 2 layers into 3 non-empty stages");
  CHECK_THROWS_WITH(balanced_split({1, 2}, 0), "stages: cannot cut 2 layers into 0 non-empty stages");
}

// 8 layers on 2 ranks: every schedule, V = 1..4, M from the divisors of a batch of 8 rows (the profile
// measured 2-row micro-batches), and every split of the layers, each scored by the flat evaluator. The
// planner tries balanced splits only; its best is the exhaustive best.
TEST_CASE("planner: its best plan is the best of an exhaustive search over every split", "[core][planner]") {
  cost_table profile = layered_profile({3, 1, 2, 2, 1, 3, 2, 2});
  profile.microbatch_rows = 2;
  profile.action_overhead_us = 0.1;
  const plan_options o{.num_ranks = 2, .global_batch = 8, .links = link_model::uniform(0.2, 0)};
  const plan_result plan = make_plan(profile, o);
  REQUIRE_FALSE(plan.candidates.empty());
  CHECK(plan.rows_known);
  CHECK(plan.per_layer);
  CHECK(plan.layers == 8);
  flat_evaluator ev;
  double exhaustive = std::numeric_limits<double>::infinity();
  std::size_t evaluated = 0;
  for (auto name : schedule_names())
    for (int V = 1; V <= 4; ++V)
      for (int M : {1, 2, 4, 8}) {
        schedule s;
        try {
          s = make_schedule({.name = std::string(name), .num_ranks = 2, .num_microbatches = M, .stages_per_rank = V});
        } catch (const input_error&) {
          continue;
        }
        each_split(8, 2 * V, [&](const std::vector<int>& b) {
          plan_candidate c{.schedule = std::string(name), .stages_per_rank = V, .microbatches = M, .boundaries = b};
          exhaustive = std::min(exhaustive, ev.evaluate(s, plan_costs(profile, o, c), o.links).makespan_us);
          ++evaluated;
        });
      }
  CHECK(evaluated > 500);
  auto fastest_alone = [](const plan_result& p) {
    return *std::min_element(p.candidates.begin(), p.candidates.end(),
                             [](const plan_candidate& a, const plan_candidate& b) { return a.step_us < b.step_us; });
  };
  CHECK(fastest_alone(plan).step_us == exhaustive);
  // The best by the step back to back, among the pool of the best by one step alone.
  const plan_candidate& best = plan.candidates.front();
  const std::size_t pool = std::min(plan.candidates.size(), static_cast<std::size_t>(o.rerank_pool));
  CHECK(best.expected_step_us == expected_step_us(ev, plan_schedule(o, best), plan_costs(profile, o, best), o.links).step_us);
  // Its own numbers are the evaluator's on its schedule and costs.
  const flat_result& again = ev.evaluate(plan_schedule(o, best), plan_costs(profile, o, best), o.links);
  CHECK(again.makespan_us == best.step_us);
  CHECK(again.bubble_fraction == best.bubble_fraction);
  CHECK(again.peak_memory_bytes() == best.peak_memory_bytes);
  CHECK(best.throughput == Approx(8 / (best.expected_step_us * 1e-6)));
  // A profile's cost per arrival goes with every candidate's costs, and the plan is scored with it.
  profile.arrival_cost_us = 0.35;
  CHECK(plan_costs(profile, o, best).arrival_cost_us == 0.35);
  const plan_result charged = make_plan(profile, o);
  REQUIRE_FALSE(charged.candidates.empty());
  const plan_candidate& first = charged.candidates.front();
  CHECK(ev.evaluate(plan_schedule(o, first), plan_costs(profile, o, first), o.links).makespan_us == first.step_us);
  CHECK(fastest_alone(charged).step_us > exhaustive); // arrivals only lengthen compute, and some land inside it here
  // Split points are the names of the layers where stages 1.. begin.
  REQUIRE(best.boundaries.size() == static_cast<std::size_t>(2 * best.stages_per_rank));
  for (std::size_t k = 1; k < best.boundaries.size(); ++k)
    CHECK(best.split_points[k - 1] == "h." + std::to_string(best.boundaries[k]));
  // Ranked by the step back to back in the pool, by one step alone after it (the batch is the same for all).
  for (std::size_t i = 1; i < plan.candidates.size(); ++i)
    if (i < pool)
      CHECK(plan.candidates[i - 1].expected_step_us <= plan.candidates[i].expected_step_us);
    else if (i > pool)
      CHECK(plan.candidates[i - 1].step_us <= plan.candidates[i].step_us);
}

TEST_CASE("planner: the rerank pool is ranked by the step back to back, with the noise drawn step by step",
          "[core][planner]") {
  cost_table profile = layered_profile({3, 1, 2, 2, 1, 3, 2, 2});
  profile.microbatch_rows = 2;
  profile.action_overhead_us = 0.1;
  profile.step_overhead_us = 0.5;
  plan_options o{.num_ranks = 2, .global_batch = 8, .links = link_model::uniform(0.2, 0), .rerank_pool = 12};
  flat_evaluator ev;
  auto check_pool = [&](const plan_result& plan, bool noisy) {
    REQUIRE(plan.candidates.size() > 12);
    std::multiset<double> alone;
    for (std::size_t k = 0; k < plan.candidates.size(); ++k) {
      const plan_candidate& c = plan.candidates[k];
      if (k >= 12) {
        CHECK(c.expected_step_us == 0); // past the pool: not evaluated, in the order of one step alone
        if (k > 12)
          CHECK(plan.candidates[k - 1].step_us <= c.step_us);
        continue;
      }
      cost_table costs = plan_costs(profile, o, c);
      costs.noise = profile.noise;
      CHECK(c.expected_step_us == expected_step_us(ev, plan_schedule(o, c), costs, o.links).step_us);
      if (noisy)
        CHECK(c.expected_step_us > c.step_us); // the pipeline waits for the slow draws
      else
        CHECK(c.expected_step_us <= c.step_us + 1e-9); // a step's tail overlaps the next one's start
      CHECK(c.throughput == Approx(8 / (c.expected_step_us * 1e-6)));
      if (k > 0)
        CHECK(plan.candidates[k - 1].expected_step_us <= c.expected_step_us);
      alone.insert(c.step_us);
    }
    return alone;
  };
  const plan_result at_means = make_plan(profile, o);
  const auto pool_at_means = check_pool(at_means, false);
  profile.noise = {0.2, 0.6, 0.9, 1.0, 1.1, 1.4, 2.8};
  profile.seed = 3;
  const plan_result drawn = make_plan(profile, o);
  CHECK(check_pool(drawn, true) == pool_at_means); // the same 12, reordered
  bool reordered = false;
  for (std::size_t k = 0; k < 12; ++k)
    reordered = reordered || drawn.candidates[k].step_us != at_means.candidates[k].step_us;
  CHECK(reordered); // the noise does change the ranking here
  o.rerank_pool = -1;
  CHECK_THROWS_WITH(make_plan(profile, o), Catch::Contains("rerank pool must be at least 0"));
}

TEST_CASE("planner: micro-batches of G/M rows scale the profile's costs, without rows they stay as given", "[core][planner]") {
  cost_table profile = layered_profile({1, 1, 1, 1});
  profile.microbatch_rows = 4;
  plan_options o{.num_ranks = 2, .schedules = {"gpipe"}, .global_batch = 16};
  const plan_result plan = make_plan(profile, o);
  std::vector<int> Ms;
  for (const auto& c : plan.candidates)
    Ms.push_back(c.microbatches);
  std::sort(Ms.begin(), Ms.end());
  Ms.erase(std::unique(Ms.begin(), Ms.end()), Ms.end());
  CHECK(Ms == std::vector<int>{1, 2, 4, 8, 16}); // the divisors of 16 (gpipe takes them all)
  const plan_candidate c{.schedule = "gpipe", .stages_per_rank = 1, .microbatches = 8, .boundaries = {0, 2}};
  const cost_table eight = plan_costs(profile, o, c);
  REQUIRE(eight.microbatch_scale.size() == 8);
  CHECK(eight.microbatch_scale[0] == 0.5); // 2 rows of the measured 4
  CHECK(eight.stages.size() == 2);
  CHECK(eight.stages[0].F == 2); // layers 0 and 1
  // GPipe, 2 stages of F=1, B=2 per 2-row micro-batch: (M + R - 1)(F + B) = 9 * 3 = 27 at M = 8.
  for (const auto& cand : plan.candidates)
    if (cand.microbatches == 8 && cand.stages_per_rank == 1)
      CHECK(cand.step_us == 27);
  profile.microbatch_rows = 0; // unknown: costs as given, whatever M
  CHECK(plan_costs(profile, o, c).microbatch_scale.empty());
  o.global_batch = 0; // no batch: M = R, 2R, 4R, 8R, ranked by time per micro-batch
  const plan_result per_mb = make_plan(profile, o);
  for (std::size_t i = 1; i < per_mb.candidates.size(); ++i) {
    const auto& a = per_mb.candidates[i - 1];
    const auto& b = per_mb.candidates[i];
    CHECK(a.step_us / a.microbatches <= b.step_us / b.microbatches);
  }
  CHECK_FALSE(per_mb.rows_known);
  CHECK(per_mb.candidates.front().microbatches == 16); // the bubble shrinks with more micro-batches
  CHECK(per_mb.candidates.front().throughput == Approx(16 / (per_mb.candidates.front().step_us * 1e-6)));
}

// What an input received from another rank costs (cost_table::received_input) goes with the plan, at
// its micro-batches' rows: the engines add it to stage 1's F and stage 0's B.
TEST_CASE("planner: a received input's cost follows the plan's stages and rows", "[core][planner]") {
  cost_table profile = layered_profile({1, 1, 1, 1});
  profile.microbatch_rows = 4;
  profile.received_input = {.F = 0.5, .B = 0.25};
  plan_options o{.num_ranks = 2, .schedules = {"gpipe"}, .global_batch = 16};
  const plan_candidate c{.schedule = "gpipe", .stages_per_rank = 1, .microbatches = 8, .boundaries = {0, 2}};
  const cost_table eight = plan_costs(profile, o, c);
  const schedule s = plan_schedule(o, c);
  CHECK(eight.received_input_us({1, action_kind::forward, 0}, s.shape) == 0.25); // 2 rows of the measured 4
  CHECK(eight.received_input_us({0, action_kind::forward, 0}, s.shape) == 0);
  CHECK(eight.received_input_us({0, action_kind::full_backward, 0}, s.shape) == 0.125);
  // GPipe, 2 stages of F = 1, B = 2 a micro-batch, stage 1's F 1.25 and stage 0's B 2.125: stage 1's
  // forwards end at 1 + 8 x 1.25 = 11, its backwards at 11 + 8 x 2, and stage 0's from 13 on take
  // 8 x 2.125: 30 (27 without).
  for (const auto& cand : make_plan(profile, o).candidates)
    if (cand.microbatches == 8 && cand.stages_per_rank == 1)
      CHECK(cand.step_us == 30);
  // Layers timed at other sizes: the plan's micro-batch of 8 rows receives twice the measured 4's.
  profile.layers[0].other_sizes = {{.rows = 8, .F = 2, .I = 2, .W = 2, .B = 4}};
  const plan_candidate two{.schedule = "gpipe", .stages_per_rank = 1, .microbatches = 2, .boundaries = {0, 2}};
  CHECK(plan_costs(profile, o, two).received_input == cost_table::received_input_cost{.F = 1, .B = 0.5});
}

TEST_CASE("planner: a memory cap excludes exactly the candidates that run out of memory", "[core][planner]") {
  const cost_table profile = layered_profile({3, 1, 2, 2, 1, 3, 2, 2});
  plan_options o{.num_ranks = 2, .microbatches = {2, 4, 8}};
  const plan_result free = make_plan(profile, o);
  std::vector<std::uint64_t> peaks;
  for (const auto& c : free.candidates)
    peaks.push_back(c.peak_memory_bytes);
  std::sort(peaks.begin(), peaks.end());
  o.memory.cap_bytes = peaks[peaks.size() / 2]; // about half of them fit
  const plan_result capped = make_plan(profile, o);
  flat_evaluator ev;
  std::size_t fit = 0, excluded = 0;
  bool fitting_part = true;
  for (const auto& c : capped.candidates) {
    INFO(c.schedule << " V=" << c.stages_per_rank << " M=" << c.microbatches);
    const flat_result& r = ev.evaluate(plan_schedule(o, c), plan_costs(profile, o, c), o.links, o.memory);
    CHECK(c.fits == !r.oom.has_value());
    CHECK(c.fits == (c.peak_memory_bytes <= o.memory.cap_bytes));
    if (!c.fits)
      fitting_part = false;
    CHECK((c.fits || !fitting_part)); // every fitting candidate ranks above every other
    (c.fits ? fit : excluded) += 1;
  }
  CHECK(fit > 0);
  CHECK(excluded > 0);
  CHECK(capped.candidates.front().fits);
}

TEST_CASE("planner: without per-layer costs the profile's stages are used as they are", "[core][planner]") {
  cost_table profile = uniform_costs(4, stage_cost{.F = 1, .I = 1, .W = 1, .B = 2});
  const plan_result plan = make_plan(profile, plan_options{.num_ranks = 2, .microbatches = {4}});
  CHECK_FALSE(plan.per_layer);
  for (const auto& c : plan.candidates) {
    CHECK(c.stages_per_rank == 2);
    CHECK(c.boundaries.empty());
    CHECK(c.split_points.empty());
  }
  CHECK(plan.skipped > 0); // gpipe, 1f1b, zb-h1 and zb-h2 take one stage per rank
  CHECK_THROWS_WITH(make_plan(profile, plan_options{.num_ranks = 3}),
                    Catch::Contains("ranks: the profile has 4 stages and no per-layer costs ('layers')"));
  CHECK_THROWS_WITH(make_plan(profile, plan_options{.num_ranks = 2, .stages_per_rank = {1}}),
                    Catch::Contains("stages-per-rank: without per-layer costs the plan uses the profile's 4 stages"));
}

TEST_CASE("planner: bad options name the option", "[core][planner][errors]") {
  const cost_table profile = layered_profile({1, 2, 3});
  CHECK_THROWS_WITH(make_plan(profile, plan_options{.num_ranks = 0}), "ranks must be at least 1 (got 0)");
  CHECK_THROWS_WITH(make_plan(profile, plan_options{.num_ranks = 4}),
                    "ranks: 4 ranks need at least as many layers, but the profile has 3");
  CHECK_THROWS_WITH(make_plan(profile, plan_options{.num_ranks = 1, .microbatches = {0}}),
                    "microbatches must be at least 1 (got 0)");
  CHECK_THROWS_WITH(make_plan(profile, plan_options{.num_ranks = 1, .microbatches = {8}, .global_batch = 4}),
                    "microbatches: 8 micro-batches need at least as many rows, but the global batch has 4");
  CHECK_THROWS_WITH(make_plan(profile, plan_options{.num_ranks = 1, .global_batch = -2}),
                    "global-batch must be positive (got -2)");
  CHECK_THROWS_WITH(make_plan(profile, plan_options{.num_ranks = 1, .stages_per_rank = {4}}),
                    "stages-per-rank: 4 stages on each of 1 ranks need 4 layers, but the profile has 3");
  CHECK_THROWS_WITH(make_plan(profile, plan_options{.num_ranks = 1, .schedules = {"2f2b"}}),
                    Catch::StartsWith("schedule: unknown name '2f2b' (known: gpipe, 1f1b"));
  CHECK_THROWS_WITH(make_plan(profile, plan_options{.num_ranks = 3, .schedules = {"zbv"}, .microbatches = {1}}),
                    "schedule: no schedule takes any of the stages-per-rank and microbatches tried on 3 ranks");
}

TEST_CASE("plan.json reads back what pippy plan --emit writes, and bad files name the field", "[core][planner]") {
  const std::string dir = "test_plan_dir";
  std::filesystem::create_directories(dir);
  auto write = [&](const std::string& text) { std::ofstream(dir + "/plan.json") << text; };
  plan_candidate c{.schedule = "zbv", .stages_per_rank = 2, .microbatches = 8, .boundaries = {0, 2, 3, 5},
                   .split_points = {"b", "c", "d"}, .step_us = 123.5};
  write(to_plan_json(c, 2));
  const auto p = load_plan(dir);
  CHECK(p.schedule == "zbv");
  CHECK(p.ranks == 2);
  CHECK(p.stages_per_rank == 2);
  CHECK(p.microbatches == 8);
  CHECK(p.boundaries == std::vector<int>{0, 2, 3, 5});
  const std::string where = "plan file 'test_plan_dir/plan.json': ";
  write(R"({"schedule":"1f1b","ranks":2,"stages_per_rank":1,"microbatches":0})");
  CHECK_THROWS_WITH(load_plan(dir), where + "microbatches must be a whole number from 1 to 1048576 (got 0)");
  write(R"({"schedule":"1f1b","ranks":2,"stages_per_rank":1,"microbatches":4,"boundaries":[0,3,3]})");
  CHECK_THROWS_WITH(load_plan(dir), where + "boundaries must start at 0 and increase (boundaries[2] is 3)");
  write(R"({"schedule":"1f1b","ranks":2,"stages_per_rank":1,"microbatches":4,"boundaries":[0,3,5]})");
  CHECK_THROWS_WITH(load_plan(dir), where + "3 boundaries for 2 ranks x 1 stages");
  write(R"({"schedule":"1f1b","ranks":1e300,"stages_per_rank":1,"microbatches":4})");
  CHECK_THROWS_WITH(load_plan(dir), where + "ranks must be a whole number from 1 to 1048576 (got 1e+300)");
  write(R"({"ranks":2)");
  CHECK_THROWS_WITH(load_plan(dir), Catch::StartsWith(where + "not valid JSON"));
  write(R"({"schedule":"1f1b","ranks":1e309,"stages_per_rank":1,"microbatches":4})"); // past double: out_of_range
  CHECK_THROWS_WITH(load_plan(dir), Catch::StartsWith(where + "not valid JSON"));
  std::filesystem::remove_all(dir);
  CHECK_THROWS_WITH(load_plan(dir), where + "cannot open it");
}

TEST_CASE("a schedule that repeats another's actions under a new name is scored once", "[core][planner]") {
  // With one stage per rank interleaved-zb is ZB-H1: the first name in the list is kept.
  cost_table profile = uniform_costs(2, stage_cost{.F = 1, .I = 1, .W = 1, .B = 2});
  const auto plan = make_plan(profile, plan_options{.num_ranks = 2, .schedules = {"zb-h1", "interleaved-zb", "gpipe"},
                                                    .microbatches = {4}, .stages_per_rank = {1}});
  REQUIRE(plan.candidates.size() == 2);
  CHECK(plan.repeats == 1);
  for (const auto& c : plan.candidates)
    CHECK(c.schedule != "interleaved-zb");
}

TEST_CASE("regrouped layers share the profile's optimizer step by parameter bytes, other ranks' links are dropped",
          "[core][planner]") {
  cost_table profile;
  profile.stages = {stage_cost{.U = 30}, stage_cost{.U = 10}, stage_cost{.U = 20}};
  for (int i = 0; i < 4; ++i)
    profile.layers.push_back(layer_cost{.name = "l" + std::to_string(i), .F = 1, .I = 1, .W = 1, .B = 2,
                                        .param_bytes = i == 0 ? 300u : 100u});
  // A profile taken on 3 ranks: the link 2 -> 0 means nothing to a 2-rank plan.
  profile.links = {link_cost{.src = 0, .dst = 1, .latency_us = 5}, link_cost{.src = 2, .dst = 0, .latency_us = 5}};
  const plan_options o{.num_ranks = 2, .schedules = {"gpipe"}, .microbatches = {2}, .stages_per_rank = {1}};
  const auto plan = make_plan(profile, o);
  REQUIRE(!plan.candidates.empty());
  const auto costs = plan_costs(profile, o, plan.candidates.front());
  REQUIRE(costs.stages.size() == 2);
  // Boundaries {0, 2}: 400 and 200 parameter bytes of 600 share U = 60.
  CHECK(plan.candidates.front().boundaries == std::vector<int>{0, 2});
  CHECK(costs.stages[0].U == Approx(40));
  CHECK(costs.stages[1].U == Approx(20));
  REQUIRE(costs.links.size() == 1);
  CHECK(costs.links[0].src == 0);
  // Layers whose own optimizer steps were measured: a stage's U is the sum of its layers'.
  for (int i = 0; i < 4; ++i)
    profile.layers[static_cast<std::size_t>(i)].U = 1 + i;
  const auto measured = plan_costs(profile, o, plan.candidates.front());
  CHECK(measured.stages[0].U == Approx(1 + 2));
  CHECK(measured.stages[1].U == Approx(3 + 4));
}

TEST_CASE("planner: layers measured at several sizes cost at each candidate's micro-batch what their sizes say",
          "[core][planner]") {
  cost_table profile;
  profile.stages = {stage_cost{}, stage_cost{}};
  profile.microbatch_rows = 8;
  // F at 8 rows 10, at 16 rows 14, at 32 rows 40: not a line, and not in proportion to the rows.
  for (int i = 0; i < 2; ++i)
    profile.layers.push_back(layer_cost{.F = 10, .I = 5, .W = 5, .B = 10,
                                        .other_sizes = {{.rows = 16, .F = 14, .I = 7, .W = 7, .B = 14},
                                                        {.rows = 32, .F = 40, .I = 20, .W = 20, .B = 40}},
                                        .activation_bytes = 80, .output_bytes = 80});
  plan_options o{.num_ranks = 2, .schedules = {"gpipe"}, .microbatches = {}, .global_batch = 32, .stages_per_rank = {1}};
  for (const auto& [M, F] : std::vector<std::pair<int, double>>{{1, 40}, {2, 14}, {4, 10}, {8, 8}}) {
    o.microbatches = {M};
    const auto plan = make_plan(profile, o);
    REQUIRE(!plan.candidates.empty());
    const auto costs = plan_costs(profile, o, plan.candidates.front());
    CHECK(costs.stages[0].F == Approx(F)); // at 4 rows: the 8-16 segment's line, 10 - 4 / 8 * 4
    CHECK(costs.stages[1].B == Approx(F));
    CHECK(costs.microbatch_rows == 32 / M);
  }
}

namespace {
// Eight equal layers of 1 MB of parameters each, timed on 4-row micro-batches: the pp x dp cases'.
cost_table replicated_profile() {
  cost_table profile = layered_profile({1, 1, 1, 1, 1, 1, 1, 1});
  profile.microbatch_rows = 4;
  for (auto& l : profile.layers)
    l.param_bytes = 1'000'000;
  return profile;
}
} // namespace

TEST_CASE("planner: pp x dp, every R x D of the processes, each replica a share of the batch", "[core][planner]") {
  cost_table profile = replicated_profile();
  plan_options o{.schedules = {"1f1b"}, .global_batch = 32, .links = link_model::uniform(1, 0.5), .processes = 4};
  const plan_result plan = make_plan(profile, o);
  std::set<std::pair<int, int>> shapes;
  flat_evaluator ev;
  for (const auto& c : plan.candidates) {
    INFO(c.ranks << "x" << c.replicas << " V=" << c.stages_per_rank << " M=" << c.microbatches);
    CHECK(c.ranks * c.replicas == 4);
    shapes.insert({c.ranks, c.replicas});
    // Its step: one replica's pipeline on G / D rows, with the all-reduce of D replicas.
    const plan_options one{.num_ranks = c.ranks, .schedules = o.schedules, .global_batch = 32 / c.replicas,
                           .links = o.links};
    const flat_result& r = ev.evaluate(plan_schedule(o, c), plan_costs(profile, o, c), o.links, {},
                                       data_parallel_model{.replicas = c.replicas});
    CHECK(r.makespan_us == c.step_us);
    plan_candidate alone = c; // the same pipeline planned alone on its share of the batch
    alone.replicas = 1;
    CHECK(plan_costs(profile, o, c).microbatch_scale == plan_costs(profile, one, alone).microbatch_scale);
    CHECK(c.throughput == Approx(32 / (c.step_us * 1e-6)));
  }
  CHECK(shapes == std::set<std::pair<int, int>>{{4, 1}, {2, 2}, {1, 4}});
  for (std::size_t i = 1; i < plan.candidates.size(); ++i)
    CHECK(plan.candidates[i - 1].step_us <= plan.candidates[i].step_us);
  // One replica's all-reduce of 2 stages x 4 layers x 1 MB over 0.5 GB/s is slower than pipelining them:
  // the planner prefers fewer replicas here.
  CHECK(plan.candidates.front().replicas < 4);
  o.global_batch = 0;
  CHECK_THROWS_WITH(make_plan(profile, o), Catch::StartsWith("processes: planning R x D needs the global batch"));
}

TEST_CASE("planner: on fewer CPUs than processes, each R x D is scored with its ranks sharing them as --bind-cores binds",
          "[core][planner]") {
  cost_table profile = replicated_profile();
  profile.shared_cpus = {{0, 1}}; // the profile's own ranks': not the plan's
  plan_options o{.schedules = {"1f1b"}, .global_batch = 32, .links = link_model::uniform(1, 2), .processes = 4};
  std::map<std::tuple<int, int, int, int>, double> apart;
  for (const auto& c : make_plan(profile, o).candidates)
    apart[{c.ranks, c.replicas, c.stages_per_rank, c.microbatches}] = c.step_us;
  CHECK(plan_costs(profile, o, make_plan(profile, o).candidates.front()).shared_cpus.empty());
  o.cpus = 2;
  const plan_result shared = make_plan(profile, o);
  flat_evaluator ev;
  int slower = 0;
  for (const auto& c : shared.candidates) {
    INFO(c.ranks << "x" << c.replicas << " V=" << c.stages_per_rank << " M=" << c.microbatches);
    const cost_table costs = plan_costs(profile, o, c);
    // Mesh rank q on CPU q mod 2: pp=2 x dp=2 puts the twins of each stage on one CPU.
    CHECK(costs.shared_cpus == ranks_sharing_bound_cpus(c.ranks * c.replicas, 2));
    if (c.ranks == 2 && c.replicas == 2)
      CHECK(costs.shared_cpus == std::vector<std::vector<int>>{{0, 2}, {1, 3}});
    CHECK(ev.evaluate(plan_schedule(o, c), costs, o.links, {}, data_parallel_model{.replicas = c.replicas}).makespan_us ==
          c.step_us);
    const double alone = apart.at({c.ranks, c.replicas, c.stages_per_rank, c.microbatches});
    CHECK(c.step_us >= alone - 1e-9); // sharing only slows
    slower += c.step_us > alone ? 1 : 0;
  }
  CHECK(slower == static_cast<int>(shared.candidates.size())); // 4 processes on 2 CPUs: every one shares
  o.cpus = -1;
  CHECK_THROWS_WITH(make_plan(profile, o), Catch::StartsWith("cpus must be at least 0"));
}

TEST_CASE("planner: ZeRO-1 candidates are scored with the reduce-scatter, the all-gather and 1/D of the state",
          "[core][planner]") {
  cost_table profile = replicated_profile();
  plan_options o{.schedules = {"1f1b"}, .global_batch = 32, .links = link_model::uniform(1, 0.5), .processes = 4};
  o.data_parallel.zero1 = true;
  const plan_result plan = make_plan(profile, o);
  flat_evaluator ev;
  for (const auto& c : plan.candidates) {
    INFO(c.ranks << "x" << c.replicas << " V=" << c.stages_per_rank << " M=" << c.microbatches);
    CHECK(c.zero1 == (c.replicas > 1));
    const data_parallel_model dp{.replicas = c.replicas, .zero1 = c.zero1};
    const flat_result& r = ev.evaluate(plan_schedule(o, c), plan_costs(profile, o, c), o.links, {}, dp);
    CHECK(r.makespan_us == c.step_us);
    CHECK(r.peak_memory_bytes() == c.peak_memory_bytes);
  }
  // A cap that 2 x 2 with ZeRO-1 meets and plain 2 x 2 does not: 4 layers of 1 MB per rank keep 4 x 4 MB
  // of state without it, 4 x (2 + 2/2) MB with it, plus activations.
  o.memory.cap_bytes = 13'000'000;
  o.stages_per_rank = {1};
  auto fits_2x2 = [&](bool zero1) {
    o.data_parallel.zero1 = zero1;
    for (const auto& c : make_plan(profile, o).candidates)
      if (c.ranks == 2 && c.replicas == 2)
        return c.fits;
    FAIL("no 2 x 2 candidate");
    return false;
  };
  CHECK(fits_2x2(true));
  CHECK_FALSE(fits_2x2(false));
  // plan.json carries it, and a runner refuses ZeRO-1 without replicas.
  const std::string dir = "test_plan_zero1_dir";
  std::filesystem::create_directories(dir);
  plan_candidate c{.schedule = "1f1b", .ranks = 2, .replicas = 2, .zero1 = true, .microbatches = 4};
  std::ofstream(dir + "/plan.json") << to_plan_json(c, 2);
  CHECK(load_plan(dir).zero1);
  CHECK(load_plan(dir).replicas == 2);
  std::ofstream(dir + "/plan.json") << R"({"schedule":"1f1b","ranks":2,"stages_per_rank":1,"microbatches":4,"zero1":true})";
  CHECK_THROWS_WITH(load_plan(dir), "plan file 'test_plan_zero1_dir/plan.json': zero1 shards the optimizer state over "
                                    "the replicas: it needs replicas 2 or more (got 1)");
  std::ofstream(dir + "/plan.json") << R"({"schedule":"1f1b","ranks":2,"stages_per_rank":1,"microbatches":4,"zero1":1})";
  CHECK_THROWS_WITH(load_plan(dir), "plan file 'test_plan_zero1_dir/plan.json': zero1 must be true or false (got 1)");
  std::filesystem::remove_all(dir);
}
