// The measured cost file: a link the run waited on takes the latency that gives back the run's waits.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>

#include "pippy/traces/metrics.hpp"
#include "pippy/traces/profile.hpp"

using namespace pippy;

namespace {
trace_event ev(int rank, const char* a, double s, double e) {
  return trace_event{.rank = rank, .act = parse_action(a), .start_us = s, .end_us = e, .source = event_source::measured};
}

// Two stages on two ranks, two micro-batches (GPipe), times in us. Rank 0 leaves 10 us between 0F0 and
// 0F1 and between 0B1 and 0B0 with their inputs there (the per-action overhead: 10). Rank 1 starts 60
// us after 0F0 ends and waits 80 us after 0F1 ends; rank 0 waits 50 us after 1B1 ends (0B0's gradient
// came during 0B1).
trace one_step(double shift = 0) {
  trace t;
  t.num_ranks = 2;
  for (auto e : {ev(0, "0F0", 0, 100), ev(0, "0F1", 110, 210), ev(1, "1F0", 160, 200), ev(1, "1F1", 290, 330),
                 ev(1, "1B1", 330, 400), ev(1, "1B0", 400, 470), ev(0, "0B1", 450, 500), ev(0, "0B0", 510, 560)}) {
    e.start_us += shift, e.end_us += shift;
    t.events.push_back(e);
  }
  return t;
}
} // namespace

TEST_CASE("the waits for transfers: consumer start minus producer end, the consumer idle in between",
          "[traces][profile]") {
  // By consumer rank, then time; not rank 1's wait for 0F0 before its first action (steps overlap, so a
  // rank may have been busy with the step before then).
  const auto waits = transfer_waits(one_step(), 1);
  REQUIRE(waits.size() == 2);
  CHECK(waits[0].src == 1);
  CHECK(waits[0].dst == 0);
  CHECK(to_string(waits[0].producer) == "1B1");
  CHECK(waits[0].wait_us == 50);
  CHECK(waits[1].src == 0);
  CHECK(waits[1].dst == 1);
  CHECK(to_string(waits[1].producer) == "0F1");
  CHECK(waits[1].wait_us == 80);
}

TEST_CASE("the wait before a rank's first action of a step counts when the rank had ended the step before",
          "[traces][profile]") {
  trace two; // two steps 1 ms apart: rank 1 ends step 0 at 470 us, long before 0F0 of step 1 ends at 1100
  two.num_ranks = 2;
  for (double shift : {0.0, 1000.0})
    for (const auto& e : one_step(shift).events)
      two.events.push_back(e);
  const auto waits = transfer_waits(two, 2);
  REQUIRE(waits.size() == 5); // each step's two, and step 1's wait for 0F0 (never step 0's: nothing before it)
  const auto first = std::find_if(waits.begin(), waits.end(), [](const transfer_wait& w) { return to_string(w.producer) == "0F0"; });
  REQUIRE(first != waits.end());
  CHECK(first - waits.begin() == 3); // step 1's, after rank 0's wait of that step
  CHECK(first->src == 0);
  CHECK(first->dst == 1);
  CHECK(first->wait_us == 60);

  // Rank 1 busy with its step-0 U until 1150 us, after 0F0 of step 1 ended: it waited for its own work.
  trace busy = two;
  busy.events.push_back(ev(1, "1U", 470, 1150));
  busy.events.push_back(ev(1, "1U", 1470, 1500));
  const auto busy_waits = transfer_waits(busy, 2);
  REQUIRE(busy_waits.size() == 4);
  for (const auto& w : busy_waits)
    CHECK(to_string(w.producer) != "0F0");
}

