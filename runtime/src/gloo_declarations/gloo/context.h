#pragma once
// What ProcessGroupGloo.hpp uses of gloo::Context (see ../README.md): its inline setTimeout override
// calls Context::setTimeout, which libtorch's gloo defines.
#include <chrono>

namespace gloo {
class Context {
public:
  void setTimeout(std::chrono::milliseconds timeout);
};
} // namespace gloo
