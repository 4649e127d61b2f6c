// Cost models: defaults, the cost file format, roofline, jitter, and errors that name the field.
#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <set>

#include "pippy/core/error.hpp"
#include "pippy/core/validate.hpp"
#include "pippy/core/cost_table.hpp"
#include "pippy/core/flat_evaluator.hpp"
#include "pippy/core/limits.hpp"
#include "sim_helpers.hpp"

using namespace pippy;
using namespace pippy::sim;

TEST_CASE("cost spec (--cost): B defaults to I+W, I and W to halves of B", "[simulator][cost]") {
  auto c = parse_cost_spec("F=1.5,B=4");
  CHECK(c.F == 1.5);
  CHECK(c.B == 4);
  CHECK(c.I == 2);
  CHECK(c.W == 2);
  CHECK(c.U == 0);
  c = parse_cost_spec("F=1,I=3,W=1,U=0.5");
  CHECK(c.B == 4);
  CHECK(c.I == 3);
  CHECK(c.W == 1);
  CHECK(c.U == 0.5);
  c = parse_cost_spec("B=6,I=4");
  CHECK(c.F == 1);
  CHECK(c.W == 2);
  c = parse_cost_spec("");
  CHECK(c.F == 1);
  CHECK(c.B == 2);
}

TEST_CASE("cost spec (--cost) errors name the field", "[simulator][cost][errors]") {
  CHECK_THROWS_AS(parse_cost_spec("F=-1"), input_error);
  CHECK_THROWS_WITH(parse_cost_spec("F=-1"), "--cost: F must be a non-negative number of microseconds (got -1)");
  CHECK_THROWS_WITH(parse_cost_spec("F=1,X=2"), "--cost: 'X' is not one of F, I, W, B, U");
  CHECK_THROWS_WITH(parse_cost_spec("F=abc"), "--cost: F must be a number (got 'abc')");
  CHECK_THROWS_WITH(parse_cost_spec("F"), Catch::Contains("'F' is not KIND=MICROSECONDS"));
  CHECK_THROWS_WITH(parse_cost_spec("B=2,I=3"), Catch::Contains("I or W given alone must not exceed B (I=3, W=-1, B=2)"));
}

TEST_CASE("cost file: values, defaults and sizes", "[simulator][cost]") {
  const auto t = parse_cost_json(R"({"stages":[{"F":1,"B":4,"activation_bytes":1000,"param_bytes":50},
                                               {"F":2,"I":1,"W":3,"U":7}]})",
                                 "x.json");
  REQUIRE(t.stages.size() == 2);
  CHECK(t.stages[0].I == 2);
  CHECK(t.stages[0].W == 2);
  CHECK(t.stages[0].activation_bytes == 1000);
  CHECK(t.stages[0].weight_input_bytes == 500);
  CHECK(t.stages[0].param_bytes == 50);
  CHECK(t.stages[1].B == 4);
  CHECK(t.stages[1].U == 7);
  // Sizes not given are 0.
  CHECK(t.stages[1].activation_bytes == 0);
  CHECK(t.stages[1].weight_input_bytes == 0);
  CHECK(t.stages[1].param_bytes == 0);
  CHECK(t(action{1, action_kind::backward_weight, 0}) == 3);
  CHECK(t(action{1, action_kind::send_f, 0}) == 0);
  // Round trip through the writer.
  const auto back = parse_cost_json(to_cost_json(t), "round trip");
  CHECK(back.stages[1].W == 3);
  CHECK(back.stages[0].param_bytes == 50);
}