TEST_CASE("a gap whose producer had ended but whose transfer arrived inside it waits for the transfer, not the order",
          "[traces][profile]") {
  // 0B0 starts 40 us after 0B1 ends; its gradient's producer, 1B0, ended 30 us before 0B1 did.
  trace t = one_step();
  for (auto& e : t.events)
    if (to_string(e.act) == "0B0")
      e.start_us = 540, e.end_us = 590;
  SECTION("the RECV completed during 0B1: the rank's order held 0B0, and the gap is overhead") {
    t.events.push_back(ev(0, "0RECV_B0", 300, 480));
    CHECK(action_overhead_us(t, 1) == 25); // (10 + 40) / 2
    CHECK(transfer_waits(t, 1).size() == 2);
  }
  SECTION("the RECV completed inside the gap: 0B0 waited for the gradient's transfer") {
    t.events.push_back(ev(0, "0RECV_B0", 300, 530));
    CHECK(action_overhead_us(t, 1) == 10); // 0F0 -> 0F1 alone
    // Nor is it a measure of the link: the transport shares the rank's cores, and a completion seen
    // after 0B1 may have waited for 0B1 to end.
    const auto waits = transfer_waits(t, 1);
    CHECK(waits.size() == 2);
    CHECK(std::none_of(waits.begin(), waits.end(), [](const transfer_wait& x) { return to_string(x.producer) == "1B0"; }));
    const auto m = compute_metrics(t);
    const auto g = std::find_if(m.gaps.begin(), m.gaps.end(), [](const idle_gap& x) { return x.rank == 0 && x.start_us == 500; });
    REQUIRE(g != m.gaps.end());
    CHECK(g->cause == idle_cause::gradient);
    CHECK(g->waited_end_us == 470);
  }
  SECTION("a RECV of another step, completed after 0B0 started, says nothing of this gap") {
    t.events.push_back(ev(0, "0RECV_B0", 300, 600));
    CHECK(action_overhead_us(t, 1) == 25);
  }
}

TEST_CASE("a link the run waited on takes the latency of its median wait (of all links' where it has few), and keeps the probe's bandwidth",
          "[traces][profile]") {
  profile_context context;
  context.activation_bytes = {{0, 2000}, {1, 3000}}; // stage 0's output: 2000 bytes, 2 us at 1 GB/s
  context.links = {{.src = 0, .dst = 1, .latency_us = 5, .bandwidth_gbps = 1},
                   {.src = 1, .dst = 0, .latency_us = 5, .bandwidth_gbps = 1}};
  // Three steps 1 ms apart, each read on its own.
  trace t;
  t.num_ranks = 2;
  for (double shift : {0.0, 1000.0, 2000.0})
    for (const auto& e : one_step(shift).events)
      t.events.push_back(e);
  context.steps = 3;
  const auto costs = measure_stage_costs(t, 2, context);
  CHECK(costs.stage_ranks == std::vector<int>{0, 1});
  CHECK(costs.action_overhead_us == 10);
  REQUIRE(costs.links.size() == 2);
  // 0 -> 1: the wait of 80 = latency + 2 us on the wire + 10 us of overhead.
  CHECK(costs.links[0].latency_us == Approx(68));
  CHECK(costs.links[0].bandwidth_gbps == 1);
  CHECK(costs.links[0].probe_latency_us == 5); // kept for the reader
  // 1 -> 0: the gradient of stage 1's input, stage 0's output (2000 bytes): 50 = 38 + 2 + 10.
  CHECK(costs.links[1].latency_us == Approx(38));
  CHECK(costs.links[1].bandwidth_gbps == 1);

  // Two steps: 0 -> 1 waited on three times (rank 1 idled for step 1's 0F0 too: 58 us less the wire), its
  // own median 78 us less 10 of overhead; 1 -> 0 twice, too few to stand alone: it takes the median of
  // all five waits less the wire (48, 48, 58, 78, 78 us), less the overhead, where on its own waits it
  // would take 38.
  trace two;
  two.num_ranks = 2;
  for (double shift : {0.0, 1000.0})
    for (const auto& e : one_step(shift).events)
      two.events.push_back(e);
  context.steps = 2;
  const auto pooled = measure_stage_costs(two, 2, context);
  CHECK(pooled.links[0].latency_us == Approx(68));
  CHECK(pooled.links[1].latency_us == Approx(48));

  // Without a wait on a link (here rank 1 alone) it keeps the probe's latency.
  trace alone;
  alone.num_ranks = 2;
  for (const auto& e : one_step().events)
    if (e.rank == 1)
      alone.events.push_back(e);
  context.steps = 1;
  const auto probed = measure_stage_costs(alone, 2, context);
  CHECK(probed.links[0].latency_us == 5);
  CHECK(probed.links[1].latency_us == 5);
  CHECK(probed.links[0].probe_latency_us == 0);
}

