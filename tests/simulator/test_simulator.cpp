// Latency, bandwidth, random costs, determinism, memory and OOM of the virtual-time simulator.
#include <catch2/catch.hpp>
#include <map>
#include <cstdio>
#include <random>

#include "pippy/traces/chrome_trace.hpp"
#include "pippy/traces/metrics.hpp"
#include "sim_helpers.hpp"

using namespace pippy;
using pippy::test::make;
using pippy::test::uniform_options;

TEST_CASE("GPipe with link latency: (m+p-1)(F+B) + 2(p-1)L", "[simulator][latency]") {
  const double F = 1, I = 1, W = 1;
  for (int p : {2, 4, 8})
    for (int m : {1, 4, 16})
      for (double L : {0.5, 3.0}) {
        INFO("p=" << p << " m=" << m << " L=" << L);
        const auto s = make("gpipe", p, m);
        const auto r = sim::simulate(s, uniform_options(s, F, I, W, L));
        CHECK(r.makespan_us == Approx((m + p - 1) * (F + I + W) + 2 * (p - 1) * L).margin(1e-9));
      }
}

// 1F1B's order does not hide latency: rank 0 runs B_k only once the gradient of micro-batch k came
// back, a round trip of p(F+B) + 2(p-1)L for p micro-batches in flight. So every group of p micro-batches
// pays 2(p-1)L, and fill/drain add 2(p-2)L: makespan = (m+p-1)(F+B) + 2L((p-1)m/p + p-2), m % p == 0.
TEST_CASE("1F1B with link latency: (m+p-1)(F+B) + 2L((p-1)m/p + p-2)", "[simulator][latency]") {
  const double F = 1, I = 1, W = 1;
  for (int p : {2, 3, 4, 8})
    for (int k : {1, 2, 4})
      for (double L : {0.25, 0.5}) { // L <= F: the round trip dominates, no other queueing
        const int m = k * p;
        INFO("p=" << p << " m=" << m << " L=" << L);
        const auto s = make("1f1b", p, m);
        const auto r = sim::simulate(s, uniform_options(s, F, I, W, L));
        CHECK(r.makespan_us == Approx((m + p - 1) * (F + I + W) + 2 * L * ((p - 1) * m / double(p) + p - 2)).margin(1e-9));
      }
}

TEST_CASE("same-host and cross-host links have their own latency", "[simulator][latency]") {
  const auto s = make("gpipe", 4, 6);
  auto o = uniform_options(s, 1, 1, 1);
  o.links.ranks_per_host = 2;
  o.links.intra_host.latency_us = 0.5;
  o.links.inter_host.latency_us = 7;
  const auto r = sim::simulate(s, o);
  // Hops 0-1 and 2-3 are on one host, 1-2 crosses: the forward and backward paths each pay 0.5+7+0.5.
  CHECK(r.makespan_us == Approx((6 + 4 - 1) * 3.0 + 2 * (0.5 + 7 + 0.5)));
}

