#include "pippy/core/json_input.hpp"

#include <cmath>
#include <sstream>

#include "pippy/core/error.hpp"

namespace pippy {

nlohmann::json parse_json(std::string_view text, const std::string& source) {
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) { // parse_error, and out_of_range for 1e309
    std::string why = e.what();
    if (const auto close = why.find("] "); close != std::string::npos)
      why = why.substr(close + 2); // drop nlohmann's "[json.exception.parse_error.101]" tag
    throw input_error(source + ": not valid JSON (" + why + ")");
  }
}

std::int64_t json_integer(const nlohmann::json& v, const std::string& where, std::int64_t lo, std::int64_t hi) {
  const std::string range = " (from " + std::to_string(lo) + " to " + std::to_string(hi) + ")";
  if (!v.is_number())
    throw input_error(where + " must be a whole number" + range + ", got " + v.dump());
  if (v.is_number_unsigned()) {
    const auto u = v.get<std::uint64_t>(); // a literal without a sign: lo still applies (0 where lo is 1)
    if (u > static_cast<std::uint64_t>(hi) || (lo > 0 && u < static_cast<std::uint64_t>(lo)))
      throw input_error(where + " is out of range" + range + ": " + v.dump());
    return v.get<std::int64_t>();
  }
  if (v.is_number_integer()) {
    const auto i = v.get<std::int64_t>();
    if (i < lo || i > hi)
      throw input_error(where + " is out of range" + range + ": " + v.dump());
    return i;
  }
  const double d = v.get<double>();
  if (d != std::floor(d))
    throw input_error(where + " must be a whole number" + range + ", got " + v.dump());
  if (!(d >= static_cast<double>(lo) && d <= static_cast<double>(hi)))
    throw input_error(where + " is out of range" + range + ": " + v.dump());
  return static_cast<std::int64_t>(d);
}

double json_number(const nlohmann::json& v, const std::string& where, const char* what, double lo, double hi) {
  if (!v.is_number() || !(v.get<double>() >= lo && v.get<double>() <= hi)) { // NaN fails both
    std::ostringstream range;
    range << " from " << lo;
    if (hi < std::numeric_limits<double>::max())
      range << " to " << hi;
    throw input_error(where + " must be a finite " + what + range.str() + " (got " + v.dump() + ")");
  }
  return v.get<double>();
}

void reject_unknown_keys(const nlohmann::json& o, std::initializer_list<std::string_view> known,
                         const std::string& where) {
  if (!o.is_object())
    return;
  for (const auto& [key, value] : o.items()) {
    bool ok = false;
    for (auto k : known)
      ok = ok || key == k;
    if (!ok) {
      std::string list;
      for (auto k : known)
        list += (list.empty() ? "" : ", ") + std::string(k);
      std::string at = where; // "file: stages[0]." or "file: "
      while (!at.empty() && (at.back() == '.' || at.back() == ' ' || at.back() == ':'))
        at.pop_back();
      throw input_error(at + ": unknown field \"" + key + "\" (known: " + list + ")");
    }
  }
}

} // namespace pippy
