#include <catch2/catch.hpp>

#include "pippy/core/generators.hpp"
#include "pippy/core/validate.hpp"
#include "pippy/traces/chrome_trace.hpp"
#include "pippy/traces/metrics.hpp"

using namespace pippy;

namespace {
trace_event ev(int rank, const char* a, double s, double e) {
  return trace_event{.rank = rank, .act = parse_action(a), .start_us = s, .end_us = e};
}

// Two stages on two ranks, one micro-batch: rank 1 waits for the activation, rank 0 for the gradient.
trace two_stage() {
  trace t;
  t.run = "hand-made";
  t.num_ranks = 2;
  t.events = {ev(0, "0F0", 0, 10), ev(1, "1F0", 10, 20), ev(1, "1B0", 20, 30), ev(0, "0B0", 30, 50)};
  t.memory = {{0, 0, 100}, {0, 10, 300}, {0, 50, 100}, {1, 10, 500}, {1, 5, 200}};
  return t;
}

trace gpipe4(double us_per_unit = 1000) {
  auto s = make_schedule({.name = "gpipe", .num_ranks = 4, .num_microbatches = 4, .optimizer_steps = false});
  return trace_from_evaluation(evaluate(s, unit_costs{}), "gpipe R=4 M=4", us_per_unit);
}
} // namespace

TEST_CASE("metrics of a hand-made two-stage trace are exact", "[traces][metrics]") {
  const trace t = two_stage();
  const auto m = compute_metrics(t);
  CHECK(m.start_us == 0);
  CHECK(m.end_us == 50);
  CHECK(m.step_time_us == 50);
  REQUIRE(m.ranks.size() == 2);
  CHECK(m.ranks[0].busy_us == 30);
  CHECK(m.ranks[1].busy_us == 20);
  CHECK(m.ranks[0].bubble_fraction == Approx(0.4));
  CHECK(m.ranks[1].bubble_fraction == Approx(0.6));
  CHECK(m.ranks[0].utilisation == Approx(0.6));
  CHECK(m.bubble_fraction == Approx(0.5));
  CHECK(m.utilisation == Approx(0.5));
  CHECK(m.kind_count[static_cast<int>(action_kind::forward)] == 2);
  CHECK(m.kind_us[static_cast<int>(action_kind::full_backward)] == 30);

  // Gaps: rank 0 waits 10..30 for stage 1's gradient; rank 1 waits 0..10 for stage 0's activation
  // and drains 30..50.
  REQUIRE(m.gaps.size() == 3);
  const auto& g0 = m.gaps[0];
  CHECK(g0.rank == 0);
  CHECK(g0.start_us == 10);
  CHECK(g0.end_us == 30);
  CHECK(g0.cause == idle_cause::gradient);
  CHECK(to_string(*g0.waited_for) == "1B0");
  CHECK(g0.waited_rank == 1);
  CHECK(to_string(*g0.next) == "0B0");
  CHECK(g0.describe().find("gradient of stage 1 micro-batch 0") != std::string::npos);
  const auto& g1 = m.gaps[1];
  CHECK(g1.rank == 1);
  CHECK(g1.start_us == 0);
  CHECK(g1.end_us == 10);
  CHECK(g1.cause == idle_cause::activation);
  CHECK(to_string(*g1.waited_for) == "0F0");
  CHECK(m.gaps[2].cause == idle_cause::drain);
  CHECK(m.gaps[2].start_us == 30);
  CHECK(m.gaps[2].end_us == 50);

  // Critical path: the whole chain, 50 us of compute over a 50 us step.
  REQUIRE(m.critical_path.size() == 4);
  std::vector<std::string> names;
  for (auto i : m.critical_path)
    names.push_back(to_string(t.events[i].act));
  CHECK(names == std::vector<std::string>{"0F0", "1F0", "1B0", "0B0"});
  CHECK(m.critical_path_busy_us == 50);

  // Memory over time: per-rank curves sorted by time, peaks.
  auto c1 = memory_curve(t, 1);
  REQUIRE(c1.size() == 2);
  CHECK(c1[0].t_us == 5);
  CHECK(c1[1].bytes == 500);
  CHECK(m.ranks[0].peak_memory == 300);
  CHECK(m.peak_memory == 500);
}

TEST_CASE("an idle gap whose inputs were ready is blamed on ordering", "[traces][metrics]") {
  trace t;
  t.num_ranks = 1;
  t.events = {ev(0, "0F0", 0, 10), ev(0, "0F1", 15, 25), ev(0, "0B0", 25, 45)};
  const auto m = compute_metrics(t);
  REQUIRE(m.gaps.size() == 1);
  CHECK(m.gaps[0].cause == idle_cause::ordering);
  CHECK(m.gaps[0].duration_us() == 5);
  CHECK(m.ranks[0].bubble_fraction == Approx(5.0 / 45.0));
}

TEST_CASE("overlapping events on one rank are counted once", "[traces][metrics]") {
  trace t;
  t.num_ranks = 1;
  t.events = {ev(0, "0F0", 0, 10), ev(0, "0F1", 5, 12), ev(0, "0SEND_F0", 10, 14)};
  const auto m = compute_metrics(t);
  CHECK(m.ranks[0].busy_us == 12);
  CHECK(m.ranks[0].comm_us == 4);
  CHECK(m.step_time_us == 14);
  CHECK(m.num_comm == 1);
}

