#include "pippy/runtime/job_guard.hpp"

#include "pippy/runtime/store.hpp"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>

#include <nlohmann/json.hpp>

#include "pippy/core/digest.hpp"
#include "pippy/core/error.hpp"
#include "pippy/core/failure.hpp"
#include "pippy/core/json_input.hpp"

namespace pippy {

namespace {

std::string to_text(const job_settings& s) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& [field, value] : s)
    j.push_back({field, value});
  return j.dump();
}

job_settings from_text(const std::string& text, const std::string& source) {
  job_settings s;
  try {
    for (const auto& pair : parse_json(text, source))
      s.emplace_back(pair.at(0).get<std::string>(), pair.at(1).get<std::string>());
  } catch (const input_error&) {
    throw;
  } catch (const std::exception& e) {
    throw input_error(source + ": not a list of [field, value] pairs: " + e.what());
  }
  return s;
}

// "steps 10 (rank 0: 5)" for each field whose value differs or that only one side has.
std::string differences(const job_settings& theirs, const job_settings& ours) {
  std::map<std::string, std::string> o(ours.begin(), ours.end()), t(theirs.begin(), theirs.end());
  std::string out;
  auto add = [&](const std::string& field, const std::string& a, const std::string& b) {
    out += (out.empty() ? "" : ", ") + field + " " + a + " (rank 0: " + b + ")";
  };
  for (const auto& [field, value] : theirs)
    if (!o.contains(field))
      add(field, value, "none");
    else if (o[field] != value)
      add(field, value, o[field]);
  for (const auto& [field, value] : ours)
    if (!t.contains(field))
      add(field, "none", value);
  return out;
}

void report(const std::string& line) {
  const std::string l = "error: " + line + "\n";
  std::fwrite(l.data(), 1, l.size(), stderr);
  std::fflush(stderr);
}

void say_and_exit(const std::string& line) {
  report(line);
  std::_Exit(lost_peer_exit_status); // the transport may be blocked on the lost rank, so no unwinding
}

std::string seconds(std::chrono::milliseconds d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", static_cast<double>(d.count()) / 1000.0);
  return buf;
}
} // namespace

std::string digest_of(const void* data, std::size_t bytes, std::string seed) {
  return hex16(fnv1a(data, bytes, fnv1a(seed)));
}

std::string agree_settings(const store_access& store, int rank, int world, const job_settings& mine) {
  const std::string prefix = "pippy/settings/";
  store.set(prefix + std::to_string(rank), to_text(mine));
  if (rank == 0) {
    std::string verdict;
    for (int r = 1; r < world && verdict.empty(); ++r) {
      const auto theirs = from_text(store.get(prefix + std::to_string(r)), "rank " + std::to_string(r) + "'s settings");
      const std::string diff = differences(theirs, mine);
      if (!diff.empty())
        verdict = "rank " + std::to_string(r) + " was started with other settings than rank 0: " + diff +
                  "; start every rank with the same options";
    }
    store.set(prefix + "verdict", verdict.empty() ? "ok" : verdict);
    if (!verdict.empty()) // the caller exits at once, and the store with it: not before everyone has read it
      for (int r = 1; r < world; ++r)
        store.get(prefix + "read/" + std::to_string(r));
    return verdict;
  }
  const std::string verdict = store.get(prefix + "verdict");
  store.set(prefix + "read/" + std::to_string(rank), "1");
  return verdict == "ok" ? "" : verdict;
}

heartbeat::heartbeat(const dist_env& env, std::chrono::milliseconds timeout) : env_(env), timeout_(timeout) {
  if (timeout_.count() <= 0 || env_.world_size < 2)
    return;
  c10d::TCPStoreOptions so;
  so.port = static_cast<std::uint16_t>(env_.master_port);
  so.isServer = false;
  so.waitWorkers = false;
  so.timeout = timeout_; // an answer slower than this is rank 0 not answering
  try {
    store_ = c10::make_intrusive<c10d::TCPStore>(env_.master_addr, so);
  } catch (const std::exception& e) {
    throw peer_error(0, "rank " + std::to_string(env_.rank) + ": the heartbeat cannot reach the store at " +
                            env_.master_addr + ":" + std::to_string(env_.master_port) + ": " + without_backtrace(e));
  }
  store_ = c10::make_intrusive<c10d::PrefixStore>("pippy/heartbeat/" + env_.job_id, store_);
  thread_ = std::thread([this] { loop(); });
}

heartbeat::~heartbeat() {
  stop_ = true;
  if (thread_.joinable())
    thread_.join();
}

void heartbeat::finished() {
  if (!store_)
    return;
  stop_ = true;
  if (thread_.joinable())
    thread_.join();
  try {
    store_->set("done/" + std::to_string(env_.rank), std::vector<uint8_t>{'1'});
  } catch (const std::exception&) {
    // Rank 0 is gone already, so nobody watches this rank any more.
  }
}

void heartbeat::loop() {
  using clock = std::chrono::steady_clock;
  const auto period = std::clamp(timeout_ / 10, std::chrono::milliseconds(20), std::chrono::milliseconds(1000));
  const std::string me = std::to_string(env_.rank);
  // The ranks this one watches: all others on rank 0; rank 0 elsewhere.
  std::vector<int> watched;
  for (int r = env_.rank == 0 ? 1 : 0; r < (env_.rank == 0 ? env_.world_size : 1); ++r)
    watched.push_back(r);
  std::vector<std::int64_t> last(watched.size(), -1);
  std::vector<clock::time_point> changed(watched.size(), clock::now());
  while (!stop_) {
    try {
      store_->add("beat/" + me, 1);
      if (env_.rank != 0 && store_->check({"hung"})) {
        const auto v = store_->get("hung");
        say_and_exit("rank " + me + ": rank " + std::string(v.begin(), v.end()) +
                     " is not responding (rank 0 saw no heartbeat from it for " + seconds(timeout_) + ")");
      }
      const auto now = clock::now();
      for (std::size_t i = 0; i < watched.size(); ++i) {
        const std::string them = std::to_string(watched[i]);
        const std::int64_t beat = store_->add("beat/" + them, 0);
        if (beat != last[i]) {
          last[i] = beat, changed[i] = now;
        } else if (now - changed[i] > timeout_ && !store_->check({"done/" + them})) {
          report("rank " + me + ": rank " + them + " is not responding: no heartbeat for " +
              seconds(std::chrono::duration_cast<std::chrono::milliseconds>(now - changed[i])) +
              " (stopped, or its host is lost)");
          if (env_.rank == 0) { // the others read it within a beat or two; then the store may go with this process
            store_->set("hung", std::vector<uint8_t>(them.begin(), them.end()));
            std::this_thread::sleep_for(2 * period);
          }
          std::_Exit(lost_peer_exit_status);
        }
      }
    } catch (const std::exception& e) {
      // The store is rank 0's, and each call waited up to the timeout: rank 0 stopped answering, or died.
      if (stop_)
        return;
      if (env_.rank != 0)
        say_and_exit("rank " + me + ": rank 0 is not responding: the store it serves failed (" + without_backtrace(e) + ")");
    }
    std::this_thread::sleep_for(period);
  }
}

} // namespace pippy
