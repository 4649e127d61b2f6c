#pragma once
// A hang guard, never the assertion: when the guarded code has not called done() within `limit`, the
// watchdog runs `rescue` on its own thread (e.g. answering a peer so that a call that wrongly waits for
// it returns) and remembers that it fired. A test checks done() == false; a generous limit cannot flake.
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace pippy::test {

class watchdog {
public:
  watchdog(std::chrono::milliseconds limit, std::function<void()> rescue)
      : thread_([this, limit, rescue = std::move(rescue)] {
          std::unique_lock lock(mu_);
          if (cv_.wait_for(lock, limit, [this] { return done_; }))
            return;
          fired_ = true;
          lock.unlock();
          rescue();
        }) {}
  watchdog(const watchdog&) = delete;
  watchdog& operator=(const watchdog&) = delete;
  ~watchdog() { done(); }
  // Disarms it, waits for a rescue under way to end; true when it had fired (the guarded code hung).
  bool done() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable())
      thread_.join();
    return fired_;
  }

private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false, fired_ = false;
  std::thread thread_; // last: starts once the members it uses exist
};

} // namespace pippy::test
