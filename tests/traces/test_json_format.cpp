#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>

#include "pippy/core/error.hpp"
#include "pippy/traces/chrome_trace.hpp"

using namespace pippy;
using json = nlohmann::json;

namespace {

// The lines as they were written through nlohmann::json before the hand-rolled formatter.
json old_event_json(const trace_event& e) {
  json args = {{"stage", e.act.stage}, {"kind", std::string(to_string(e.act.kind))},
               {"source", e.source == event_source::simulated ? "simulated" : "measured"}};
  if (e.act.microbatch != no_microbatch)
    args["microbatch"] = e.act.microbatch;
  if (e.bytes)
    args["bytes"] = e.bytes;
  if (e.peer >= 0)
    args["peer"] = e.peer;
  return json{{"name", to_string(e.act)}, {"cat", std::string(to_string(e.act.kind))}, {"ph", "X"},
              {"pid", e.rank}, {"tid", is_communication(e.act.kind) ? 1 : 0}, {"ts", e.start_us},
              {"dur", e.end_us - e.start_us}, {"args", std::move(args)}};
}

json old_memory_json(const memory_sample& m) {
  return json{{"name", "memory"}, {"ph", "C"}, {"pid", m.rank}, {"ts", m.t_us}, {"args", {{"bytes", m.bytes}}}};
}

// Same values and the same JSON types (an integral double must stay a float, as nlohmann wrote it).
void check_same(const std::string& line, const json& old_value) {
  const json old = json::parse(old_value.dump()); // what a reader of the old line saw
  REQUIRE(!line.empty());
  CHECK(line.back() == '\n');
  CHECK(line.find('\n') == line.size() - 1);
  const json now = json::parse(line);
  CHECK(now == old);
  CHECK(now.dump() == old.dump());
  for (const char* f : {"ts", "dur"})
    if (old.contains(f))
      CHECK(now[f].type() == old[f].type());
}

} // namespace

TEST_CASE("hand-rolled JSON lines parse to the values nlohmann wrote", "[traces][chrome]") {
  std::mt19937_64 rng(12345);
  const std::vector<double> edges = {0.0, -0.0, 1.0, 0.5, 1e-300, 5e-324, 1e300, 1.7976931348623157e308, 123456789.125,
                                     1e15, 1e16, 1e17, 1e21, 1e-5, 1e-7, 0.1, 1.0 / 3, 2.5e-10, 4503599627370496.0,
                                     9007199254740993.0, -1.5, 393216.75};
  const std::vector<std::uint64_t> byte_edges = {0, 1, 255, 1ull << 32, std::numeric_limits<std::uint64_t>::max(),
                                                 std::numeric_limits<std::int64_t>::max()};
  std::uniform_int_distribution<int> kind_d(0, num_action_kinds - 1), small(0, 300);
  std::uniform_real_distribution<double> unit(0, 1);
  auto any_double = [&]() {
    switch (rng() % 4) {
    case 0: return edges[rng() % edges.size()];
    case 1: return unit(rng) * 1e6;
    case 2: return std::ldexp(unit(rng), static_cast<int>(rng() % 2000) - 1000);
    default: return static_cast<double>(rng() % 100000) / 4;
    }
  };
  for (int i = 0; i < 20000; ++i) {
    trace_event e;
    e.rank = i % 7 == 0 ? std::numeric_limits<int>::max() : small(rng);
    e.act.kind = static_cast<action_kind>(kind_d(rng));
    e.act.stage = i % 11 == 0 ? std::numeric_limits<int>::max() : small(rng);
    e.act.microbatch = is_per_stage(e.act.kind) || i % 5 == 0 ? no_microbatch : small(rng) * 1000;
    e.start_us = any_double();
    e.end_us = i % 3 == 0 ? e.start_us : e.start_us + any_double();
    e.bytes = i % 2 ? byte_edges[rng() % byte_edges.size()] : rng();
    e.peer = i % 4 == 0 ? -1 : small(rng);
    e.source = i % 2 ? event_source::measured : event_source::simulated;
    check_same(to_json_line(e), old_event_json(e));
    memory_sample m{.rank = small(rng), .t_us = any_double(), .bytes = i % 2 ? byte_edges[rng() % byte_edges.size()] : rng()};
    check_same(to_json_line(m), old_memory_json(m));
  }
}

