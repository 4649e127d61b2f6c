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

// Every error of the validator, each on a hand-made schedule that is valid but for the one fault, with
// the message naming the rank, position, action and what is wrong.

TEST_CASE("a stage out of range is named with the number of stages") {
  auto s = csv("0F0,0B0\n1F0,1B0\n"); // two stages on two ranks
  s.ranks[0][1] = action{2, action_kind::full_backward, 0};
  CHECK(first_violation(s) == "rank 0, position 1 (2B0): stage 2 is out of range (the schedule has 2 stages)");
  s.ranks[0][1] = action{-1, action_kind::full_backward, 0};
  CHECK(first_violation(s) == "rank 0, position 1 (-1B0): stage -1 is out of range (the schedule has 2 stages)");
}

TEST_CASE("a micro-batch out of range is named with the number of micro-batches") {
  auto s = csv("0F0,0F1,0B0,0B1\n1F0,1B0,1F1,1B1\n"); // two micro-batches
  s.ranks[1][2] = action{1, action_kind::forward, 2};
  CHECK(first_violation(s) == "rank 1, position 2 (1F2): micro-batch 2 is out of range (the schedule has 2 "
                              "micro-batches)");
  s.ranks[1][2] = action{1, action_kind::forward, no_microbatch}; // only U goes without one
  CHECK(first_violation(s) == "rank 1, position 2 (1F): micro-batch -1 is out of range (the schedule has 2 "
                              "micro-batches)");
}

TEST_CASE("U takes no micro-batch") {
  auto s = csv("0F0,0B0,0U\n1F0,1B0,1U\n");
  REQUIRE(first_violation(s) == "valid");
  s.ranks[1][2] = action{1, action_kind::optimizer_step, 0};
  CHECK(first_violation(s) == "rank 1, position 2 (1U0): U takes no micro-batch");
}

TEST_CASE("REDUCE_GRAD, which traces record, is refused in a schedule") {
  auto s = csv("0F0,0B0,0U\n1F0,1B0,1U\n");
  s.ranks[1].insert(s.ranks[1].begin() + 2, parse_action("1REDUCE_GRAD"));
  CHECK(first_violation(s) == "rank 1, position 2 (1REDUCE_GRAD): REDUCE_GRAD is not scheduled: the runtime sums a "
                              "stage's gradients over its replicas itself (--dp) and traces record it");
}

TEST_CASE("U must come after all backward work of its stage, B or W") {
  // U between the two backwards of stage 0.
  CHECK(first_violation(csv("0F0,0F1,0B0,0U,0B1\n1F0,1B0,1F1,1B1,1U\n")) ==
        "rank 0, position 3 (0U): needs 0B1, which comes later on the same rank (position 4)");
  // U after stage 1's I but before its W.
  CHECK(first_violation(csv("0F0,0B0,0U\n1F0,1I0,1U,1W0\n")) ==
        "rank 1, position 2 (1U): needs 1W0, which comes later on the same rank (position 3)");
  // The same schedules with U last are valid.
  CHECK(first_violation(csv("0F0,0F1,0B0,0B1,0U\n1F0,1B0,1F1,1B1,1U\n")) == "valid");
  CHECK(first_violation(csv("0F0,0B0,0U\n1F0,1I0,1W0,1U\n")) == "valid");
}

TEST_CASE("a schedule whose rank lists do not match its shape's rank count is rejected") {
  auto s = csv("0F0,0B0\n1F0,1B0\n");
  s.ranks.push_back({});
  CHECK(first_violation(s) == "the schedule lists 3 ranks but its shape has 2");
  s.ranks.resize(1);
  CHECK(first_violation(s) == "the schedule lists 1 ranks but its shape has 2");
}

TEST_CASE("a send whose receive is missing is rejected, naming the receive the consumer needs") {
  // Rank 0 sends F's output of micro-batch 1, rank 1 never receives it.
  auto s = csv("0F0,0SEND_F0,0F1,0SEND_F1,0RECV_B0,0B0,0RECV_B1,0B1\n"
               "1RECV_F0,1F0,1B0,1SEND_B0,1F1,1B1,1SEND_B1\n");
  CHECK(first_violation(s) == "rank 1, position 4 (1F1): needs 1RECV_F1, which rank 1 never runs");
  // Rank 1 sends the gradient of micro-batch 0, rank 0 never receives it.
  auto t = csv("0F0,0SEND_F0,0F1,0SEND_F1,0B0,0RECV_B1,0B1\n"
               "1RECV_F0,1F0,1B0,1SEND_B0,1RECV_F1,1F1,1B1,1SEND_B1\n");
  CHECK(first_violation(t) == "rank 0, position 4 (0B0): needs 0RECV_B0, which rank 0 never runs");
}

TEST_CASE("sends and receives between two stages of the same rank are rejected") {
  // V placement on 2 ranks: rank 1 holds stages 1 and 2, which hand over in memory.
  auto s = csv("0F0,0SEND_F0,3RECV_F0,3F0,3B0,3SEND_B0,0RECV_B0,0B0\n"
               "1RECV_F0,1F0,1SEND_F0,2F0,2SEND_F0,2RECV_B0,2B0,1B0,1SEND_B0\n");
  REQUIRE(s.shape.placement == placement_style::v_shape);
  CHECK(first_violation(s) == "rank 1, position 2 (1SEND_F0): needs no send: stage 2 is on the same rank");
  s.ranks[1].erase(s.ranks[1].begin() + 2); // drop 1SEND_F0
  CHECK(first_violation(s) == "valid");
  auto recv_f = s;
  recv_f.ranks[1].insert(recv_f.ranks[1].begin() + 2, parse_action("2RECV_F0"));
  CHECK(first_violation(recv_f) == "rank 1, position 2 (2RECV_F0): needs no receive: stage 1 is on the same rank");
  auto recv_b = s;
  recv_b.ranks[1].insert(recv_b.ranks[1].begin() + 6, parse_action("1RECV_B0"));
  CHECK(first_violation(recv_b) == "rank 1, position 6 (1RECV_B0): needs no receive: stage 2 is on the same rank");
  auto send_b = s;
  send_b.ranks[1].insert(send_b.ranks[1].begin() + 6, parse_action("2SEND_B0"));
  CHECK(first_violation(send_b) == "rank 1, position 6 (2SEND_B0): needs no send: stage 1 is on the same rank");
}

TEST_CASE("sends and receives past either end of the pipeline are rejected") {
  const auto s = add_communication(csv("0F0,0B0\n1F0,1B0\n"));
  REQUIRE(first_violation(s) == "valid");
  auto with = [&](int rank, const char* a) {
    auto t = s;
    t.ranks[static_cast<std::size_t>(rank)].push_back(parse_action(a));
    return first_violation(t);
  };
  CHECK(with(1, "1SEND_F0") == "rank 1, position 4 (1SEND_F0): the last stage has no next stage to send to");
  CHECK(with(1, "1RECV_B0") ==
        "rank 1, position 4 (1RECV_B0): the last stage has no next stage to receive a gradient from");
  CHECK(with(0, "0SEND_B0") == "rank 0, position 4 (0SEND_B0): stage 0 has no previous stage to send a gradient to");
}