TEST_CASE("GPipe with 4 stages and 4 micro-batches has bubble (R-1)/(M+R-1)", "[traces][metrics]") {
  const trace t = gpipe4();
  const auto m = compute_metrics(t);
  CHECK(m.step_time_us == Approx(21000));
  CHECK(m.bubble_fraction == Approx(3.0 / 7.0));
  for (const auto& r : m.ranks) {
    CHECK(r.busy_us == Approx(12000));
    CHECK(r.bubble_fraction == Approx(9.0 / 21.0));
  }
  // Rank 3 starts after 3 units waiting for stage 2's activation of micro-batch 0.
  const auto it = std::find_if(m.gaps.begin(), m.gaps.end(), [](const idle_gap& g) { return g.rank == 3; });
  REQUIRE(it != m.gaps.end());
  CHECK(it->start_us == 0);
  CHECK(it->end_us == Approx(3000));
  CHECK(it->cause == idle_cause::activation);
  CHECK(to_string(*it->waited_for) == "2F0");
  // Rank 0 waits for stage 1's gradient between its forwards and its first backward.
  bool rank0_gradient = false;
  for (const auto& g : m.gaps)
    if (g.rank == 0 && g.cause == idle_cause::gradient && g.start_us == Approx(4000) && g.end_us == Approx(13000))
      rank0_gradient = true;
  CHECK(rank0_gradient);
  // The critical path runs through every stage's forward of the first micro-batch and back.
  CHECK(m.critical_path_busy_us == Approx(21000));
  // Round trip through the Chrome format keeps the numbers.
  const auto m2 = compute_metrics(parse_chrome_json(to_chrome_json(t), "mem"));
  CHECK(m2.bubble_fraction == Approx(m.bubble_fraction));
  // The summary names the numbers.
  const auto text = format_summary(t, m);
  CHECK(text.find("step time: 21000.000 us") != std::string::npos);
  CHECK(text.find("bubble fraction: 0.4286") != std::string::npos);
}

TEST_CASE("a transfer is counted once whether a trace records its send alone or both ends", "[traces][metrics][diff]") {
  trace simulated;
  simulated.num_ranks = 2;
  simulated.events = {ev(0, "0F0", 0, 10), ev(0, "0SEND_F0", 10, 12), ev(1, "1F0", 12, 20)};
  trace measured = simulated;
  measured.events.push_back(ev(1, "1RECV_F0", 10, 13));
  measured.events[2] = ev(1, "1F0", 13, 21);
  const auto ms = compute_metrics(simulated), mm = compute_metrics(measured);
  CHECK(ms.num_comm == 1);
  CHECK(ms.num_receives == 0);
  CHECK(mm.num_comm == 1);
  CHECK(mm.num_sends == 1);
  CHECK(mm.num_receives == 1);
  CHECK_THAT(format_summary(measured, mm), Catch::Contains("2 compute, 1 transfers (1 sends, 1 receives)"));
  CHECK_THAT(format_summary(simulated, ms), Catch::Contains("2 compute, 1 transfers\n"));
  // The receive has no counterpart in the simulation: left out of the comparison, not "only measured".
  const auto d = diff_traces(simulated, measured);
  CHECK(d.matched == 3);
  CHECK(d.only_measured == 0);
  CHECK(d.receives_unpaired == 1);
  CHECK_THAT(format_diff(d), Catch::Contains("receives not compared: 1"));
  // Two measured traces compare their receives too.
  const auto both = diff_traces(measured, measured);
  CHECK(both.matched == 4);
  CHECK(both.receives_unpaired == 0);
}

TEST_CASE("metrics of an empty trace are zero, not a crash", "[traces][metrics]") {
  trace t;
  const auto m = compute_metrics(t);
  CHECK(m.step_time_us == 0);
  CHECK(m.critical_path.empty());
}

TEST_CASE("diff gives per-rank and per-kind error of a prediction", "[traces][diff]") {
  const trace predicted = gpipe4();
  trace measured = predicted;
  for (auto& e : measured.events)
    if (e.act.kind == action_kind::forward)
      e.end_us = e.start_us + 1100; // forwards measured 10% slower than predicted
  measured.events.pop_back();       // one action missing from the measurement
  const auto d = diff_traces(predicted, measured);
  CHECK(d.matched == predicted.events.size() - 1);
  CHECK(d.only_predicted == 1);
  CHECK(d.only_measured == 0);
  REQUIRE(d.kinds.size() == 2);
  CHECK(d.kinds[0].name == "F");
  CHECK(d.kinds[0].matched == 16);
  CHECK(d.kinds[0].predicted_us == Approx(16000));
  CHECK(d.kinds[0].measured_us == Approx(17600));
  CHECK(d.kinds[0].relative_error() == Approx(1000.0 / 1100.0 - 1));
  CHECK(d.kinds[0].mean_abs_relative_error == Approx(100.0 / 1100.0));
  CHECK(d.kinds[1].name == "B");
  CHECK(d.kinds[1].relative_error() == Approx(0));
  REQUIRE(d.ranks.size() == 4);
  CHECK(d.ranks[1].predicted_us == Approx(12000));
  CHECK(d.ranks[1].measured_us == Approx(12400));
  CHECK(format_diff(d).find("per kind") != std::string::npos);
}

