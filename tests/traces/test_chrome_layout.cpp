#include <catch2/catch.hpp>

#include "pippy/core/error.hpp"
#include "pippy/core/generators.hpp"
#include "pippy/traces/chrome_trace.hpp"
#include "pippy/traces/metrics.hpp"

using namespace pippy;

namespace {
trace sample() {
  auto s = make_schedule({.name = "1f1b", .num_ranks = 3, .num_microbatches = 5, .optimizer_steps = false});
  trace t = trace_from_evaluation(evaluate(s, unit_costs{}), "1f1b R=3 M=5", 250.0, event_source::measured);
  t.events[2].bytes = 1234;
  t.events[2].peer = 1;
  t.memory = {{0, 0, 10}, {2, 7.5, 99}};
  return t;
}
} // namespace

TEST_CASE("our one-event-per-line layout and the general parser read the same trace", "[traces][chrome]") {
  const trace t = sample();
  const std::string text = to_chrome_json(t);
  CHECK(parse_chrome_json(text, "own") == t);
  CHECK(parse_chrome_json(" " + text, "general") == t); // leading space: not our exact layout
  std::string one_line = text;
  std::erase(one_line, '\n');
  CHECK(parse_chrome_json(one_line, "one line") == t);
}

TEST_CASE("errors in our layout are reported as the general parser reports them", "[traces][chrome]") {
  std::string text = to_chrome_json(sample());
  const auto at = text.find("\"pid\":1,\"tid\"");
  REQUIRE(at != std::string::npos);
  std::string bad = text;
  bad.replace(at, 7, "\"pid\":\"x\"");
  CHECK_THROWS_WITH(parse_chrome_json(bad, "f.json"), Catch::Contains("f.json: traceEvents[") &&
                                                          Catch::Contains("field \"pid\" (the rank) must be a whole number (from 0 to 1048575), got \"x\""));
  CHECK_THROWS_WITH(parse_chrome_json(text.substr(0, text.size() / 2), "half.json"),
                    Catch::StartsWith("half.json: not valid JSON"));
  std::string unknown = text;
  unknown.replace(unknown.find("\"name\":\"0F0\""), 12, "\"name\":\"0Z0\"");
  CHECK_THROWS_AS(parse_chrome_json(unknown, "k.json"), input_error);
}

TEST_CASE("fields of unexpected types are input errors, not other exceptions", "[traces][chrome]") {
  const std::string ev = "{\"ph\":\"X\",\"name\":\"0F0\",\"pid\":0,\"ts\":0,\"dur\":1";
  CHECK_THROWS_AS(parse_chrome_json("{\"traceEvents\":[" + ev + ",\"args\":{\"source\":7}}]}", "a"), input_error);
  CHECK(parse_chrome_json("{\"traceEvents\":[" + ev + ",\"args\":{\"bytes\":\"many\"}}]}", "b").events[0].bytes == 0); // optional field: ignored
  const trace t = parse_chrome_json("{\"otherData\":{\"ranks\":\"four\",\"run\":5},\"traceEvents\":[" + ev + "}]}", "c");
  CHECK(t.num_ranks == 1);
  CHECK(t.run.empty());
  CHECK_THROWS_AS(parse_chrome_json("{\"traceEvents\":[{\"ph\":\"C\",\"name\":\"memory\",\"pid\":0,\"ts\":0,\"args\":{\"bytes\":-5}}," + ev + "}]}", "d"), input_error);
  trace lines;
  CHECK_THROWS_AS(parse_json_line(ev + ",\"args\":{\"source\":[1]}}", lines, "e"), input_error);
}

TEST_CASE("a memory counter needs a numeric args.bytes: each way of missing it is named", "[traces][chrome]") {
  const std::string head = "{\"traceEvents\":[{\"ph\":\"C\",\"name\":\"memory\",\"pid\":0,\"ts\":0";
  for (const char* args : {"", ",\"args\":5", ",\"args\":{}", ",\"args\":{\"bytes\":\"many\"}"}) {
    INFO(args);
    CHECK_THROWS_WITH(parse_chrome_json(head + args + "}]}", "m.json"),
                      Catch::Contains("memory counter without numeric args.bytes"));
  }
  const std::string action = ",{\"ph\":\"X\",\"name\":\"0F0\",\"pid\":0,\"ts\":0,\"dur\":1}";
  CHECK(parse_chrome_json(head + ",\"args\":{\"bytes\":64}}" + action + "]}", "m.json").memory ==
        std::vector<memory_sample>{{0, 0, 64}});
}

TEST_CASE("an action without a numeric ts or dur is an error naming the field", "[traces][chrome]") {
  const std::string head = "{\"traceEvents\":[{\"ph\":\"X\",\"name\":\"0F0\",\"pid\":0";
  const std::string no_ts = "t.json: traceEvents[0]: field \"ts\" must be a finite number";
  const std::string no_dur = "t.json: traceEvents[0]: field \"dur\" must be a finite number";
  CHECK_THROWS_WITH(parse_chrome_json(head + ",\"dur\":1}]}", "t.json"), no_ts);
  CHECK_THROWS_WITH(parse_chrome_json(head + ",\"ts\":\"soon\",\"dur\":1}]}", "t.json"),
                    no_ts + " of microseconds from -1e+18 to 1e+18 (got \"soon\")");
  CHECK_THROWS_WITH(parse_chrome_json(head + ",\"ts\":0}]}", "t.json"), no_dur);
  CHECK_THROWS_WITH(parse_chrome_json(head + ",\"ts\":0,\"dur\":null}]}", "t.json"),
                    no_dur + " of microseconds from -1e+18 to 1e+18 (got null)");
  // Beyond the bound a viewer's span loses all precision (and 1e300 + 1e300 is no longer finite).
  CHECK_THROWS_WITH(parse_chrome_json(head + ",\"ts\":-1e300,\"dur\":1}]}", "t.json"),
                    no_ts + " of microseconds from -1e+18 to 1e+18 (got -1e+300)");
}

