#include <catch2/catch.hpp>

#include <algorithm>

#include "pippy/core/error.hpp"
#include "pippy/core/generators.hpp"
#include "pippy/core/validate.hpp"

using namespace pippy;

namespace {

schedule make(const std::string& name, int ranks, int microbatches, int stages_per_rank = 0) {
  return make_schedule({.name = name, .num_ranks = ranks, .num_microbatches = microbatches,
                        .stages_per_rank = stages_per_rank, .optimizer_steps = false});
}

std::string rejection(const schedule_options& o) {
  try {
    make_schedule(o);
  } catch (const input_error& e) {
    return e.what();
  }
  return "accepted";
}

} // namespace

TEST_CASE("every generator passes the validator over a sweep of sizes, compute-only and lowered") {
  for (auto name : schedule_names()) {
    int valid = 0;
    for (int ranks : {1, 2, 3, 4, 5, 8})
      for (int microbatches : {1, 2, 3, 4, 5, 7, 8, 12, 16})
        for (int v : {1, 2, 3, 4}) {
          schedule s;
          try {
            s = make_schedule({.name = std::string(name), .num_ranks = ranks, .num_microbatches = microbatches,
                               .stages_per_rank = v});
          } catch (const input_error&) {
            continue; // a documented constraint; its messages are tested below
          }
          INFO(name << " R=" << ranks << " M=" << microbatches << " V=" << v);
          auto v1 = find_violation(s);
          CHECK_FALSE(v1.has_value());
          if (v1)
            FAIL(v1->message());
          auto v2 = find_violation(add_communication(s));
          CHECK_FALSE(v2.has_value());
          if (v2)
            FAIL(v2->message());
          ++valid;
        }
    INFO(name);
    CHECK(valid >= 20);
  }
}

TEST_CASE("GPipe and 1F1B: makespan (m+p-1)(F+B) and bubble (p-1)/(m+p-1) under unit costs") {
  for (auto name : {"gpipe", "1f1b"})
    for (int p : {1, 2, 3, 4, 8})
      for (int m : {8, 9, 16, 32}) {
        INFO(name << " p=" << p << " m=" << m);
        auto e = evaluate(make(name, p, m), unit_costs{});
        CHECK(e.makespan == (m + p - 1) * 3.0);
        CHECK(e.bubble_fraction() == Approx(double(p - 1) / (m + p - 1)).epsilon(1e-12));
        for (int r = 0; r < p; ++r)
          CHECK(e.bubble_fraction(r) == Approx(double(p - 1) / (m + p - 1)).epsilon(1e-12));
      }
}

TEST_CASE("peak in-flight activations: m for GPipe, at most p - rank for 1F1B") {
  for (int p : {2, 4, 8})
    for (int m : {8, 16}) {
      auto gpipe_peaks = peak_in_flight(make("gpipe", p, m));
      auto one_f_peaks = peak_in_flight(make("1f1b", p, m));
      for (int r = 0; r < p; ++r) {
        CHECK(gpipe_peaks[r] == m);
        CHECK(one_f_peaks[r] == std::min(m, p - r));
      }
    }
}

TEST_CASE("interleaved 1F1B with v stages per rank cuts the bubble by v") {
  for (int p : {2, 4})
    for (int v : {2, 3, 4})
      for (int m : {p, 2 * p, 4 * p}) {
        INFO("p=" << p << " v=" << v << " m=" << m);
        auto e = evaluate(make("interleaved-1f1b", p, m, v), unit_costs{});
        // Each chunk costs F = 1, B = 2: the work of a 1F1B stage split v ways.
        CHECK(e.makespan == (m * v + p - 1) * 3.0);
        const double one_f_one_b_bubble = double(p - 1) * 3.0 * v; // same model on 1F1B, in chunk units
        CHECK(e.makespan - m * v * 3.0 == Approx(one_f_one_b_bubble / v));
      }
}

TEST_CASE("ZB-H1 keeps 1F1B's peak memory with a third of its bubble") {
  for (int p : {2, 3, 4, 8})
    for (int m : {p, 2 * p, 16, 32}) {
      INFO("p=" << p << " m=" << m);
      auto zb = make("zb-h1", p, m);
      auto e = evaluate(zb, unit_costs{});
      // m(F+I+W) + (p-1)(F+I-W) with F = I = W = 1.
      CHECK(e.makespan == 3.0 * m + (p - 1));
      auto base = evaluate(make("1f1b", p, m), unit_costs{});
      const double bubble = e.makespan - 3.0 * m, base_bubble = base.makespan - 3.0 * m;
      CHECK(bubble * 3 == base_bubble);
      auto peaks = peak_in_flight(zb);
      CHECK(*std::max_element(peaks.begin(), peaks.end()) == p);
    }
}

