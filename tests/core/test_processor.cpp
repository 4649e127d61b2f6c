// The compute rule (shared_processor): an action takes its cost of its processor's time, the newest
// action on a shared CPU runs first, arrivals inside an action lengthen it; ends that do not depend on
// the order in which starts and arrivals become known; the rule read backwards (work_alone); and the
// cost file's shared_cpus.
#include <catch2/catch.hpp>

#include "pippy/core/error.hpp"
#include "pippy/core/processor.hpp"

using namespace pippy;

TEST_CASE("processor: alone, an action takes its cost and each arrival strictly inside it", "[core][processor]") {
  shared_processor p(1, 2.5);
  p.arrive(0, 1); // before the action: between actions, free
  CHECK(p.begin(0, 1, 10) == 11); // one at its start is free too
  p.arrive(0, 5);
  CHECK(p.end(0) == 13.5);
  p.arrive(0, 12); // inside only because the first lengthened it
  CHECK(p.end(0) == 16);
  p.arrive(0, 16); // at its end: free
  CHECK(p.end(0) == 16);
  p.finish(0);
  p.arrive(0, 17);
  CHECK(p.begin(0, 20, 4) == 24); // 17 arrived between its actions
  p.arrive(0, 19); // learnt after the start, from before it: still between actions
  CHECK(p.end(0) == 24);
  shared_processor two(2, 1);
  two.begin(0, 10, 5);
  two.arrive(0, 8);
  two.arrive(1, 9);
  CHECK(two.begin(1, 12, 1) == 13); // 9 came before rank 1's action
  CHECK(two.end(0) == 16);          // and 8 before rank 0's
}

TEST_CASE("processor: on a shared CPU the newest action runs first, the one it interrupted waits", "[core][processor]") {
  SECTION("two ranks") {
    shared_processor p(2);
    CHECK(p.begin(0, 0, 10) == 10);
    CHECK(p.begin(1, 4, 3) == 7); // alone from 4 to 7
    CHECK(p.end(0) == 13);        // waited 3
    p.finish(1);
    CHECK(p.begin(1, 8, 1) == 9);
    CHECK(p.end(0) == 14);
    p.finish(1);
    p.finish(0);
    CHECK(p.begin(1, 20, 2) == 22); // nothing left of the others
  }
  SECTION("three ranks nest, and a suspended action is no one's newcomer") {
    shared_processor p(3);
    p.begin(0, 0, 10);
    p.begin(1, 2, 5);
    CHECK(p.begin(2, 3, 1) == 4);
    CHECK(p.end(1) == 8);  // 5 of its own and 1 of rank 2's
    CHECK(p.end(0) == 16); // 10 of its own and 6 of theirs
  }
  SECTION("the order in which starts become known changes nothing") {
    shared_processor known_late(3);
    known_late.begin(2, 3, 1); // an engine may learn of a later start first
    known_late.begin(1, 2, 5);
    known_late.begin(0, 0, 10);
    CHECK(known_late.end(2) == 4);
    CHECK(known_late.end(1) == 8);
    CHECK(known_late.end(0) == 16);
  }
  SECTION("starts at one time nest in member order") {
    for (const bool low_first : {true, false}) {
      shared_processor p(2);
      if (low_first) {
        p.begin(0, 0, 4);
        p.begin(1, 0, 2);
      } else {
        p.begin(1, 0, 2);
        p.begin(0, 0, 4);
      }
      CHECK(p.end(1) == 2);
      CHECK(p.end(0) == 6);
    }
  }
  SECTION("arrivals lengthen the action they land in, and what it interrupted") {
    shared_processor p(2, 2);
    p.begin(0, 0, 10);
    p.begin(1, 4, 3);
    p.arrive(1, 5);
    CHECK(p.end(1) == 9);
    CHECK(p.end(0) == 15);
    p.arrive(0, 6); // rank 0 is waiting, but its action is not over: charged
    CHECK(p.end(0) == 17);
    CHECK(p.end(1) == 9);
    p.arrive(1, 10); // after rank 1's action: for its next one
    CHECK(p.end(0) == 17);
    p.finish(1);
    CHECK(p.begin(1, 12, 1) == 13); // 10 arrived before it started
    CHECK(p.end(0) == 18);
  }
}