TEST_CASE("busy time is the union of a rank's intervals: contained, touching, disjoint and overlapping", "[traces][metrics]") {
  auto busy = [](std::vector<trace_event> events) {
    trace t;
    t.num_ranks = 1;
    t.events = std::move(events);
    return compute_metrics(t).ranks.at(0).busy_us;
  };
  // One interval inside another counts once, with the outer one's length.
  CHECK(busy({ev(0, "0F0", 0, 10), ev(0, "0F1", 2, 5)}) == 10);
  // Contained, listed first; and a chain where the second is contained and a third extends the first.
  CHECK(busy({ev(0, "0F1", 2, 5), ev(0, "0F0", 0, 10)}) == 10);
  CHECK(busy({ev(0, "0F0", 0, 10), ev(0, "0F1", 2, 5), ev(0, "0F2", 8, 14)}) == 14);
  // Same start, the shorter one sorted first.
  CHECK(busy({ev(0, "0F0", 0, 3), ev(0, "0F1", 0, 9)}) == 9);
  // Touching intervals add up; disjoint ones leave the gap out.
  CHECK(busy({ev(0, "0F0", 0, 4), ev(0, "0F1", 4, 6)}) == 6);
  CHECK(busy({ev(0, "0F0", 0, 4), ev(0, "0F1", 6, 7), ev(0, "0F2", 10, 13)}) == 8);
  // Two contained in one, then a separate one: 20 + 5.
  CHECK(busy({ev(0, "0F0", 0, 20), ev(0, "0F1", 1, 3), ev(0, "0F2", 5, 19), ev(0, "0F3", 30, 35)}) == 25);
  // Communication is a union too.
  trace t;
  t.num_ranks = 1;
  t.events = {ev(0, "0F0", 0, 1), ev(0, "0SEND_F0", 1, 9), ev(0, "0SEND_F1", 2, 4), ev(0, "0SEND_F2", 12, 13)};
  CHECK(compute_metrics(t).ranks[0].comm_us == 9);
}

namespace {
// The gaps of one rank, in time order.
std::vector<idle_gap> gaps_of(const trace_metrics& m, int rank) {
  std::vector<idle_gap> out;
  for (const auto& g : m.gaps)
    if (g.rank == rank)
      out.push_back(g);
  return out;
}
} // namespace

TEST_CASE("idle gaps: each cause, the dependency that arrived last, and the words", "[traces][metrics]") {
  // Zero-bubble style, three stages on three ranks, hand-timed.
  //   rank 0: 0F0 0..2, 0I0 20..22, 0W0 22..23, 0U 40..41 (waits for 0W0 on another lane: rank 3 below)
  //   rank 1: 1F0 5..7 (waits for 0F0, ended at 2), 1I0 15..17 (waits for 2I0), 1W0 18..19 (ordering)
  //   rank 2: 2F0 9..11 (its input 1F0 ended at 7), 2I0 11..15
  trace t;
  t.num_ranks = 3;
  t.events = {ev(0, "0F0", 0, 2),  ev(0, "0I0", 20, 22), ev(0, "0U", 40, 41), ev(1, "1F0", 5, 7),
              ev(1, "1I0", 15, 17), ev(1, "1W0", 18, 19), ev(2, "2F0", 9, 11), ev(2, "2I0", 11, 15)};
  // 0W0 recorded on a fourth lane (a measured trace may run W elsewhere), ending inside rank 0's gap.
  t.events.push_back(ev(3, "0W0", 30, 35));
  const auto m = compute_metrics(t);

  const auto r0 = gaps_of(m, 0);
  REQUIRE(r0.size() == 2);
  // 0I0 waits for the gradient from stage 1 (1I0 ended at 17): rank 0 idle 2..20.
  CHECK(r0[0].start_us == 2);
  CHECK(r0[0].end_us == 20);
  CHECK(r0[0].cause == idle_cause::gradient);
  CHECK(to_string(*r0[0].waited_for) == "1I0");
  CHECK(r0[0].waited_rank == 1);
  CHECK(r0[0].describe() ==
        "rank 0 idle 2.000..20.000 us (18.000): waiting for the gradient of stage 1 micro-batch 0 (1I0 on rank 1), "
        "then 0I0");
  // 0U waits for 0W0, run elsewhere and ended at 35: local.
  CHECK(r0[1].start_us == 22);
  CHECK(r0[1].end_us == 40);
  CHECK(r0[1].cause == idle_cause::local);
  CHECK(to_string(*r0[1].waited_for) == "0W0");
  CHECK(r0[1].waited_rank == 3);
  CHECK(r0[1].describe() == "rank 0 idle 22.000..40.000 us (18.000): waiting for 0W0 (0W0 on rank 3), then 0U");

  const auto r1 = gaps_of(m, 1);
  REQUIRE(r1.size() == 4);
  // Before 1F0: waiting for stage 0's activation (ended at 2, inside the gap 0..5).
  CHECK(r1[0].start_us == 0);
  CHECK(r1[0].end_us == 5);
  CHECK(r1[0].cause == idle_cause::activation);
  CHECK(to_string(*r1[0].waited_for) == "0F0");
  CHECK(r1[0].waited_rank == 0);
  CHECK(r1[0].describe() == "rank 1 idle 0.000..5.000 us (5.000): waiting for the activation of stage 0 micro-batch 0 "
                            "(0F0 on rank 0), then 1F0");
  // Before 1I0: its gradient 2I0 ended at 15 (its own 1F0 long before).
  CHECK(r1[1].start_us == 7);
  CHECK(r1[1].end_us == 15);
  CHECK(r1[1].cause == idle_cause::gradient);
  CHECK(to_string(*r1[1].waited_for) == "2I0");
  // Before 1W0: its input 1I0 ended at 17, when the gap began: ordering, nothing waited for.
  CHECK(r1[2].start_us == 17);
  CHECK(r1[2].end_us == 18);
  CHECK(r1[2].cause == idle_cause::ordering);
  CHECK_FALSE(r1[2].waited_for);
  CHECK(r1[2].describe() == "rank 1 idle 17.000..18.000 us (1.000): inputs ready, held by the rank's order, then 1W0");
  // After its last action: drain to the end of the step (41).
  CHECK(r1[3].start_us == 19);
  CHECK(r1[3].end_us == 41);
  CHECK(r1[3].cause == idle_cause::drain);
  CHECK_FALSE(r1[3].next);
  CHECK(r1[3].describe() == "rank 1 idle 19.000..41.000 us (22.000): drain: no more work this step");

  const auto r2 = gaps_of(m, 2);
  REQUIRE(r2.size() == 2);
  // 2F0's input ended at 7, inside the gap 0..9: activation, not ordering.
  CHECK(r2[0].cause == idle_cause::activation);
  CHECK(to_string(*r2[0].waited_for) == "1F0");
  CHECK(r2[1].cause == idle_cause::drain);
}

