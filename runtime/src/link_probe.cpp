#include "pippy/runtime/link_probe.hpp"

#include "pippy/core/error.hpp"

#include <algorithm>
#include <atomic>
#include <exception>
#include <sstream>
#include <thread>

#include "pippy/runtime/gloo_group.hpp"
#include "pippy/runtime/clock.hpp"
#include "pippy/runtime/environment.hpp"
#include "pippy/traces/metrics.hpp"

namespace pippy {
namespace {

// Tags of a stage index no pipeline reaches (tensor_channel allows 1024 stages; schedules stay far below).
constexpr int probe_stage = 1023;

std::string link_key(int a, int b) { return "pippy/links/" + std::to_string(a) + "/" + std::to_string(b); }

// The arrival probe's tags: another stage no pipeline reaches.
constexpr int arrival_probe_stage = 1022;

struct kernel_run {
  double elapsed_us = 0;
  long kernels = 0;
};

// Multiplies matrices back to back on a thread of its own that yields as the run's compute thread does,
// until `stop(elapsed_us)` says so (asked between multiplications).
template <class Stop>
kernel_run multiply_until(Stop stop) {
  kernel_run run;
  std::thread compute([&] {
    if (compute_yields())
      yield_to_other_threads();
    const torch::Tensor a = torch::randn({64, 512}), w = torch::randn({512, 512});
    torch::Tensor out = torch::empty({64, 512});
    const double t0 = now_us();
    do {
      torch::mm_out(out, a, w);
      ++run.kernels;
      run.elapsed_us = now_us() - t0;
    } while (!stop(run.elapsed_us));
  });
  compute.join();
  return run;
}

} // namespace

link_probe_result probe_links(tensor_channel& channel, const link_probe_options& options) {
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
        std::vector<std::pair<double, double>> points, postings;
        // A size's round trips reuse one transfer (micro-batch index = the size's), as a pipeline's steps
        // do: after the warm-up each receive is posted ahead of its header (tensor_channel), as in the run.
        int size_index = 0;
        for (std::uint64_t bytes : options.sizes) {
          const auto elems = static_cast<std::int64_t>(std::max<std::uint64_t>(1, bytes / 4));
          const torch::Tensor x = torch::ones({elems}, torch::kFloat32);
          std::vector<double> trips, posted;
          for (int k = 0; k <= options.repeats; ++k) {
            if (me == a) {
              const double t0 = now_us();
              channel.send(dir::forward, probe_stage, size_index, {x}, b);
              const double t1 = now_us();
              channel.recv(dir::backward, probe_stage, size_index, b);
              if (k > 0) { // the first round trip warms up
                trips.push_back(now_us() - t0);
                posted.push_back(t1 - t0);
              }
            } else {
              auto got = channel.recv(dir::forward, probe_stage, size_index, a);
              channel.send(dir::backward, probe_stage, size_index, got, a);
            }
          }
          ++size_index;
          if (me == a) {
            points.push_back({static_cast<double>(elems * 4), median_of(std::move(trips)) / 2});
            postings.push_back({static_cast<double>(elems * 4), median_of(std::move(posted))});
          }
        }
        if (me == a) {
          const link_class fit = fit_link(points), posting = fit_link(postings);
          std::ostringstream v;
          v.precision(17);
          v << fit.latency_us << " " << fit.bandwidth_gbps << " " << posting.latency_us << " " << posting.bandwidth_gbps;
          net.store_set(link_key(a, b), v.str());
        }
      }
      net.flush();
      net.barrier();
    }
  link_probe_result out;
  if (me != 0)
    return out;
  std::vector<double> posting_latency, posting_bandwidth;
  for (int a = 0; a < R; ++a)
    for (int b = a + 1; b < R; ++b) {
      std::istringstream in(net.store_get(link_key(a, b)));
      link_cost l{.src = a, .dst = b};
      link_class posting;
      in >> l.latency_us >> l.bandwidth_gbps >> posting.latency_us >> posting.bandwidth_gbps;
      out.links.push_back(l);
      out.links.push_back(link_cost{.src = b, .dst = a, .latency_us = l.latency_us, .bandwidth_gbps = l.bandwidth_gbps});
      posting_latency.push_back(posting.latency_us);
      posting_bandwidth.push_back(posting.bandwidth_gbps);
    }
  if (!posting_latency.empty())
    out.send_posting = {median_of(std::move(posting_latency)), median_of(std::move(posting_bandwidth))};
  return out;
}