TEST_CASE("processor: work_alone reads the rule backwards", "[core][processor]") {
  // Rank 1 nested inside rank 0; rank 2's action started inside rank 1's while rank 0 waited.
  const std::vector<processor_span> spans{{.start = 0, .end = 16, .member = 0},
                                          {.start = 3, .end = 4, .member = 2},
                                          {.start = 2, .end = 8, .member = 1},
                                          {.start = 20, .end = 22, .member = 1}};
  CHECK(work_alone(spans) == std::vector<double>{10, 1, 5, 2});
  // A suspended action that started first takes nothing from the newcomer.
  CHECK(work_alone({{.start = 0, .end = 15, .member = 0}, {.start = 5, .end = 10, .member = 1}}) ==
        std::vector<double>{10, 5});
  // A newcomer that outlives the action it interrupted (the OS's time slice) is clipped to it.
  CHECK(work_alone({{.start = 0, .end = 10, .member = 0}, {.start = 6, .end = 12, .member = 1}}) ==
        std::vector<double>{6, 6});
}

// The runtime's overhead before an action takes a shared CPU too (the job starts at the decision); a
// rank alone has it as the engine's delay. work_alone reads it back with the same lead.
TEST_CASE("processor: on a shared CPU the per-action overhead is the processor's work", "[core][processor]") {
  cost_table c;
  c.stages = {stage_cost{}, stage_cost{}, stage_cost{}};
  c.shared_cpus = {{0, 1}};
  rank_processors p(c, 3);
  CHECK(p.begin(0, 10, 8, 2) == 18); // decided at 8: its job is [8, 18) while alone
  CHECK(p.begin(1, 14, 4, 2) == 18); // decided at 12: its overhead and cost (6) nest in rank 0's
  CHECK(p.end(0) == 24);              // which waits for them
  CHECK(p.begin(2, 10, 8, 2) == 18);  // alone: the overhead is before `start`, not the processor's
  CHECK(work_alone({{.start = 10, .end = 24, .member = 0}, {.start = 14, .end = 18, .member = 1}}, 2) ==
        std::vector<double>{8, 4});
  // A job that starts inside another's overhead (decided at 9, before rank 0's start at 10) takes
  // its time from it too.
  CHECK(work_alone({{.start = 10, .end = 21, .member = 0}, {.start = 11, .end = 14, .member = 1}}, 2) ==
        std::vector<double>{6, 3});
}

TEST_CASE("processor: the cost file's shared_cpus round-trip, and a bad group names itself", "[core][processor][cost]") {
  cost_table t;
  t.stages = {stage_cost{}, stage_cost{}, stage_cost{}};
  t.shared_cpus = {{0, 2}};
  const auto back = parse_cost_json(to_cost_json(t), "again");
  CHECK(back.shared_cpus == t.shared_cpus);
  CHECK_NOTHROW(back.validate_links(3, "c.json"));
  CHECK_THROWS_WITH(back.validate_links(2, "c.json"), Catch::Contains("c.json: shared_cpus[0]: rank 2 is not below 2 ranks"));
  const std::string stages = R"({"stages":[{"F":1,"B":2},{"F":1,"B":2}],)";
  CHECK_THROWS_WITH(parse_cost_json(stages + R"("shared_cpus":[[0,1],[1]]})", "c.json").validate_links(2, "c.json"),
                    Catch::Contains("c.json: shared_cpus[1] must name at least two ranks"));
  CHECK_THROWS_WITH(parse_cost_json(stages + R"("shared_cpus":[[0,1],[1,0]]})", "c.json").validate_links(2, "c.json"),
                    Catch::Contains("c.json: shared_cpus[1]: rank 1 is in more than one group"));
  CHECK_THROWS_WITH(parse_cost_json(stages + R"("shared_cpus":[[0,-1]]})", "c.json"),
                    Catch::Contains("c.json: shared_cpus[0][1] (a rank)"));
  CHECK_THROWS_WITH(parse_cost_json(stages + R"("shared_cpus":[7]})", "c.json"),
                    Catch::Contains("c.json: shared_cpus[0] must be an array of ranks"));
  CHECK_THROWS_WITH(parse_cost_json(stages + R"("shared_cpus":{"a":1}})", "c.json"), Catch::Contains("shared_cpus"));
}

TEST_CASE("processor: rank_processors gives a shared CPU's ranks one processor", "[core][processor]") {
  cost_table t;
  t.stages = {stage_cost{}, stage_cost{}, stage_cost{}};
  CHECK(rank_processors(t, 3).empty()); // nothing moves an end: the engines take start + cost
  t.shared_cpus = {{2, 0}};
  rank_processors p(t, 3);
  REQUIRE(!p.empty());
  CHECK(p.shared(0));
  CHECK(!p.shared(1));
  CHECK(p.shared(2));
  p.begin(0, 0, 10, 0);
  p.begin(1, 1, 5, 0); // its own CPU
  CHECK(p.begin(2, 2, 3, 0) == 5);
  CHECK(p.end(0) == 13);
  CHECK(p.end(1) == 6);
}