TEST_CASE("pp x dp: each replica's actions wait for their producers in the same replica", "[traces][metrics]") {
  // Two stages on two ranks, one micro-batch, two replicas (ranks 0-1 and 2-3): replica 1 runs later.
  trace t;
  t.num_ranks = 4;
  t.replicas = 2;
  t.events = {ev(0, "0F0", 0, 10), ev(1, "1F0", 20, 30), ev(2, "0F0", 5, 35), ev(3, "1F0", 40, 50)};
  const auto m = compute_metrics(t);
  const auto r1 = gaps_of(m, 1), r3 = gaps_of(m, 3);
  REQUIRE(!r1.empty());
  REQUIRE(!r3.empty());
  CHECK(r1[0].waited_rank == 0);
  CHECK(r3[0].cause == idle_cause::activation);
  CHECK(r3[0].waited_rank == 2); // replica 1's stage 0, not replica 0's
  CHECK(r3[0].waited_end_us == 35);
  // Read as one pipeline, rank 3's 1F0 would wait for the first 0F0 the trace holds.
  t.replicas = 1;
  CHECK(gaps_of(compute_metrics(t), 3)[0].waited_rank == 0);
}

TEST_CASE("idle gaps: with two dependencies inside a gap, the one that ended last names the cause", "[traces][metrics]") {
  // 1B0 on rank 0 (a stand-in lane) needs 1F0 and 2B0. Which arrived last decides gradient or local.
  auto gap = [](double f_end, double grad_end) {
    trace t;
    t.num_ranks = 3;
    t.events = {ev(0, "0F0", 0, 1), ev(1, "1F0", f_end - 1, f_end), ev(2, "2F0", 20, 21), ev(2, "2B0", grad_end - 1, grad_end),
                ev(0, "1B0", 60, 62)};
    const auto m = compute_metrics(t);
    for (const auto& g : m.gaps)
      if (g.rank == 0 && g.next && to_string(*g.next) == "1B0")
        return g;
    FAIL("no gap before 1B0");
    return idle_gap{};
  };
  const auto grad = gap(30, 50); // the gradient came last
  CHECK(grad.cause == idle_cause::gradient);
  CHECK(to_string(*grad.waited_for) == "2B0");
  CHECK(grad.waited_rank == 2);
  const auto own = gap(55, 50); // its own forward, run on another lane, came last
  CHECK(own.cause == idle_cause::local);
  CHECK(to_string(*own.waited_for) == "1F0");
  CHECK(own.waited_rank == 1);
}

TEST_CASE("diff: an action measured as taking no time adds to the totals but not to the mean relative error",
          "[traces][diff]") {
  trace predicted, measured;
  predicted.num_ranks = measured.num_ranks = 1;
  predicted.events = {ev(0, "0F0", 0, 10), ev(0, "0F1", 10, 20)};
  measured.events = {ev(0, "0F0", 0, 8), ev(0, "0F1", 8, 8)}; // 0F1 too short for the clock: 0 us
  const auto d = diff_traces(predicted, measured);
  REQUIRE(d.kinds.size() == 1);
  CHECK(d.kinds[0].matched == 2);
  CHECK(d.kinds[0].measured_us == Approx(8));
  CHECK(d.kinds[0].mean_abs_relative_error == Approx(2.0 / 8.0)); // 0F0 alone; 0F1 has no ratio
  REQUIRE(d.ranks.size() == 1);
  CHECK(d.ranks[0].mean_abs_relative_error == Approx(2.0 / 8.0));
}