TEST_CASE("non-finite times are written as null, as before, and read back as errors", "[traces][chrome]") {
  trace_event e;
  e.start_us = std::numeric_limits<double>::infinity();
  e.end_us = std::numeric_limits<double>::quiet_NaN();
  const std::string line = to_json_line(e);
  CHECK(json::parse(line) == json::parse(old_event_json(e).dump()));
  CHECK(json::parse(line)["dur"].is_null());
  trace t;
  CHECK_THROWS(parse_json_line(line, t, "nan"));
}

TEST_CASE("JSON lines round-trip through the line parser and the chrome file readers", "[traces][chrome]") {
  trace t;
  t.run = "quote\" back\\slash\ttab \x01 ünï";
  t.num_ranks = 3;
  t.events.push_back({.rank = 0, .act = {0, action_kind::forward, 0}, .start_us = 0, .end_us = 1.5});
  t.events.push_back({.rank = 1, .act = {1, action_kind::send_b, 3}, .start_us = 1e-7, .end_us = 2e17, .bytes = 4096,
                      .peer = 0, .source = event_source::measured});
  t.events.push_back({.rank = 2, .act = {2, action_kind::optimizer_step, no_microbatch}, .start_us = 7, .end_us = 7});
  t.memory = {{0, 0, 10}, {2, 0.1, std::numeric_limits<std::uint64_t>::max()}};
  trace lines;
  lines.run = t.run;
  lines.num_ranks = 3;
  for (const auto& e : t.events)
    parse_json_line(to_json_line(e), lines, "line");
  for (const auto& m : t.memory)
    parse_json_line(to_json_line(m), lines, "line");
  CHECK(lines == t);
  const std::string text = to_chrome_json(t);
  CHECK(parse_chrome_json(text, "own") == t);
  CHECK(parse_chrome_json(" " + text, "general") == t);
}

TEST_CASE("a pp x dp trace keeps its replicas through a chrome file, and replicas that do not divide the ranks are named",
          "[traces][chrome]") {
  trace t;
  t.run = "1f1b R=2 M=1 x 2 replicas";
  t.num_ranks = 4;
  t.replicas = 2;
  for (int r = 0; r < 4; ++r)
    t.events.push_back({.rank = r, .act = {r % 2, action_kind::forward, 0}, .start_us = 10.0 * r, .end_us = 10.0 * r + 5});
  const std::string text = to_chrome_json(t);
  CHECK(text.find("\"replicas\":2") != std::string::npos);
  CHECK(parse_chrome_json(text, "mesh.json") == t);
  CHECK(parse_chrome_json(" " + text, "mesh.json") == t); // the general reader too
  trace one = t;
  one.replicas = 1;
  CHECK(to_chrome_json(one).find("\"replicas\"") == std::string::npos); // a pipeline alone writes what it always did
  std::string bad = text;
  bad.replace(bad.find("\"replicas\":2"), 12, "\"replicas\":3");
  CHECK_THROWS_WITH(parse_chrome_json(bad, "mesh.json"),
                    "mesh.json: otherData.replicas: 3 replicas do not divide 4 ranks (otherData.ranks)");
  bad = text;
  bad.replace(bad.find("\"replicas\":2"), 12, "\"replicas\":0");
  CHECK_THROWS_WITH(parse_chrome_json(bad, "mesh.json"), Catch::Contains("mesh.json: otherData.replicas"));
}

