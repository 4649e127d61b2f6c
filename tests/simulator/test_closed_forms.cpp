// Uniform costs, zero-latency links: the simulated makespan equals the closed forms, and core's
// evaluate() (an independent dependency-only reference) agrees.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <tuple>

#include "pippy/core/error.hpp"
#include "pippy/core/flat_evaluator.hpp"
#include "sim_helpers.hpp"

using namespace pippy;
using pippy::test::make;
using pippy::test::uniform_options;

namespace {
double sim_and_check(const schedule& s, double F, double I, double W) {
  auto opts = uniform_options(s, F, I, W);
  const auto r = sim::simulate(s, opts);
  REQUIRE(r.completed);
  const auto ref = evaluate(s, opts.costs);
  CHECK(r.makespan_us == ref.makespan);
  return r.makespan_us;
}
} // namespace

TEST_CASE("GPipe and 1F1B: makespan = (m+p-1)(F+B)", "[simulator][closed-form]") {
  const double F = 3, I = 2, W = 2; // B = 4
  for (const char* name : {"gpipe", "1f1b"})
    for (int p : {1, 2, 4, 8})
      for (int m : {1, 4, 8, 13, 32}) {
        if (std::string(name) == "1f1b" && m < p)
          continue;
        INFO(name << " p=" << p << " m=" << m);
        CHECK(sim_and_check(make(name, p, m), F, I, W) == (m + p - 1) * (F + I + W));
      }
}

TEST_CASE("interleaved 1F1B: makespan = (m*v+p-1)(F+B) when m % p == 0", "[simulator][closed-form]") {
  const double F = 1, I = 1, W = 1;
  for (int p : {2, 4})
    for (int v : {2, 3, 4})
      for (int m : {p, 2 * p, 4 * p}) {
        INFO("p=" << p << " v=" << v << " m=" << m);
        CHECK(sim_and_check(make("interleaved-1f1b", p, m, v), F, I, W) == (m * v + p - 1) * (F + I + W));
      }
}

// The form assumes W <= F (the zero-bubble paper's setting); with W > F the W's no longer fit the
// cool-down bubbles (p=4, m=8, F=I=1, W=2 gives 35, the form 32).
TEST_CASE("ZB-H1: makespan = m(F+I+W)+(p-1)(F+I-W) when W <= F", "[simulator][closed-form]") {
  for (auto [F, I, W] : {std::tuple{1.0, 1.0, 1.0}, {2.0, 1.0, 1.0}, {1.0, 2.0, 1.0}, {3.0, 2.0, 1.0}, {2.0, 2.0, 2.0}})
    for (int p : {2, 4, 8})
      for (int m : {p, 2 * p, 3 * p + 1}) {
        INFO("p=" << p << " m=" << m << " F=" << F << " I=" << I << " W=" << W);
        CHECK(sim_and_check(make("zb-h1", p, m), F, I, W) == m * (F + I + W) + (p - 1) * (F + I - W));
      }
}

TEST_CASE("ZB-H2: makespan = m(F+I+W)+(p-1)F when m >= 2p-1", "[simulator][closed-form]") {
  for (auto [F, I, W] : {std::tuple{1.0, 1.0, 1.0}, {2.0, 1.0, 1.0}, {1.0, 2.0, 1.0}, {3.0, 2.0, 1.0}, {1.0, 1.0, 2.0}})
    for (int p : {2, 4, 8})
      for (int m : {2 * p - 1, 2 * p, 4 * p}) {
        INFO("p=" << p << " m=" << m << " F=" << F << " I=" << I << " W=" << W);
        CHECK(sim_and_check(make("zb-h2", p, m), F, I, W) == m * (F + I + W) + (p - 1) * F);
      }
}

