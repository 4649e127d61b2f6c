#pragma once
// 64-bit FNV-1a: a short, stable digest where no cryptographic strength is needed (checkpoint shards,
// the settings ranks compare, a job id that the launchers of one job derive alike).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace pippy {

inline constexpr std::uint64_t fnv1a_offset = 1469598103934665603ULL;

// The digest of `bytes` bytes at `data`, continuing from `h` (chain calls to digest several pieces).
inline std::uint64_t fnv1a(const void* data, std::size_t bytes, std::uint64_t h = fnv1a_offset) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < bytes; ++i)
    h = (h ^ p[i]) * 1099511628211ULL;
  return h;
}
inline std::uint64_t fnv1a(std::string_view text, std::uint64_t h = fnv1a_offset) {
  return fnv1a(text.data(), text.size(), h);
}

// 16 lower-case hex digits.
inline std::string hex16(std::uint64_t x) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(x));
  return buf;
}

} // namespace pippy
