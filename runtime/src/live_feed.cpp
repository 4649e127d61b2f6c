#include "pippy/runtime/live_feed.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <optional>

#include "pippy/runtime/environment.hpp"
#include "pippy/runtime/gloo_group.hpp"
#include "pippy/traces/chrome_trace.hpp"

namespace pippy {

namespace {
// Where a peer's stream is served: loopback when the job's rendezvous is local, else every interface
// under this host's name (a job across hosts).
std::pair<std::string, std::string> peer_bind_and_name() {
  const char* master = std::getenv("MASTER_ADDR");
  const std::string m = master ? master : "";
  if (m.empty() || m == "127.0.0.1" || m == "localhost" || m == "::1")
    return {"127.0.0.1", "127.0.0.1"};
  char name[256] = {};
  ::gethostname(name, sizeof name - 1);
  return {"0.0.0.0", name};
}

// The feed hands its publisher a batch every pump pass and wakes it then; unprompted, it looks only
// now and then. Every wake-up of these threads costs CPU: at 10 ms each, the two took 1.2-1.6% of a
// rank's CPU on MyNetwork's steps (0.5% at these settings).
constexpr int pump_ms = 50;

live_publisher_options in_idle_time(live_publisher_options o) {
  o.on_thread_start = [] { yield_to_other_threads(); };
  o.poll_ms = 4 * pump_ms;
  return o;
}
} // namespace

live_job_feed::live_job_feed(const std::string& spec, int rank, gloo_group* group) : rank_(rank) {
  if (rank_ <= 0) {
    out_ = std::make_unique<live_publisher>(in_idle_time(live_target(spec)));
    if (group)
      for (int r = 1; r < group->world_size(); ++r)
        peers_.push_back(std::make_unique<live_reader>(group->store_get("pippy/live/" + std::to_string(r))));
  } else {
    const auto [bind, name] = peer_bind_and_name();
    out_ = std::make_unique<live_publisher>(in_idle_time({.port = 0, .host = bind}));
    group->store_set("pippy/live/" + std::to_string(rank_), name + ":" + std::to_string(out_->port()));
  }
  pump_ = std::thread([this] { pump(); });
}

live_job_feed::~live_job_feed() {
  stopping_ = true;
  if (pump_.joinable())
    pump_.join();
  pass(); // what came after the pump's last pass
  out_->flush();
}

void live_job_feed::step_started(int step, double t_us) {
  if (rank_ <= 0)
    out_->publish_line(to_json_line(trace_marker{.rank = 0, .t_us = t_us, .name = "step " + std::to_string(step)}));
}

bool live_job_feed::pass() {
  std::vector<trace_event> events;
  std::vector<memory_sample> samples;
  {
    std::lock_guard lock(mu_);
    events.swap(events_);
    samples.swap(samples_);
  }
  for (const auto& e : events)
    out_->publish(e);
  for (const auto& m : samples)
    out_->publish(m);
  bool open = false;
  std::vector<std::string> lines;
  for (auto& r : peers_) {
    r->poll_lines(lines);
    open |= r->status() == live_reader::state::connecting || r->status() == live_reader::state::open;
  }
  for (auto& l : lines)
    out_->publish_line(std::move(l));
  if (!events.empty() || !samples.empty() || !lines.empty())
    out_->wake();
  return open;
}

void live_job_feed::pump() {
  yield_to_other_threads();
  using clock = std::chrono::steady_clock;
  std::optional<clock::time_point> give_up;
  for (;;) {
    const bool peers_open = pass();
    if (stopping_) {
      if (!peers_open) // the peers close their streams as they exit
        return;
      if (!give_up)
        give_up = clock::now() + std::chrono::seconds(5);
      else if (clock::now() > *give_up)
        return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(stopping_ ? 2 : pump_ms));
  }
}

} // namespace pippy
