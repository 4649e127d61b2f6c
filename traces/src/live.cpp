#include "pippy/traces/live.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "pippy/core/error.hpp"
#include "pippy/traces/chrome_trace.hpp"

namespace pippy {

double thread_cpu_us(std::thread& t) {
  clockid_t id{};
  timespec ts{};
  if (!t.joinable() || ::pthread_getcpuclockid(t.native_handle(), &id) != 0 || ::clock_gettime(id, &ts) != 0)
    return 0;
  return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}
namespace {

void set_nonblocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

std::pair<std::string, int> split_host_port(const std::string& spec) {
  const auto colon = spec.rfind(':');
  if (colon == std::string::npos || colon + 1 >= spec.size())
    return {"", -1};
  for (std::size_t i = colon + 1; i < spec.size(); ++i)
    if (spec[i] < '0' || spec[i] > '9')
      return {"", -1};
  const long port = std::strtol(spec.c_str() + colon + 1, nullptr, 10);
  if (port <= 0 || port > 65535)
    return {"", -1};
  std::string host = spec.substr(0, colon);
  if (host.empty())
    host = "127.0.0.1";
  return {host, static_cast<int>(port)};
}

struct client {
  int fd = -1;
  std::string pending;
  std::size_t sent = 0; // bytes of pending already sent
};

} // namespace

bool is_host_port(const std::string& spec) {
  std::error_code ec;
  if (std::filesystem::exists(spec, ec))
    return false;
  return split_host_port(spec).second > 0;
}

live_publisher_options live_target(const std::string& spec, const std::string& flag) {
  live_publisher_options o;
  const bool file = spec.find('/') != std::string::npos ||
                    (spec.size() > 6 && spec.compare(spec.size() - 6, 6, ".jsonl") == 0);
  if (file) {
    o.path = spec;
    o.truncate = true; // a second run replaces the first one's stream
    return o;
  }
  std::size_t used = 0;
  int port = -1;
  try {
    port = std::stoi(spec, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != spec.size() || port < 0 || port > 65535)
    throw input_error(flag + ": expected a TCP port (0-65535) or a FILE.jsonl path (got '" + spec + "')");
  o.port = port;
  return o;
}

live_publisher::live_publisher(live_publisher_options options) : o_(std::move(options)) {
  if (o_.port > 65535) // htons would serve on the port modulo 2^16
    throw input_error("live publisher: port " + std::to_string(o_.port) + " is not a TCP port (0-65535)");
  if (o_.port >= 0) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0)
      throw input_error("live publisher: cannot create a socket: " + std::string(std::strerror(errno)));
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(o_.port));
    if (::inet_pton(AF_INET, o_.host.c_str(), &addr.sin_addr) != 1) {
      ::close(listen_fd_);
      throw input_error("live publisher: host must be an IPv4 address, got \"" + o_.host + "\"");
    }
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listen_fd_, 16) != 0) {
      const std::string why = std::strerror(errno);
      ::close(listen_fd_);
      throw input_error("live publisher: cannot listen on " + o_.host + ":" + std::to_string(o_.port) + ": " + why);
    }
    socklen_t len = sizeof addr;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    set_nonblocking(listen_fd_);
  }
  if (!o_.path.empty()) {
    file_fd_ = ::open(o_.path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (o_.truncate ? O_TRUNC : 0), 0644);
    if (file_fd_ < 0) {
      if (listen_fd_ >= 0)
        ::close(listen_fd_);
      throw input_error(o_.path + ": cannot open the live file for appending: " + std::strerror(errno));
    }
  }
  if (::pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0)
    throw input_error("live publisher: cannot create a pipe");
  thread_ = std::thread([this] { run(); });
}

live_publisher::~live_publisher() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  [[maybe_unused]] auto n = ::write(wake_[1], "s", 1);
  thread_.join();
  for (int fd : {listen_fd_, file_fd_, wake_[0], wake_[1]})
    if (fd >= 0)
      ::close(fd);
}

void live_publisher::publish(const trace_event& e) { publish_line(to_json_line(e)); }
void live_publisher::publish(const memory_sample& m) { publish_line(to_json_line(m)); }

void live_publisher::publish_line(std::string line) {
  if (line.empty() || line.back() != '\n')
    line.push_back('\n');
  std::lock_guard lock(mu_);
  queue_.push_back(std::move(line));
  ++enqueued_;
  published_.fetch_add(1, std::memory_order_relaxed);
  if (queue_.size() > o_.queue_capacity) {
    queue_.pop_front();
    ++written_; // counted as handled so flush() does not wait for it
    dropped_.fetch_add(1, std::memory_order_relaxed);
  }
}

void live_publisher::wake() { [[maybe_unused]] auto n = ::write(wake_[1], "w", 1); }