// Receives landing inside compute: F times 100, 100, 150 and 200 us with 0, 0, 1 and 2 receives ending
// strictly inside them, within F's median time (150 us) from their start. 0F1's input arriving at its
// start and one arriving after its end are outside. That fits 50 us per arrival exactly, and F's base is 100.
TEST_CASE("the cost of a receive landing inside compute is fitted, and the stage's time is without it",
          "[traces][profile][arrivals]") {
  trace t;
  t.num_ranks = 2;
  for (auto e : {ev(0, "0F0", 0, 100), ev(0, "0F1", 1000, 1100), ev(0, "0F2", 2000, 2150), ev(0, "0F3", 3000, 3200),
                 ev(0, "0RECV_B0", 0, 1000), ev(0, "0RECV_B1", 0, 1150), ev(0, "0RECV_B2", 0, 2100),
                 ev(0, "0RECV_B3", 0, 3050), ev(0, "0RECV_B4", 0, 3100), ev(1, "1RECV_F0", 0, 50)})
    t.events.push_back(e);
  const arrival_fit fit = fit_arrival_cost(t, 1);
  CHECK(fit.cost_us == Approx(50));
  REQUIRE(fit.mean_arrivals.size() == 1);
  CHECK(fit.mean_arrivals[0][static_cast<std::size_t>(action_kind::forward)] == 0.75);
  const auto costs = measure_stage_costs(t, 1, {});
  CHECK(costs.arrival_cost_us == Approx(50));
  CHECK(costs.stages[0].F == Approx(100)); // mean 137.5 less 0.75 x 50
  // Each action is counted over its own time up to F's median (200 us here): 0F0 does not catch the
  // arrival at 150, after its end, nor 0F3 the one at 3300, past its start plus the median; 0F1 catches
  // the one at 1100. The counts 0, 1, 0, 0 against 100, 200, 200 and 400 us: a negative fit, no cost.
  trace windows;
  for (auto e : {ev(0, "0F0", 0, 100), ev(0, "0F1", 1000, 1200), ev(0, "0F2", 2000, 2200), ev(0, "0F3", 3000, 3400),
                 ev(0, "0RECV_B0", 0, 150), ev(0, "0RECV_B1", 0, 1100), ev(0, "0RECV_B2", 0, 3300)})
    windows.events.push_back(e);
  CHECK(fit_arrival_cost(windows, 1).mean_arrivals[0][static_cast<std::size_t>(action_kind::forward)] == 0.25);
  CHECK(fit_arrival_cost(windows, 1).cost_us == 0);
  // Where every action has as many arrivals, nothing can be told apart: no cost.
  trace even;
  for (auto e : {ev(0, "0F0", 0, 100), ev(0, "0F1", 110, 260), ev(0, "0RECV_B0", 0, 50), ev(0, "0RECV_B1", 0, 150)})
    even.events.push_back(e);
  CHECK(fit_arrival_cost(even, 1).cost_us == 0);
  CHECK(measure_stage_costs(even, 1, {}).stages[0].F == 125);
  // 100 and 300 us without an arrival, 160 and 320 with one: 40 us per arrival by least squares, but its
  // standard error is 128 us. Noise, not a cost.
  trace noisy;
  for (auto e : {ev(0, "0F0", 0, 100), ev(0, "0F1", 1000, 1300), ev(0, "0F2", 2000, 2160), ev(0, "0F3", 3000, 3320),
                 ev(0, "0RECV_B0", 0, 2100), ev(0, "0RECV_B1", 0, 3100)})
    noisy.events.push_back(e);
  CHECK(fit_arrival_cost(noisy, 1).cost_us == 0);
  CHECK(measure_stage_costs(noisy, 1, {}).stages[0].F == 220);
}

// Step-to-step noise: each action's times over the steps, over their own mean, widened by sqrt(n / (n - 1)),
// pooled. 0F0 takes 80, 100 and 120 us in three steps: factors 0.8, 1, 1.2, widened by sqrt(3/2) to
// 0.7551, 1, 1.2449; 0B0 takes 50 us each time: 1, 1, 1.
TEST_CASE("the step-to-step noise: quantiles of each action's time over its mean across steps",
          "[traces][profile][noise]") {
  trace t;
  t.num_ranks = 1;
  for (int step = 0; step < 3; ++step) {
    const double at = 1000.0 * step, f = 80 + 20 * step;
    t.events.push_back(ev(0, "0F0", at, at + f));
    t.events.push_back(ev(0, "0B0", at + 200, at + 250));
  }
  const double w = std::sqrt(1.5);
  // Three quantiles sit at positions 0.5, 2.5 and 4.5 of the six sorted factors: halfway between the
  // lowest and the next, 1, and halfway between the highest and the one below; their mean is 1 already.
  const auto three = fit_step_noise(t, 3, 3);
  REQUIRE(three.size() == 3);
  CHECK(three[0] == Approx(1 - 0.1 * w));
  CHECK(three[1] == Approx(1.0));
  CHECK(three[2] == Approx(1 + 0.1 * w));
  const auto six = fit_step_noise(t, 3, 6); // every order statistic: 1 - 0.2w, 1, 1, 1, 1, 1 + 0.2w
  REQUIRE(six.size() == 6);
  CHECK(six[0] == Approx(1 - 0.2 * w));
  CHECK(six[1] == Approx(1.0));
  CHECK(six[5] == Approx(1 + 0.2 * w));
  // A draw from them has the measured mean: 1.
  double mean = 0;
  for (double q : six)
    mean += q / 6;
  CHECK(mean == Approx(1.0));
  CHECK(fit_step_noise(t, 2).empty()); // two steps say too little
  // The profile carries them.
  profile_context context;
  context.steps = 3;
  CHECK(measure_stage_costs(t, 1, context).noise == fit_step_noise(t, 3));
}