TEST_CASE("cost file errors name the file and field", "[simulator][cost][errors]") {
  CHECK_THROWS_WITH(load_cost_file("/nonexistent/costs.json"), "cost file '/nonexistent/costs.json': cannot open it");
  CHECK_THROWS_WITH(parse_cost_json("{\"stages\": [", "c.json"), Catch::StartsWith("c.json: not valid JSON (parse error at line 1, column 13"));
  CHECK_THROWS_WITH(parse_cost_json("{\"stage\": []}", "c.json"), Catch::StartsWith("c.json: missing 'stages' array"));
  CHECK_THROWS_WITH(parse_cost_json(R"({"stages":[{"F":1},{"F":-2}]})", "c.json"),
                    "c.json: stages[1].F must be a non-negative number of microseconds (got -2)");
  CHECK_THROWS_WITH(parse_cost_json(R"({"stages":[{"B":"x"}]})", "c.json"), "c.json: stages[0].B must be a number (got \"x\")");
  CHECK_THROWS_WITH(parse_cost_json(R"({"stages":[{"activation_bytes":-5}]})", "c.json"),
                    Catch::StartsWith("c.json: stages[0].activation_bytes (bytes) is out of range (from 0 to 1099511627776): -5"));
  CHECK_THROWS_WITH(parse_cost_json(R"({"stages":[]})", "c.json"), "c.json: 'stages' is empty");
  // Stage count against the schedule.
  const auto t = parse_cost_json(R"({"stages":[{"F":1},{"F":1},{"F":1}]})", "c.json");
  CHECK_THROWS_WITH(t.validate(4, "cost file 'c.json'"), "cost file 'c.json': 'stages' has 3 entries but the schedule has 4 stages");
  const std::string path = "test_cost_file.json";
  {
    std::ofstream out(path);
    out << R"({"stages":[{"F":1,"B":2},{"F":1,"B":2}]})";
  }
  const auto s = pippy::test::make("1f1b", 2, 4);
  const auto ok = load_cost_file(path);
  CHECK_NOTHROW(ok.validate(2, path));
  CHECK(simulate(s, sim_options{.costs = ok}).makespan_us == (4 + 2 - 1) * 3.0);
  std::remove(path.c_str());
}

TEST_CASE("per-stage table: the slowest stage sets the pace", "[simulator][cost]") {
  const auto s = pippy::test::make("gpipe", 4, 8);
  cost_table t = uniform_costs(4, stage_cost{.F = 1, .I = 1, .W = 1, .B = 2});
  t.stages[2] = stage_cost{.F = 3, .I = 3, .W = 3, .B = 6};
  const auto r = simulate(s, sim_options{.costs = t});
  CHECK(r.makespan_us == evaluate(s, t).makespan);
  // GPipe with one slow stage: the other stages before and after it each run once (fill, drain), the slow one m times.
  CHECK(r.makespan_us == 3 * (1 + 2) + 8 * (3 + 6));
}

TEST_CASE("roofline: max(FLOPs / peak, bytes / bandwidth)", "[simulator][cost]") {
  const device_spec dev{.peak_flops = 1e12, .memory_bandwidth = 1e11};
  const auto t = roofline_costs({{.forward_flops = 2e6, .forward_bytes = 1e5}, // compute bound: 2 us
                                 {.forward_flops = 1e6, .forward_bytes = 3e5}}, // memory bound: 3 us
                                dev);
  CHECK(t.stages[0].F == Approx(2.0));
  CHECK(t.stages[0].B == Approx(4.0));
  CHECK(t.stages[0].I == Approx(2.0));
  CHECK(t.stages[1].F == Approx(3.0));
  CHECK_THROWS_WITH(roofline_costs({}, device_spec{.peak_flops = 0}), "device_spec.peak_flops must be positive");
}

TEST_CASE("roofline: zero FLOPs, bytes or backward factor are allowed, and any positive device rate", "[simulator][cost]") {
  const device_spec dev{.peak_flops = 1e12, .memory_bandwidth = 1e11};
  const auto t = roofline_costs({{.forward_flops = 0, .forward_bytes = 3e5},                        // 3 us of memory
                                 {.forward_flops = 2e6, .forward_bytes = 0},                        // 2 us of compute
                                 {.forward_flops = 2e6, .forward_bytes = 1e5, .backward_factor = 0}}, // no backward
                                dev);
  REQUIRE(t.stages.size() == 3);
  CHECK(t.stages[0].F == Approx(3.0));
  CHECK(t.stages[0].B == Approx(6.0));
  CHECK(t.stages[1].F == Approx(2.0));
  CHECK(t.stages[2].F == Approx(2.0));
  CHECK(t.stages[2].B == 0);
  CHECK(t.stages[2].I == 0);
  CHECK(t.stages[2].W == 0);
  // A device slower than one FLOP or byte per second is slow, not invalid: 1 FLOP at 0.5 FLOP/s is 2 s.
  const auto slow = roofline_costs({{.forward_flops = 1, .forward_bytes = 0.25}}, device_spec{.peak_flops = 0.5, .memory_bandwidth = 0.5});
  CHECK(slow.stages[0].F == Approx(2e6));
  const auto slow_memory = roofline_costs({{.forward_flops = 0, .forward_bytes = 1}}, device_spec{.peak_flops = 1, .memory_bandwidth = 0.25});
  CHECK(slow_memory.stages[0].F == Approx(4e6));
}