TEST_CASE("a link carries one transfer at a time: blocking sends hold the sender", "[simulator][links]") {
  const auto s = make("gpipe", 2, 4);
  auto o = uniform_options(s, 1, 1, 1); // F=1, B=2
  for (auto& c : o.costs.stages)
    c.activation_bytes = 3000; // 3 us at 1 GB/s
  o.links = sim::link_model::uniform(0, 1.0);
  SECTION("async sends queue on the link") {
    const auto r = sim::simulate(s, o);
    // Sends of F on rank 0 are posted at 1,2,3,4 but take turns: 1-4, 4-7, 7-10, 10-13. Rank 1 forwards
    // at 4,7,10,13, runs B 14..22; its gradient sends take turns 16-19, 19-22, 22-25, 25-28; rank 0 runs B
    // at 19, 22, 25, 28 -> ends at 30.
    CHECK(r.makespan_us == 30);
    std::vector<std::pair<double, double>> sends;
    for (const auto& e : r.timeline.events)
      if (e.rank == 0 && e.act.kind == action_kind::send_f)
        sends.emplace_back(e.start_us, e.end_us);
    REQUIRE(sends.size() == 4);
    CHECK(sends == std::vector<std::pair<double, double>>{{1, 4}, {4, 7}, {7, 10}, {10, 13}});
  }
  SECTION("blocking sends") {
    o.links.blocking_send = true;
    const auto r = sim::simulate(s, o);
    // F0 0-1, send 1-4, F1 4-5, send 5-8, ... rank 1 forwards at 4, 8, 12, 16; B0 17-19, send 19-22, B1 22-24,
    // send 24-27, B2 27-29, send 29-32, B3 32-34, send 34-37; rank 0: B3 ends 37 + 2 = 39.
    CHECK(r.makespan_us == 39);
  }
  SECTION("posting a send holds its rank, the link does not wait for it") {
    o.links = sim::link_model::uniform(0, 0);
    o.costs.send_posting = {.latency_us = 0.5, .bandwidth_gbps = 6}; // 0.5 + 3000 B / 6 GB/s = 1 us a send
    const auto r = sim::simulate(s, o);
    // Rank 0: F 0-1, posting 1-2, F 2-3, ... its last posting ends at 8; the transfers arrive at 1, 3, 5,
    // 7. Rank 1: F at 1, 3, 5, 7, then B 8-10, posting 10-11, B 11-13, ...; the gradients arrive at 10,
    // 13, 16, 19, and rank 0's B for each ends 2 later: 21. Without the posting: 15.
    CHECK(r.makespan_us == 21);
    CHECK(r.expected_step_us >= 21);
  }
}

namespace {

// Checks the trace against the schedule: inputs arrived before each action, no overlap on a rank's
// compute stream, makespan = latest end.
void check_trace(const schedule& s, const sim::sim_result& r) {
  std::map<action, trace_event> at;
  for (const auto& e : r.timeline.events)
    at[e.act] = e;
  const int S = s.shape.num_stages();
  double latest = 0;
  std::map<int, std::vector<std::pair<double, double>>> compute;
  for (const auto& e : r.timeline.events) {
    latest = std::max(latest, e.end_us);
    if (!is_compute(e.act.kind))
      continue;
    compute[e.rank].emplace_back(e.start_us, e.end_us);
    const action& a = e.act;
    auto after = [&](action dep) {
      INFO(to_string(a) << " needs " << to_string(dep));
      REQUIRE(at.count(dep));
      CHECK(e.start_us >= at[dep].end_us);
    };
    // An input from another rank: after its transfer arrived (the SEND event's end).
    auto input = [&](int from_stage, action_kind compute_kind, action_kind send_kind) {
      if (s.shape.rank_of(from_stage) != e.rank)
        after(action{from_stage, send_kind, a.microbatch});
      else if (compute_kind == action_kind::forward)
        after(action{from_stage, compute_kind, a.microbatch});
      else
        after(at.count(action{from_stage, action_kind::full_backward, a.microbatch})
                  ? action{from_stage, action_kind::full_backward, a.microbatch}
                  : action{from_stage, action_kind::backward_input, a.microbatch});
    };
    switch (a.kind) {
    case action_kind::forward:
      if (a.stage > 0)
        input(a.stage - 1, action_kind::forward, action_kind::send_f);
      break;
    case action_kind::backward_input:
    case action_kind::full_backward:
      after(action{a.stage, action_kind::forward, a.microbatch});
      if (a.stage < S - 1)
        input(a.stage + 1, action_kind::full_backward, action_kind::send_b);
      break;
    case action_kind::backward_weight:
      after(action{a.stage, action_kind::backward_input, a.microbatch});
      break;
    default:
      break;
    }
  }
  for (auto& [rank, spans] : compute) {
    std::sort(spans.begin(), spans.end());
    for (std::size_t i = 1; i < spans.size(); ++i) {
      INFO("rank " << rank << " span " << i);
      CHECK(spans[i].first >= spans[i - 1].second);
    }
  }
  CHECK(r.makespan_us == latest);
}

sim::sim_options random_costs(const schedule& s, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> d(0.1, 5.0);
  cost_table t;
  for (int i = 0; i < s.shape.num_stages(); ++i)
    t.stages.push_back(stage_cost{.F = d(rng), .I = d(rng), .W = d(rng), .U = d(rng)});
  for (auto& c : t.stages)
    c.B = c.I + c.W;
  return sim::sim_options{.costs = t};
}

} // namespace