TEST_CASE("layers timed alone are scaled to the run's stages, at every size they were timed at, and so is their U",
          "[traces][profile]") {
  // one_step's stages: F 100 and 40, B 50 and 70 (full backwards: I = W = B / 2), no U; give each a U.
  trace t = one_step();
  t.events.push_back(ev(0, "0U", 570, 600)); // 30
  t.events.push_back(ev(1, "1U", 480, 490)); // 10
  profile_context context;
  context.microbatch_rows = 8;
  // Two layers per stage would be the usual; one per stage keeps the sums plain. Alone: F 70 in all
  // (the run's 140: x2), B 60 (the run's 120: x2), U 20 (the run's 40: x2); at 32 rows F 210, B 180.
  context.layers = {layer_cost{.name = "a", .F = 50, .I = 15, .W = 25, .B = 40, .U = 15,
                               .other_sizes = {{.rows = 32, .F = 150, .I = 45, .W = 75, .B = 120}}},
                    layer_cost{.name = "b", .F = 20, .I = 5, .W = 5, .B = 20, .U = 5,
                               .other_sizes = {{.rows = 32, .F = 60, .I = 15, .W = 15, .B = 60}}}};
  const cost_table c = measure_stage_costs(t, 2, context);
  REQUIRE(c.layers.size() == 2);
  CHECK(c.layers[0].F == Approx(100));
  CHECK(c.layers[1].F == Approx(40));
  CHECK(c.layers[0].B == Approx(80));
  CHECK(c.layers[0].U == Approx(30));
  CHECK(c.layers[1].U == Approx(10));
  // The run measured B only: I and W take B's factor, and keep the layers' own split between them.
  CHECK(c.layers[0].I == Approx(30));
  CHECK(c.layers[0].W == Approx(50));
  // The other size by the same factors.
  CHECK(c.layers[0].other_sizes[0].F == Approx(300));
  CHECK(c.layers[1].other_sizes[0].B == Approx(120));
  CHECK(c.layers[1].other_sizes[0].I == Approx(30));
  CHECK(c.microbatch_rows == 8);

  // A zero-bubble run: I and W apart, the first stage's I next to nothing (the model's input takes no
  // gradient) and its W the whole backward. I and W scale by the factor of their sum, (1 + 49 + 35 +
  // 35) / (15 + 25 + 5 + 5) = 2.4, not by their own totals' (36 / 20 and 84 / 30).
  trace zb;
  zb.num_ranks = 2;
  for (const auto& e : {ev(0, "0F0", 0, 100), ev(1, "1F0", 150, 190), ev(1, "1I0", 190, 225), ev(1, "1W0", 225, 260),
                        ev(0, "0I0", 300, 301), ev(0, "0W0", 301, 350)})
    zb.events.push_back(e);
  const cost_table z = measure_stage_costs(zb, 2, context);
  CHECK(z.stages[0].I == Approx(1));
  CHECK(z.stages[0].W == Approx(49));
  CHECK(z.layers[0].I == Approx(15 * 2.4));
  CHECK(z.layers[0].W == Approx(25 * 2.4));
  CHECK(z.layers[1].W == Approx(5 * 2.4));
}

