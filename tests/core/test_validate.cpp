#include <catch2/catch.hpp>

#include "pippy/core/error.hpp"
#include "pippy/core/generators.hpp"
#include "pippy/core/schedule_io.hpp"
#include "pippy/core/validate.hpp"

using namespace pippy;

namespace {

// Schedules written as CSV text, the way users write their own.
schedule csv(const std::string& text) { return schedule_from_csv(text, "test.csv"); }

std::string first_violation(const schedule& s) {
  auto v = find_violation(s);
  return v ? v->message() : "valid";
}

} // namespace

TEST_CASE("a valid hand-written schedule passes, compute-only and lowered") {
  auto s = csv("0F0,0F1,0B0,0B1\n1F0,1B0,1F1,1B1\n");
  CHECK(first_violation(s) == "valid");
  auto lowered = add_communication(s);
  CHECK(lowered.ranks[0] == std::vector<action>{parse_action("0F0"), parse_action("0SEND_F0"), parse_action("0F1"),
                                                parse_action("0SEND_F1"), parse_action("0RECV_B0"),
                                                parse_action("0B0"), parse_action("0RECV_B1"), parse_action("0B1")});
  CHECK(first_violation(lowered) == "valid");
  CHECK(strip_communication(lowered) == s);
}

TEST_CASE("each micro-batch must be forwarded and backwarded exactly once per stage") {
  CHECK(first_violation(csv("0F0,0B0,0F1\n1F0,1B0,1F1,1B1\n")) ==
        "stage 0 micro-batch 1 is never backwarded (no B, or I and W)");
  CHECK(first_violation(csv("0F0,0F0,0B0\n1F0,1B0\n")) == "rank 0, position 1 (0F0): appears twice (first at rank 0, "
                                                          "position 0)");
  CHECK(first_violation(csv("0F0,0I0,0B0\n1F0,1B0\n")) == "stage 0 micro-batch 0 has both B and I/W");
  CHECK(first_violation(csv("0F0,0I0\n1F0,1B0\n")) == "stage 0 micro-batch 0 has I without W");
  CHECK(first_violation(csv("0B0\n1F0,1B0\n")) == "stage 0 micro-batch 0 is never forwarded (no 0F0)");
}

TEST_CASE("actions sit on the rank their stage is placed on") {
  auto s = csv("0F0,0B0\n1F0,1B0\n");
  s.ranks[1][0] = parse_action("0F0");
  CHECK(first_violation(s) == "rank 1, position 0 (0F0): stage 0 sits on rank 0, not on rank 1");
}

TEST_CASE("data dependencies that come later on the same rank are named") {
  // W before its I on rank 1.
  CHECK(first_violation(csv("0F0,0B0\n1F0,1W0,1I0\n")) ==
        "rank 1, position 1 (1W0): needs 1I0, which comes later on the same rank (position 2)");
}

TEST_CASE("a cycle between ranks is reported as a deadlock naming every blocked rank") {
  // Rank 1 wants micro-batch 1 first; rank 0 wants micro-batch 0's gradient before forwarding 1.
  CHECK(first_violation(csv("0F0,0B0,0F1,0B1\n1F1,1F0,1B0,1B1\n")) ==
        "deadlock: rank 0 at position 1 (0B0) waits for 1B0 on rank 1; rank 1 at position 0 (1F1) waits for 0F1 on "
        "rank 0");
}

TEST_CASE("sends must match receives in order between a pair of ranks") {
  // Rank 1 receives micro-batch 1 before micro-batch 0, but rank 0 sent 0 first.
  auto s = csv("0F0,0SEND_F0,0F1,0SEND_F1,0RECV_B0,0B0,0RECV_B1,0B1\n"
               "1RECV_F1,1F1,1RECV_F0,1F0,1B0,1SEND_B0,1B1,1SEND_B1\n");
  CHECK(first_violation(s) ==
        "rank 1, position 0 (1RECV_F1): receives out of order: the next message from rank 0 is 0SEND_F0, not 0SEND_F1");
}

TEST_CASE("a lowered schedule must receive what crosses ranks") {
  auto s = csv("0F0,0SEND_F0,0RECV_B0,0B0\n1F0,1B0,1SEND_B0\n");
  CHECK(first_violation(s) == "rank 1, position 0 (1F0): needs 1RECV_F0, which rank 1 never runs");
}

TEST_CASE("a send nobody receives is reported") {
  auto s = csv("0F0,0SEND_F0,0RECV_B0,0B0\n1RECV_F0,1F0,1B0,1SEND_B0,1SEND_B0\n");
  // the duplicate send is caught first
  CHECK(first_violation(s) == "rank 1, position 4 (1SEND_B0): appears twice (first at rank 1, position 3)");
  auto t = csv("0F0,0SEND_F0,0B0\n1RECV_F0,1F0,1B0,1SEND_B0\n");
  CHECK(first_violation(t) == "rank 0, position 2 (0B0): needs 0RECV_B0, which rank 0 never runs");
}

TEST_CASE("receives that need none are rejected") {
  auto s = csv("0F0,0F1,0B0,0B1\n1F0,1B0,1F1,1B1\n");
  s.ranks[0].insert(s.ranks[0].begin(), parse_action("0RECV_F0"));
  CHECK(first_violation(s) == "rank 0, position 0 (0RECV_F0): stage 0 has no previous stage to receive from");
}

TEST_CASE("validate() throws the violation with the schedule's name") {
  auto s = csv("0F0,0B0\n1F0,1W0,1I0\n");
  CHECK_THROWS_WITH(validate(s), "invalid schedule 'test.csv': rank 1, position 1 (1W0): needs 1I0, which comes later "
                                 "on the same rank (position 2)");
}