TEST_CASE("otherData is read the same in our layout and by the general parser, odd values included",
          "[traces][chrome]") {
  const std::string text = to_chrome_json(sample());
  const std::string other = "{\"ranks\":3,\"run\":\"1f1b R=3 M=5\"}";
  REQUIRE(text.find(other) != std::string::npos);
  for (const char* odd : {"{\"ranks\":0}", "{\"run\":\"only a name\"}", "{}"}) {
    INFO(odd);
    std::string ours = text;
    ours.replace(ours.find(other), other.size(), odd);
    const trace a = parse_chrome_json(ours, "ours");
    const trace b = parse_chrome_json(" " + ours, "general");
    CHECK(a == b);
    CHECK(a.num_ranks == 3); // the events' pids still count
    CHECK(a.events.size() == sample().events.size());
  }
  // A rank count out of range, or above the events that could name its ranks, is refused alike.
  for (const char* bad : {"{\"ranks\":-3,\"run\":\"r\"}", "{\"ranks\":2147483647}", "{\"ranks\":1000}"}) {
    INFO(bad);
    std::string ours = text;
    ours.replace(ours.find(other), other.size(), bad);
    CHECK_THROWS_WITH(parse_chrome_json(ours, "ours"), Catch::StartsWith("ours: ") && Catch::Contains("ranks"));
    CHECK_THROWS_WITH(parse_chrome_json(" " + ours, "general"), Catch::StartsWith("general: ") && Catch::Contains("ranks"));
  }
  // A rank that ran nothing still counts when otherData names it.
  std::string idle = text;
  idle.replace(idle.find(other), other.size(), "{\"ranks\":5,\"run\":\"r\"}");
  CHECK(parse_chrome_json(idle, "ours").num_ranks == 5);
  CHECK(parse_chrome_json(" " + idle, "general").num_ranks == 5);
  CHECK(parse_chrome_json(idle, "ours").run == "r");
}

TEST_CASE("hostile trace numbers are refused before any per-rank table is sized", "[traces][chrome]") {
  const std::string text = to_chrome_json(sample());
  auto with_event = [&](const std::string& event) {
    std::string t = text;
    t.insert(t.rfind("\n]}"), ",\n" + event);
    return t;
  };
  for (const std::string lead : {"", " "}) { // our layout, and the general parser
    INFO("lead '" << lead << "'");
    // pid INT_MAX: rank + 1 overflowed and the metrics indexed out of bounds (SEGV).
    CHECK_THROWS_WITH(
        parse_chrome_json(lead + with_event(R"({"name":"0F0","ph":"X","pid":2147483647,"tid":0,"ts":0,"dur":1})"), "t.json"),
        Catch::Contains("field \"pid\" (the rank) is out of range (from 0 to 1048575): 2147483647"));
    // A memory counter on rank 5e7 allocated until bad_alloc; now within the bound, it still names
    // more ranks than the trace has events.
    CHECK_THROWS_WITH(
        parse_chrome_json(lead + with_event(R"({"name":"memory","ph":"C","pid":50000000,"ts":0,"args":{"bytes":5}})"), "t.json"),
        Catch::Contains("field \"pid\" (the rank) is out of range (from 0 to 1048575): 50000000"));
    CHECK_THROWS_WITH(
        parse_chrome_json(lead + with_event(R"({"name":"memory","ph":"C","pid":1000,"ts":0,"args":{"bytes":5}})"), "t.json"),
        Catch::Matches("t\\.json: names 1001 ranks \\(pids 0 to 1000\\) but holds only \\d+ trace events; ranks are "
                       "numbered from 0"));
    CHECK_THROWS_WITH(
        parse_chrome_json(lead + with_event(R"({"name":"0F0","ph":"X","pid":0,"tid":0,"ts":1e309,"dur":1})"), "t.json"),
        "t.json: not valid JSON (number overflow parsing '1e309')");
    CHECK_THROWS_WITH(
        parse_chrome_json(lead + with_event(R"({"name":"memory","ph":"C","pid":0,"ts":0,"args":{"bytes":-1}})"), "t.json"),
        Catch::Contains("memory counter args.bytes is out of range (from 0 to 9223372036854775807): -1"));
  }
  trace t;
  CHECK_THROWS_WITH(parse_json_line(R"({"name":"0F0","ph":"X","pid":4294967296,"tid":0,"ts":0,"dur":1})", t, "live"),
                    "live: field \"pid\" (the rank) is out of range (from 0 to 1048575): 4294967296");
  CHECK(t.num_ranks == 0);
}
