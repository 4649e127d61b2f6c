// Core's dependency rule: what each action waits for, compute-only and lowered.
#include <catch2/catch.hpp>

#include <vector>

#include "pippy/core/dependencies.hpp"

using namespace pippy;

namespace {
// "role stage mb kinds" per dependency, for readable checks.
std::vector<std::string> describe(const action& a, int stages, const pipeline_shape* lowered = nullptr) {
  std::vector<std::string> out;
  for (const auto& d : inputs_of(a, stages, lowered)) {
    std::string s = std::to_string(static_cast<int>(d.role)) + " s" + std::to_string(d.stage) + " m" +
                    std::to_string(d.microbatch);
    for (int k = 0; k < d.num_kinds; ++k)
      s += " " + std::string(to_string(d.kinds[static_cast<std::size_t>(k)]));
    out.push_back(s);
  }
  return out;
}
constexpr int act = static_cast<int>(input_role::activation), grad = static_cast<int>(input_role::gradient),
              fwd = static_cast<int>(input_role::saved_forward), ib = static_cast<int>(input_role::input_backward),
              sb = static_cast<int>(input_role::stage_backward), prod = static_cast<int>(input_role::produced),
              msg = static_cast<int>(input_role::message);
std::string d(int role, int s, int m, std::string kinds) {
  return std::to_string(role) + " s" + std::to_string(s) + " m" + std::to_string(m) + " " + kinds;
}
} // namespace

TEST_CASE("compute-only: F, I, B, W, U and sends wait for PyTorch's inputs", "[core][dependencies]") {
  using V = std::vector<std::string>;
  CHECK(describe(parse_action("0F3"), 4).empty());
  CHECK(describe(parse_action("2F3"), 4) == V{d(act, 1, 3, "F")});
  CHECK(describe(parse_action("2I3"), 4) == V{d(fwd, 2, 3, "F"), d(grad, 3, 3, "I B")});
  CHECK(describe(parse_action("3B3"), 4) == V{d(fwd, 3, 3, "F")}); // the last stage has the loss
  CHECK(describe(parse_action("2W3"), 4) == V{d(ib, 2, 3, "I")});
  CHECK(describe(parse_action("2U"), 4) == V{d(sb, 2, -1, "B W")});
  CHECK(describe(parse_action("2SEND_F3"), 4) == V{d(prod, 2, 3, "F")});
  CHECK(describe(parse_action("2SEND_B3"), 4) == V{d(prod, 2, 3, "I B")});
  CHECK(describe(parse_action("2RECV_F3"), 4) == V{d(msg, 1, 3, "SEND_F")});
  CHECK(describe(parse_action("2RECV_B3"), 4) == V{d(msg, 3, 3, "SEND_B")});
  for (const auto& dep : inputs_of(parse_action("2F3"), 4))
    CHECK((dep.from_neighbour() && dep.forward_data()));
  for (const auto& dep : inputs_of(parse_action("2W3"), 4))
    CHECK_FALSE(dep.from_neighbour());
}

TEST_CASE("lowered: an input from a stage on another rank is the rank's own receive", "[core][dependencies]") {
  using V = std::vector<std::string>;
  const pipeline_shape looped{.num_ranks = 2, .stages_per_rank = 2, .num_microbatches = 4}; // stage s on rank s % 2
  REQUIRE(looped.rank_of(1) != looped.rank_of(2));
  CHECK(describe(parse_action("2F1"), 4, &looped) == V{d(act, 2, 1, "RECV_F")});
  CHECK(describe(parse_action("1I1"), 4, &looped) == V{d(fwd, 1, 1, "F"), d(grad, 1, 1, "RECV_B")});
  const pipeline_shape one_rank{.num_ranks = 1, .stages_per_rank = 4, .num_microbatches = 4};
  CHECK(describe(parse_action("2F1"), 4, &one_rank) == V{d(act, 1, 1, "F")});
  CHECK(describe(parse_action("1I1"), 4, &one_rank) == V{d(fwd, 1, 1, "F"), d(grad, 2, 1, "I B")});
}