// Two ranks bound to one CPU (forward only, times in us). The overhead: rank 0's gaps before 0F1 (10-12)
// and 0F2 (22-25, less rank 1's 1F1 inside it), (2 + 1) / 2. Each action's job on the CPU starts that
// much before it, and the jobs that start inside it ran first (newest first): 0F1's job (10.5-22) held
// 1F0's (12.5-17) and the start of 1F1's (21.5), so its work alone is 10 - 4.5 - 0.5; 1F1's (21.5-25)
// held 0F2's from 23.5.
TEST_CASE("ranks that shared a CPU: each action's work alone, and the overhead less the other rank's compute",
          "[traces][profile][processor]") {
  trace t;
  t.num_ranks = 2;
  for (auto e : {ev(0, "0F0", 0, 10), ev(0, "0F1", 12, 22), ev(0, "0F2", 25, 27), ev(1, "1F0", 14, 17),
                 ev(1, "1F1", 23, 25), ev(1, "1F2", 27.5, 29)})
    t.events.push_back(e);
  const cost_table apart = measure_stage_costs(t, 2, {});
  CHECK(apart.stages[0].F == Approx(22.0 / 3));
  CHECK(apart.action_overhead_us == Approx(2.5));
  CHECK(apart.shared_cpus.empty());
  const cost_table shared = measure_stage_costs(t, 2, {.shared_cpus = {{0, 1}}});
  CHECK(shared.action_overhead_us == Approx(1.5));
  CHECK(shared.stages[0].F == Approx((10 + 5 + 1) / 3.0));
  CHECK(shared.stages[1].F == Approx((3 + 0.5 + 1.5) / 3.0));
  CHECK(shared.shared_cpus == std::vector<std::vector<int>>{{0, 1}});
}

TEST_CASE("the profile records the rank each stage ran on, as the trace has it", "[traces][profile]") {
  trace v; // two stages per rank folded back (ZB-V): rank 0 holds stages 0 and 3, rank 1 stages 1 and 2
  v.num_ranks = 2;
  for (const auto& e : {ev(0, "0F0", 0, 10), ev(1, "1F0", 20, 30), ev(1, "2F0", 30, 40), ev(0, "3F0", 50, 60),
                        ev(0, "3B0", 60, 70), ev(1, "2B0", 80, 90), ev(1, "1B0", 90, 100), ev(0, "0B0", 110, 120),
                        ev(0, "0SEND_F0", 10, 15)})
    v.events.push_back(e);
  const cost_table costs = measure_stage_costs(v, 4, {});
  CHECK(costs.stage_ranks == std::vector<int>{0, 1, 1, 0});
  CHECK(parse_cost_json(to_cost_json(costs), "profile").stage_ranks == costs.stage_ranks);
  // A stage that never ran sat nowhere the trace says: none is recorded.
  CHECK(measure_stage_costs(v, 5, {}).stage_ranks.empty());
}

TEST_CASE("a pp x dp run's profile reads every replica, its ranks a replica's and its CPUs the mesh's", "[traces][profile]") {
  trace mesh; // one_step on ranks 0-1 (replica 0) and, 5 us later, on ranks 2-3 (replica 1)
  mesh.num_ranks = 4;
  mesh.replicas = 2;
  for (double shift : {0.0, 5.0})
    for (auto e : one_step(shift).events) {
      e.rank += shift > 0 ? 2 : 0;
      mesh.events.push_back(e);
    }
  const cost_table one = measure_stage_costs(one_step(), 2, {});
  const cost_table both = measure_stage_costs(mesh, 2, {.shared_cpus = {{0, 2}, {1, 3}}});
  CHECK(both.stage_ranks == std::vector<int>{0, 1});
  CHECK(both.shared_cpus == std::vector<std::vector<int>>{{0, 2}, {1, 3}});
  CHECK_NOTHROW(both.validate_links(2, "profile", 4));
  CHECK_THROWS_WITH(both.validate_links(2, "profile"), Catch::Contains("shared_cpus[0]: rank 2 is not below 2 ranks (a pp x dp run's profile"));
  // Apart (no shared CPUs), the twin replica's actions are the same as replica 0's: the same costs.
  const cost_table apart = measure_stage_costs(mesh, 2, {});
  CHECK(apart.stages[0].F == Approx(one.stages[0].F));
  CHECK(apart.stages[1].B == Approx(one.stages[1].B));
  CHECK(apart.stage_ranks == one.stage_ranks);
}