TEST_CASE("roofline errors name the stage and field", "[simulator][cost][errors]") {
  const device_spec dev{.peak_flops = 1e12, .memory_bandwidth = 1e11};
  CHECK_THROWS_WITH(roofline_costs({}, device_spec{.peak_flops = 1, .memory_bandwidth = 0}),
                    "device_spec.memory_bandwidth must be positive");
  CHECK_THROWS_WITH(roofline_costs({}, device_spec{.peak_flops = -1}), "device_spec.peak_flops must be positive");
  CHECK_THROWS_WITH(roofline_costs({}, device_spec{.peak_flops = 1, .memory_bandwidth = std::nan("")}),
                    "device_spec.memory_bandwidth must be positive");
  CHECK_THROWS_WITH(roofline_costs({{.forward_flops = 1}, {.forward_flops = -1}}, dev),
                    "roofline stage 1: forward_flops must be a finite non-negative number (got -1)");
  CHECK_THROWS_WITH(roofline_costs({{.forward_bytes = -2}}, dev),
                    "roofline stage 0: forward_bytes must be a finite non-negative number (got -2)");
  CHECK_THROWS_WITH(roofline_costs({{.forward_flops = 1, .backward_factor = -0.5}}, dev),
                    "roofline stage 0: backward_factor must be a finite non-negative number (got -0.5)");
  CHECK_THROWS_WITH(roofline_costs({{.forward_flops = std::numeric_limits<double>::infinity()}}, dev),
                    "roofline stage 0: forward_flops must be a finite non-negative number (got inf)");
  CHECK_THROWS_WITH(roofline_costs({{.forward_bytes = std::nan("")}}, dev),
                    "roofline stage 0: forward_bytes must be a finite non-negative number (got nan)");
}

TEST_CASE("jitter is seeded, bounded and independent of evaluation order", "[simulator][cost]") {
  cost_table t = uniform_costs(3, stage_cost{.F = 10, .I = 10, .W = 10, .B = 20, .U = 10});
  t.jitter = 0.2;
  t.seed = 5;
  std::vector<action> acts;
  for (int st = 0; st < 3; ++st) {
    for (int m = 0; m < 20; ++m)
      for (auto k : {action_kind::forward, action_kind::backward_input, action_kind::backward_weight,
                     action_kind::full_backward})
        acts.push_back({st, k, m});
    acts.push_back({st, action_kind::optimizer_step, no_microbatch});
  }
  // Two copies of the table, asked in forward order and in a shuffled reverse order: each action
  // gets the same cost whatever was asked before it.
  const cost_table first = t, second = t;
  std::map<action, double> forward_order, other_order;
  for (const auto& a : acts)
    forward_order[a] = first(a);
  std::vector<action> shuffled(acts.rbegin(), acts.rend());
  std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937(123));
  for (const auto& a : shuffled)
    other_order[a] = second(a);
  // And interleaved with unrelated questions on the same table.
  for (const auto& a : shuffled) {
    (void)first(action{a.stage, action_kind::forward, 99});
    CHECK(first(a) == forward_order[a]);
  }
  CHECK(forward_order == other_order);
  // Bounded by +-20% of the nominal cost, and actually spread (many distinct values, both sides of it).
  std::set<double> distinct;
  int below = 0, above = 0;
  for (const auto& [a, c] : forward_order) {
    const double nominal = a.kind == action_kind::full_backward ? 20.0 : 10.0;
    INFO(to_string(a));
    CHECK(c >= 0.8 * nominal);
    CHECK(c <= 1.2 * nominal);
    below += c < nominal;
    above += c > nominal;
    distinct.insert(c / nominal);
  }
  CHECK(distinct.size() > acts.size() / 2);
  CHECK(below > 20);
  CHECK(above > 20);
  // Another seed draws other costs for (nearly) every action; the same seed in a fresh table the same.
  cost_table reseeded = t;
  reseeded.seed = 6;
  std::size_t changed = 0;
  for (const auto& a : acts)
    changed += reseeded(a) != forward_order[a];
  CHECK(changed > acts.size() * 9 / 10);
  cost_table again = uniform_costs(3, stage_cost{.F = 10, .I = 10, .W = 10, .B = 20, .U = 10});
  again.jitter = 0.2;
  again.seed = 5;
  for (const auto& a : shuffled)
    CHECK(again(a) == forward_order[a]);
  // No jitter: the nominal costs exactly.
  t.jitter = 0;
  for (const auto& a : acts)
    CHECK(t(a) == (a.kind == action_kind::full_backward ? 20.0 : 10.0));
  t.jitter = 2;
  CHECK_THROWS_WITH(t.validate(3, "costs"), "costs: jitter must be in [0, 1] (got 2)");
}