TEST_CASE("a validator timeline becomes a trace in microseconds, with no bytes and no peer", "[traces][metrics]") {
  evaluation ev;
  ev.ranks = {{{parse_action("0F0"), 0, 1}, {parse_action("0B0"), 3, 5}}, {{parse_action("1F0"), 1, 2}}};
  ev.makespan = 5;
  const trace t = trace_from_evaluation(ev, "hand", 250.0, event_source::measured);
  CHECK(t.run == "hand");
  CHECK(t.num_ranks == 2);
  REQUIRE(t.events.size() == 3);
  CHECK(t.events[1].rank == 0);
  CHECK(t.events[1].act == parse_action("0B0"));
  CHECK(t.events[1].start_us == 750);
  CHECK(t.events[1].end_us == 1250);
  CHECK(t.events[2].rank == 1);
  for (const auto& e : t.events) {
    CHECK(e.bytes == 0);
    CHECK(e.peer == -1);
    CHECK(e.source == event_source::measured);
  }
}

TEST_CASE("the summary counts and times every kind, forwards included", "[traces][metrics]") {
  const trace t = gpipe4();
  const auto text = format_summary(t, compute_metrics(t));
  CHECK(text.find("per kind:  F x16 16000.000 us  B x16 32000.000 us\n") != std::string::npos);
  // Idle time per cause, every cause named; GPipe R=4 M=4 idles 9 units per rank, 36000 us in all.
  CHECK(text.find("idle by cause:  activation ") != std::string::npos);
  CHECK(text.find(" drain ") != std::string::npos);
  CHECK(text.find("?") == std::string::npos);
  double idle = 0;
  for (const auto& g : compute_metrics(t).gaps)
    idle += g.duration_us();
  CHECK(idle == Approx(36000));
}

TEST_CASE("a one-rank step shorter than a microsecond, events out of time order: exact metrics",
          "[traces][metrics]") {
  trace t;
  t.num_ranks = 1;
  t.events = {ev(0, "0B0", 0.25, 0.5), ev(0, "0F0", 0, 0.125)}; // the last to end comes first in the file
  auto m = compute_metrics(t);
  CHECK(m.step_time_us == 0.5);
  CHECK(m.utilisation == Approx(0.75));
  CHECK(m.bubble_fraction == Approx(0.25));
  REQUIRE(m.ranks.size() == 1);
  CHECK(m.ranks[0].utilisation == Approx(0.75));
  CHECK(m.ranks[0].bubble_fraction == Approx(0.25));
  CHECK(m.critical_path == std::vector<std::size_t>{1, 0}); // in time order: 0F0, then 0B0
  CHECK(m.critical_path_busy_us == Approx(0.375));

  // A second rank that ran nothing is idle (drain) for the whole step and halves the utilisation.
  t.num_ranks = 2;
  m = compute_metrics(t);
  CHECK(m.utilisation == Approx(0.375));
  REQUIRE(m.ranks.size() == 2);
  CHECK(m.ranks[1].busy_us == 0);
  const auto it = std::find_if(m.gaps.begin(), m.gaps.end(), [](const idle_gap& g) { return g.rank == 1; });
  REQUIRE(it != m.gaps.end());
  CHECK(it->cause == idle_cause::drain);
  CHECK(it->start_us == 0);
  CHECK(it->end_us == 0.5);
}

TEST_CASE("critical path: when a dependency and the rank's previous action end together, the dependency is taken",
          "[traces][metrics]") {
  // 1F0 starts at 10, when both its input 0F0 (rank 0) and 1F1 before it on rank 1 end.
  trace t;
  t.num_ranks = 2;
  t.events = {ev(0, "0F0", 0, 10), ev(1, "1F1", 0, 10), ev(1, "1F0", 10, 20)};
  auto m = compute_metrics(t);
  CHECK(m.critical_path == std::vector<std::size_t>{0, 2});
  CHECK(m.critical_path_busy_us == 20);
  // With 0F0 done a microsecond earlier, the rank's own order is what held 1F0 back.
  t.events[0].end_us = 9;
  m = compute_metrics(t);
  CHECK(m.critical_path == std::vector<std::size_t>{1, 2});
}

TEST_CASE("critical path: a producer recorded as ending up to 1e-9 us after its consumer starts still precedes it",
          "[traces][metrics]") {
  // At a start of 0 the allowance is 1e-9 * (1 + 0) us, the bound included.
  trace t;
  t.num_ranks = 2;
  t.events = {ev(0, "0F0", -5, 1e-9), ev(1, "1F0", 0, 10)};
  auto m = compute_metrics(t);
  CHECK(m.critical_path == std::vector<std::size_t>{0, 1});
  // Twice the allowance: 0F0 ended after 1F0 started, so it did not hold 1F0 back.
  t.events[0].end_us = 2e-9;
  m = compute_metrics(t);
  CHECK(m.critical_path == std::vector<std::size_t>{1});
}