TEST_CASE("random per-stage costs: dependencies hold, no overlap, equals core evaluate()", "[simulator][random]") {
  const std::vector<schedule> cases = {make("gpipe", 4, 7),           make("1f1b", 4, 9),
                                       make("interleaved-1f1b", 3, 6, 3), make("looped-bfs", 2, 5, 2),
                                       make("interleaved-zb", 4, 8, 2), make("zbv", 4, 8),
                                       make("dualpipev", 4, 10),        make("zb-h1", 4, 8),
                                       make("zb-h2", 3, 9)};
  for (const auto& s : cases)
    for (std::uint32_t seed : {1u, 2u, 3u}) {
      INFO(s.name << " seed " << seed);
      auto o = random_costs(s, seed);
      const auto r = sim::simulate(s, o);
      REQUIRE(r.completed);
      check_trace(s, r);
      // Zero latency: the very same start and end as the dependency-only reference, action by action.
      const auto ref = evaluate(s, o.costs);
      CHECK(r.makespan_us == ref.makespan);
      std::map<action, trace_event> at;
      for (const auto& e : r.timeline.events)
        at[e.act] = e;
      for (const auto& list : ref.ranks)
        for (const auto& t : list)
          if (is_compute(t.act.kind)) {
            INFO(to_string(t.act));
            CHECK(at[t.act].start_us == t.start);
            CHECK(at[t.act].end_us == t.end);
          }
      const auto ref_metrics = compute_metrics(trace_from_evaluation(ref, s.name, 1.0));
      for (std::size_t rk = 0; rk < r.ranks.size(); ++rk) {
        CHECK(r.ranks[rk].busy_us == Approx(ref_metrics.ranks[rk].busy_us));
        CHECK(r.ranks[rk].first_start_us == ref_metrics.ranks[rk].first_start_us);
        CHECK(r.ranks[rk].end_us == ref_metrics.ranks[rk].last_end_us);
      }
      CHECK(r.bubble_fraction == Approx(ref_metrics.bubble_fraction));
      CHECK(r.steady_bubble_fraction == Approx(ref_metrics.steady_bubble_fraction));
      // With latency and bandwidth the dependencies still hold, and it can only get slower.
      o.links = sim::link_model::uniform(0.7, 2.0);
      for (auto& c : o.costs.stages)
        c.activation_bytes = 1500;
      const auto slow = sim::simulate(s, o);
      REQUIRE(slow.completed);
      check_trace(s, slow);
      CHECK(slow.makespan_us >= r.makespan_us);
    }
}

TEST_CASE("jittered costs and cross-host links: dependencies still hold", "[simulator][random]") {
  for (const auto& s : {make("interleaved-1f1b", 4, 8, 2), make("zbv", 4, 8), make("dualpipev", 4, 8)}) {
    INFO(s.name);
    auto o = random_costs(s, 11);
    o.costs.jitter = 0.5;
    o.costs.seed = 9;
    o.links.ranks_per_host = 2;
    o.links.intra_host = {0.1, 50};
    o.links.inter_host = {2.0, 1};
    for (auto& c : o.costs.stages)
      c.activation_bytes = 1000;
    const auto r = sim::simulate(s, o);
    REQUIRE(r.completed);
    check_trace(s, r);
    // Transfers between hosts 0 (ranks 0, 1) and 1 (ranks 2, 3) take 2 us + 1 us on the wire at least.
    for (const auto& e : r.timeline.events)
      if (is_communication(e.act.kind)) {
        const bool cross = e.rank / 2 != e.peer / 2;
        CHECK(e.end_us - e.start_us == Approx(cross ? 3.0 : 0.12));
      }
  }
}

