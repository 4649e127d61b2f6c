#pragma once
// The rendezvous of a job: the c10d TCPStore at MASTER_ADDR:MASTER_PORT (+ port_offset), served by rank 0,
// every rank waiting for all WORLD_SIZE ranks (within `timeout`). One setup for the Gloo process group and
// gpu/'s NCCL communicators (port_offset 1 when a gloo_group of the same job already serves MASTER_PORT).
// Throws peer_error naming the rank and the address when it cannot be reached.
#include <c10/util/intrusive_ptr.h>

#include <chrono>
#include <exception>
#include <string>

#include "pippy/runtime/environment.hpp"

namespace c10d {
class Store;
}

namespace pippy {

c10::intrusive_ptr<c10d::Store> connect_store(const dist_env& env, std::chrono::milliseconds timeout,
                                              int port_offset = 0);

// An exception's message without c10's backtrace ("Exception raised from ... frame #0 ..."), which c10d's
// errors carry: what a rank says when its rendezvous or a transfer fails is one line, not a stack.
std::string without_backtrace(const std::exception& e);

} // namespace pippy