TEST_CASE("a trace whose events take no time: no utilisation, no bubble, no gaps, not NaN", "[traces][metrics]") {
  trace t;
  t.num_ranks = 3; // rank 2 ran nothing
  t.events = {ev(0, "0F0", 5, 5), ev(1, "1F0", 5, 5)};
  const auto m = compute_metrics(t);
  CHECK(m.step_time_us == 0);
  CHECK(m.utilisation == 0);
  CHECK(m.bubble_fraction == 0);
  REQUIRE(m.ranks.size() == 3);
  for (const auto& r : m.ranks) {
    INFO("rank " << r.rank);
    CHECK(r.busy_us == 0);
    CHECK(r.utilisation == 0);
    CHECK(r.bubble_fraction == 0);
  }
  CHECK(m.gaps.empty());
}

TEST_CASE("diff: traces with different rank counts get a row for every rank of either", "[traces][diff]") {
  trace predicted, measured;
  predicted.num_ranks = 2;
  predicted.events = {ev(0, "0F0", 0, 10), ev(1, "1F0", 10, 20)};
  measured.num_ranks = 3;
  measured.events = {ev(0, "0F0", 0, 10), ev(1, "1F0", 10, 20), ev(2, "2F0", 20, 30)};
  for (const bool swapped : {false, true}) {
    INFO("swapped " << swapped);
    const auto d = swapped ? diff_traces(measured, predicted) : diff_traces(predicted, measured);
    CHECK(d.ranks.size() == 3);
    CHECK(d.matched == 2);
    CHECK((swapped ? d.only_predicted : d.only_measured) == 1);
  }
}

namespace {
trace two_ranks_in_units(double unit) {
  // Rank 0 busy 1 of 4 units, rank 1 busy 3 of 4.
  evaluation ev;
  ev.ranks = {{{parse_action("0F0"), 0, unit}},
              {{parse_action("1F0"), unit, 2 * unit}, {parse_action("1B0"), 2 * unit, 4 * unit}}};
  ev.makespan = 4 * unit;
  return trace_from_evaluation(ev, "two ranks", 1.0);
}
} // namespace

TEST_CASE("a timeline's bubble is idle over the step, per rank and overall, at any time scale", "[traces][metrics]") {
  for (double unit : {1.0, 0.125}) {
    INFO(unit);
    const auto m = compute_metrics(two_ranks_in_units(unit));
    CHECK(m.ranks[0].bubble_fraction == Approx(0.75));
    CHECK(m.ranks[1].bubble_fraction == Approx(0.25));
    CHECK(m.bubble_fraction == Approx(0.5));
    // The summary gives the same numbers without gaps or a critical path.
    const auto s = compute_metrics(two_ranks_in_units(unit), metrics_depth::summary);
    CHECK(s.bubble_fraction == m.bubble_fraction);
    CHECK(s.ranks[1].busy_us == m.ranks[1].busy_us);
    CHECK(s.ranks[1].first_start_us == unit);
    CHECK(s.ranks[1].last_end_us == 4 * unit);
    CHECK(s.gaps.empty());
    CHECK(s.critical_path.empty());
    CHECK_FALSE(m.gaps.empty());
  }
}

TEST_CASE("steady bubble: idle inside each rank's span, leaving out actions that take no time and idle ranks",
          "[traces][metrics]") {
  const action f = parse_action("0F0"), b = parse_action("0B0"), u = parse_action("0U");
  evaluation ev;
  ev.ranks = {
      // Span 2..7 (the zero-length actions at 0 and 9 do not stretch it), busy 1 + 2: idle 2.
      {{u, 0, 0}, {f, 2, 3}, {b, 5, 7}, {u, 9, 9}},
      {},          // no actions: no span
      {{f, 4, 4}}, // only an action that takes no time: no span
      {{f, 1, 5}}, // busy all its span of 4
  };
  ev.makespan = 9;
  CHECK(compute_metrics(trace_from_evaluation(ev, "x", 1.0)).steady_bubble_fraction == Approx(2.0 / 9.0));
  ev.ranks = {{}, {{f, 4, 4}}}; // only the idle ranks left: nothing to measure
  CHECK(compute_metrics(trace_from_evaluation(ev, "x", 1.0)).steady_bubble_fraction == 0);
}

TEST_CASE("GPipe and 1F1B under unit costs: bubble (p-1)/(m+p-1) per rank and overall", "[traces][metrics]") {
  for (auto name : {"gpipe", "1f1b"})
    for (int p : {1, 2, 3, 4, 8})
      for (int m : {8, 9, 16, 32}) {
        INFO(name << " p=" << p << " m=" << m);
        const auto s = make_schedule(schedule_options{.name = name, .num_ranks = p, .num_microbatches = m});
        const auto mt = compute_metrics(trace_from_evaluation(evaluate(s, unit_costs{}), s.name, 1.0));
        CHECK(mt.bubble_fraction == Approx(double(p - 1) / (m + p - 1)).epsilon(1e-12));
        for (int r = 0; r < p; ++r)
          CHECK(mt.ranks[static_cast<std::size_t>(r)].bubble_fraction ==
                Approx(double(p - 1) / (m + p - 1)).epsilon(1e-12));
      }
}