TEST_CASE("jittered costs do not depend on the schedule's order: each action takes the same time under GPipe and 1F1B", "[simulator][cost]") {
  const auto gpipe = pippy::test::make("gpipe", 3, 6);
  const auto one_f = pippy::test::make("1f1b", 3, 6);
  cost_table t = uniform_costs(3, stage_cost{.F = 4, .I = 3, .W = 3, .B = 6});
  t.jitter = 0.5;
  t.seed = 77;
  std::map<action, double> a_dur, b_dur;
  for (const auto& e : simulate(gpipe, sim_options{.costs = t}).timeline.events)
    if (is_compute(e.act.kind))
      a_dur[e.act] = e.end_us - e.start_us;
  for (const auto& e : simulate(one_f, sim_options{.costs = t}).timeline.events)
    if (is_compute(e.act.kind))
      b_dur[e.act] = e.end_us - e.start_us;
  REQUIRE(a_dur.size() == 3 * 6 * 2 + 3);
  REQUIRE(a_dur.size() == b_dur.size());
  for (const auto& [a, d] : a_dur) {
    INFO(to_string(a));
    REQUIRE(b_dur.count(a));
    CHECK(b_dur[a] == Approx(d).epsilon(1e-12));
    CHECK(d == Approx(t(a)).epsilon(1e-12));
  }
}

TEST_CASE("cost file with a device: roofline times per stage", "[simulator][cost]") {
  const auto t = parse_cost_json(R"({"device": {"peak_flops": 1e12, "memory_bandwidth": 1e11},
                                     "stages": [{"forward_flops": 2e6, "forward_bytes": 1e5},
                                                {"forward_flops": 1e6, "forward_bytes": 3e5, "backward_factor": 3},
                                                {"forward_flops": 1e6, "F": 9}]})",
                                 "r.json");
  CHECK(t.stages[0].F == Approx(2.0));
  CHECK(t.stages[0].B == Approx(4.0));
  CHECK(t.stages[0].W == Approx(2.0));
  CHECK(t.stages[1].F == Approx(3.0));
  CHECK(t.stages[1].B == Approx(9.0));
  CHECK(t.stages[2].F == 9); // given times win
  CHECK_THROWS_WITH(parse_cost_json(R"({"stages": [{"forward_flops": 1e6}]})", "r.json"),
                    Catch::StartsWith("r.json: stages[0].forward_flops needs a top-level \"device\""));
  CHECK_THROWS_WITH(parse_cost_json(R"({"device": {"peak_flops": 0, "memory_bandwidth": 1}, "stages": [{}]})", "r.json"),
                    "r.json: device.peak_flops must be a positive number");
  CHECK_THROWS_WITH(parse_cost_json(R"({"device": {"peak_flops": 1, "memory_bandwidth": 1},
                                      "stages": [{"F": 1}, {"forward_flops": 1, "forward_bytes": -3}]})",
                                    "r.json"),
                    "r.json: stages[1].forward_bytes must be a finite non-negative number (got -3)");
  CHECK_THROWS_WITH(parse_cost_json(R"({"device": {"peak_flops": 1, "memory_bandwidth": 1},
                                      "stages": [{"forward_flops": 1, "backward_factor": -1}]})",
                                    "r.json"),
                    "r.json: stages[0].backward_factor must be a finite non-negative number (got -1)");
}

