// Simulated actions per second: the stage and micro-batch actors on CAF's test_coordinator (pippy sim)
// against a bare std::priority_queue event loop running the same lowered schedule, same semantics, and
// core's flat evaluator (what pippy plan scores candidates with; same makespan required).
// Usage: pippy_sim_bench [ranks=64] [stages_per_rank=4] [microbatches...=256 512 1024]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <queue>
#include <string>
#include <vector>

#include "pippy/core/flat_evaluator.hpp"
#include "pippy/core/generators.hpp"
#include "pippy/simulator/simulator.hpp"

using namespace pippy;

namespace {

// The bare loop: per rank a program counter; compute actions end after their cost, sends arrive after
// the link latency; a rank blocks on a missing input until it arrives.
double bare_event_loop(const schedule& s, const cost_table& costs, double latency, std::size_t& events) {
  const int R = s.shape.num_ranks, S = s.shape.num_stages(), M = s.shape.num_microbatches;
  struct ev {
    double t;
    std::uint64_t seq;
    int rank;      // completion of the rank's current compute action, or -1 for an arrival
    int slot;      // arrival: (dir * S + stage) * M + mb
  };
  struct later {
    bool operator()(const ev& a, const ev& b) const { return a.t > b.t || (a.t == b.t && a.seq > b.seq); }
  };
  std::priority_queue<ev, std::vector<ev>, later> q;
  std::vector<char> arrived(static_cast<std::size_t>(2 * S * M), 0);
  std::vector<std::size_t> pc(static_cast<std::size_t>(R), 0);
  std::vector<int> blocked_on(static_cast<std::size_t>(R), -1);
  std::uint64_t seq = 0;
  double now = 0, makespan = 0;
  auto slot = [&](int dir, int stage, int mb) { return (dir * S + stage) * M + mb; };
  auto advance = [&](int r) {
    const auto& list = s.ranks[static_cast<std::size_t>(r)];
    auto& i = pc[static_cast<std::size_t>(r)];
    while (i < list.size()) {
      const action& a = list[i];
      switch (a.kind) {
      case action_kind::recv_f:
      case action_kind::recv_b: {
        const int k = slot(a.kind == action_kind::recv_f ? 0 : 1, a.stage, a.microbatch);
        if (!arrived[static_cast<std::size_t>(k)]) {
          blocked_on[static_cast<std::size_t>(r)] = k;
          return;
        }
        ++i;
        break;
      }
      case action_kind::send_f:
        q.push({now + latency, seq++, -1, slot(0, a.stage + 1, a.microbatch)});
        ++i;
        break;
      case action_kind::send_b:
        q.push({now + latency, seq++, -1, slot(1, a.stage - 1, a.microbatch)});
        ++i;
        break;
      default:
        q.push({now + costs(a), seq++, r, 0});
        return;
      }
    }
  };
  for (int r = 0; r < R; ++r)
    advance(r);
  while (!q.empty()) {
    const ev e = q.top();
    q.pop();
    ++events;
    now = e.t;
    makespan = std::max(makespan, now);
    if (e.rank >= 0) {
      ++pc[static_cast<std::size_t>(e.rank)];
      advance(e.rank);
    } else {
      arrived[static_cast<std::size_t>(e.slot)] = 1;
      const int dst_rank = s.shape.rank_of((e.slot / M) % S);
      if (blocked_on[static_cast<std::size_t>(dst_rank)] == e.slot) {
        blocked_on[static_cast<std::size_t>(dst_rank)] = -1;
        advance(dst_rank);
      }
    }
  }
  return makespan;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

} // namespace

int main(int argc, char** argv) {
  const int R = argc > 1 ? std::atoi(argv[1]) : 64;
  const int V = argc > 2 ? std::atoi(argv[2]) : 4;
  std::vector<int> sizes;
  for (int i = 3; i < argc; ++i)
    sizes.push_back(std::atoi(argv[i]));
  if (sizes.empty())
    sizes = {256, 512, 1024};
  const double latency = 0.5;
  const int repeats = std::getenv("PIPPY_BENCH_REPEATS") ? std::atoi(std::getenv("PIPPY_BENCH_REPEATS")) : 3;
  std::printf("interleaved-1f1b R=%d V=%d, uniform F=1 B=2 us, latency %.1f us, one thread\n", R, V, latency);
  std::printf("simulate() = validate + lower (core) then run (actors); rates use the run part, the total in (); best of %d\n", repeats);
  std::printf("%6s %10s %10s %10s %14s %10s %14s %10s %12s %7s %10s %12s %15s\n", "M", "actions", "validate_s", "actors_s",
              "actors_Mact/s", "untrack_s", "untrack_Mact/s", "bare_s", "bare_Mact/s", "ratio", "flat_s", "flat_Mact/s",
              "arrivals_Mact/s");
  flat_evaluator flat; // one object, buffers reused from call to call as the planner does
  for (int M : sizes) {
    const schedule s = add_communication(
        make_schedule({.name = "interleaved-1f1b", .num_ranks = R, .num_microbatches = M, .stages_per_rank = V}));
    const double n = static_cast<double>(s.num_actions());
    sim::sim_options o{.costs = uniform_costs(s.shape.num_stages(), stage_cost{}),
                       .links = sim::link_model::uniform(latency, 0)};
    // The machine is shared: best of `repeats` runs for each.
    sim::sim_result tracked, untracked;
    double t_actors = 1e300, t_untracked = 1e300, t_bare = 1e300, ta = 1e300, tu = 1e300, bare_makespan = 0;
    double t_flat = 1e300, flat_makespan = 0;
    for (int rep = 0; rep < repeats; ++rep) {
      o.track_microbatches = true;
      auto t0 = std::chrono::steady_clock::now();
      tracked = sim::simulate(s, o);
      t_actors = std::min(t_actors, seconds_since(t0));
      ta = std::min(ta, tracked.run_wall_s);
      o.track_microbatches = false;
      t0 = std::chrono::steady_clock::now();
      untracked = sim::simulate(s, o);
      t_untracked = std::min(t_untracked, seconds_since(t0));
      tu = std::min(tu, untracked.run_wall_s);
      std::size_t events = 0;
      t0 = std::chrono::steady_clock::now();
      bare_makespan = bare_event_loop(s, o.costs, latency, events);
      t_bare = std::min(t_bare, seconds_since(t0));
      t0 = std::chrono::steady_clock::now();
      flat_makespan = flat.evaluate(s, o.costs, o.links, o.memory).makespan_us;
      t_flat = std::min(t_flat, seconds_since(t0));
    }
    if (bare_makespan != tracked.makespan_us || untracked.makespan_us != tracked.makespan_us ||
        flat_makespan != tracked.makespan_us) {
      std::fprintf(stderr, "makespans differ: actors %.3f, untracked %.3f, bare loop %.3f, flat %.3f\n",
                   tracked.makespan_us, untracked.makespan_us, bare_makespan, flat_makespan);
      return 1;
    }
    // With a cost per arrival the flat evaluator settles compute ends in time order (a heap of ends).
    // Latency 0.5 and F = 1: every forward's output lands inside the next rank's running action.
    sim::sim_options charged = o;
    charged.costs.arrival_cost_us = 0.1;
    charged.track_microbatches = false;
    double t_charged = 1e300, charged_makespan = 0;
    for (int rep = 0; rep < repeats; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      charged_makespan = flat.evaluate(s, charged.costs, charged.links, charged.memory).makespan_us;
      t_charged = std::min(t_charged, seconds_since(t0));
    }
    if (const double by_actors = sim::simulate(s, charged).makespan_us; by_actors != charged_makespan) {
      std::fprintf(stderr, "with arrival costs the makespans differ: actors %.3f, flat %.3f\n", by_actors, charged_makespan);
      return 1;
    }
    std::printf("%6d %10.0f %10.3f %10.3f %7.2f (%4.2f) %10.3f %7.2f (%4.2f) %10.3f %12.2f %7.1f %10.4f %12.2f %12.2f\n", M, n,
                tracked.validate_wall_s, ta, n / ta / 1e6, n / t_actors / 1e6, tu, n / tu / 1e6, n / t_untracked / 1e6,
                t_bare, n / t_bare / 1e6, ta / t_bare, t_flat, n / t_flat / 1e6, n / t_charged / 1e6);
    std::fflush(stdout);
  }
  return 0;
}