// Batch 10 in 4 micro-batches: 3, 3, 2, 2 rows, costs scaled 1.2, 1.2, 0.8, 0.8 (F=1, B=2 per average
// micro-batch). GPipe on 2 ranks, by hand: rank 1's forwards end at 5.2, its backwards (2.4, 2.4, 1.6,
// 1.6) at 7.6, 10, 11.6, 13.2; rank 0's backwards follow them: 10, 12.4, 14, 15.6.
TEST_CASE("uneven micro-batches: costs scale with their rows", "[simulator][closed-form]") {
  const auto s = make("gpipe", 2, 4);
  auto opts = uniform_options(s, 1, 1, 1);
  opts.costs.scale_by_rows(10, 4);
  CHECK(opts.costs.microbatch_scale == std::vector<double>{1.2, 1.2, 0.8, 0.8});
  const auto r = sim::simulate(s, opts);
  REQUIRE(r.completed);
  CHECK(r.makespan_us == Approx(15.6));
  CHECK(evaluate(s, opts.costs).makespan == Approx(15.6));
  // Even batches change nothing: (m + p - 1)(F + B).
  auto even = uniform_options(s, 1, 1, 1);
  even.costs.scale_by_rows(8, 4);
  CHECK(sim::simulate(s, even).makespan_us == Approx(15.0));
  CHECK_THROWS_AS(even.costs.scale_by_rows(3, 4), input_error);
}

// Inference (core's forward_only): nothing waits for a gradient, so a rank holds one micro-batch's
// activations at a time (GPipe training holds all M), and the makespan is the forwards' (m+p-1)F.
TEST_CASE("forward-only schedules: one micro-batch of activations at a time, makespan (m+p-1)F", "[simulator][closed-form]") {
  const auto train = make("gpipe", 2, 4);
  const auto infer = forward_only(train);
  auto opts = uniform_options(train, 3, 1, 1);
  for (auto& c : opts.costs.stages) {
    c.activation_bytes = 100;
    c.weight_input_bytes = 50;
  }
  const auto t = sim::simulate(train, opts);
  const auto f = sim::simulate(infer, opts);
  REQUIRE(t.completed);
  REQUIRE(f.completed);
  CHECK(f.makespan_us == Approx((4 + 2 - 1) * 3.0));
  for (int r = 0; r < 2; ++r) {
    CHECK(t.ranks[static_cast<std::size_t>(r)].peak_activations == 4);
    CHECK(f.ranks[static_cast<std::size_t>(r)].peak_activations == 1);
    CHECK(f.ranks[static_cast<std::size_t>(r)].peak_memory_bytes + 300 == t.ranks[static_cast<std::size_t>(r)].peak_memory_bytes);
  }
}