// The arrival rule (core's arrival_charges) on a GPipe step worked by hand: R = 2, M = 2, stage 0 F = 1,
// stage 1 F = 3, every B = 1, latency 0.5, no bandwidth limit. Rank 0's F0 and F1 end at 1 and 2, so
// their outputs arrive on rank 1 at 1.5 and 2.5. Rank 1's F0 starts at 1.5, on its own input (an arrival
// at an action's start is the one it waited for: free), and F1's input lands inside it at 2.5: F0 takes
// 3 + 0.25 and ends at 4.75, F1 runs [4.75, 7.75). The backwards follow from there.
TEST_CASE("arrival cost: a transfer landing inside a compute action lengthens it, one at its start does not",
          "[simulator][cost][arrivals]") {
  const auto s = make_schedule({.name = "gpipe", .num_ranks = 2, .num_microbatches = 2, .optimizer_steps = false});
  sim_options o{.costs = uniform_costs(2, {.F = 1, .I = 0.5, .W = 0.5, .B = 1}), .links = link_model::uniform(0.5, 0)};
  o.costs.stages[1].F = 3;
  const auto free_arrivals = simulate(s, o);
  o.costs.arrival_cost_us = 0.25;
  const auto charged = simulate(s, o);
  auto event = [](const sim_result& r, int rank, action_kind kind, int mb) {
    for (const auto& e : r.timeline.events)
      if (e.rank == rank && e.act.kind == kind && e.act.microbatch == mb)
        return std::pair{e.start_us, e.end_us};
    FAIL("no event");
    return std::pair{0.0, 0.0};
  };
  CHECK(event(free_arrivals, 1, action_kind::forward, 0) == std::pair{1.5, 4.5});
  CHECK(event(charged, 1, action_kind::forward, 0) == std::pair{1.5, 4.75});
  CHECK(event(charged, 1, action_kind::forward, 1) == std::pair{4.75, 7.75});
  CHECK(event(charged, 0, action_kind::forward, 1) == std::pair{1.0, 2.0}); // nothing arrives on rank 0 then
  // Rank 1's B0 and B1 run [7.75, 8.75) and [8.75, 9.75); their gradients reach rank 0 at 9.25 and 10.25.
  // Rank 0's B0 runs [9.25, 10.25), B1's gradient lands at its end (free), B1 runs [10.25, 11.25).
  CHECK(free_arrivals.makespan_us == 11);
  CHECK(charged.makespan_us == 11.25);
  flat_evaluator ev;
  CHECK(ev.evaluate(s, o.costs, o.links).makespan_us == 11.25);
  // A per-action overhead of 0.1 before each action: rank 0's F0 and F1 run [0.1, 1.1) and [1.2, 2.2),
  // their outputs arrive at 1.6 and 2.7; rank 1's F0 starts 0.1 after its input, at 1.7, and F1's input
  // lands inside it: it ends at 1.7 + 3 + 0.25.
  o.costs.action_overhead_us = 0.1;
  const auto [start, end] = event(simulate(s, o), 1, action_kind::forward, 0);
  CHECK(start == Approx(1.7));
  CHECK(end == Approx(4.95));
}

TEST_CASE("arrival cost: the cost file carries it, and a bad value names the field", "[simulator][cost][arrivals]") {
  auto t = parse_cost_json(R"({"stages":[{"F":1,"B":2}],"arrival_cost_us":250.5})", "c.json");
  CHECK(t.arrival_cost_us == 250.5);
  CHECK(parse_cost_json(to_cost_json(t), "again").arrival_cost_us == 250.5);
  CHECK(parse_cost_json(R"({"stages":[{"F":1,"B":2}]})", "c.json").arrival_cost_us == 0);
  CHECK_THROWS_WITH(parse_cost_json(R"({"stages":[{"F":1,"B":2}],"arrival_cost_us":-1})", "c.json"),
                    Catch::Contains("c.json: arrival_cost_us"));
  CHECK_THROWS_WITH(parse_cost_json(R"({"stages":[{"F":1,"B":2}],"arrival_cost_us":"x"})", "c.json"),
                    Catch::Contains("c.json: arrival_cost_us"));
}