link_class probe_replica_link(gloo_group& replicas, const link_probe_options& options) {
  std::vector<std::pair<double, double>> points;
  for (std::uint64_t bytes : options.sizes) {
    std::vector<torch::Tensor> x;
    std::vector<double> times;
    for (int k = 0; k <= options.repeats; ++k) {
      // A fresh tensor each time, as the run sums a fresh bucket each step: all-reducing one buffer
      // over and over fitted MyNetwork's replica link at 2.3 GB/s, fresh ones at 1.6-2.1.
      x = {torch::ones({static_cast<std::int64_t>(std::max<std::uint64_t>(1, bytes / 4))}, torch::kFloat32)};
      const double t0 = now_us();
      replicas.allreduce_sum(x);
      if (k > 0) // the first warms up
        times.push_back(now_us() - t0);
    }
    points.push_back({static_cast<double>(x[0].numel() * 4), median_of(std::move(times))});
  }
  return fit_ring_link(points, replicas.world_size());
}

double probe_arrival_cost(tensor_channel& channel, const arrival_probe_options& options) {
  if (options.messages < 1 || options.rounds < 1 || options.messages * options.rounds > 4096 ||
      !(options.period_us > 0 && options.period_us <= 1e6) || options.bytes > (std::uint64_t{1} << 30))
    throw input_error("arrival probe: needs 1 or more messages and rounds, at most 4096 messages in all, a period "
                      "above 0 and up to 1 s, and messages up to 1 GiB");
  gloo_group& net = channel.transport();
  const int me = net.rank(), R = net.world_size();
  if (R < 2)
    return 0;
  net.store_set("pippy/arrivals/bytes/" + std::to_string(me), std::to_string(options.bytes));
  std::uint64_t bytes = 0;
  for (int r = 0; r < R; ++r)
    bytes = std::max<std::uint64_t>(bytes, std::stoull(net.store_get("pippy/arrivals/bytes/" + std::to_string(r))));
  const torch::Tensor x = torch::ones({static_cast<std::int64_t>(std::max<std::uint64_t>(1, bytes / 4))}, torch::kFloat32);
  const double round_us = options.messages * options.period_us;
  using dir = tensor_channel::direction;
  std::vector<std::pair<int, int>> directions; // (sender, receiver)
  for (int a = 0; a < (R == 2 ? 1 : R); ++a) {
    const int b = (a + 1) % R;
    directions.push_back({a, b});
    directions.push_back({b, a});
  }
  for (const auto& [src, dst] : directions) {
    // Every round carries the same transfers (micro-batch index = the message's), as a pipeline's steps
    // do, and they go once before the rounds: each receive is then posted ahead of its header
    // (tensor_channel), as in the run.
    for (int m = 0; m < options.messages; ++m)
      if (me == src)
        channel.send(dir::forward, arrival_probe_stage, m, {x}, dst);
      else if (me == dst)
        channel.recv(dir::forward, arrival_probe_stage, m, src);
    net.flush();
    std::vector<double> pace;     // us per multiplication, each quiet round
    std::vector<kernel_run> busy; // each round with arrivals
    for (int round = 0;; ++round) {
      net.barrier();
      if (me == dst) {
        const auto quiet = multiply_until([&](double elapsed) { return elapsed >= round_us; });
        pace.push_back(quiet.elapsed_us / static_cast<double>(quiet.kernels));
      }
      if (round == options.rounds)
        break;
      net.barrier();
      if (me == dst) {
        std::atomic<int> received{0};
        std::exception_ptr failed;
        std::thread receiver([&] {
          try {
            for (int m = 0; m < options.messages; ++m) {
              channel.recv(dir::forward, arrival_probe_stage, m, src);
              received.fetch_add(1, std::memory_order_release);
            }
          } catch (...) {
            failed = std::current_exception();
            received.store(options.messages, std::memory_order_release);
          }
        });
        const auto run = multiply_until([&](double) { return received.load(std::memory_order_acquire) >= options.messages; });
        receiver.join();
        if (failed)
          std::rethrow_exception(failed);
        busy.push_back(run);
      } else if (me == src) {
        const auto start = std::chrono::steady_clock::now();
        for (int m = 0; m < options.messages; ++m) {
          std::this_thread::sleep_until(start + std::chrono::duration<double, std::micro>(m * options.period_us));
          channel.send(dir::forward, arrival_probe_stage, m, {x}, dst);
        }
      }
      net.flush();
    }
    if (me == dst) {
      std::vector<double> per_arrival;
      for (std::size_t i = 0; i < busy.size(); ++i) {
        const double at_pace = static_cast<double>(busy[i].kernels) * (pace[i] + pace[i + 1]) / 2;
        per_arrival.push_back((busy[i].elapsed_us - at_pace) / options.messages);
      }
      std::ostringstream v;
      v.precision(17);
      v << median_of(std::move(per_arrival));
      net.store_set("pippy/arrivals/" + std::to_string(src) + "/" + std::to_string(dst), v.str());
    }
  }
  net.barrier();
  if (me != 0)
    return 0;
  double sum = 0;
  for (const auto& [src, dst] : directions)
    sum += std::stod(net.store_get("pippy/arrivals/" + std::to_string(src) + "/" + std::to_string(dst)));
  return std::max(0.0, sum / static_cast<double>(directions.size()));
}

} // namespace pippy
