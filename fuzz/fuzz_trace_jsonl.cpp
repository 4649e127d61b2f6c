// Fuzzes the live JSON-lines stream: every line into one trace, as the live reader does (a bad line is
// rejected and the next one read), then what `pippy trace summary` prints of what was read.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "pippy/core/error.hpp"
#include "pippy/traces/chrome_trace.hpp"
#include "pippy/traces/metrics.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  pippy::trace t;
  for (std::size_t a = 0; a < text.size();) {
    const std::size_t b = std::min(text.find('\n', a), text.size());
    if (b > a) {
      try {
        pippy::parse_json_line(text.substr(a, b - a), t, "fuzz.jsonl");
      } catch (const pippy::input_error&) {
        // A rejected line: expected. Anything else escapes and libFuzzer reports it.
      }
    }
    a = b + 1;
  }
  try {
    (void)pippy::format_summary(t, pippy::compute_metrics(t));
  } catch (const pippy::input_error&) {
  }
  return 0;
}
