#pragma once
// The live view of a training job (`--live PORT|FILE.jsonl`): every rank's measured events and memory
// samples, and a marker at each step's start, reach one JSON-lines stream as they happen, served by rank
// 0 through traces' live_publisher (what `pippy sim --live` serves and `pippy-view --live` reads). A
// rank in another process publishes on a free port of its own, announced through the rendezvous store;
// rank 0 relays those streams' lines as they are. A training thread only appends the event to a buffer:
// a thread of the feed's own formats and publishes the buffer every 50 ms and, like the publisher's
// thread, yields to every other thread (SCHED_IDLE), so that it runs in the pipeline's idle time. A
// full publisher queue drops its oldest line; a viewer that falls 64 MiB behind is dropped.
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "pippy/traces/live.hpp"
#include "pippy/traces/trace.hpp"

namespace pippy {

class gloo_group;

class live_job_feed {
public:
  // spec: what rank 0 serves (live_target); group: the job's process group, null when every rank lives
  // in this process. Collective when there is a group (rank 0 waits for the peers' announcements).
  // Throws input_error for a bad spec, a port in use or a file that cannot be written.
  live_job_feed(const std::string& spec, int rank, gloo_group* group);
  // Rank 0: waits (at most 5 s) until every peer's stream ended, then flushes what is queued.
  ~live_job_feed();
  live_job_feed(const live_job_feed&) = delete;
  live_job_feed& operator=(const live_job_feed&) = delete;

  void publish(const trace_event& e) {
    std::lock_guard lock(mu_);
    events_.push_back(e);
  }
  void publish(const memory_sample& m) {
    std::lock_guard lock(mu_);
    samples_.push_back(m);
  }
  // Rank 0: a "step K" marker at t_us (the step's start); other ranks: nothing.
  void step_started(int step, double t_us);
  int port() const { return out_->port(); }
  // CPU time the feed's own threads (its pump and its publisher's) have used so far.
  double threads_cpu_us() { return thread_cpu_us(pump_) + out_->thread_cpu_us(); }
  std::uint64_t dropped() const { return out_->dropped(); }

private:
  void pump();
  // Publishes what the buffers hold and what the peers sent; whether a peer's stream is still open.
  bool pass();

  int rank_;
  std::unique_ptr<live_publisher> out_;
  std::vector<std::unique_ptr<live_reader>> peers_; // rank 0, with a group
  std::mutex mu_;
  std::vector<trace_event> events_;
  std::vector<memory_sample> samples_;
  std::atomic<bool> stopping_{false};
  std::thread pump_;
};

} // namespace pippy
