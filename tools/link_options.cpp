// The link model's command-line options, one definition for pippy sim and pippy plan.
#include <string>

#include "commands.hpp"
#include "pippy/core/error.hpp"

namespace pippy::cli {

void add_link_options(CLI::App& sub, link_options& o) {
  const auto time = within(0, limits::max_time_us), bandwidth = within(0, 1e12);
  sub.add_option("--latency-us", o.latency_us, "Link latency per transfer")->check(time)->capture_default_str();
  // GB/s, gigabytes: --bandwidth-gbps, the first name, read as gigabits and stays as an alias.
  sub.add_option("--bandwidth-gb-per-s,--bandwidth-gbps", o.bandwidth_gbps,
                 "Link bandwidth in gigabytes per second (GB/s; 0 = unlimited)")
      ->check(bandwidth)
      ->capture_default_str();
  sub.add_option("--ranks-per-host", o.ranks_per_host, "Ranks per host (0 = one host)")
      ->check(CLI::Range(0, static_cast<int>(limits::max_ranks)));
  sub.add_option("--inter-host-latency-us", o.inter_latency_us, "Latency between hosts (default --latency-us)")
      ->check(time);
  sub.add_option("--inter-host-bandwidth-gb-per-s,--inter-host-bandwidth-gbps", o.inter_bandwidth_gbps,
                 "Bandwidth between hosts in GB/s (default --bandwidth-gb-per-s)")
      ->check(bandwidth);
  sub.add_flag("--blocking-send", o.blocking_send, "Sends block the sender until delivered (default: async)");
}

link_model make_link_model(const link_options& o) {
  if (!(o.latency_us >= 0))
    throw input_error("--latency-us must be non-negative (got " + std::to_string(o.latency_us) + ")");
  if (!(o.bandwidth_gbps >= 0))
    throw input_error("--bandwidth-gb-per-s must be non-negative (got " + std::to_string(o.bandwidth_gbps) + ")");
  if (o.ranks_per_host < 0)
    throw input_error("--ranks-per-host must be non-negative (got " + std::to_string(o.ranks_per_host) + ")");
  link_model links = link_model::uniform(o.latency_us, o.bandwidth_gbps);
  links.ranks_per_host = o.ranks_per_host;
  if (o.inter_latency_us >= 0)
    links.inter_host.latency_us = o.inter_latency_us;
  if (o.inter_bandwidth_gbps >= 0)
    links.inter_host.bandwidth_gbps = o.inter_bandwidth_gbps;
  links.blocking_send = o.blocking_send;
  return links;
}

} // namespace pippy::cli
