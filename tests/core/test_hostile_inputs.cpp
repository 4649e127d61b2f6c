// Issue 14's defects in the core parsers and shapes, one regression check each: every hostile input is
// refused with an error naming the file and field and the bound, before anything is sized by it.
#include <catch2/catch.hpp>

#include "pippy/core/cost_table.hpp"
#include "pippy/core/error.hpp"
#include "pippy/core/generators.hpp"
#include "pippy/core/json_input.hpp"
#include "pippy/core/limits.hpp"
#include "pippy/core/schedule_io.hpp"
#include "pippy/core/validate.hpp"

using namespace pippy;

TEST_CASE("a CSV whose micro-batch or stage numbers are huge is refused, not allocated") {
  // 16 bytes once took over 6 GB and 20 s in the validator.
  CHECK_THROWS_WITH(schedule_from_csv("0F100000000,0B100000000", "c.csv"),
                    "c.csv: micro-batch 100000000 is beyond the 1048576 micro-batches a schedule may have");
  // INT_MAX + 1 stages wrapped to -2147483648.
  CHECK_THROWS_WITH(schedule_from_csv("2147483647F0", "c.csv"),
                    "c.csv: stage 2147483647 is beyond the 1048576 stages a schedule may have");
  // A number past int's range is not a number of ours at all.
  CHECK_THROWS_WITH(schedule_from_csv("99999999999F0", "c.csv"), Catch::StartsWith("c.csv:1, column 1: action '99999999999F0'"));
}

TEST_CASE("the validator sizes its tables by the schedule's length, not by its largest micro-batch") {
  // Within the bounds, but 100,001 micro-batches named by 2 actions: refused before the tables of
  // stages x micro-batches x kinds are made, naming the first missing forward.
  const schedule s = schedule_from_csv("0F100000,0B100000", "c.csv");
  REQUIRE(s.shape.num_microbatches == 100001);
  const auto v = find_violation(s);
  REQUIRE(v);
  CHECK(v->message() == "stage 0 micro-batch 0 is never forwarded (no 0F0; 1 stages x 100001 micro-batches need that "
                        "many forwards, and the schedule holds 2 actions)");
  // The first gap after some present forwards, found without the tables too.
  const auto w = find_violation(schedule_from_csv("0F0,0F1,0F5,0B0", "c.csv"));
  REQUIRE(w);
  CHECK(w->message() == "stage 0 micro-batch 2 is never forwarded (no 0F2; 1 stages x 6 micro-batches need that many "
                        "forwards, and the schedule holds 4 actions)");
  // As long as the schedule is as long as its tables, the full checks report in their usual words.
  const auto x = find_violation(schedule_from_csv("0F0,0F1,0F5,0B0,0B1,0B5", "c.csv"));
  REQUIRE(x);
  CHECK(x->message() == "stage 0 micro-batch 2 is never forwarded (no 0F2)");
}

TEST_CASE("JSON schedule sizes must agree with the actions and sit within the bounds") {
  const std::string actions = R"("actions": [["0F0", "0B0"]])";
  auto load = [&](const std::string& extra) { return schedule_from_json("{" + actions + ", " + extra + "}", "s.json"); };
  // Each of these once allocated 6.9 GB, or printed a negative number.
  CHECK_THROWS_WITH(load(R"("microbatches": 100000000)"),
                    "s.json: field \"microbatches\" is out of range (from 1 to 1048576): 100000000");
  CHECK_THROWS_WITH(load(R"("stages_per_rank": 100000000)"),
                    "s.json: field \"stages_per_rank\" is out of range (from 1 to 1048576): 100000000");
  CHECK_THROWS_WITH(load(R"("microbatches": 1000000000000000000)"),
                    "s.json: field \"microbatches\" is out of range (from 1 to 1048576): 1000000000000000000");
  CHECK_THROWS_WITH(load(R"("microbatches": 1e8)"), "s.json: field \"microbatches\" is out of range (from 1 to 1048576): 100000000.0");
  CHECK_THROWS_WITH(load(R"("microbatches": 2.5)"),
                    "s.json: field \"microbatches\" must be a whole number (from 1 to 1048576), got 2.5");
  CHECK_THROWS_WITH(load(R"("microbatches": 4)"), "s.json: field \"microbatches\" is 4 but the actions imply 1");
  CHECK(load(R"("microbatches": 1, "stages_per_rank": 1, "ranks": 1)").shape.num_microbatches == 1);
  // A number beyond double's range threw nlohmann's out_of_range, which nothing caught.
  CHECK_THROWS_WITH(load(R"("microbatches": 1e309)"), "s.json: not valid JSON (number overflow parsing '1e309')");
  // A misspelt field is an error, not ignored.
  CHECK_THROWS_WITH(load(R"("microbatch": 1)"), Catch::StartsWith("s.json: unknown field \"microbatch\" (known: name,"));
}

TEST_CASE("shapes are bounded before a schedule is generated, with the bound in the message") {
  auto generate = [](int R, int V, int M) {
    return make_schedule({.name = "interleaved-1f1b", .num_ranks = R, .num_microbatches = M, .stages_per_rank = V});
  };
  // 65536 x 65536 stages wrapped to 0 and reported success with no actions.
  CHECK_THROWS_WITH(generate(65536, 65536, 65536),
                    "ranks x stages-per-rank must be at most 1048576 stages (got 65536 x 65536 = 4294967296)");
  CHECK_THROWS_WITH(generate(4, 2147483647, 4),
                    "ranks x stages-per-rank must be at most 1048576 stages (got 4 x 2147483647 = 8589934588)");
  CHECK_THROWS_WITH(make_schedule({.name = "1f1b", .num_ranks = 4, .num_microbatches = 10000000}),
                    "microbatches must be at most 1048576 (got 10000000)");
  CHECK_THROWS_WITH(generate(8, 1024, 1024), "stages x microbatches must be at most 4194304 (got 8192 x 1024 = 8388608)");
  CHECK_THROWS_WITH(make_schedule({.name = "gpipe", .num_ranks = 2000000, .num_microbatches = 1}),
                    "ranks must be at most 1048576 (got 2000000)");
}

