#pragma once
// A real Gloo group of two ranks in one test process (two threads, a TCPStore on a free loopback port).
#include <array>
#include <chrono>
#include <future>

#include "loopback.hpp"
#include "pippy/runtime/gloo_group.hpp"

namespace pippy::test {

// Runs `body(rank, group)` on two threads over one Gloo group; returns what each gave, for checking on
// the calling thread (Catch's assertions are not thread-safe).
template <class F>
auto on_two_ranks(F body) {
  const int port = free_loopback_port();
  auto run = [&](int rank) {
    dist_env env;
    env.rank = rank;
    env.world_size = 2;
    env.master_port = port;
    gloo_group group(env, std::chrono::seconds(20));
    auto out = body(rank, group);
    group.barrier();
    return out;
  };
  auto r0 = std::async(std::launch::async, run, 0);
  auto r1 = std::async(std::launch::async, run, 1);
  return std::array{r0.get(), r1.get()};
}

} // namespace pippy::test
