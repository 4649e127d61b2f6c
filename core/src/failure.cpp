#include "pippy/core/failure.hpp"

namespace pippy {

std::string_view to_string(failure_kind kind) {
  switch (kind) {
  case failure_kind::compute_error: return "compute error";
  case failure_kind::out_of_memory: return "out of memory";
  case failure_kind::peer_lost: return "peer lost";
  case failure_kind::timeout: return "timeout";
  case failure_kind::shape_mismatch: return "shape mismatch";
  case failure_kind::type_mismatch: return "type mismatch";
  }
  return "unknown failure";
}

} // namespace pippy