// Step-to-step noise: a profile's quantiles of an action's time over its mean. A draw interpolates between
// them, so its mean is the quantiles' mean and it never leaves [first, last].
TEST_CASE("noise: each compute time is scaled by a draw from the quantiles, seeded per action",
          "[simulator][cost][noise]") {
  cost_table c = uniform_costs(1, {.F = 10, .B = 20});
  c.noise = {1, 1, 1, 1};
  CHECK(c(action{0, action_kind::forward, 3}) == 10); // a factor of exactly 1
  c.noise = {0.5, 1.0, 1.5, 2.0}; // mean 1.25
  double sum = 0, lo = 1e9, hi = 0;
  std::set<double> seen;
  const int n = 20000;
  for (int mb = 0; mb < n; ++mb) {
    const double f = c(action{0, action_kind::forward, mb}) / 10;
    sum += f, lo = std::min(lo, f), hi = std::max(hi, f);
    seen.insert(f);
  }
  CHECK(sum / n == Approx(1.25).epsilon(0.01));
  CHECK(lo >= 0.5);
  CHECK(hi <= 2.0);
  CHECK(seen.size() > n / 2);
  const double first = c(action{0, action_kind::backward_input, 7});
  CHECK(c(action{0, action_kind::backward_input, 7}) == first); // the same action, the same draw
  c.seed = 1;
  CHECK(c(action{0, action_kind::backward_input, 7}) != first); // another seed, another draw
  CHECK(c(action{0, action_kind::send_f, 7}) == 0);                // transfers are the link model's
}

TEST_CASE("noise: the cost file carries the quantiles, and bad ones are named", "[simulator][cost][noise]") {
  auto t = parse_cost_json(R"({"stages":[{"F":1,"B":2}],"noise":[0.5,0.75,1.25,1.5]})", "c.json");
  CHECK(t.noise == std::vector<double>{0.5, 0.75, 1.25, 1.5});
  CHECK(parse_cost_json(to_cost_json(t), "again").noise == t.noise);
  CHECK(parse_cost_json(R"({"stages":[{"F":1,"B":2}]})", "c.json").noise.empty());
  CHECK_THROWS_WITH(parse_cost_json(R"({"stages":[{"F":1,"B":2}],"noise":[0.5,-1]})", "c.json"),
                    Catch::Contains("c.json: noise[1]"));
  CHECK_THROWS_WITH(parse_cost_json(R"({"stages":[{"F":1,"B":2}],"noise":{"a":1}})", "c.json"),
                    Catch::Contains("c.json: 'noise' must be an array"));
  t.noise = {1.5, 0.5};
  CHECK_THROWS_WITH(t.validate(1, "c.json"), Catch::Contains("c.json: noise[1]") && Catch::Contains("no smaller than the one before"));
  t.noise.assign(static_cast<std::size_t>(limits::max_noise_quantiles) + 1, 1.0);
  CHECK_THROWS_WITH(t.validate(1, "c.json"), Catch::Contains("c.json: noise has 1025 quantiles, at most 1024"));
}

// Steps back to back: each rank starts its next step the step overhead after its own last action. GPipe
// on 2 ranks, 2 micro-batches, F = 1, B = 2 and a U of 10 on the last stage only: one step alone ends
// with rank 1's U at 17. Back to back, rank 0 is done at 9 and has its forwards ready before rank 1
// starts again, so rank 1 runs its whole step (F, F, B, B, U = 16) without waiting: a step every 16 + 7,
// where one step alone takes 17 + 7.
TEST_CASE("steps back to back: the busiest rank's chain sets the step, one step's tail overlapping the next",
          "[simulator][cost]") {
  const auto s = make_schedule({.name = "gpipe", .num_ranks = 2, .num_microbatches = 2});
  cost_table c = uniform_costs(2, {.F = 1, .B = 2, .U = 0});
  c.stages[1].U = 10;
  c.step_overhead_us = 7;
  flat_evaluator ev;
  CHECK(ev.evaluate(s, c).makespan_us == 17);
  const expected_step e = expected_step_us(ev, s, c);
  CHECK(e.step_us == 23);
  CHECK(e.samples == 0);
  const sim_result r = simulate(s, {.costs = c});
  CHECK(r.step_us == 24);
  CHECK(r.expected_step_us == 23);
  // The measured gap holds the first action's overhead: with 1 per action, rank 1 starts 7 after its last
  // end and pays 1 before each of its other 4 actions.
  c.action_overhead_us = 1;
  CHECK(expected_step_us(ev, s, c).step_us == 16 + 4 + 7);
  // A rank released late starts there: rank 1 at 5 runs F, F, B, B, U from 5 on, its inputs long there.
  c.action_overhead_us = 0;
  const double release[] = {0, 5};
  const flat_result& late = ev.evaluate(s, c, {}, {}, {}, release);
  CHECK(late.ranks[1].first_start_us == 5);
  CHECK(late.ranks[1].last_end_us == 21);
  CHECK(late.ranks[0].first_start_us == 0);
  const double three[] = {0, 0, 0};
  CHECK_THROWS_WITH(ev.evaluate(s, c, {}, {}, {}, three), "release times: 3 for 2 ranks");
}

