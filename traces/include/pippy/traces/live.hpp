#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "pippy/traces/trace.hpp"

namespace pippy {

struct live_publisher_options {
  int port = -1;             // TCP port on `host` to serve the JSON-lines stream; 0 = any free port; -1 = no server
  std::string host = "127.0.0.1";
  std::string path;          // append each line to this file as well ("" = no file)
  std::size_t queue_capacity = 1 << 16; // lines waiting for the background thread; beyond it the oldest are dropped
  std::size_t replay_capacity = 1 << 18; // lines kept to replay to a viewer that connects late (0 = none)
  std::size_t client_buffer_limit = 64u << 20; // bytes pending for one slow viewer before it is dropped
};

// Publishes a running job's events as JSON lines (the same lines as to_json_line) to any viewer that
// connects over TCP and/or to a file, from a background thread. publish() never blocks on I/O: it
// formats the line and pushes it on a bounded queue (dropping the oldest when full). A viewer that goes
// away is forgotten (SIGPIPE never raised: MSG_NOSIGNAL). Thread-safe: publish() from any thread.
// Throws input_error from the constructor when the port cannot be bound or the file opened.
class live_publisher {
public:
  explicit live_publisher(live_publisher_options options);
  ~live_publisher(); // flushes what is queued to the file and connected viewers, then stops
  live_publisher(const live_publisher&) = delete;
  live_publisher& operator=(const live_publisher&) = delete;

  void publish(const trace_event& e);
  void publish(const memory_sample& m);
  void publish_line(std::string line); // one JSON object, with or without the trailing newline

  int port() const { return port_; } // the bound port (useful with port = 0), -1 without a server
  std::size_t clients() const { return clients_.load(); }
  std::uint64_t published() const { return published_.load(); }
  std::uint64_t dropped() const { return dropped_.load(); } // dropped from a full queue
  // Waits until the background thread has written everything queued so far (for tests and shutdown).
  void flush();

private:
  void run();
  live_publisher_options o_;
  int listen_fd_ = -1;
  int port_ = -1;
  int file_fd_ = -1;
  int wake_[2] = {-1, -1};
  std::mutex mu_;
  std::condition_variable idle_cv_;
  std::deque<std::string> queue_;
  std::uint64_t enqueued_ = 0, written_ = 0; // guarded by mu_
  bool stop_ = false;
  std::atomic<std::size_t> clients_{0};
  std::atomic<std::uint64_t> published_{0}, dropped_{0};
  std::thread thread_;
};

// Reads a live JSON-lines stream without blocking: from "HOST:PORT" (TCP, as served by live_publisher)
// or from a file path that keeps growing. poll() returns what has arrived since the last call, as
// events/samples appended to `into`; malformed lines are counted and their messages kept. Not thread-safe.
class live_reader {
public:
  // Throws input_error when the spec names neither a reachable HOST:PORT nor a readable file.
  explicit live_reader(const std::string& spec);
  ~live_reader();
  live_reader(const live_reader&) = delete;
  live_reader& operator=(const live_reader&) = delete;

  // Appends new complete lines' events to `into`; returns how many events/samples were added.
  std::size_t poll(trace& into);
  bool connected() const { return fd_ >= 0; } // false once a TCP peer closed the stream
  bool is_tcp() const { return tcp_; }
  const std::vector<std::string>& errors() const { return errors_; }
  const std::string& spec() const { return spec_; }

private:
  std::size_t consume(trace& into);
  std::string spec_;
  bool tcp_ = false;
  int fd_ = -1;
  std::string pending_;
  std::vector<std::string> errors_;
  std::uint64_t line_no_ = 0;
};

// True when spec looks like HOST:PORT (a port number after the last colon and no such file).
bool is_host_port(const std::string& spec);

} // namespace pippy
