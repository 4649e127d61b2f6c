// The transport probes of a profile over a real in-process Gloo pair: the links and what a send's posting
// takes, and what an arrival takes from compute.
#include <catch2/catch.hpp>

#include <sched.h>

#include <cmath>
#include <string>

#include "../support/gloo_pair.hpp"
#include "pippy/core/error.hpp"
#include "pippy/runtime/link_probe.hpp"

using namespace pippy;

TEST_CASE("probe_links: rank 0 gets both directions of the pair and a send posting that costs time, the other rank nothing",
          "[runtime][profile]") {
  const link_probe_options options{.sizes = {4u << 10, 256u << 10, 1u << 20}, .repeats = 5};
  const auto got = test::on_two_ranks([&](int, gloo_group& group) {
    tensor_channel channel(group);
    return probe_links(channel, options);
  });
  REQUIRE(got[0].links.size() == 2);
  CHECK(got[0].links[0].src == 0);
  CHECK(got[0].links[1].src == 1);
  const link_class& posting = got[0].send_posting;
  CHECK(std::isfinite(posting.latency_us));
  CHECK(std::isfinite(posting.bandwidth_gbps));
  CHECK(posting.latency_us >= 0);
  CHECK(posting.bandwidth_gbps >= 0);
  // A send call is timed, so posting the largest size takes some time, and not more than its round trip.
  cost_table costs;
  costs.send_posting = posting;
  CHECK(costs.send_posting_us(1u << 20) > 0);
  CHECK(costs.send_posting_us(1u << 20) < 1e6);
  CHECK(got[1].links.empty());
  CHECK(got[1].send_posting.latency_us == 0);
}

TEST_CASE("probe_arrival_cost: rank 0 gets a time per arrival (at least 0 and below a round's) and the other rank 0",
          "[runtime][profile]") {
  const arrival_probe_options options{.bytes = 4096, .messages = 8, .period_us = 300, .rounds = 3};
  const auto got = test::on_two_ranks([&](int, gloo_group& group) {
    tensor_channel channel(group);
    return probe_arrival_cost(channel, options);
  });
  CHECK(std::isfinite(got[0]));
  CHECK(got[0] >= 0);
  CHECK(got[0] < options.messages * options.period_us);
  CHECK(got[1] == 0);
}

TEST_CASE("probe_arrival_cost refuses options without a bound on every rank, before any message", "[runtime][profile]") {
  for (const auto& options : {arrival_probe_options{.messages = 4097, .rounds = 1}, arrival_probe_options{.rounds = 0},
                              arrival_probe_options{.period_us = 0}, arrival_probe_options{.bytes = (std::uint64_t{1} << 30) + 1}}) {
    const auto got = test::on_two_ranks([&](int, gloo_group& group) {
      tensor_channel channel(group);
      try {
        probe_arrival_cost(channel, options);
      } catch (const input_error& e) {
        return std::string(e.what());
      }
      return std::string("no error");
    });
    for (const auto& message : got)
      CHECK_THAT(message, Catch::Contains("arrival probe: needs 1 or more messages and rounds"));
  }
}

TEST_CASE("probe_arrival_cost: with both ranks' threads on one CPU the receiving takes compute time, and the probe sees it",
          "[runtime][profile]") {
  // Threads made from here on (the ranks', Gloo's, the probe's) inherit this thread's CPUs.
  cpu_set_t before, one;
  REQUIRE(::sched_getaffinity(0, sizeof before, &before) == 0);
  int first = 0;
  while (!CPU_ISSET(first, &before))
    ++first;
  CPU_ZERO(&one);
  CPU_SET(first, &one);
  REQUIRE(::sched_setaffinity(0, sizeof one, &one) == 0);
  const arrival_probe_options options{.bytes = 256 << 10, .messages = 16, .period_us = 1000, .rounds = 3};
  const auto got = test::on_two_ranks([&](int, gloo_group& group) {
    tensor_channel channel(group);
    return probe_arrival_cost(channel, options);
  });
  ::sched_setaffinity(0, sizeof before, &before);
  INFO("cost per arrival " << got[0] << " us");
  CHECK(got[0] > 5); // a 256 KiB message's copy and the threads' wake-ups cost more than 5 us of that CPU
  CHECK(got[0] < 10 * options.period_us); // not a unit slip: an arrival costing 10 ms would starve the compute
}
