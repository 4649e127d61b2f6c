#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "pippy/traces/trace.hpp"

namespace pippy {

// CPU time a running thread has used so far, in microseconds (0 when it cannot be read: not running).
double thread_cpu_us(std::thread& t);

struct live_publisher_options {
  int port = -1;             // TCP port on `host` to serve the JSON-lines stream; 0 = any free port; -1 = no server
  std::string host = "127.0.0.1";
  std::string path;          // append each line to this file as well ("" = no file)
  bool truncate = false;     // empty the file first
  std::size_t queue_capacity = 1 << 16; // lines waiting for the background thread; beyond it the oldest are dropped
  std::size_t replay_capacity = 1 << 18; // lines kept to replay to a viewer that connects late (0 = none)
  std::size_t client_buffer_limit = 64u << 20; // bytes pending for one slow viewer before it is dropped
  int tail_wait_ms = 500; // on stop, how long viewers still reading are given to take what is pending
  std::function<void()> on_thread_start; // runs first on the background thread (e.g. to lower its priority)
  // How often the background thread takes the queue unprompted (publish() does not wake it; wake() and
  // flush() do). A caller that publishes in batches wakes it after each and sets this long: each
  // wake-up costs the thread's CPU.
  int poll_ms = 10;
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
  // Has the background thread take what is queued now, without waiting for it.
  void wake();
  // Waits until the background thread has written everything queued so far (for tests and shutdown).
  void flush();
  // CPU time its background thread has used so far (what publishing costs, apart from the callers'
  // formatting).
  double thread_cpu_us() { return pippy::thread_cpu_us(thread_); }

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
// The TCP connect never blocks the caller: the constructor starts a non-blocking connect and poll()
// finishes it (state() is connecting until then). A peer that refuses at once (a local port nobody
// listens on) still makes the constructor throw; a refusal or a timeout noticed later turns the state to
// failed with connect_error() set. Only the host name lookup (getaddrinfo) is synchronous; numeric
// addresses and names in /etc/hosts do not wait on the network.
class live_reader {
public:
  enum class state { connecting, open, ended, failed };
  static constexpr int default_connect_timeout_ms = 10000;

  // Throws input_error when the spec names neither a HOST:PORT that resolves and does not refuse at
  // once nor a readable file.
  explicit live_reader(const std::string& spec, int connect_timeout_ms = default_connect_timeout_ms);
  ~live_reader();
  live_reader(const live_reader&) = delete;
  live_reader& operator=(const live_reader&) = delete;

  // Appends new complete lines' events to `into`; returns how many events/samples were added. It reads
  // at most 16 MiB a call (the rest on the next calls), so that a GUI timer calling it stays responsive.
  // While the connect is pending it only checks it (no wait) and returns 0. A read that fails (a reset
  // connection) ends the source, with the error in errors().
  std::size_t poll(trace& into);
  // The same, but the new complete lines as they are (not parsed; blank lines left out): for a relay.
  std::size_t poll_lines(std::vector<std::string>& into);
  state status() const { return state_; }
  bool connecting() const { return state_ == state::connecting; }
  // True while the source is open: false while connecting, once a TCP peer closed the stream, or
  // after a failed connect or read.
  bool connected() const { return state_ == state::open; }
  bool is_tcp() const { return tcp_; }
  const std::string& connect_error() const { return connect_error_; } // set when the state is failed
  const std::vector<std::string>& errors() const { return errors_; }
  const std::string& spec() const { return spec_; }

private:
  void start_connect();  // tries addrs_ from next_addr_ until one is pending or open, else failed
  void check_connect();  // finishes a pending connect without waiting
  void read_available(); // appends what has arrived to pending_ (at most 16 MiB)
  std::size_t consume(trace& into);
  std::string spec_;
  bool tcp_ = false;
  int fd_ = -1;
  state state_ = state::connecting;
  std::vector<std::string> addrs_; // resolved socket addresses (raw bytes), tried in order
  std::size_t next_addr_ = 0;
  int connect_timeout_ms_ = default_connect_timeout_ms;
  std::int64_t connect_deadline_ns_ = 0; // steady clock
  std::string connect_error_;
  std::string pending_;
  std::vector<std::string> errors_;
  std::uint64_t line_no_ = 0;
};

// True when spec looks like HOST:PORT (a port number after the last colon and no such file).
bool is_host_port(const std::string& spec);

// What `--live SPEC` publishes to: a FILE (the spec has a '/' or ends in .jsonl) or a TCP PORT (0-65535,
// 0 = any free port). Throws input_error naming `flag` and the spec otherwise.
live_publisher_options live_target(const std::string& spec, const std::string& flag = "--live");
inline bool is_file_target(const live_publisher_options& o) { return !o.path.empty(); }

} // namespace pippy
