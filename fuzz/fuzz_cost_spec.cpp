// Fuzzes the --cost option's text ("F=1,B=2,I=1,W=1,U=0").
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "pippy/core/cost_table.hpp"
#include "pippy/core/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    (void)pippy::parse_cost_spec(text);
  } catch (const pippy::input_error&) {
    // A rejection with a message: expected. Anything else escapes and libFuzzer reports it.
  }
  return 0;
}
