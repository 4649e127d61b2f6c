// Fuzzes a Chrome trace file (ours or PyTorch's): parse, then what `pippy trace summary` prints
// (compute_metrics, format_summary).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "pippy/core/error.hpp"
#include "pippy/traces/chrome_trace.hpp"
#include "pippy/traces/metrics.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const auto t = pippy::parse_chrome_json(text, "fuzz.json");
    (void)pippy::format_summary(t, pippy::compute_metrics(t));
  } catch (const pippy::input_error&) {
    // A rejection with a message: expected. Anything else escapes and libFuzzer reports it.
  }
  return 0;
}