TEST_CASE("cost files: numbers out of range, unknown keys and I + W > B are errors naming the field") {
  auto parse = [](const std::string& text) { return parse_cost_json(text, "c.json"); };
  CHECK_THROWS_WITH(parse(R"({"stages":[{"F":1e309}]})"), "c.json: not valid JSON (number overflow parsing '1e309')");
  // 2^64 bytes became 0, bypassing the memory cap.
  CHECK_THROWS_WITH(parse(R"({"stages":[{"F":1,"param_bytes":18446744073709551616}]})"),
                    "c.json: stages[0].param_bytes (bytes) is out of range (from 0 to 1099511627776): "
                    "1.8446744073709552e+19");
  CHECK_THROWS_WITH(parse(R"({"stages":[{"F":1,"activation_bytes":18446744073709551615}]})"),
                    "c.json: stages[0].activation_bytes (bytes) is out of range (from 0 to 1099511627776): "
                    "18446744073709551615");
  // 1e308 summed to inf, and the makespan printed as null.
  CHECK_THROWS_WITH(parse(R"({"stages":[{"F":1e308}]})"), "c.json: stages[0].F must be at most 1e+12 microseconds (got 1e+308)");
  CHECK_THROWS_WITH(parse(R"({"stages":[{"F":1,"Bee":2}]})"),
                    Catch::StartsWith("c.json: stages[0]: unknown field \"Bee\" (known: F, I, W, B, U,"));
  CHECK_THROWS_WITH(parse(R"({"stages":[{"F":1}],"step_overhead":3})"),
                    Catch::StartsWith("c.json: unknown field \"step_overhead\" (known: stages,"));
  CHECK_THROWS_WITH(parse(R"({"stages":[{"F":1}],"unit":"ms"})"), "c.json: 'unit' must be \"us\" (microseconds), got \"ms\"");
  // The same rule as --cost: a part given alone is B minus the other, so it cannot exceed B. Both given may
  // add up to more than B (a measured split backward can be slower than the fused one).
  CHECK_THROWS_WITH(parse(R"({"stages":[{"F":1,"I":3,"B":2}]})"),
                    "c.json: stages[0].I or W given alone must not exceed B (I=3, W=-1, B=2)");
  CHECK_THROWS_WITH(parse_cost_spec("F=1,W=3,B=2"), "--cost: I or W given alone must not exceed B (I=-1, W=3, B=2)");
  const auto both = parse(R"({"stages":[{"F":1,"I":2,"W":2,"B":2}]})").stages[0];
  CHECK((both.I == 2 && both.W == 2 && both.B == 2));
  const auto spec = parse_cost_spec("F=1,I=2,W=2,B=2");
  CHECK((spec.I == 2 && spec.W == 2 && spec.B == 2));
  CHECK(parse(R"({"stages":[{"F":1,"I":1,"W":1,"B":2}]})").stages[0].B == 2);
  // What we write, we read: a profile's own keys round-trip.
  cost_table t = parse(R"({"stages":[{"F":1,"B":2,"param_bytes":1099511627776}],"unit":"us","source":"measured"})");
  CHECK(parse_cost_json(to_cost_json(t, "measured"), "c.json").stages == t.stages);
}

TEST_CASE("json_integer and json_number refuse what does not fit, NaN and infinities included") {
  const auto j = nlohmann::json::parse(R"({"big": 18446744073709551615, "neg": -5, "half": 0.5, "whole": 3.0})");
  CHECK(json_integer(j["whole"], "w", 0, 10) == 3);
  CHECK_THROWS_WITH(json_integer(j["big"], "b", 0, 10), "b is out of range (from 0 to 10): 18446744073709551615");
  CHECK_THROWS_WITH(json_integer(j["neg"], "n", 0, 10), "n is out of range (from 0 to 10): -5");
  CHECK_THROWS_WITH(json_integer(j["half"], "h", 0, 10), "h must be a whole number (from 0 to 10), got 0.5");
  // A literal without a sign is read as unsigned: below a lower bound above 0 it is refused too.
  const auto zero = nlohmann::json::parse("0");
  REQUIRE(zero.is_number_unsigned());
  CHECK_THROWS_WITH(json_integer(zero, "z", 1, 10), "z is out of range (from 1 to 10): 0");
  CHECK_THROWS_WITH(json_integer(zero, [] { return std::string("z"); }, 1, 10), "z is out of range (from 1 to 10): 0");
  CHECK_THROWS_WITH(json_number(nlohmann::json(std::numeric_limits<double>::quiet_NaN()), "x", "number"),
                    Catch::StartsWith("x must be a finite number from 0"));
  CHECK_THROWS_WITH(json_number(nlohmann::json(std::numeric_limits<double>::infinity()), "x", "number"),
                    Catch::StartsWith("x must be a finite number from 0"));
  CHECK(json_number(nlohmann::json(2.5), "x", "number", 0, 3) == 2.5);
  CHECK(limits::checked_mul(std::int64_t{1} << 40, std::int64_t{1} << 30) == std::nullopt);
  CHECK(limits::checked_mul(std::int64_t{65536}, std::int64_t{65536}) == std::int64_t{1} << 32);
}