void live_publisher::flush() {
  std::unique_lock lock(mu_);
  const std::uint64_t target = enqueued_;
  [[maybe_unused]] auto n = ::write(wake_[1], "f", 1);
  idle_cv_.wait(lock, [&] { return written_ >= target || stop_; });
}

void live_publisher::run() {
  if (o_.on_thread_start)
    o_.on_thread_start();
  std::vector<client> clients;
  std::deque<std::string> replay;
  std::deque<std::string> batch;
  auto drop = [&](std::size_t i) {
    ::close(clients[i].fd);
    clients.erase(clients.begin() + static_cast<std::ptrdiff_t>(i));
    clients_.store(clients.size());
  };
  auto send_pending = [&] {
    for (std::size_t i = 0; i < clients.size();) {
      auto& c = clients[i];
      bool dead = false;
      while (c.sent < c.pending.size()) {
        const ssize_t n = ::send(c.fd, c.pending.data() + c.sent, c.pending.size() - c.sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
          c.sent += static_cast<std::size_t>(n);
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
          break;
        } else {
          dead = true;
          break;
        }
      }
      if (c.sent == c.pending.size()) {
        c.pending.clear();
        c.sent = 0;
      } else if (c.sent > (1u << 20)) {
        c.pending.erase(0, c.sent);
        c.sent = 0;
      }
      if (dead || c.pending.size() - c.sent > o_.client_buffer_limit)
        drop(i);
      else
        ++i;
    }
  };
  for (;;) {
    std::vector<pollfd> fds; // revents is poll's to write
    fds.push_back({.fd = wake_[0], .events = POLLIN});
    if (listen_fd_ >= 0)
      fds.push_back({.fd = listen_fd_, .events = POLLIN});
    const std::size_t first_client = fds.size();
    for (const auto& c : clients)
      fds.push_back({.fd = c.fd, .events = static_cast<short>(c.sent < c.pending.size() ? POLLIN | POLLOUT : POLLIN)});
    ::poll(fds.data(), fds.size(), std::max(1, o_.poll_ms));
    if (fds[0].revents & POLLIN) {
      char buf[64];
      while (::read(wake_[0], buf, sizeof buf) > 0) {
      }
    }
    // A viewer that closed its end (or sent anything: the stream is one-way) is checked here.
    for (std::size_t k = clients.size(); k-- > 0;) {
      const auto re = fds[first_client + k].revents;
      if (re & (POLLERR | POLLHUP | POLLNVAL)) {
        drop(k);
      } else if (re & POLLIN) {
        char buf[256];
        const ssize_t n = ::recv(clients[k].fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
          drop(k);
      }
    }
    if (listen_fd_ >= 0) {
      for (;;) {
        const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
          break;
        int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        client c{.fd = fd, .pending = {}, .sent = 0};
        for (const auto& l : replay)
          c.pending += l;
        clients.push_back(std::move(c));
        clients_.store(clients.size());
      }
    }
    bool stopping;
    {
      std::lock_guard lock(mu_);
      batch.swap(queue_);
      stopping = stop_;
    }
    const std::size_t n = batch.size();
    if (n) {
      std::string chunk;
      for (auto& l : batch)
        chunk += l;
      if (file_fd_ >= 0) {
        std::size_t off = 0;
        while (off < chunk.size()) {
          const ssize_t w = ::write(file_fd_, chunk.data() + off, chunk.size() - off);
          if (w <= 0)
            break; // a full disk must not stop the job
          off += static_cast<std::size_t>(w);
        }
      }
      for (auto& c : clients)
        c.pending += chunk;
      if (o_.replay_capacity) {
        for (auto& l : batch) {
          replay.push_back(std::move(l));
          if (replay.size() > o_.replay_capacity)
            replay.pop_front();
        }
      }
      batch.clear();
    }
    send_pending();
    {
      std::lock_guard lock(mu_);
      written_ += n;
    }
    idle_cv_.notify_all();
    if (stopping) {
      // Last chance for viewers to get the tail.
      for (int waited_ms = 0; waited_ms < o_.tail_wait_ms; waited_ms += 10) {
        bool left = false;
        for (const auto& c : clients)
          left = left || c.sent < c.pending.size();
        if (!left)
          break;
        ::usleep(10000);
        send_pending();
      }
      for (auto& c : clients)
        ::close(c.fd);
      clients_.store(0);
      return;
    }
  }
}

namespace {
std::int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
} // namespace

live_reader::live_reader(const std::string& spec, int connect_timeout_ms)
    : spec_(spec), connect_timeout_ms_(connect_timeout_ms) {
  if (is_host_port(spec)) {
    tcp_ = true;
    auto [host, port] = split_host_port(spec);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0 || !res)
      throw input_error(spec + ": cannot resolve host \"" + host + "\"");
    for (addrinfo* a = res; a; a = a->ai_next)
      if (a->ai_socktype == SOCK_STREAM)
        addrs_.emplace_back(reinterpret_cast<const char*>(a->ai_addr), a->ai_addrlen);
    ::freeaddrinfo(res);
    start_connect();
    if (state_ == state::connecting)
      check_connect(); // a local port nobody listens on refuses within the connect call
    if (state_ == state::failed)
      throw input_error(spec + ": cannot connect to the live stream: " + connect_error_);
  } else {
    fd_ = ::open(spec.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0)
      throw input_error(spec + ": cannot open the live file (" + std::strerror(errno) +
                        "); for a stream give HOST:PORT");
    struct stat st {};
    if (::fstat(fd_, &st) == 0 && S_ISDIR(st.st_mode)) {
      ::close(fd_);
      fd_ = -1;
      throw input_error(spec + ": is a directory");
    }
    state_ = state::open;
  }
}

