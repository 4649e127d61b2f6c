#pragma once
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace pippy {

// What a rank does at one position of its schedule, in torch.distributed.pipelining's vocabulary.
enum class action_kind : std::uint8_t {
  forward,         // F
  backward_input,  // I: gradient w.r.t. the stage's inputs only
  backward_weight, // W: gradient w.r.t. the stage's weights only
  full_backward,   // B = I + W
  optimizer_step,  // U: one per stage, after all its backward work
  send_f,          // SEND_F: stage s sends F's output to stage s+1
  recv_f,          // RECV_F: stage s receives its F input from stage s-1
  send_b,          // SEND_B: stage s sends its input gradient to stage s-1
  recv_b,          // RECV_B: stage s receives its output gradient from stage s+1
  reduce_grad,     // REDUCE_GRAD: stage s's weight gradients summed over its data-parallel replicas (pp x dp);
                   // traces record it on the communication stream, schedules never hold it
};

inline constexpr int num_action_kinds = 10;

std::string_view to_string(action_kind kind);
std::optional<action_kind> parse_action_kind(std::string_view text);

bool is_compute(action_kind kind);
bool is_communication(action_kind kind);
// RECV_F or RECV_B: the receiving end of a transfer.
inline bool is_receive(action_kind k) { return k == action_kind::recv_f || k == action_kind::recv_b; }
// SEND_F or SEND_B: the sending end of a transfer.
inline bool is_send(action_kind k) { return k == action_kind::send_f || k == action_kind::send_b; }
// U or REDUCE_GRAD: once per stage and step, without a micro-batch.
inline bool is_per_stage(action_kind k) { return k == action_kind::optimizer_step || k == action_kind::reduce_grad; }
// I or B: produces the gradient the previous stage waits for.
inline bool is_input_backward(action_kind k) {
  return k == action_kind::backward_input || k == action_kind::full_backward;
}

inline constexpr int no_microbatch = -1;

struct action {
  int stage = 0;
  action_kind kind = action_kind::forward;
  int microbatch = no_microbatch; // no_microbatch for U

  friend auto operator<=>(const action&, const action&) = default;
};

// "2F0", "0SEND_F3", "1U". Parsing throws input_error with the text in the message.
std::string to_string(const action& a);
action parse_action(std::string_view text);

} // namespace pippy
