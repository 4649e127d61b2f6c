#include <catch2/catch.hpp>

#include "pippy/core/action.hpp"
#include "pippy/core/error.hpp"

using namespace pippy;

TEST_CASE("actions are spelled as PyTorch spells them and parse back") {
  CHECK(to_string(action{2, action_kind::forward, 0}) == "2F0");
  CHECK(to_string(action{0, action_kind::send_f, 3}) == "0SEND_F3");
  CHECK(to_string(action{1, action_kind::recv_b, 12}) == "1RECV_B12");
  CHECK(to_string(action{3, action_kind::optimizer_step, no_microbatch}) == "3U");
  CHECK(to_string(action{1, action_kind::reduce_grad, no_microbatch}) == "1REDUCE_GRAD");
  for (int k = 0; k < num_action_kinds; ++k) {
    const auto kind = static_cast<action_kind>(k);
    const action a{7, kind, is_per_stage(kind) ? no_microbatch : 11};
    CHECK(parse_action(to_string(a)) == a);
  }
}

TEST_CASE("malformed actions are rejected with the text and the reason") {
  auto message = [](const char* text) {
    try {
      parse_action(text);
    } catch (const input_error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  CHECK(message("F0") == "action 'F0': expected a stage number first (as in 2F0)");
  CHECK(message("2X0") ==
        "action '2X0': unknown kind; expected one of F, I, W, B, U, SEND_F, RECV_F, SEND_B, RECV_B");
  CHECK(message("2F") == "action '2F': expected a micro-batch number after F");
  CHECK(message("2F0x") == "action '2F0x': unexpected trailing text 'x'");
  CHECK(message("2U3") == "action '2U3': U (optimizer step) takes no micro-batch (write it as 2U)");
  CHECK(message("1REDUCE_GRAD0") == "action '1REDUCE_GRAD0': REDUCE_GRAD takes no micro-batch (write it as 1REDUCE_GRAD)");
  CHECK(message("-1F0") == "action '-1F0': the stage must be a non-negative number");
  CHECK(message("") == "empty action");
}
