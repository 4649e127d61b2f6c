#pragma once
// The one place that includes c10d's ProcessGroupGloo.hpp (with gloo_declarations/, see its README).
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <string>

namespace pippy {

// A ProcessGroupGloo of `size` ranks met through `store`. Its device: GLOO_SOCKET_IFNAME's interface
// if set, else 127.0.0.1 when the master is on loopback, else this host's default address.
c10::intrusive_ptr<c10d::Backend> make_gloo_backend(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                                                    std::chrono::milliseconds timeout, const std::string& master_addr);

} // namespace pippy
