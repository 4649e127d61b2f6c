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

TEST_CASE("GPipe and 1F1B: makespan (m+p-1)(F+B) under unit costs") {
  for (auto name : {"gpipe", "1f1b"})
    for (int p : {1, 2, 3, 4, 8})
      for (int m : {8, 9, 16, 32}) {
        INFO(name << " p=" << p << " m=" << m);
        auto e = evaluate(make(name, p, m), unit_costs{});
        CHECK(e.makespan == (m + p - 1) * 3.0);
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

TEST_CASE("ZB-H2 and ZB-V: makespans with only the first forward's ramp") {
  for (int p : {2, 4, 8})
    for (int m : {2 * p - 1, 2 * p, 32}) {
      INFO("p=" << p << " m=" << m);
      auto h2 = evaluate(make("zb-h2", p, m), unit_costs{});
      CHECK(h2.makespan == 3.0 * m + (p - 1)); // only the unavoidable ramp of the first forward
      auto h2_peaks = peak_in_flight(make("zb-h2", p, m));
      CHECK(*std::max_element(h2_peaks.begin(), h2_peaks.end()) <= 2 * p - 1);
      auto zbv = evaluate(make("zbv", p, m), unit_costs{});
      CHECK(zbv.makespan == 6.0 * m + (p - 1));
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

namespace {

// A rank's actions in PyTorch's spelling, comma-separated (the CSV row), for readable comparisons.
std::string row(const std::vector<action>& list) {
  std::string out;
  for (const auto& a : list)
    out += (out.empty() ? "" : ",") + to_string(a);
  return out;
}

void check_order(const std::string& name, int ranks, int microbatches, int v, const std::vector<std::string>& expected) {
  const auto s = make(name, ranks, microbatches, v);
  REQUIRE(s.ranks.size() == expected.size());
  for (std::size_t r = 0; r < expected.size(); ++r) {
    INFO(name << " R=" << ranks << " M=" << microbatches << " V=" << v << " rank " << r);
    CHECK(row(s.ranks[r]) == expected[r]);
  }
}

} // namespace

// The expected orders below were worked out by hand from the published definitions (torch 2.11's
// ScheduleLoopedBFS, ScheduleInterleavedZeroBubble and ScheduleDualPipeV, step by step; comments name the
// steps) and agree with torch.distributed.pipelining's pipeline_order, idle slots dropped, OVERLAP_F_B
// pairs written as their F then their B.

TEST_CASE("looped-bfs order: every micro-batch through each local stage, backwards in reverse stage and micro-batch order") {
  // R=2, V=2: rank 0 holds stages 0 and 2, rank 1 holds 1 and 3.
  check_order("looped-bfs", 2, 3, 2,
              {"0F0,0F1,0F2,2F0,2F1,2F2,2B2,2B1,2B0,0B2,0B1,0B0",
               "1F0,1F1,1F2,3F0,3F1,3F2,3B2,3B1,3B0,1B2,1B1,1B0"});
  // V=3: stages 0, 2, 4 and 1, 3, 5.
  check_order("looped-bfs", 2, 2, 3,
              {"0F0,0F1,2F0,2F1,4F0,4F1,4B1,4B0,2B1,2B0,0B1,0B0",
               "1F0,1F1,3F0,3F1,5F0,5F1,5B1,5B0,3B1,3B0,1B1,1B0"});
}

TEST_CASE("interleaved-zb order (ZB1P) with V=2 and V=3 matches the published definition") {
  // R=2, M=4, V=2: rounds of 2 micro-batches; warm-up (V-1)*2 + (R-1-r) forwards; rank r runs each W r
  // backwards late (rank 0 right after its I, rank 1 one backward later), the rest trail at the end.
  check_order("interleaved-zb", 2, 4, 2,
              {"0F0,0F1,2F0,2F1,2I0,2W0,0F2,2I1,2W1,0F3,0I0,0W0,2F2,0I1,0W1,2F3,2I2,2W2,2I3,2W3,0I2,0W2,0I3,0W3",
               "1F0,1F1,3F0,3I0,3F1,3I1,3W0,1F2,1I0,3W1,1F3,1I1,1W0,3F2,3I2,1W1,3F3,3I3,3W2,1I2,3W3,1I3,1W2,1W3"});
  // R=2, M=2, V=3: one round of 2; warm-up min(2*2 + (R-1-r), 6) = 5 and 4.
  check_order("interleaved-zb", 2, 2, 3,
              {"0F0,0F1,2F0,2F1,4F0,4F1,4I0,4W0,4I1,4W1,2I0,2W0,2I1,2W1,0I0,0W0,0I1,0W1",
               "1F0,1F1,3F0,3F1,5F0,5I0,5F1,5I1,5W0,3I0,5W1,3I1,3W0,1I0,3W1,1I1,1W0,1W1"});
}

TEST_CASE("dualpipev order matches the published definition step by step, cool-down included") {
  // Rank r holds s0 = r and s1 = 2R-1-r. Steps: 1 F(s0) x 2(R-r-1); 2 [F(s0) F(s1)] x (r+1);
  // 3 [I(s1) W(oldest) F(s1)] x (R-r-1); 4 [F(s0) B(s1), F(s1) B(s0)] x (M-2R+r+1); 5 [B(s1), F(s1) B(s0)] x
  // (R-r-1); 6 cool-down [B(s1) B(s0)] x (r+1), switching to I from the middle pair (before its s1 on odd
  // ranks, between s1 and s0 on even ones); 7 [W(oldest) I(s0)] x (R-r-1); 8 W(oldest) x (r+1).
  check_order("dualpipev", 2, 5, 2,
              {"0F0,0F1,0F2,3F0,3I0,3W0,3F1,0F3,3B1,3F2,0B0,0F4,3B2,3F3,0B1,3B3,3F4,0B2,3B4,0I3,0W3,0I4,0W4",
               "1F0,2F0,1F1,2F1,1F2,2B0,2F2,1B0,1F3,2B1,2F3,1B1,1F4,2B2,2F4,1B2,2B3,1B3,2I4,1I4,2W4,1W4"});
  check_order("dualpipev", 3, 6, 2,
              {"0F0,0F1,0F2,0F3,0F4,5F0,5I0,5W0,5F1,5I1,5W1,5F2,0F5,5B2,5F3,0B0,5B3,5F4,0B1,5B4,5F5,0B2,5B5,0I3,0W3,"
               "0I4,0W4,0I5,0W5",
               "1F0,1F1,1F2,4F0,1F3,4F1,4I0,4W0,4F2,1F4,4B1,4F3,1B0,1F5,4B2,4F4,1B1,4B3,4F5,1B2,4B4,1B3,4I5,1I4,4W5,"
               "1I5,1W4,1W5",
               "2F0,3F0,2F1,3F1,2F2,3F2,2F3,3B0,3F3,2B0,2F4,3B1,3F4,2B1,2F5,3B2,3F5,2B2,3B3,2B3,3B4,2I4,3I5,2I5,2W4,"
               "3W5,2W5"});
  check_order("dualpipev", 4, 8, 2,
              {"0F0,0F1,0F2,0F3,0F4,0F5,0F6,7F0,7I0,7W0,7F1,7I1,7W1,7F2,7I2,7W2,7F3,0F7,7B3,7F4,0B0,7B4,7F5,0B1,7B5,"
               "7F6,0B2,7B6,7F7,0B3,7B7,0I4,0W4,0I5,0W5,0I6,0W6,0I7,0W7",
               "1F0,1F1,1F2,1F3,1F4,6F0,1F5,6F1,6I0,6W0,6F2,6I1,6W1,6F3,1F6,6B2,6F4,1B0,1F7,6B3,6F5,1B1,6B4,6F6,1B2,"
               "6B5,6F7,1B3,6B6,1B4,6I7,1I5,6W7,1I6,1W5,1I7,1W6,1W7",
               "2F0,2F1,2F2,5F0,2F3,5F1,2F4,5F2,5I0,5W0,5F3,2F5,5B1,5F4,2B0,2F6,5B2,5F5,2B1,2F7,5B3,5F6,2B2,5B4,5F7,"
               "2B3,5B5,2B4,5B6,2I5,5I7,2I6,2W5,2I7,5W7,2W6,2W7",
               "3F0,4F0,3F1,4F1,3F2,4F2,3F3,4F3,3F4,4B0,4F4,3B0,3F5,4B1,4F5,3B1,3F6,4B2,4F6,3B2,3F7,4B3,4F7,3B3,4B4,"
               "3B4,4B5,3B5,4I6,3I6,4I7,3I7,4W6,3W6,4W7,3W7"});
}