TEST_CASE("pp x dp: U waits for the ring all-reduce of the stage's parameters, overlapped or at the step",
          "[simulator][closed-form]") {
  const double F = 3, I = 2, W = 2, B = I + W;
  const std::uint64_t P = 6'000'000; // parameter bytes per stage
  const double bw = 2;               // GB/s
  for (int D : {2, 3, 4}) {
    INFO("D=" << D);
    const double T = 2.0 * (D - 1) / D * static_cast<double>(P) / (bw * 1e3); // no latency: transfers cost 0
    auto with_dp = [&](const schedule& s, grad_sync_mode mode) {
      auto o = test::uniform_options(s, F, I, W);
      for (auto& c : o.costs.stages)
        c.param_bytes = P;
      o.links = sim::link_model::uniform(0, bw);
      o.data_parallel = {.replicas = D, .sync = mode};
      return sim::simulate(s, o).makespan_us;
    };
    // One rank, two stages, one micro-batch: 0F0 1F0 1B0 0B0 0U 1U. Overlapped, stage 1's all-reduce
    // starts at 1B0's end and stage 0's after both it and 0B0; at the step, both run at the end in turn.
    const auto v2 = make("interleaved-1f1b", 1, 1, 2);
    CHECK(with_dp(v2, grad_sync_mode::overlap) == Approx(std::max(2 * F + 2 * B, 2 * F + B + T) + T));
    CHECK(with_dp(v2, grad_sync_mode::at_step) == Approx(2 * F + 2 * B + 2 * T));
    // The trace holds each all-reduce as its stage's REDUCE_GRAD, on the rank's communication stream, from
    // its posting to its end (as the runtime measures it).
    auto sums = [&](grad_sync_mode mode) {
      auto o = test::uniform_options(v2, F, I, W);
      for (auto& c : o.costs.stages)
        c.param_bytes = P;
      o.links = sim::link_model::uniform(0, bw);
      o.data_parallel = {.replicas = D, .sync = mode};
      std::map<std::pair<int, int>, std::pair<double, double>> by_rank_stage; // (mesh rank, stage)
      for (const auto& e : sim::simulate(v2, o).timeline.events)
        if (e.act.kind == action_kind::reduce_grad) {
          CHECK(e.bytes == P);
          CHECK(e.act.microbatch == no_microbatch);
          CHECK(by_rank_stage.emplace(std::pair{e.rank, e.act.stage}, std::pair{e.start_us, e.end_us}).second); // one per stage
        }
      // Every replica (mesh rank d, the one rank of replica d) records the same collective.
      std::map<int, std::pair<double, double>> by_stage;
      for (const auto& [key, w] : by_rank_stage)
        if (key.first == 0)
          by_stage.emplace(key.second, w);
      CHECK(by_rank_stage.size() == by_stage.size() * static_cast<std::size_t>(D));
      for (const auto& [key, w] : by_rank_stage)
        CHECK(w == by_stage.at(key.second));
      return by_stage;
    };
    using window = std::map<int, std::pair<double, double>>;
    const double second = std::max(2 * F + 2 * B, 2 * F + B + T); // stage 0's, behind stage 1's on the link
    const auto overlapped = sums(grad_sync_mode::overlap);
    CHECK(overlapped.size() == 2);
    CHECK(overlapped.at(1).first == Approx(2 * F + B));
    CHECK(overlapped.at(1).second == Approx(2 * F + B + T));
    CHECK(overlapped.at(0).first == Approx(2 * F + 2 * B)); // posted at 0B0's end, run behind stage 1's
    CHECK(overlapped.at(0).second == Approx(second + T));
    const window at_step = sums(grad_sync_mode::at_step); // 0U posts first, then 1U
    CHECK(at_step.size() == 2);
    CHECK(at_step.at(0).first == Approx(2 * F + 2 * B));
    CHECK(at_step.at(0).second == Approx(2 * F + 2 * B + T));
    CHECK(at_step.at(1).first == Approx(2 * F + 2 * B + T));
    CHECK(at_step.at(1).second == Approx(2 * F + 2 * B + 2 * T));
    // 1F1B: each rank's U follows its last B, so both modes give (m+p-1)(F+B) + T (the first stage ends last).
    for (auto mode : {grad_sync_mode::overlap, grad_sync_mode::at_step})
      CHECK(with_dp(make("1f1b", 2, 4), mode) == Approx((4 + 2 - 1) * (F + B) + T));
  }
  // One replica: nothing to wait for, and no REDUCE_GRAD.
  auto o = test::uniform_options(make("1f1b", 2, 4), F, I, W);
  o.data_parallel = {.replicas = 1};
  const auto alone = sim::simulate(make("1f1b", 2, 4), o);
  CHECK(alone.makespan_us == (4 + 2 - 1) * (F + B));
  CHECK(std::none_of(alone.timeline.events.begin(), alone.timeline.events.end(),
                     [](const trace_event& e) { return e.act.kind == action_kind::reduce_grad; }));
}

