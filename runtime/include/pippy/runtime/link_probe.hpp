#pragma once
// Latency and bandwidth between ranks, measured the way the pipeline moves tensors: a ping-pong over
// the run's own tensor_channel (a header, then the tensor) at several sizes.
#include <cstdint>
#include <vector>

#include "pippy/core/cost_table.hpp"
#include "pippy/runtime/tensor_channel.hpp"

namespace pippy {

struct link_probe_options {
  std::vector<std::uint64_t> sizes = {4u << 10, 256u << 10, 2u << 20}; // bytes per message
  int repeats = 9;  // round trips per size, after one to warm up; the median counts
};

struct link_probe_result {
  std::vector<link_cost> links; // every pair, both directions
  // What the sender's send call took (cost_table::send_posting): each size's median, fitted by fit_link;
  // over several pairs, the median of their latencies and of their bandwidths.
  link_class send_posting;
};

// Collective: every rank of the transport calls it. Each pair of ranks in turn plays ping-pong while
// the others wait at a barrier; the one-way time of a size is half the median round trip, and
// fit_link turns the sizes' times into latency and bandwidth. Both directions of a pair get the fit.
// Returns every pair's links and the sends' posting on rank 0 (through the rendezvous store), nothing
// elsewhere.
link_probe_result probe_links(tensor_channel& channel, const link_probe_options& options = {});

// Collective over a group of replicas (pp x dp): all-reduces of the options' sizes (a fresh tensor each
// time), the median of each size's repeats, fitted by core's fit_ring_link into the link one step of the
// ring takes (what the simulator's allreduce_time adds up). Every rank of the group gets the same fit
// from its own timings.
link_class probe_replica_link(gloo_group& replicas, const link_probe_options& options = {});

struct arrival_probe_options {
  std::uint64_t bytes = 64u << 10; // per message, on every rank; the largest of the ranks' counts
  int messages = 32;               // per round, one every period
  double period_us = 1000;
  int rounds = 5;                  // with arrivals, each between two rounds without
};

// Collective over the transport's ranks: what a transfer arriving on a rank takes from the compute that
// runs there (cost_table::arrival_cost_us). For each pair of neighbouring ranks (r, r + 1, and R - 1
// with 0), in both directions in turn, the receiver's compute thread (yielding as the run's does)
// multiplies matrices back to back for as long as its receiving thread takes `messages` transfers off
// the run's tensor_channel, sent one every period; between such rounds it multiplies as long without
// any. A round's cost per arrival is its time less its multiplications at the quiet rounds' pace
// (the mean of the rounds before and after), over its messages; a direction's, the median of its
// rounds; the result, the mean over directions. Arrivals are sent on the sender's clock, so an action
// that is slow for another reason cannot catch more of them, as in a trace. The bytes of each message:
// the largest of the ranks' `bytes`. Returns the result on rank 0 (through the store), 0 elsewhere.
double probe_arrival_cost(tensor_channel& channel, const arrival_probe_options& options = {});

} // namespace pippy