TEST_CASE("ZB-H2 and ZB-V reach zero bubble in steady state, 1F1B does not", "[traces][metrics]") {
  for (int p : {2, 4, 8})
    for (int m : {2 * p - 1, 2 * p, 32}) {
      INFO("p=" << p << " m=" << m);
      auto steady = [&](const char* name) {
        const auto s = make_schedule(schedule_options{.name = name, .num_ranks = p, .num_microbatches = m});
        return compute_metrics(trace_from_evaluation(evaluate(s, unit_costs{}), s.name, 1.0)).steady_bubble_fraction;
      };
      CHECK(steady("zb-h2") == 0.0);
      CHECK(steady("zbv") == 0.0);
      CHECK(steady("1f1b") > 0.0);
    }
}

TEST_CASE("the runtime's per-action overhead is the mean gap whose inputs were already there", "[traces][metrics]") {
  // One rank, one stage: F0 0..10, gap 3, F1 13..23, gap 5, B1 28..38, gap 4, B0 42..52. Every gap's inputs
  // ended before it began (ordering): the mean of 3, 5 and 4 is 4.
  trace t;
  t.num_ranks = 2;
  t.events = {ev(0, "0F0", 0, 10), ev(0, "0F1", 13, 23), ev(0, "0B1", 28, 38), ev(0, "0B0", 42, 52)};
  CHECK(action_overhead_us(t) == 4);
  // Gaps closed by a dependency are waiting, not overhead: rank 1's 1F0 waits for 0F0 (ended at 10) and
  // 1F1 for 0F1 (ended at 23, inside the gap 12..100). Rank 0's drain after 52 is not overhead either.
  t.events.push_back(ev(1, "1F0", 11, 12));
  t.events.push_back(ev(1, "1F1", 100, 101));
  CHECK(action_overhead_us(t) == 4);
  // Rank 1's gap 101..140 before 1F2 is overhead: 1F2's input is not in the trace (a partial trace).
  t.events.push_back(ev(1, "1F2", 140, 141));
  CHECK(action_overhead_us(t) == 12.75); // the mean of 3, 5, 4 and 39
  // Nor the gap before a U, where its gate may wait for the replicas' all-reduce.
  t.events.push_back(ev(0, "0U", 90, 91));
  CHECK(action_overhead_us(t) == 12.75);
  // Sends the rank posted in a gap are its own cost (cost_table::send_posting), not overhead: rank 0
  // posts 2 us of sends in the gap 23..28 and 1 us in 38..42 (one of them beginning before the gap).
  t.events.push_back(ev(0, "0SEND_F1", 24, 25));
  t.events.push_back(ev(0, "0SEND_F0", 26, 27));
  t.events.push_back(ev(0, "0SEND_F2", 37.5, 39));
  CHECK(action_overhead_us(t) == Approx((3 + 3 + 3 + 39) / 4.0));
  CHECK(action_overhead_us(trace{}) == 0);
}

TEST_CASE("the gap between steps: first compute start of a step minus the last compute end of the one before",
          "[traces][metrics]") {
  // Two ranks, three steps of one F and one B each; a transfer posted early does not count.
  trace t;
  t.num_ranks = 2;
  for (int k = 0; k < 3; ++k) {
    const double base = 100.0 * k;
    t.events.push_back(ev(0, "0F0", base + 0, base + 10));
    t.events.push_back(ev(1, "1F0", base + 12, base + 20));
    t.events.push_back(ev(1, "1B0", base + 20, base + 30));
    t.events.push_back(ev(0, "0B0", base + 32, base + 40 + k)); // steps 0, 1, 2 end at 40, 141, 242
  }
  t.events.push_back(ev(1, "1RECV_F0", 50, 112)); // rank 1's receive for step 1, posted during the gap
  // Step 1 starts at 100 (gap 60), step 2 at 200 (gap 59): mean 59.5.
  CHECK(step_gap_us(t, 3) == 59.5);
  CHECK(step_gap_us(t, 1) == 0);
  // A rank's own gap, before a step that it starts with stage 0's forward: rank 0's, the same here.
  CHECK(rank_step_gap_us(t, 3) == 59.5);
  // Rank 1's U running past the next step's start: the steps overlap (a negative gap between them),
  // and rank 0 still waits 59.5 after its own end. Rank 1 starts with stage 1, whose input is rank 0's.
  for (int k = 0; k < 3; ++k)
    t.events.push_back(ev(1, "1U", 100.0 * k + 30, 100.0 * k + 105));
  CHECK(step_gap_us(t, 3) == -5);
  CHECK(rank_step_gap_us(t, 3) == 59.5);
  CHECK(rank_step_gap_us(t, 1) == 0);
  CHECK(rank_step_gap_us(trace{}, 3) == 0);
}