void live_reader::start_connect() {
  while (next_addr_ < addrs_.size()) {
    const std::string& addr = addrs_[next_addr_++];
    const auto* sa = reinterpret_cast<const sockaddr*>(addr.data());
    const int fd = ::socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
      connect_error_ = std::strerror(errno);
      continue;
    }
    if (::connect(fd, sa, static_cast<socklen_t>(addr.size())) == 0) {
      fd_ = fd;
      state_ = state::open;
      connect_error_.clear();
      return;
    }
    if (errno == EINPROGRESS || errno == EINTR) {
      fd_ = fd;
      state_ = state::connecting;
      connect_deadline_ns_ = steady_ns() + std::int64_t{connect_timeout_ms_} * 1000000;
      return;
    }
    connect_error_ = std::strerror(errno);
    ::close(fd);
  }
  state_ = state::failed;
  if (connect_error_.empty())
    connect_error_ = "no address to connect to";
}

void live_reader::check_connect() {
  if (state_ != state::connecting || fd_ < 0)
    return;
  pollfd p{.fd = fd_, .events = POLLOUT};
  const int r = ::poll(&p, 1, 0);
  if (r > 0) {
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
      err = errno;
    if (err == 0) {
      state_ = state::open;
      connect_error_.clear();
      return;
    }
    connect_error_ = std::strerror(err);
  } else if (steady_ns() < connect_deadline_ns_) {
    return; // still pending
  } else {
    connect_error_ = "timed out after " + std::to_string(connect_timeout_ms_) + " ms";
  }
  ::close(fd_);
  fd_ = -1;
  start_connect(); // the next address, if any
}

live_reader::~live_reader() {
  if (fd_ >= 0)
    ::close(fd_);
}

std::size_t live_reader::poll(trace& into) {
  read_available();
  return consume(into);
}

std::size_t live_reader::poll_lines(std::vector<std::string>& into) {
  read_available();
  std::size_t start = 0, n = 0;
  for (std::size_t nl; (nl = pending_.find('\n', start)) != std::string::npos; start = nl + 1) {
    if (nl > start) {
      into.emplace_back(pending_, start, nl - start);
      ++n;
    }
    ++line_no_;
  }
  pending_.erase(0, start);
  return n;
}

void live_reader::read_available() {
  if (state_ == state::connecting)
    check_connect();
  if (state_ != state::open)
    return;
  char buf[1 << 16];
  for (int rounds = 0; rounds < 256; ++rounds) { // at most 16 MiB a call keeps the GUI responsive
    const ssize_t n = ::read(fd_, buf, sizeof buf);
    if (n > 0) {
      pending_.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n == 0 && tcp_) {
      ::close(fd_);
      fd_ = -1;
      state_ = state::ended;
    } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      errors_.push_back(spec_ + ": read failed: " + std::strerror(errno));
      ::close(fd_);
      fd_ = -1;
      state_ = state::ended;
    }
    break; // n == 0 on a file: at its current end, more may come later
  }
}

std::size_t live_reader::consume(trace& into) {
  const std::size_t before = into.events.size() + into.memory.size();
  std::size_t start = 0;
  for (;;) {
    const auto nl = pending_.find('\n', start);
    if (nl == std::string::npos)
      break;
    std::string_view line(pending_.data() + start, nl - start);
    start = nl + 1;
    ++line_no_;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == ','))
      line.remove_suffix(1);
    while (!line.empty() && line.front() == ' ')
      line.remove_prefix(1);
    if (line.empty())
      continue;
    try {
      parse_json_line(line, into, spec_ + ": line " + std::to_string(line_no_));
    } catch (const input_error& e) {
      if (errors_.size() < 100)
        errors_.push_back(e.what());
    }
  }
  pending_.erase(0, start);
  return into.events.size() + into.memory.size() - before;
}

} // namespace pippy
