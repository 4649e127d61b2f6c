// Fuzzes a schedule CSV file (torchtitan's custom schedules): parse, then validate what was parsed.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "pippy/core/error.hpp"
#include "pippy/core/schedule_io.hpp"
#include "pippy/core/validate.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const auto s = pippy::schedule_from_csv(text, "fuzz.csv");
    if (const auto v = pippy::find_violation(s))
      (void)v->message();
  } catch (const pippy::input_error&) {
    // A rejection with a message: expected. Anything else escapes and libFuzzer reports it.
  }
  return 0;
}
