// The transport probes of a profile over a real in-process Gloo pair: what an arrival takes from compute.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>

#include "../support/gloo_pair.hpp"
#include "pippy/core/error.hpp"
#include "pippy/runtime/link_probe.hpp"

using namespace pippy;

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