TEST_CASE("pp x dp: every replica runs, and the all-reduce waits for the last post of twin replicas sharing a CPU",
          "[simulator][closed-form]") {
  const double F = 3, I = 2, W = 2, B = I + W, u = 1.5;
  const std::uint64_t P = 6'000'000;
  const double bw = 2, T = 2.0 * (2 - 1) / 2 * static_cast<double>(P) / (bw * 1e3);
  const int M = 2;
  const auto s = make("gpipe", 1, M); // one rank, one stage: F0 F1 B0 B1 U
  auto options = [&](bool one_cpu) {
    auto o = test::uniform_options(s, F, I, W);
    o.costs.stages[0].param_bytes = P, o.costs.stages[0].U = u;
    o.links = sim::link_model::uniform(0, bw);
    o.data_parallel = {.replicas = 2, .sync = grad_sync_mode::overlap};
    if (one_cpu) // mesh ranks 0 and 1: the two replicas' rank 0, as --bind-cores puts them on 2 processes and 1 CPU
      o.costs.shared_cpus = {{0, 1}};
    return o;
  };
  const double work = M * (F + B);
  // Each on a CPU of its own: the replicas run side by side and post at once.
  const auto apart = sim::simulate(s, options(false));
  CHECK(apart.makespan_us == Approx(work + T + u));
  CHECK(apart.ranks.size() == 2);
  CHECK(apart.actions == 2 * s.num_actions());
  // On one CPU (the newest action first; starts at one time nest the higher member inside the lower):
  // replica 1's actions all nest in replica 0's first F, so replica 1 posts at `work`, replica 0 at
  // 2 work; the all-reduce starts at the last post, and both U's then share the CPU.
  const auto shared = sim::simulate(s, options(true));
  CHECK(shared.makespan_us == Approx(2 * work + T + 2 * u));
  int sums = 0;
  for (const auto& e : shared.timeline.events) {
    if (e.act.kind == action_kind::reduce_grad) { // posted to done: replica 1 waits inside its own
      ++sums;
      CHECK(e.start_us == Approx(e.rank == 1 ? work : 2 * work));
      CHECK(e.end_us == Approx(2 * work + T));
    }
    if (e.act.kind == action_kind::full_backward && e.act.microbatch == M - 1)
      CHECK(e.end_us == Approx(e.rank == 1 ? work : 2 * work)); // the posts
  }
  CHECK(sums == 2); // one per replica
  flat_evaluator ev;
  const auto o = options(true);
  CHECK(ev.evaluate(s, o.costs, o.links, o.memory, o.data_parallel).makespan_us == shared.makespan_us);
  // ZeRO-1: a reduce-scatter (one ring pass), each U's 1/D (replica 1's nests in replica 0's), then the
  // all-gather, which waits for both: both U's end together.
  auto zero1 = options(true);
  zero1.data_parallel.zero1 = true;
  const double pass = T / 2;
  const auto sharded = sim::simulate(s, zero1);
  CHECK(sharded.makespan_us == Approx(2 * work + pass + u + pass));
  for (const auto& e : sharded.timeline.events)
    if (e.act.kind == action_kind::optimizer_step) {
      CHECK(e.start_us == Approx(2 * work + pass));
      CHECK(e.end_us == Approx(2 * work + pass + u + pass));
    }
  CHECK(ev.evaluate(s, zero1.costs, zero1.links, zero1.memory, zero1.data_parallel).makespan_us == sharded.makespan_us);
  // With noise each replica draws its own times; replica 0 draws what a pipeline alone draws.
  auto noisy = options(false);
  noisy.costs.noise = {0.5, 1.0, 1.5};
  noisy.costs.seed = 7;
  auto alone = noisy;
  alone.data_parallel = {};
  std::map<std::pair<int, action>, double> took;
  for (const auto& e : sim::simulate(s, noisy).timeline.events)
    took[{e.rank, e.act}] = e.end_us - e.start_us;
  int differ = 0;
  for (const auto& e : sim::simulate(s, alone).timeline.events)
    if (e.act.kind == action_kind::forward || e.act.kind == action_kind::full_backward) {
      CHECK(took.at({0, e.act}) == e.end_us - e.start_us);
      differ += took.at({1, e.act}) != took.at({0, e.act});
    }
  CHECK(differ > 0);
}

