// The simulator's live hooks: on_event / on_memory see exactly the timeline's events and samples, in
// virtual-time order, while the simulation runs; pacing stretches wall time; a throwing hook stops it.
#include <catch2/catch.hpp>
#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include "pippy/traces/chrome_trace.hpp"
#include "sim_helpers.hpp"

using namespace pippy;
using pippy::test::make;
using pippy::test::uniform_options;

namespace {
std::vector<std::string> lines_of(const std::vector<trace_event>& v) {
  std::vector<std::string> out;
  for (const auto& e : v)
    out.push_back(to_json_line(e));
  std::sort(out.begin(), out.end());
  return out;
}
std::vector<std::string> lines_of(const std::vector<memory_sample>& v) {
  std::vector<std::string> out;
  for (const auto& m : v)
    out.push_back(to_json_line(m));
  std::sort(out.begin(), out.end());
  return out;
}
} // namespace

TEST_CASE("live hooks see exactly the timeline's events and samples, in virtual-time order, as it runs",
          "[simulator][live]") {
  struct cfg {
    const char* name;
    int p, m, v;
    double latency, bandwidth;
  };
  for (const cfg c : {cfg{"gpipe", 4, 8, 0, 0.5, 0}, cfg{"1f1b", 4, 8, 0, 0, 0}, cfg{"interleaved-1f1b", 4, 8, 2, 0.25, 2.0},
                      cfg{"zb-h1", 3, 6, 0, 0.1, 1.0}}) {
    INFO(c.name);
    const auto s = make(c.name, c.p, c.m, c.v);
    auto o = uniform_options(s, 1, 1, 1, c.latency);
    o.links.intra_host.bandwidth_gbps = o.links.inter_host.bandwidth_gbps = c.bandwidth;
    for (auto& sc : o.costs.stages) {
      sc.activation_bytes = 1500; // 0.75 us per transfer at 2 GB/s: transfers queue on their links
      sc.param_bytes = 100;
    }
    const auto plain = sim::simulate(s, o);

    struct call {
      double t;          // end_us of an event, t_us of a sample
      double clock_seen; // the virtual time last reported by on_progress before the call
      std::size_t delivered;
      bool memory;
    };
    std::vector<call> calls;
    std::vector<trace_event> events;
    std::vector<memory_sample> samples;
    double now = 0;
    std::size_t delivered = 0;
    o.progress_every = 1; // on_progress after every delivery: tells when each hook call happened
    o.on_progress = [&](std::size_t n, double t) {
      delivered = n;
      now = t;
    };
    o.on_event = [&](const trace_event& e) {
      events.push_back(e);
      calls.push_back({e.end_us, now, delivered, false});
    };
    o.on_memory = [&](const memory_sample& m) {
      samples.push_back(m);
      calls.push_back({m.t_us, now, delivered, true});
    };
    const auto live = sim::simulate(s, o);

    // The same run: hooks change nothing in the result.
    CHECK(to_chrome_json(live.timeline) == to_chrome_json(plain.timeline));
    CHECK(live.makespan_us == plain.makespan_us);
    // Exactly the timeline's events and samples, each once.
    REQUIRE(events.size() == live.timeline.events.size());
    REQUIRE(samples.size() == live.timeline.memory.size());
    CHECK(lines_of(events) == lines_of(live.timeline.events));
    CHECK(lines_of(samples) == lines_of(live.timeline.memory));
    CHECK(std::any_of(events.begin(), events.end(), [](const trace_event& e) { return e.peer >= 0; })); // transfers too
    // One stream in virtual-time order; every call at or after the clock it was made under (an action is
    // handed over once it has finished, never before the clock reached it) and during the run, not at the end.
    for (std::size_t k = 1; k < calls.size(); ++k) {
      INFO("call " << k);
      CHECK(calls[k - 1].t <= calls[k].t);
      CHECK(calls[k - 1].delivered <= calls[k].delivered);
    }
    for (const auto& cl : calls)
      CHECK(cl.t >= cl.clock_seen);
    std::size_t before_last_delivery = 0;
    for (const auto& cl : calls)
      before_last_delivery += cl.delivered < live.events;
    CHECK(before_last_delivery > calls.size() / 2);
  }
}

TEST_CASE("pace stretches wall time to virtual time / pace and changes nothing else", "[simulator][live]") {
  const auto s = make("gpipe", 2, 4);
  auto o = uniform_options(s, 1, 1, 1); // makespan 15 us
  const auto plain = sim::simulate(s, o);
  REQUIRE(plain.makespan_us == Approx(15));
  o.pace = plain.makespan_us / 60000.0; // 60 ms of wall time
  // Each hook call is due at (its virtual time) / pace after the run started, never earlier. Only lower
  // bounds on elapsed wall time are checked: they hold however loaded the machine is (an upper bound
  // would not; how close pacing comes to its schedule is a benchmark's question).
  struct call {
    double t_us;    // virtual time: end_us of an event, t_us of a sample
    double wall_us; // wall time since before simulate() was called
  };
  std::vector<call> calls;
  std::size_t seen = 0;
  const auto t0 = std::chrono::steady_clock::now();
  auto wall_us = [&] { return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count(); };
  o.on_event = [&](const trace_event& e) {
    ++seen;
    calls.push_back({e.end_us, wall_us()});
  };
  o.on_memory = [&](const memory_sample& m) { calls.push_back({m.t_us, wall_us()}); };
  const auto paced = sim::simulate(s, o);
  const double total_us = wall_us();
  CHECK(total_us >= 60000);
  REQUIRE(calls.size() == paced.timeline.events.size() + paced.timeline.memory.size());
  for (const auto& c : calls) {
    INFO("virtual " << c.t_us << " us, called after " << c.wall_us << " us of wall time");
    CHECK(c.wall_us >= c.t_us / o.pace);
  }
  CHECK(calls.back().t_us == Approx(15)); // the last call is due at the full 60 ms
  CHECK(seen == paced.timeline.events.size());
  CHECK(to_chrome_json(paced.timeline) == to_chrome_json(plain.timeline));
}

TEST_CASE("a hook that throws stops the simulation and the exception leaves simulate()", "[simulator][live]") {
  const auto s = make("1f1b", 4, 16);
  auto o = uniform_options(s, 1, 1, 1);
  std::size_t seen = 0;
  o.on_event = [&](const trace_event&) {
    if (++seen == 10)
      throw std::runtime_error("viewer hook failed");
  };
  CHECK_THROWS_WITH(sim::simulate(s, o), "viewer hook failed");
  CHECK(seen == 10);
  o.on_event = nullptr; // and the next run is unaffected
  CHECK(sim::simulate(s, o).completed);
}

TEST_CASE("either hook alone is called: events without a memory hook, samples without an event hook",
          "[simulator][live]") {
  const auto s = make("1f1b", 2, 3);
  auto o = uniform_options(s, 1, 1, 1);
  for (auto& sc : o.costs.stages)
    sc.activation_bytes = 10;
  const auto plain = sim::simulate(s, o);
  std::size_t events = 0, samples = 0;
  auto only_events = o;
  only_events.on_event = [&](const trace_event&) { ++events; };
  sim::simulate(s, only_events);
  CHECK(events == plain.timeline.events.size());
  auto only_samples = o;
  only_samples.on_memory = [&](const memory_sample&) { ++samples; };
  sim::simulate(s, only_samples);
  REQUIRE(!plain.timeline.memory.empty());
  CHECK(samples == plain.timeline.memory.size());
}