TEST_CASE("markers are written as Chrome instant events and read back", "[traces][chrome][markers]") {
  trace t;
  t.run = "oom";
  t.num_ranks = 2;
  t.events.push_back({.rank = 0, .act = {0, action_kind::forward, 0}, .start_us = 0, .end_us = 1.5});
  t.markers.push_back({.rank = 1, .t_us = 3.25, .name = "OOM", .detail = "out of \"memory\"\n\\ ü"});
  t.markers.push_back({.rank = 0, .t_us = 0, .name = "note", .detail = ""});
  const std::string text = to_chrome_json(t);
  CHECK(parse_chrome_json(text, "own") == t);
  CHECK(parse_chrome_json(" " + text, "general") == t);
  const json line = json::parse(to_json_line(t.markers[0]));
  CHECK(line["ph"] == "i");
  CHECK(line["s"] == "p");
  CHECK(line["pid"] == 1);
  CHECK(line["ts"] == 3.25);
  CHECK(line["name"] == "OOM");
  CHECK(line["args"]["detail"] == t.markers[0].detail);
  trace lines;
  parse_json_line(to_json_line(t.markers[0]), lines, "line");
  REQUIRE(lines.markers.size() == 1);
  CHECK(lines.markers[0] == t.markers[0]);
  CHECK(lines.num_ranks == 2);
  // Other tools' instant events are still skipped.
  trace other;
  parse_json_line(R"({"ph":"i","name":"x","pid":0,"ts":1})", other, "other");
  CHECK(other.markers.empty());
}

TEST_CASE("a torch.profiler trace of torch.pp opens with its pipeline actions as one rank's", "[traces][chrome][torch]") {
  // The shape of export_chrome_trace's file: times from baseTimeNanoseconds, the rank in distributedInfo,
  // pid an OS process id; torch.pp marks actions with record_function.
  const json j = {
      {"schemaVersion", 1},
      {"distributedInfo", {{"backend", "gloo"}, {"rank", 1}, {"world_size", 2}}},
      {"baseTimeNanoseconds", 2000000000},
      {"traceEvents",
       {{{"ph", "X"}, {"cat", "cpu_op"}, {"name", "aten::mm"}, {"pid", 4242}, {"tid", 1}, {"ts", 11}, {"dur", 2}},
        {{"ph", "X"}, {"cat", "user_annotation"}, {"name", "PP:3F0"}, {"pid", 4242}, {"tid", 1}, {"ts", 10}, {"dur", 5}},
        {{"ph", "X"}, {"cat", "user_annotation"}, {"name", "PP:3SEND_F0"}, {"pid", 4242}, {"tid", 1}, {"ts", 15}, {"dur", 1}},
        {{"ph", "X"}, {"cat", "user_annotation"}, {"name", "Backward 2"}, {"pid", 4242}, {"tid", 1}, {"ts", 20}, {"dur", 7}},
        {{"ph", "X"}, {"cat", "user_annotation"}, {"name", "PP:UNSHARD"}, {"pid", 4242}, {"tid", 1}, {"ts", 30}, {"dur", 1}},
        // torch's own REDUCE_GRAD range (its thread around the collective): not our REDUCE_GRAD window
        {{"ph", "X"}, {"cat", "user_annotation"}, {"name", "PP:3REDUCE_GRAD"}, {"pid", 4242}, {"tid", 1}, {"ts", 32}, {"dur", 3}},
        {{"ph", "X"}, {"cat", "gpu_user_annotation"}, {"name", "PP:3F0"}, {"pid", 0}, {"tid", 7}, {"ts", 10}, {"dur", 5}},
        {{"ph", "i"}, {"name", "Iteration Start: PyTorch Profiler"}, {"pid", 4242}, {"tid", 1}, {"ts", 0}}}}};
  const trace t = parse_chrome_json(j.dump(), "rank1.json");
  CHECK(t.num_ranks == 2);
  CHECK(t.run == "torch.profiler, rank 1");
  REQUIRE(t.events.size() == 3);
  CHECK(to_string(t.events[0].act) == "3F0");
  CHECK(t.events[0].rank == 1);
  CHECK(t.events[0].start_us == 2000000 + 10); // 2 s of base time, then ts
  CHECK(t.events[0].end_us == 2000000 + 15);
  CHECK(t.events[0].source == event_source::measured);
  CHECK(to_string(t.events[1].act) == "3SEND_F0");
  CHECK(to_string(t.events[2].act) == "1B2"); // GPipe's "Backward i": the rank's own stage
  // Without any action of torch.pp: an error naming the file and what was looked for.
  json none = j;
  none["traceEvents"] = json::array({j["traceEvents"][0]});
  CHECK_THROWS_WITH(parse_chrome_json(none.dump(), "rank1.json"),
                    Catch::Contains("rank1.json: a torch.profiler trace without pipeline actions"));
  json bad_rank = j;
  bad_rank["distributedInfo"]["rank"] = -3;
  CHECK_THROWS_WITH(parse_chrome_json(bad_rank.dump(), "rank1.json"), Catch::Contains("rank1.json: distributedInfo.rank"));
}