// A run's cost file read again from its trace: what the trace does not hold comes from the cost file,
// and under the rules that wrote it the result is that cost file.
TEST_CASE("profile_again: a run's cost file from its trace and that cost file gives the cost file back",
          "[traces][profile]") {
  trace two;
  two.num_ranks = 2;
  for (double shift : {0.0, 1000.0})
    for (const auto& e : one_step(shift).events)
      two.events.push_back(e);
  two.events.push_back(ev(0, "0SEND_F1", 1210, 1225));
  profile_context context{.activation_bytes = {{0, 4096}, {1, 2048}}, .param_bytes = {{0, 1000}, {1, 3000}},
                          .links = {link_cost{.src = 0, .dst = 1, .latency_us = 20, .bandwidth_gbps = 2},
                                    link_cost{.src = 1, .dst = 0, .latency_us = 25, .bandwidth_gbps = 2}},
                          .send_posting = link_class{.latency_us = 5, .bandwidth_gbps = 4},
                          .arrival_cost_us = 7,
                          .microbatch_rows = 16,
                          .steps = 1};
  const cost_table run = measure_stage_costs(step_range(two, 2, 1), 2, context);
  REQUIRE(run.links.at(0).probe_latency_us == 20); // the run waited on both links: refitted
  const cost_table again = profile_again(two, parse_cost_json(to_cost_json(run), "run.json"));
  CHECK(to_cost_json(again) == to_cost_json(run));
  cost_table one_stage = run;
  one_stage.stages.pop_back();
  CHECK_THROWS_WITH(profile_again(two, one_stage), Catch::Contains("the trace has 1F0 on rank 1, a stage past the cost file's 1: not the run that wrote it"));
}

// Layers timed alone, and a run that split them [0] and [1, 2] over two ranks (GPipe, one micro-batch,
// times in us). Stage 1's F and stage 0's B had their inputs from the other rank: each direction is
// k x its layers + c there. F: 12 = k 10, 67 = k 50 + c (k 1.2, c 7); B: 110 = k 100, 31 = k 20 + c (k 1.1,
// c 9).
TEST_CASE("a profile with the run's split fits what an input received from another rank costs, and scales the layers by the rest",
          "[traces][profile]") {
  trace t;
  t.num_ranks = 2;
  for (auto e : {ev(0, "0F0", 0, 12), ev(1, "1F0", 20, 87), ev(1, "1B0", 87, 197), ev(0, "0B0", 205, 236)})
    t.events.push_back(e);
  const std::vector<layer_cost> layers{layer_cost{.name = "a", .F = 10, .B = 20}, layer_cost{.name = "b", .F = 20, .B = 40},
                                       layer_cost{.name = "c", .F = 30, .B = 60}};
  const cost_table fitted = measure_stage_costs(t, 2, {.layers = layers, .stage_first_layers = {0, 1}});
  CHECK(fitted.received_input.F == Approx(7));
  CHECK(fitted.received_input.B == Approx(9));
  CHECK(fitted.stage_first_layers == std::vector<int>{0, 1});
  CHECK(fitted.stages[0].F == Approx(12));
  CHECK(fitted.stages[1].F == Approx(60));
  CHECK(fitted.stages[0].B == Approx(22));
  CHECK(fitted.stages[0].I == Approx(11));
  CHECK(fitted.stages[1].B == Approx(110));
  CHECK(fitted.layers[2].F == Approx(36));
  CHECK(fitted.layers[1].B == Approx(44));
  // The engines add it back where a stage's input comes from another rank: the run's own times.
  const pipeline_shape two{.num_ranks = 2, .stages_per_rank = 1, .num_microbatches = 1};
  CHECK(fitted.stages[1].F + fitted.received_input_us({1, action_kind::forward, 0}, two) == Approx(67));
  CHECK(fitted.received_input_us({0, action_kind::forward, 0}, two) == 0);
  CHECK(fitted.received_input_us({0, action_kind::full_backward, 0}, two) == Approx(9));
  CHECK(fitted.received_input_us({1, action_kind::full_backward, 0}, two) == 0);
  // Without the split (or with one the layers cannot hold) nothing is fitted: the stages as measured, the
  // layers scaled by the totals.
  CHECK(measure_stage_costs(t, 2, {.layers = layers, .stage_first_layers = {0, 3}}).received_input ==
        cost_table::received_input_cost{});
  const cost_table plain = measure_stage_costs(t, 2, {.layers = layers});
  CHECK(plain.received_input == cost_table::received_input_cost{});
  CHECK(plain.stages[1].F == Approx(67));
  CHECK(plain.layers[0].F == Approx(10 * 79.0 / 60));
}
