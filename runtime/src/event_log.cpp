#include "pippy/runtime/event_log.hpp"

namespace pippy {

void event_log::add(const trace_event& e) {
  {
    std::lock_guard lock(mu_);
    events_.push_back(e);
  }
  if (on_event_)
    on_event_(e);
}
void event_log::add(const memory_sample& m) {
  {
    std::lock_guard lock(mu_);
    memory_.push_back(m);
  }
  if (on_memory_)
    on_memory_(m);
}
void event_log::forward_to(std::function<void(const trace_event&)> on_event,
                           std::function<void(const memory_sample&)> on_memory) {
  on_event_ = std::move(on_event);
  on_memory_ = std::move(on_memory);
}
std::vector<memory_sample> event_log::memory() const {
  std::lock_guard lock(mu_);
  return memory_;
}
std::vector<trace_event> event_log::all() const {
  std::lock_guard lock(mu_);
  return events_;
}
void event_log::set_activation_bytes(int stage, std::uint64_t bytes) {
  std::lock_guard lock(mu_);
  activation_bytes_[stage] = bytes;
}
std::map<int, std::uint64_t> event_log::activation_bytes() const {
  std::lock_guard lock(mu_);
  return activation_bytes_;
}

void event_log::clear() {
  std::lock_guard lock(mu_);
  events_ = {};
  memory_ = {};
}

trace measured_trace(const schedule& plan, const event_log& log, const std::string& how) {
  trace t;
  t.num_ranks = plan.shape.num_ranks;
  t.run = plan.name + " R=" + std::to_string(plan.shape.num_ranks) + " M=" +
          std::to_string(plan.shape.num_microbatches) + " measured (" + how + ")";
  t.events = log.all();
  t.memory = log.memory();
  return t;
}

} // namespace pippy
