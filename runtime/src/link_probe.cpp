#include "pippy/runtime/link_probe.hpp"

#include "pippy/core/error.hpp"

#include <algorithm>
#include <sstream>

#include "pippy/runtime/gloo_group.hpp"
#include "pippy/runtime/clock.hpp"
#include "pippy/traces/metrics.hpp"

namespace pippy {
namespace {

// Tags of a stage index no pipeline reaches (tensor_channel allows 1024 stages; schedules stay far below).
constexpr int probe_stage = 1023;

std::string link_key(int a, int b) { return "pippy/links/" + std::to_string(a) + "/" + std::to_string(b); }

} // namespace

std::vector<link_cost> probe_links(tensor_channel& channel, const link_probe_options& options) {
  // Checked on every rank before any message, so that all of them refuse alike instead of one waiting.
  std::vector<std::uint64_t> distinct; // in float32 elements, as sent
  for (std::uint64_t b : options.sizes)
    distinct.push_back(std::max<std::uint64_t>(1, b / 4));
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  if (distinct.size() < 2 || options.repeats < 1 ||
      static_cast<std::uint64_t>(options.sizes.size()) * static_cast<std::uint64_t>(options.repeats + 1) > 4096 ||
      distinct.back() > (std::uint64_t{1} << 30))
    throw input_error("link probe: needs two or more different sizes up to 4 GiB and 1 or more repeats, at most "
                      "4096 messages per pair");
  gloo_group& net = channel.transport();
  const int me = net.rank(), R = net.world_size();
  using dir = tensor_channel::direction;
  for (int a = 0; a < R; ++a)
    for (int b = a + 1; b < R; ++b) {
      if (me == a || me == b) {
        std::vector<std::pair<double, double>> points;
        int round = 0; // micro-batch index of the tags: unique per message of this pair
        for (std::uint64_t bytes : options.sizes) {
          const auto elems = static_cast<std::int64_t>(std::max<std::uint64_t>(1, bytes / 4));
          const torch::Tensor x = torch::ones({elems}, torch::kFloat32);
          std::vector<double> trips;
          for (int k = 0; k <= options.repeats; ++k, ++round) {
            if (me == a) {
              const double t0 = now_us();
              channel.send(dir::forward, probe_stage, round, {x}, b);
              channel.recv(dir::backward, probe_stage, round, b);
              if (k > 0) // the first round trip warms up
                trips.push_back(now_us() - t0);
            } else {
              auto got = channel.recv(dir::forward, probe_stage, round, a);
              channel.send(dir::backward, probe_stage, round, got, a);
            }
          }
          if (me == a) {
            points.push_back({static_cast<double>(elems * 4), median_of(std::move(trips)) / 2});
          }
        }
        if (me == a) {
          const link_class fit = fit_link(points);
          std::ostringstream v;
          v.precision(17);
          v << fit.latency_us << " " << fit.bandwidth_gbps;
          net.store_set(link_key(a, b), v.str());
        }
      }
      net.flush();
      net.barrier();
    }
  std::vector<link_cost> links;
  if (me != 0)
    return links;
  for (int a = 0; a < R; ++a)
    for (int b = a + 1; b < R; ++b) {
      std::istringstream in(net.store_get(link_key(a, b)));
      link_cost l{.src = a, .dst = b};
      in >> l.latency_us >> l.bandwidth_gbps;
      links.push_back(l);
      links.push_back(link_cost{.src = b, .dst = a, .latency_us = l.latency_us, .bandwidth_gbps = l.bandwidth_gbps});
    }
  return links;
}

link_class probe_replica_link(gloo_group& replicas, const link_probe_options& options) {
  std::vector<std::pair<double, double>> points;
  for (std::uint64_t bytes : options.sizes) {
    std::vector<torch::Tensor> x{torch::ones({static_cast<std::int64_t>(std::max<std::uint64_t>(1, bytes / 4))}, torch::kFloat32)};
    std::vector<double> times;
    for (int k = 0; k <= options.repeats; ++k) {
      const double t0 = now_us();
      replicas.allreduce_sum(x);
      if (k > 0) // the first warms up
        times.push_back(now_us() - t0);
    }
    points.push_back({static_cast<double>(x[0].numel() * 4), median_of(std::move(times))});
  }
  return fit_ring_link(points, replicas.world_size());
}

} // namespace pippy