// With noise each step of the chain draws its own times (seeds from the table's on), and the expected
// step is the mean period from the second step's start on (the first is the warm-up, as the runtime
// leaves it out), until its standard error is within 0.2% of it.
TEST_CASE("noise: the expected step is the mean period of a chain of steps, each drawn anew",
          "[simulator][cost][noise]") {
  const auto s = make_schedule({.name = "1f1b", .num_ranks = 2, .num_microbatches = 4});
  cost_table c = uniform_costs(2, {.F = 10, .I = 10, .W = 10, .B = 20, .U = 5});
  c.step_overhead_us = 7;
  flat_evaluator ev;
  const expected_step none = expected_step_us(ev, s, c);
  CHECK(none.step_us == ev.evaluate(s, c).makespan_us + 7); // rank 0 starts and ends each step: nothing overlaps
  CHECK(none.samples == 0);
  c.noise = {0.25, 0.5, 1.0, 1.25, 3.0}; // mean 1.2, skewed: slow outliers
  c.seed = 40;
  const expected_step e = expected_step_us(ev, s, c);
  REQUIRE(e.samples >= 16);
  std::vector<double> release(2, 0.0), periods;
  double previous = 0;
  for (int k = 0; k < e.samples + 2; ++k) {
    cost_table d = c;
    d.seed = 40 + static_cast<std::uint64_t>(k);
    if (k < 4) // each draw alone: the actors' makespan
      CHECK(ev.evaluate(s, d).makespan_us == simulate(s, {.costs = d}).makespan_us);
    const flat_result& r = ev.evaluate(s, d, {}, {}, {}, release);
    const double start = std::min(r.ranks[0].first_start_us, r.ranks[1].first_start_us);
    for (std::size_t q = 0; q < 2; ++q)
      release[q] = r.ranks[q].last_end_us + 7;
    if (k >= 2)
      periods.push_back(start - previous);
    previous = start;
  }
  double sum = 0, sum_sq = 0;
  for (double p : periods)
    sum += p, sum_sq += p * p;
  const double mean = sum / e.samples;
  CHECK(e.step_us == Approx(mean).epsilon(1e-12));
  const double se = std::sqrt((sum_sq - sum * sum / e.samples) / (e.samples - 1) / e.samples);
  CHECK(e.standard_error_us == Approx(se).epsilon(1e-9));
  CHECK((e.standard_error_us <= 0.002 * mean || e.samples == default_noise_samples));
  CHECK(e.step_us > 1.2 * (none.step_us - 7) + 7); // a pipeline waits for its slowest: more than the mean factor gives
  CHECK(expected_step_us(ev, s, c, {}, {}, {}, 1).samples == 1);
  CHECK_THROWS_WITH(expected_step_us(ev, s, c, {}, {}, {}, 0), Catch::Contains("noise samples must be from 1 to 4096"));
  // The simulator reports it beside its one-draw timeline.
  const sim_result r = simulate(s, {.costs = c});
  CHECK(r.expected_step_us == e.step_us);
  CHECK(r.noise_samples == e.samples);
  CHECK(r.step_us == ev.evaluate(s, c).makespan_us + 7); // the timeline: the table's own seed
}