TEST_CASE("pp x dp with ZeRO-1: a reduce-scatter before U, U on 1/D of the parameters, then the all-gather",
          "[simulator][closed-form]") {
  const double F = 3, I = 2, W = 2, B = I + W, U = 6, lat = 0.5;
  const std::uint64_t P = 6'000'000; // parameter bytes per stage
  const double bw = 2;               // GB/s
  for (int D : {2, 3, 4}) {
    INFO("D=" << D);
    const double pass = (D - 1.0) / D * static_cast<double>(P) / (bw * 1e3) + (D - 1) * lat; // one ring pass
    auto with_zero1 = [&](const schedule& s, grad_sync_mode mode, bool zero1, int replicas = 0, double u = -1) {
      auto o = test::uniform_options(s, F, I, W);
      for (auto& c : o.costs.stages)
        c.param_bytes = P, c.U = u < 0 ? U : u;
      o.links = sim::link_model::uniform(lat, bw);
      o.data_parallel = {.replicas = replicas > 0 ? replicas : D, .sync = mode, .zero1 = zero1};
      return sim::simulate(s, o);
    };
    // 1F1B on 2 ranks: the first stage ends last, at its last B (body: one replica, U free). Then its
    // reduce-scatter (one pass), its U on 1/D, then the all-gather (one pass); with the plain all-reduce
    // (two passes) U is the whole step.
    const auto s = make("1f1b", 2, 4);
    const double body = with_zero1(s, grad_sync_mode::overlap, false, 1, 0.0).makespan_us;
    CHECK(body > (4 + 2 - 1) * (F + B)); // the pipeline's transfers take `lat` too
    CHECK(with_zero1(s, grad_sync_mode::overlap, true).makespan_us == Approx(body + pass + U / D + pass));
    CHECK(with_zero1(s, grad_sync_mode::overlap, false).makespan_us == Approx(body + 2 * pass + U));
    // One rank, two stages, at the step: 0U waits for stage 0's reduce-scatter, then 1U for stage 1's,
    // which queued behind 0U's all-gather on the one link to the replicas.
    const auto v2 = make("interleaved-1f1b", 1, 1, 2);
    const double compute = 2 * F + 2 * B;
    const double u0_end = compute + pass + U / D + pass;
    CHECK(with_zero1(v2, grad_sync_mode::at_step, true).makespan_us == Approx(u0_end + pass + U / D + pass));
    // Memory: weights and gradients whole, the two Adam moments (state_factor 4) divided by D.
    const auto r = with_zero1(s, grad_sync_mode::overlap, true);
    const auto whole = with_zero1(s, grad_sync_mode::overlap, false);
    CHECK(whole.ranks[0].peak_memory_bytes - r.ranks[0].peak_memory_bytes == P * 2 - P * 2 / D);
    // A profile's measured replica link takes the link model's place for the collectives (the pipeline's
    // own transfers carry no bytes here: only their latency counts).
    auto o = test::uniform_options(s, F, I, W);
    for (auto& c : o.costs.stages)
      c.param_bytes = P, c.U = U;
    o.links = sim::link_model::uniform(lat, 0);
    o.costs.replica_link = link_class{.latency_us = lat, .bandwidth_gbps = bw};
    o.data_parallel = {.replicas = D, .sync = grad_sync_mode::overlap, .zero1 = true};
    CHECK(sim::simulate(s, o).makespan_us == Approx(body + pass + U / D + pass));
    // A backend that reduce-scatters by a whole all-reduce (c10d's Gloo): two passes before U, and the
    // trace's REDUCE_GRAD lasts them.
    o.costs.replica_reduce_scatter_by_allreduce = true;
    const auto gloo = sim::simulate(s, o);
    CHECK(gloo.makespan_us == Approx(body + 2 * pass + U / D + pass));
    for (const auto& e : gloo.timeline.events)
      if (e.act.kind == action_kind::reduce_grad)
        CHECK(e.duration_us() == Approx(2 * pass));
  }
}

// Issue 14: the simulator kept an R x R table of link times (R = 8000: 512 MB of it; int overflow from
// R = 46341). Links now exist only between ranks that send. 3000 ranks stay a quick test (the actors
// still keep a stage table per rank), and latency puts every link to work:
// GPipe with latency L: (M + R - 1)(F + B) + 2 (R - 1) L.
TEST_CASE("GPipe on 3000 ranks with link latency: (m+p-1)(F+B) + 2(p-1)L, as the flat evaluator says",
          "[simulator][closed-form][scale]") {
  const int p = 3000, m = 2;
  const auto s = make_schedule({.name = "gpipe", .num_ranks = p, .num_microbatches = m, .optimizer_steps = false});
  const auto opts = uniform_options(s, 1, 1, 1, 0.5); // F = 1, B = 2, L = 0.5
  const auto r = sim::simulate(s, opts);
  REQUIRE(r.completed);
  CHECK(r.makespan_us == (m + p - 1) * 3.0 + 2 * (p - 1) * 0.5);
  CHECK(r.makespan_us == 12002);
  CHECK(r.ranks[p - 1].first_start_us == (p - 1) * 1.5);
  flat_evaluator ev;
  CHECK(ev.evaluate(s, opts.costs, opts.links).makespan_us == r.makespan_us);
}
