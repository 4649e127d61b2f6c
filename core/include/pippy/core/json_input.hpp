#pragma once
// Reading a user's JSON: one place that turns every malformed document (bad syntax, a number beyond
// double's range such as 1e309) and every field of the wrong type or range into an input_error naming
// the file and the field. Parsers of schedules, cost files, plans and traces all read through it.
#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace pippy {

// The document in `text`; throws input_error naming `source` when it is not valid JSON.
nlohmann::json parse_json(std::string_view text, const std::string& source);

// A whole number in [lo, hi] (1e3 counts, 1.5 does not); throws input_error naming `where`, the range
// included, otherwise.
std::int64_t json_integer(const nlohmann::json& v, const std::string& where, std::int64_t lo, std::int64_t hi);

// A finite number in [lo, hi]; throws input_error naming `where`, `what` ("number of microseconds") and
// the range otherwise.
double json_number(const nlohmann::json& v, const std::string& where, const char* what, double lo = 0.0,
                   double hi = std::numeric_limits<double>::max());

// The same, with `where` built only when it is needed (an error): a reader of a million events checks
// millions of fields, almost all of them good.
template <std::invocable Where>
std::int64_t json_integer(const nlohmann::json& v, const Where& where, std::int64_t lo, std::int64_t hi) {
  if (v.is_number_integer() && !v.is_number_unsigned()) {
    const auto i = v.get<std::int64_t>();
    if (i >= lo && i <= hi)
      return i;
  } else if (v.is_number_unsigned() && lo <= 0) {
    const auto u = v.get<std::uint64_t>();
    if (hi >= 0 && u <= static_cast<std::uint64_t>(hi))
      return static_cast<std::int64_t>(u);
  }
  return json_integer(v, std::string(where()), lo, hi); // the rare cases and the errors
}
template <std::invocable Where>
double json_number(const nlohmann::json& v, const Where& where, const char* what, double lo = 0.0,
                   double hi = std::numeric_limits<double>::max()) {
  if (v.is_number()) {
    const double d = v.get<double>();
    if (d >= lo && d <= hi) // NaN fails both
      return d;
  }
  return json_number(v, std::string(where()), what, lo, hi);
}

// Throws input_error naming `where` and the unknown key when object `o` holds a key not in `known`, so
// that a misspelt field is an error rather than silently ignored.
void reject_unknown_keys(const nlohmann::json& o, std::initializer_list<std::string_view> known,
                         const std::string& where);

} // namespace pippy
