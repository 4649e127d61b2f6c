#include "pippy/runtime/live_feed.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdlib>

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
} // namespace

live_job_feed::live_job_feed(const std::string& spec, int rank, gloo_group* group) : rank_(rank) {
  if (rank_ <= 0) {
    out_ = std::make_unique<live_publisher>(live_target(spec));
    if (!group)
      return;
    for (int r = 1; r < group->world_size(); ++r)
      peers_.push_back(std::make_unique<live_reader>(group->store_get("pippy/live/" + std::to_string(r))));
    puller_ = std::thread([this] { pull(); });
    return;
  }
  const auto [bind, name] = peer_bind_and_name();
  out_ = std::make_unique<live_publisher>(live_publisher_options{.port = 0, .host = bind});
  group->store_set("pippy/live/" + std::to_string(rank_), name + ":" + std::to_string(out_->port()));
}

live_job_feed::~live_job_feed() {
  stopping_ = true;
  if (puller_.joinable())
    puller_.join();
  out_->flush();
}

void live_job_feed::step_started(int step, double t_us) {
  if (rank_ <= 0)
    out_->publish_line(to_json_line(trace_marker{.rank = 0, .t_us = t_us, .name = "step " + std::to_string(step)}));
}

void live_job_feed::pull() {
  using clock = std::chrono::steady_clock;
  std::optional<clock::time_point> give_up;
  for (;;) {
    std::size_t got = 0;
    bool open = false;
    for (auto& r : peers_) {
      trace t;
      got += r->poll(t);
      for (const auto& e : t.events)
        out_->publish(e);
      for (const auto& m : t.memory)
        out_->publish(m);
      open |= r->status() == live_reader::state::connecting || r->status() == live_reader::state::open;
    }
    if (!open)
      return;
    if (stopping_ && !give_up) // the peers close their streams as they exit
      give_up = clock::now() + std::chrono::seconds(5);
    if (give_up && clock::now() > *give_up)
      return;
    if (got == 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

} // namespace pippy