TEST_CASE("our own layout's fast reader gives what the JSON reader gives, and leaves it the odd lines", "[traces][chrome]") {
  trace t;
  t.num_ranks = 3;
  t.run = "fast and slow";
  t.events = {{0, parse_action("0F0"), -5.25, 10, 0, -1, event_source::simulated},
              {0, parse_action("0SEND_F0"), 10, 12.5, 4096, 1, event_source::measured},
              {1, parse_action("1RECV_F0"), 10, 13, 4096, -1, event_source::measured},
              {2, parse_action("2U"), 1e15, 1e15 + 0.125, 0, -1, event_source::measured},
              {1, parse_action("1I3"), 20, 20, 0, -1, event_source::simulated}};
  t.memory = {{1, 3.5, 1 << 20}};
  t.markers = {{2, 7, "step 1", "with \"quotes\""}};
  const std::string text = to_chrome_json(t);
  const trace fast = parse_chrome_json(text, "fast.json");
  const trace slow = parse_chrome_json(" " + text, "slow.json"); // not our layout's first bytes: the JSON reader
  CHECK(fast.events == t.events);
  CHECK(slow.events == t.events);
  CHECK(fast.num_ranks == slow.num_ranks);
  CHECK(fast.memory.size() == 1);
  CHECK(fast.markers.size() == 1);
  // A line that says something the fast reader does not take goes to the JSON reader, which reads it or
  // names what is wrong.
  std::string edited = text;
  const auto at = edited.find("\"pid\":1,");
  REQUIRE(at != std::string::npos);
  edited.replace(at, 8, "\"pid\":1.0,"); // a whole number written as a double: still rank 1
  CHECK(parse_chrome_json(edited, "edited.json").events == t.events);
  std::string bad = text;
  bad.replace(bad.find("\"pid\":1,"), 8, "\"pid\":-1,");
  CHECK_THROWS_WITH(parse_chrome_json(bad, "bad.json"), Catch::Contains("field \"pid\" (the rank)"));
}

TEST_CASE("odd torch.profiler files and odd lines of our layout are errors naming the file, never a crash",
          "[traces][chrome][torch]") {
  // Fields of other types are not actions: skipped, and a file with no action says so.
  CHECK_THROWS_WITH(parse_chrome_json(R"({"schemaVersion":1,"traceEvents":[{"ph":1},{"ph":"X","cat":7,"name":"PP:0F0"}]})",
                                      "odd.json"),
                    Catch::Contains("odd.json: a torch.profiler trace without pipeline actions"));
  // A rank number is not a size: one event cannot claim a million ranks.
  CHECK_THROWS_WITH(
      parse_chrome_json(R"({"distributedInfo":{"rank":1048575},"traceEvents":[{"ph":"X","name":"PP:0F0","ts":0,"dur":1}]})",
                        "huge.json"),
      Catch::Contains("huge.json"));
  CHECK_THROWS_WITH(parse_chrome_json(R"({"baseTimeNanoseconds":1e21,"traceEvents":[{"ph":"X","name":"PP:0F0","ts":9e17,"dur":1}]})",
                                      "late.json"),
                    Catch::Contains("late.json"));
  // Our layout's lines with numbers JSON does not allow (.5, 01, 5.) are refused as before the fast reader.
  trace t;
  t.num_ranks = 2;
  t.events = {{1, parse_action("1F0"), 5, 10}};
  const std::string text = to_chrome_json(t);
  for (const auto& [from, to] : {std::pair<std::string, std::string>{"\"pid\":1,", "\"pid\":01,"},
                                 {"\"dur\":5.0,", "\"dur\":.5,"},
                                 {"\"ts\":5.0}", "\"ts\":5.}"}}) {
    std::string bad = text;
    const auto at = bad.find(from);
    REQUIRE(at != std::string::npos);
    bad.replace(at, from.size(), to);
    INFO(to);
    CHECK_THROWS_AS(parse_chrome_json(bad, "bad.json"), input_error);
  }
}
