#pragma once
// What keeps a multi-process job honest once its ranks met: they agree on their settings before the first
// step, and a heartbeat through the job's store names a rank that stopped answering (a stopped process, a
// lost host) long before the transport's timeout.
#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <c10/util/intrusive_ptr.h>

#include "pippy/runtime/environment.hpp"

namespace c10d {
class Store;
}

namespace pippy {

// A rank's settings, in the order they are compared: (field, value).
using job_settings = std::vector<std::pair<std::string, std::string>>;

// The job store's keys, as a rank reaches them (set, and get which waits for the key within the timeout).
struct store_access {
  std::function<void(const std::string& key, const std::string& value)> set;
  std::function<std::string(const std::string& key)> get;
};

// Every rank publishes `mine`; rank 0 compares each rank's with its own and publishes one verdict, which every
// rank returns. Empty: all agree; else the first rank that differs and each differing field with both values
// ("rank 2 was started with other settings than rank 0: steps 10 (rank 0: 5)"). `rank` of `world`.
std::string agree_settings(const store_access& store, int rank, int world, const job_settings& mine);

// A short digest (16 hex digits) of `text`, to compare what is too long to print (a model's parameters).
std::string digest_of(const void* data, std::size_t bytes, std::string seed = {});

// Beats every timeout/10 (at most every second) through its own connection to the job's store. Rank 0 watches
// every other rank's beat and each other rank watches rank 0's: a beat unchanged for `timeout` names that rank
// (rank 0 tells the others through the store), then the process exits at once with status 3, a lost peer.
// A rank whose store connection fails for `timeout` names rank 0, which serves the store.
class heartbeat {
public:
  heartbeat(const dist_env& env, std::chrono::milliseconds timeout);
  ~heartbeat();
  heartbeat(const heartbeat&) = delete;
  heartbeat& operator=(const heartbeat&) = delete;
  // This rank is done: the watchers stop expecting its beat, and this one stops watching (the others may exit).
  void finished();

private:
  void loop();
  dist_env env_;
  c10::intrusive_ptr<c10d::Store> store_; // its own client: a blocking wait on the job's connection cannot delay a beat
  std::chrono::milliseconds timeout_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

} // namespace pippy
