#pragma once
// Option checks shared by every command-line program (pippy, the examples).
#include <CLI/CLI.hpp>

#include <map>
#include <sstream>
#include <string>
#include <type_traits>

namespace pippy::cli {

// A number option within [lo, hi]. CLI::Range lets NaN through (every comparison with it is false) and
// says nothing of infinities; this refuses both, and its message gives the range.
inline CLI::Validator within(double lo, double hi) {
  auto text = [](double v) {
    std::ostringstream o;
    o << v;
    return o.str();
  };
  const std::string range = text(lo) + " to " + text(hi);
  return CLI::Validator(
      [lo, hi, range](std::string& value) -> std::string {
        double v = 0;
        if (!CLI::detail::lexical_cast(value, v))
          return "'" + value + "' is not a number";
        if (!(v >= lo && v <= hi))
          return "must be a finite number from " + range + " (got " + value + ")";
        return {};
      },
      "in [" + range + "]");
}

// An option that takes one of `names` (CLI::CheckedTransformer prints an enum of one byte as raw bytes in
// its help and errors). Use with ->type_name(...) to show the names.
template <class E>
CLI::Validator one_of(const std::map<std::string, E>& names) {
  std::string list;
  for (const auto& [name, value] : names)
    list += (list.empty() ? "" : ", ") + name;
  return CLI::Validator(
      [names, list](std::string& value) -> std::string {
        const auto it = names.find(value);
        if (it == names.end())
          return "'" + value + "' is not one of: " + list;
        if constexpr (std::is_enum_v<E>)
          value = std::to_string(static_cast<long long>(it->second));
        else
          value = std::to_string(it->second);
        return {};
      },
      "");
}

} // namespace pippy::cli