TEST_CASE("same inputs give a byte-identical trace", "[simulator][determinism]") {
  const auto s = make("interleaved-1f1b", 4, 8, 2);
  auto o = random_costs(s, 7);
  o.costs.jitter = 0.3;
  o.costs.seed = 42;
  o.links = sim::link_model::uniform(0.3, 5);
  for (auto& c : o.costs.stages)
    c.activation_bytes = 4096, c.param_bytes = 1000;
  const std::string a = to_chrome_json(sim::simulate(s, o).timeline);
  const std::string b = to_chrome_json(sim::simulate(s, o).timeline);
  CHECK(a.size() > 1000);
  CHECK(a == b);
  o.costs.seed = 43; // another seed: another (still valid) timeline
  CHECK(to_chrome_json(sim::simulate(s, o).timeline) != a);
}

TEST_CASE("memory: activations held from F to B, peaks per rank", "[simulator][memory]") {
  const auto s = make("1f1b", 4, 8);
  auto o = uniform_options(s, 1, 1, 1);
  for (auto& c : o.costs.stages)
    c.activation_bytes = 100, c.param_bytes = 10;
  const auto r = sim::simulate(s, o);
  const auto peaks = peak_in_flight(s);
  for (int rk = 0; rk < 4; ++rk) {
    INFO("rank " << rk);
    CHECK(r.ranks[rk].peak_activations == 4 - rk);
    CHECK(r.ranks[rk].peak_activations == peaks[rk]);
    CHECK(r.ranks[rk].peak_memory_bytes == 40 + 100u * (4 - rk)); // 10 param bytes * 4 (weights, grads, Adam)
  }
  // The timeline ends where it started: parameters only.
  std::map<int, std::uint64_t> last;
  for (const auto& m : r.timeline.memory)
    last[m.rank] = m.bytes;
  for (auto& [rk, b] : last)
    CHECK(b == 40);
}

TEST_CASE("memory: I frees all but the weight-gradient inputs, W frees those", "[simulator][memory]") {
  const auto s = make("zb-h1", 2, 4);
  auto o = uniform_options(s, 1, 1, 1);
  for (auto& c : o.costs.stages)
    c.activation_bytes = 100, c.weight_input_bytes = 30;
  const auto r = sim::simulate(s, o);
  // Replay rank 0's list by hand.
  std::int64_t held = 0, peak = 0;
  for (const auto& a : s.ranks[0]) {
    if (a.kind == action_kind::forward)
      held += 100;
    if (a.kind == action_kind::backward_input)
      held -= 70;
    if (a.kind == action_kind::backward_weight)
      held -= 30;
    peak = std::max(peak, held);
  }
  CHECK(r.ranks[0].peak_memory_bytes == static_cast<std::uint64_t>(peak));
  CHECK(peak > 0);
}

TEST_CASE("a memory cap reports out of memory at the exact action", "[simulator][memory][oom]") {
  const auto s = make("1f1b", 4, 8);
  auto o = uniform_options(s, 1, 1, 1);
  for (auto& c : o.costs.stages)
    c.activation_bytes = 100;
  o.memory.cap_bytes = 350; // rank 0 holds 4 micro-batches at its peak: its 4th forward does not fit
  const auto r = sim::simulate(s, o);
  REQUIRE(r.oom);
  CHECK(r.oom->rank == 0);
  CHECK(r.oom->at == action{0, action_kind::forward, 3});
  CHECK(r.oom->needed_bytes == 400);
  CHECK(r.oom->cap_bytes == 350);
  CHECK(r.oom->t_us == 3.0);
  CHECK(r.oom->message() == "out of memory on rank 0 at 0F3 (t=3 us): needs 400 bytes, cap 350 bytes");
  CHECK_FALSE(r.completed);
  // The trace carries it as a marker at the failing action, and keeps it through a Chrome file.
  REQUIRE_FALSE(r.timeline.markers.empty());
  CHECK(r.timeline.markers[0] == trace_marker{0, 3.0, "OOM", r.oom->message()});
  CHECK(parse_chrome_json(to_chrome_json(r.timeline), "oom.json").markers == r.timeline.markers);
  // Nothing ran on rank 0 after the failed action.
  for (const auto& e : r.timeline.events)
    if (e.rank == 0 && is_compute(e.act.kind))
      CHECK(e.start_us < 3.0);
  o.memory.cap_bytes = 400; // exactly enough
  const auto ok = sim::simulate(s, o);
  CHECK_FALSE(ok.oom);
  CHECK(ok.timeline.markers.empty());
  CHECK(ok.completed);
  CHECK(ok.ranks[0].peak_memory_bytes == 400);
}