TEST_CASE("ZB-H2 and ZB-V reach zero bubble in steady state") {
  for (int p : {2, 4, 8})
    for (int m : {2 * p - 1, 2 * p, 32}) {
      INFO("p=" << p << " m=" << m);
      auto h2 = evaluate(make("zb-h2", p, m), unit_costs{});
      CHECK(h2.makespan == 3.0 * m + (p - 1)); // only the unavoidable ramp of the first forward
      CHECK(h2.steady_bubble_fraction() == 0.0);
      auto h2_peaks = peak_in_flight(make("zb-h2", p, m));
      CHECK(*std::max_element(h2_peaks.begin(), h2_peaks.end()) <= 2 * p - 1);
      auto zbv = evaluate(make("zbv", p, m), unit_costs{});
      CHECK(zbv.makespan == 6.0 * m + (p - 1));
      CHECK(zbv.steady_bubble_fraction() == 0.0);
    }
}

TEST_CASE("V-shaped schedules put stages r and 2R-1-r on rank r") {
  auto s = make("zbv", 4, 8);
  CHECK(s.shape.placement == placement_style::v_shape);
  CHECK(s.shape.stages_of(0) == std::vector<int>{0, 7});
  CHECK(s.shape.stages_of(3) == std::vector<int>{3, 4});
  auto d = make("dualpipev", 4, 8);
  CHECK(d.shape.stages_of(1) == std::vector<int>{1, 6});
}

TEST_CASE("looped placement: stage s on rank s mod R") {
  auto s = make("interleaved-1f1b", 4, 8, 2);
  CHECK(s.shape.num_stages() == 8);
  CHECK(s.shape.stages_of(1) == std::vector<int>{1, 5});
  for (int st = 0; st < 8; ++st)
    CHECK(s.shape.rank_of(st) == st % 4);
}

TEST_CASE("the optimizer step ends every rank, one U per local stage") {
  auto s = make_schedule({.name = "interleaved-1f1b", .num_ranks = 2, .num_microbatches = 4, .stages_per_rank = 2});
  for (int r = 0; r < 2; ++r) {
    const auto& list = s.ranks[r];
    REQUIRE(list.size() >= 2);
    CHECK(list[list.size() - 2] == action{r, action_kind::optimizer_step, no_microbatch});
    CHECK(list.back() == action{r + 2, action_kind::optimizer_step, no_microbatch});
  }
  CHECK_FALSE(find_violation(s).has_value());
}

TEST_CASE("documented constraints are checked with a message naming the option") {
  CHECK(rejection({.name = "pipedream", .num_ranks = 2, .num_microbatches = 4}) ==
        "schedule: unknown name 'pipedream' (known: gpipe, 1f1b, interleaved-1f1b, looped-bfs, interleaved-zb, zbv, "
        "dualpipev, zb-h1, zb-h2)");
  CHECK(rejection({.name = "1f1b", .num_ranks = 4, .num_microbatches = 2}) ==
        "microbatches: 1f1b needs at least as many micro-batches as stages (4), got 2");
  CHECK(rejection({.name = "1f1b", .num_ranks = 4, .num_microbatches = 8, .stages_per_rank = 2}) ==
        "stages-per-rank: schedule '1f1b' runs one stage per rank (got 2)");
  CHECK(rejection({.name = "interleaved-1f1b", .num_ranks = 4, .num_microbatches = 9, .stages_per_rank = 2}) ==
        "microbatches: interleaved-1f1b needs a multiple of the number of rounds (2 = max(1, microbatches / ranks)), "
        "got 9");
  CHECK(rejection({.name = "zbv", .num_ranks = 4, .num_microbatches = 8, .stages_per_rank = 3}) ==
        "stages-per-rank: zbv needs exactly 2 stages per rank (got 3)");
  CHECK(rejection({.name = "dualpipev", .num_ranks = 4, .num_microbatches = 6}) ==
        "microbatches: dualpipev needs at least as many micro-batches as stages (8), got 6");
  CHECK(rejection({.name = "gpipe", .num_ranks = 0, .num_microbatches = 4}) == "ranks must be at least 1 (got 0)");
  CHECK(rejection({.name = "gpipe", .num_ranks = 2, .num_microbatches = 0}) ==
        "microbatches must be at least 1 (got 0)");
}

TEST_CASE("forward_only keeps each schedule's forwards in order: valid, S*M of them, only SEND_F/RECV_F") {
  for (auto name : schedule_names())
    for (int ranks : {1, 2, 4})
      for (int microbatches : {4, 8}) {
        schedule s;
        try {
          s = make_schedule({.name = std::string(name), .num_ranks = ranks, .num_microbatches = microbatches});
        } catch (const input_error&) {
          continue;
        }
        INFO(name << " R=" << ranks << " M=" << microbatches);
        const schedule f = forward_only(s);
        CHECK(f.name == std::string(name) + "-forward");
        std::size_t forwards = 0;
        for (std::size_t r = 0; r < f.ranks.size(); ++r) {
          std::vector<action> kept;
          for (const auto& a : s.ranks[r])
            if (a.kind == action_kind::forward)
              kept.push_back(a);
          CHECK(f.ranks[r] == kept);
          forwards += kept.size();
        }
        CHECK(forwards == static_cast<std::size_t>(s.shape.num_stages() * microbatches));
        const auto lowered = add_communication(f);
        auto v = find_violation(lowered);
        if (v)
          FAIL(v->message());
        for (const auto& rank : lowered.ranks)
          for (const auto& a : rank)
            CHECK((a.kind == action_kind::forward || a.kind == action_kind::send_f || a.kind == action_kind::recv_f));
      }
}