TEST_CASE("the median step: from a step's first start to the next one's, the last one's with the mean gap",
          "[traces][metrics]") {
  // One rank, four steps of one F and one B: starts 0, 100, 300 (a stall), 400; each step's actions end
  // 40 us after its start (gaps 60, 160, 60: mean 93.33).
  trace t;
  t.num_ranks = 1;
  for (double base : {0.0, 100.0, 300.0, 400.0}) {
    t.events.push_back(ev(0, "0F0", base, base + 10));
    t.events.push_back(ev(0, "0B0", base + 10, base + 40));
  }
  const auto b = bounds_of_steps(t, 4);
  CHECK(b.first_start_us == std::vector<double>{0, 100, 300, 400});
  CHECK(b.last_end_us == std::vector<double>{40, 140, 340, 440});
  CHECK(step_gap_us(t, 4) == Approx(280.0 / 3));
  // Steps of 100, 200, 100 and 40 + 93.33: the median (of 4, the upper middle) is 133.33.
  CHECK(median_step_us(t, 4) == Approx(40 + 280.0 / 3));
  CHECK(median_step_us(t, 0) == 0);
  CHECK(bounds_of_steps(t, 0).first_start_us.empty());
}

TEST_CASE("per-action overhead over several steps: an action's inputs come from its own step", "[traces][metrics]") {
  // Three steps 100 us apart. Rank 0: 0F0 b..b+10, 3 us of overhead, 0F1 b+13..b+50. Rank 1 waits for
  // each: 1F0 b+30..b+35, 1F1 b+60..b+65. Read step by step, the only gaps whose inputs were there are
  // rank 0's 3 us. Read as one step, steps 1 and 2 find step 0's producers (ended long before) and their
  // waits of 65 and 25 us, and rank 0's 50 us between steps, count too.
  trace t;
  t.num_ranks = 2;
  for (double b : {0.0, 100.0, 200.0}) {
    t.events.push_back(ev(0, "0F0", b, b + 10));
    t.events.push_back(ev(0, "0F1", b + 13, b + 50));
    t.events.push_back(ev(1, "1F0", b + 30, b + 35));
    t.events.push_back(ev(1, "1F1", b + 60, b + 65));
  }
  CHECK(action_overhead_us(t, 3) == 3);
  CHECK(action_overhead_us(t) == Approx(289.0 / 9)); // 3, 3, 3, 25, 25, 50, 50, 65, 65
  // step_range with a count keeps exactly those steps.
  const auto one = step_range(t, 3, 1, 1);
  REQUIRE(one.events.size() == 4);
  CHECK(one.events.front().start_us >= 100);
  for (const auto& e : one.events)
    CHECK(e.end_us <= 165);
}

TEST_CASE("the median of measured values is one that occurred: the upper middle of an even count", "[traces][metrics]") {
  CHECK(median_of({5, 1, 3}) == 3);
  CHECK(median_of({4, 1, 3, 2}) == 3);
  CHECK(median_of({7}) == 7);
  CHECK(median_of({}) == 0);
}

TEST_CASE("why_not_comparable: one schedule's step is comparable, more steps or another size is not", "[traces][diff]") {
  const auto one = make_schedule({.name = "1f1b", .num_ranks = 2, .num_microbatches = 4, .optimizer_steps = false});
  const trace step = trace_from_evaluation(evaluate(one, unit_costs{}), "one step", 1000);
  CHECK(why_not_comparable(step, step).empty());
  trace slower = step; // the same actions, other times: comparable
  for (auto& e : slower.events)
    e.end_us += 10;
  CHECK(why_not_comparable(step, slower).empty());
  trace three = step; // the same step three times, as a measured run's whole trace
  for (int k = 1; k < 3; ++k)
    for (const auto& e : step.events)
      three.events.push_back(e);
  CHECK(why_not_comparable(step, three) ==
        "their compute actions differ (16 and 48): the second looks like 3 steps; compare one step (a run's "
        "--step-trace file)");
  const auto other = make_schedule({.name = "1f1b", .num_ranks = 4, .num_microbatches = 4, .optimizer_steps = false});
  CHECK(why_not_comparable(step, trace_from_evaluation(evaluate(other, unit_costs{}), "R=4", 1000)) ==
        "the traces have 2 and 4 ranks");
}

TEST_CASE("a trace of several steps is summarised per step", "[traces][summary]") {
  const auto one = make_schedule({.name = "gpipe", .num_ranks = 2, .num_microbatches = 2, .optimizer_steps = false});
  const trace step = trace_from_evaluation(evaluate(one, unit_costs{}), "one step", 1000);
  CHECK(steps_in(step) == 1);
  CHECK(format_steps(step).empty());
  // GPipe R=2 M=2 under unit costs: F=1, B=2 -> a step of 1+1+1 + 2+2+2 = 9 units, bubble 1 - 12/18 = 1/3.
  // Three steps 1000 us apart, the second twice as slow.
  trace three;
  three.num_ranks = 2;
  double at = 0;
  for (int k = 0; k < 3; ++k) {
    const double scale = k == 1 ? 2 : 1;
    for (auto e : step.events) {
      e.start_us = at + e.start_us * scale, e.end_us = at + e.end_us * scale;
      three.events.push_back(e);
    }
    at += 9000 * scale + 1000;
  }
  CHECK(steps_in(three) == 3);
  const std::string text = format_steps(three);
  CHECK_THAT(text, Catch::Contains("steps: 3"));
  CHECK_THAT(text, Catch::Contains("   0     9000.000  0.3333\n   1    18000.000  0.3333\n   2     9000.000  0.3333\n"));
  CHECK_THAT(text, Catch::Contains("step time: mean 12000.000 us, min 9000.000 us, max 18000.000 us"));
}