TEST_CASE("micro-batch actors report every micro-batch finished", "[simulator][actors]") {
  const auto s = make("1f1b", 4, 8);
  const auto r = sim::simulate(s, uniform_options(s, 1, 1, 1));
  REQUIRE(r.microbatch_end_us.size() == 8);
  const auto ref = evaluate(s, uniform_options(s, 1, 1, 1).costs);
  // A micro-batch is finished when its last backward (stage 0's B) ends.
  for (int m = 0; m < 8; ++m) {
    double end = 0;
    for (const auto& list : ref.ranks)
      for (const auto& t : list)
        if (t.act.microbatch == m)
          end = std::max(end, t.end);
    CHECK(r.microbatch_end_us[static_cast<std::size_t>(m)] == end);
  }
}

TEST_CASE("bad options name the field", "[simulator][errors]") {
  const auto s = make("1f1b", 4, 8);
  auto o = uniform_options(s, 1, 1, 1);
  o.costs.stages.pop_back();
  CHECK_THROWS_WITH(sim::simulate(s, o), "costs: 'stages' has 3 entries but the schedule has 4 stages");
  o = uniform_options(s, 1, 1, 1);
  o.costs.stages[2].W = -1;
  CHECK_THROWS_WITH(sim::simulate(s, o), Catch::Contains("stages[2].W must be a non-negative number"));
  o = uniform_options(s, 1, 1, 1);
  o.links.inter_host.latency_us = -2;
  CHECK_THROWS_WITH(sim::simulate(s, o), Catch::Contains("links.inter_host.latency_us must be non-negative"));
}

TEST_CASE("the Chrome trace: compute on stream 0, transfers on stream 1, memory counters: reads back", "[simulator][trace]") {
  const auto s = make("1f1b", 3, 4);
  auto o = uniform_options(s, 1, 1, 1, 0.5);
  for (auto& c : o.costs.stages)
    c.activation_bytes = 2000, c.param_bytes = 100;
  o.links.intra_host.bandwidth_gbps = o.links.inter_host.bandwidth_gbps = 4; // 0.5 us per transfer
  const auto r = sim::simulate(s, o);
  const std::string path = "test_sim_trace.json";
  save_chrome_trace(r.timeline, path);
  const trace back = load_chrome_trace(path);
  std::remove(path.c_str());
  REQUIRE(back.events.size() == r.timeline.events.size());
  int transfers = 0;
  for (std::size_t i = 0; i < back.events.size(); ++i) {
    const auto& a = r.timeline.events[i];
    const auto& b = back.events[i];
    CHECK(b.rank == a.rank);
    CHECK(b.act == a.act);
    CHECK(b.start_us == Approx(a.start_us));
    CHECK(b.end_us == Approx(a.end_us));
    if (is_communication(a.act.kind)) {
      ++transfers;
      CHECK(b.bytes == 2000);
      CHECK(b.peer == a.peer);
      CHECK(a.end_us - a.start_us == Approx(1.0)); // 0.5 us on the wire + 0.5 us latency
    }
  }
  CHECK(transfers == 2 * 2 * 4); // two boundaries, both directions, four micro-batches
  CHECK(back.memory.size() == r.timeline.memory.size());
  const std::string text = to_chrome_json(r.timeline);
  CHECK(text.find("\"ph\":\"C\"") != std::string::npos);
  CHECK(text.find("\"tid\":1") != std::string::npos);
}

