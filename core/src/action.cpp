#include "pippy/core/action.hpp"

#include <array>
#include <charconv>

#include "pippy/core/error.hpp"

namespace pippy {
namespace {

constexpr std::array<std::string_view, num_action_kinds> kind_names = {
    "F", "I", "W", "B", "U", "SEND_F", "RECV_F", "SEND_B", "RECV_B", "REDUCE_GRAD"};

// Digits at the front of text, removed from it; nullopt if there are none.
std::optional<int> take_number(std::string_view& text) {
  int value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end == text.data())
    return std::nullopt;
  text.remove_prefix(static_cast<std::size_t>(end - text.data()));
  return value;
}

} // namespace

std::string_view to_string(action_kind kind) { return kind_names[static_cast<std::size_t>(kind)]; }

std::optional<action_kind> parse_action_kind(std::string_view text) {
  for (std::size_t i = 0; i < kind_names.size(); ++i)
    if (kind_names[i] == text)
      return static_cast<action_kind>(i);
  return std::nullopt;
}

bool is_compute(action_kind kind) { return kind <= action_kind::optimizer_step; }
bool is_communication(action_kind kind) { return !is_compute(kind); }

std::string to_string(const action& a) {
  std::string out = std::to_string(a.stage);
  out += to_string(a.kind);
  if (a.microbatch != no_microbatch)
    out += std::to_string(a.microbatch);
  return out;
}

action parse_action(std::string_view text) {
  const std::string quoted = "action '" + std::string(text) + "'";
  std::string_view rest = text;
  if (rest.empty())
    throw input_error("empty action");
  if (rest.front() == '-' || rest.front() == '+')
    throw input_error(quoted + ": the stage must be a non-negative number");
  auto stage = take_number(rest);
  if (!stage)
    throw input_error(quoted + ": expected a stage number first (as in 2F0)");
  std::optional<action_kind> kind;
  std::size_t kind_len = 0;
  // Longest name first so that "SEND_F" is not read as something shorter.
  for (std::size_t i = 0; i < kind_names.size(); ++i) {
    auto name = kind_names[i];
    if (rest.substr(0, name.size()) == name && name.size() > kind_len) {
      kind = static_cast<action_kind>(i);
      kind_len = name.size();
    }
  }
  if (!kind)
    throw input_error(quoted + ": unknown kind; expected one of F, I, W, B, U, SEND_F, RECV_F, SEND_B, RECV_B");
  rest.remove_prefix(kind_len);
  action a{.stage = *stage, .kind = *kind, .microbatch = no_microbatch};
  if (is_per_stage(*kind)) {
    if (!rest.empty())
      throw input_error(quoted + ": " + (*kind == action_kind::optimizer_step ? "U (optimizer step)" : "REDUCE_GRAD") +
                        " takes no micro-batch (write it as " + std::to_string(*stage) + std::string(to_string(*kind)) + ")");
    return a;
  }
  if (!rest.empty() && (rest.front() == '-' || rest.front() == '+'))
    throw input_error(quoted + ": the micro-batch must be a non-negative number");
  auto mb = take_number(rest);
  if (!mb)
    throw input_error(quoted + ": expected a micro-batch number after " + std::string(to_string(*kind)));
  if (!rest.empty())
    throw input_error(quoted + ": unexpected trailing text '" + std::string(rest) + "'");
  a.microbatch = *mb;
  return a;
}

} // namespace pippy