// Blocking sends: the sender is held until its message is delivered, latency included. GPipe, unlimited
// bandwidth, latency L: rank r's F_k starts at (k + r)(F + L) (each rank forwards, then waits L for its
// send), the last rank's forwards end at T = (M + R - 2)(F + L) + F, and every backward pays B + L on its
// way up, so rank 0's last B ends at T + (M + R - 2)(B + L) + B:
//   makespan = (M + R - 1)(F + B) + 2(M + R - 2)L,
// against (M + R - 1)(F + B) + 2(R - 1)L with asynchronous sends.
TEST_CASE("blocking sends with latency: GPipe makespan (M+R-1)(F+B) + 2(M+R-2)L", "[simulator][links]") {
  const double F = 1, I = 1, W = 1, B = I + W;
  for (int R : {2, 3, 4})
    for (int M : {1, 3, 5})
      for (double L : {0.5, 2.0}) {
        INFO("R=" << R << " M=" << M << " L=" << L);
        const auto s = make("gpipe", R, M);
        auto o = uniform_options(s, F, I, W, L);
        o.links.blocking_send = true;
        const auto r = sim::simulate(s, o);
        REQUIRE(r.completed);
        CHECK(r.makespan_us == Approx((M + R - 1) * (F + B) + 2 * (M + R - 2) * L).margin(1e-9));
        // The sender runs nothing between posting a send and its delivery.
        std::map<int, std::vector<trace_event>> by_rank;
        for (const auto& e : r.timeline.events)
          by_rank[e.rank].push_back(e);
        for (auto& [rank, events] : by_rank)
          for (const auto& send : events)
            if (send.act.kind == action_kind::send_f || send.act.kind == action_kind::send_b) {
              INFO(to_string(send.act));
              CHECK(send.end_us - send.start_us == Approx(L));
              for (const auto& c : events)
                if (is_compute(c.act.kind) && c.start_us >= send.start_us && c.end_us > c.start_us)
                  CHECK(c.start_us >= send.end_us - 1e-9);
            }
        o.links.blocking_send = false;
        CHECK(sim::simulate(s, o).makespan_us == Approx((M + R - 1) * (F + B) + 2 * (R - 1) * L).margin(1e-9));
      }
}

TEST_CASE("a memory cap below the parameter memory fails at the rank's first forward", "[simulator][memory][oom]") {
  const auto s = make("gpipe", 4, 3);
  auto o = uniform_options(s, 1, 1, 1);
  for (auto& c : o.costs.stages)
    c.activation_bytes = 10, c.param_bytes = 100; // 400 bytes of parameters and state per rank
  SECTION("every rank over the cap: rank 0 fails at once, nothing runs") {
    o.memory.cap_bytes = 300;
    const auto r = sim::simulate(s, o);
    REQUIRE(r.oom);
    CHECK(r.oom->rank == 0);
    CHECK(r.oom->at == action{0, action_kind::forward, 0});
    CHECK(r.oom->t_us == 0);
    CHECK(r.oom->needed_bytes == 410);
    CHECK(r.oom->message() == "out of memory on rank 0 at 0F0 (t=0 us): needs 410 bytes, cap 300 bytes");
    CHECK_FALSE(r.completed);
    for (const auto& e : r.timeline.events)
      CHECK_FALSE(is_compute(e.act.kind));
    CHECK(r.makespan_us == 0);
  }
  SECTION("one rank over the cap: it fails at its first forward, when its input arrives") {
    o.costs.stages[2].param_bytes = 1000; // rank 2 holds 4000 bytes of parameters and state
    o.memory.cap_bytes = 3000;
    const auto r = sim::simulate(s, o);
    REQUIRE(r.oom);
    CHECK(r.oom->rank == 2);
    CHECK(r.oom->at == action{2, action_kind::forward, 0});
    CHECK(r.oom->t_us == 2); // 0F0 and 1F0 ran before
    CHECK(r.oom->needed_bytes == 4010);
    CHECK_FALSE(r.completed);
    for (const auto& e : r.timeline.events)
      if (e.rank >= 2)
        CHECK_FALSE(is_compute(e.act.kind));
    REQUIRE(r.timeline.markers.size() == 1);
    CHECK(r.timeline.markers[0].rank == 2);
    CHECK(r.timeline.markers[0].detail == "out of memory on rank 2 at 2F0 (t=2 us): needs 4010 bytes, cap 3000 bytes");
  }
}
