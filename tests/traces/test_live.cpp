#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <thread>
#include <vector>

#include "../support/hung_listener.hpp"
#include "../support/loopback.hpp"
#include "../support/watchdog.hpp"
#include "pippy/core/error.hpp"
#include "pippy/traces/chrome_trace.hpp"
#include "pippy/traces/live.hpp"

using namespace pippy;
using namespace std::chrono_literals;

namespace {
trace_event nth(int i) {
  return trace_event{.rank = i % 4, .act = action{i % 4, action_kind::forward, i / 4}, .start_us = double(i),
                     .end_us = double(i) + 0.5};
}
// How long a wait on an event may take before the test gives up: a hang guard, never the assertion.
// Every wait below ends as soon as its event happens, so a generous guard costs nothing.
constexpr auto hang_guard = 30s;
// Polls until `want` events arrived (or the hang guard).
std::size_t read_until(live_reader& r, trace& t, std::size_t want) {
  const auto deadline = std::chrono::steady_clock::now() + hang_guard;
  while (t.events.size() < want && std::chrono::steady_clock::now() < deadline) {
    if (!r.poll(t))
      std::this_thread::sleep_for(2ms);
  }
  return t.events.size();
}
std::string temp_path(const char* name) {
  return (std::filesystem::temp_directory_path() / (std::string(name) + "-" + std::to_string(::getpid()))).string();
}
} // namespace

TEST_CASE("a viewer receives every published event over TCP, late joiners get a replay", "[traces][live]") {
  live_publisher pub({.port = 0});
  REQUIRE(pub.port() > 0);
  for (int i = 0; i < 500; ++i)
    pub.publish(nth(i)); // before anyone connects
  live_reader reader("127.0.0.1:" + std::to_string(pub.port()));
  CHECK(reader.is_tcp());
  for (int i = 500; i < 1000; ++i)
    pub.publish(nth(i));
  pub.publish(memory_sample{1, 3.0, 4096});
  trace t;
  CHECK(read_until(reader, t, 1000) == 1000);
  for (int i = 0; i < 1000; ++i)
    REQUIRE(t.events[static_cast<std::size_t>(i)] == nth(i));
  const auto deadline = std::chrono::steady_clock::now() + hang_guard;
  while (t.memory.empty() && std::chrono::steady_clock::now() < deadline)
    reader.poll(t);
  REQUIRE(t.memory.size() == 1);
  CHECK(t.memory[0].bytes == 4096);
  CHECK(reader.errors().empty());
}

TEST_CASE("the publisher survives a viewer going away", "[traces][live]") {
  live_publisher pub({.port = 0});
  {
    live_reader reader("127.0.0.1:" + std::to_string(pub.port()));
    for (int i = 0; i < 10; ++i)
      pub.publish(nth(i));
    trace t;
    CHECK(read_until(reader, t, 10) == 10);
  } // viewer disconnects
  for (int i = 10; i < 20000; ++i)
    pub.publish(nth(i)); // writing to a closed socket must not raise SIGPIPE
  pub.flush();
  const auto deadline = std::chrono::steady_clock::now() + hang_guard;
  while (pub.clients() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  CHECK(pub.clients() == 0);
  live_reader again("127.0.0.1:" + std::to_string(pub.port()));
  trace t2;
  REQUIRE(read_until(again, t2, 20000) == 20000);
  CHECK(t2.events.back() == nth(19999));
}

namespace {
// The JSON lines of nth(from) .. nth(to - 1).
std::string lines_of(int from, int to) {
  std::string out;
  for (int i = from; i < to; ++i)
    out += to_json_line(nth(i));
  return out;
}
// Bytes waiting in a pipe.
int unread(int fd) {
  int n = 0;
  return ::ioctl(fd, FIONREAD, &n) == 0 ? n : -1;
}
} // namespace

TEST_CASE("publishing with no viewer never waits on its writer and is bounded: the oldest lines are dropped and counted",
          "[traces][live]") {
  // The publisher's file is a FIFO that the test does not read: once the background thread has taken
  // a line longer than the FIFO holds, it is stuck writing it until the test reads. Everything
  // published meanwhile can only wait in the bounded queue, so what is dropped is exact.
  const std::string fifo = temp_path("pippy-live-stall.fifo");
  std::filesystem::remove(fifo);
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  const int rd = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC); // so that the writer's open returns
  REQUIRE(rd >= 0);
  const int fifo_size = ::fcntl(rd, F_GETPIPE_SZ);
  REQUIRE(fifo_size > 0);
  const std::string big = "{\"pad\":\"" + std::string(2 * static_cast<std::size_t>(fifo_size), 'x') + "\"}\n";
  std::string got; // what the FIFO delivered
  auto drain = [&] {
    char buf[1 << 16];
    for (ssize_t n; (n = ::read(rd, buf, sizeof buf)) > 0;)
      got.append(buf, static_cast<std::size_t>(n));
  };
  {
    live_publisher pub({.port = 0, .path = fifo, .queue_capacity = 1000, .replay_capacity = 1000});
    pub.publish_line(big);
    const auto deadline = std::chrono::steady_clock::now() + hang_guard;
    while (unread(rd) <= 0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(1ms);
    // The thread took the queue when it held `big` alone, and cannot finish writing it: it is stuck.
    REQUIRE(unread(rd) > 0);
    std::atomic<bool> released{false};
    pippy::test::watchdog wd(hang_guard, [&] { // a publish() that waits for the writer would hang here
      while (!released.load())
        drain(), std::this_thread::sleep_for(1ms);
    });
    for (int i = 0; i < 200000; ++i)
      pub.publish(nth(i)); // with nobody connected and the writer stuck
    released = true;
    CHECK_FALSE(wd.done()); // every publish returned while the writer was stuck
    CHECK(unread(rd) <= fifo_size);
    CHECK(pub.published() == 200001);
    CHECK(pub.dropped() == 199000); // all but the newest queue_capacity lines
    CHECK(pub.clients() == 0);
    // Reading the FIFO frees the writer: it writes `big`, then exactly the 1000 lines kept.
    {
      std::atomic<bool> flushed{false};
      std::thread reader([&] {
        while (!flushed.load())
          drain(), std::this_thread::sleep_for(1ms);
      });
      pub.flush();
      flushed = true;
      reader.join();
      drain();
    }
    const std::string want = big + lines_of(199000, 200000);
    CHECK(got.size() == want.size());
    CHECK((got == want));
    // The replay is bounded too: a late viewer gets the last 1000 lines (`big` fell out of it).
    live_reader late("127.0.0.1:" + std::to_string(pub.port()));
    trace t;
    CHECK(read_until(late, t, 1000) == 1000);
    for (int i = 0; i < 1000; ++i)
      REQUIRE(t.events[static_cast<std::size_t>(i)] == nth(199000 + i));
    CHECK(pub.dropped() == 199000);
    CHECK(late.errors().empty());
  }
  ::close(rd);
  std::filesystem::remove(fifo);
}

TEST_CASE("a viewer that never reads is dropped at its buffer limit, the publisher and other viewers go on",
          "[traces][live]") {
  constexpr std::size_t limit = 256 << 10;
  live_publisher pub({.port = 0, .client_buffer_limit = limit});
  // The slow viewer: connected, with a small receive buffer, and never reads.
  const int slow = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(slow >= 0);
  int small = 4096;
  ::setsockopt(slow, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  sockaddr_in a = test::loopback_address(pub.port());
  REQUIRE(::connect(slow, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  live_reader reader("127.0.0.1:" + std::to_string(pub.port()));
  auto deadline = std::chrono::steady_clock::now() + hang_guard;
  while (pub.clients() < 2 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  REQUIRE(pub.clients() == 2);
  // Batches of 1000 lines (about 60 KB); the reader reads each before the next one, so only the slow
  // viewer's backlog grows. Past the kernel's buffers and `limit` it is dropped. 64 MB is far more than
  // that takes (it is a hang guard, not the assertion).
  trace t;
  int sent = 0;
  std::size_t bytes = 0;
  while (pub.clients() == 2 && bytes < (64u << 20)) {
    for (int k = 0; k < 1000; ++k, ++sent) {
      pub.publish(nth(sent));
      bytes += to_json_line(nth(sent)).size();
    }
    pub.flush(); // the batch was handed to both viewers (or the slow one dropped)
    REQUIRE(read_until(reader, t, static_cast<std::size_t>(sent)) == static_cast<std::size_t>(sent));
  }
  INFO(sent << " lines, " << bytes << " bytes published");
  REQUIRE(pub.clients() == 1); // the slow viewer went: it neither closed nor sent anything
  CHECK(pub.dropped() == 0);   // no line was lost for the others
  // The publisher goes on: the remaining viewer gets every line, in order, and more.
  for (int k = 0; k < 1000; ++k, ++sent)
    pub.publish(nth(sent));
  CHECK(read_until(reader, t, static_cast<std::size_t>(sent)) == static_cast<std::size_t>(sent));
  for (int i = 0; i < sent; ++i)
    REQUIRE(t.events[static_cast<std::size_t>(i)] == nth(i));
  CHECK(reader.connected());
  CHECK(reader.errors().empty());
  // The slow viewer got a prefix of the stream and then the end of it: the publisher closed it.
  std::string slow_got;
  bool eof = false;
  deadline = std::chrono::steady_clock::now() + hang_guard;
  while (!eof && std::chrono::steady_clock::now() < deadline) {
    pollfd p{slow, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0)
      continue;
    char buf[1 << 16];
    const ssize_t n = ::recv(slow, buf, sizeof buf, 0);
    if (n > 0)
      slow_got.append(buf, static_cast<std::size_t>(n));
    else
      eof = true; // 0 = closed, < 0 = reset: either way the publisher let it go
  }
  CHECK(eof);
  const std::string all = lines_of(0, sent);
  CHECK(slow_got.size() < all.size());
  CHECK(all.compare(0, slow_got.size(), slow_got) == 0);
  ::close(slow);
}

TEST_CASE("a growing JSON-lines file is read as it grows: bad lines are reported", "[traces][live]") {
  const std::string path = temp_path("pippy-live.jsonl");
  std::filesystem::remove(path);
  {
    live_publisher pub({.path = path});
    for (int i = 0; i < 100; ++i)
      pub.publish(nth(i));
    pub.flush();
    live_reader reader(path);
    CHECK_FALSE(reader.is_tcp());
    trace t;
    CHECK(read_until(reader, t, 100) == 100);
    for (int i = 100; i < 150; ++i)
      pub.publish(nth(i));
    pub.publish_line("{\"ph\":\"X\",\"name\":\"0Q0\",\"pid\":0,\"ts\":0,\"dur\":1}");
    pub.publish_line("{\"ph\":\"X\",\"name\":\"0F0\",\"pid\":\"zero\",\"ts\":0,\"dur\":1}");
    pub.publish_line("{\"ph\":\"X\",\"na");
    pub.flush();
    CHECK(read_until(reader, t, 150) == 150);
    reader.poll(t);
    CHECK(t.events.size() == 150);
    REQUIRE(reader.errors().size() == 3);
    CHECK(reader.errors()[1].find("pid") != std::string::npos);
  }
  std::filesystem::remove(path);
}

TEST_CASE("live sources that do not exist fail with a message", "[traces][live]") {
  CHECK_THROWS_AS(live_reader("/nonexistent/dir/file.jsonl"), input_error);
  CHECK(is_host_port("localhost:7777"));
  CHECK_FALSE(is_host_port("trace.json"));
  CHECK_THROWS_WITH(live_reader("127.0.0.1:1"), Catch::Contains("cannot connect"));
}

using pippy::test::hung_listener;

TEST_CASE("connecting to a peer that does not answer never blocks the caller", "[traces][live]") {
  hung_listener l; // answers nobody until the test accepts
  trace t;
  {
    // Hang guard: answering the peer lets a connect that wrongly waits return (and the checks fail).
    pippy::test::watchdog wd(hang_guard, [&] { l.accept_all(); });
    live_reader reader("127.0.0.1:" + std::to_string(l.port));
    // The constructor returned although the peer has not answered: it did not wait for the connect.
    CHECK(reader.is_tcp());
    CHECK(reader.connecting());
    CHECK_FALSE(reader.connected());
    for (int k = 0; k < 1000; ++k) { // as the GUI timer would, while the peer stays silent
      CHECK(reader.poll(t) == 0);
      REQUIRE(reader.connecting()); // still waiting, not failed
    }
    CHECK_FALSE(wd.done()); // and nothing had to be answered for the calls to return
    CHECK(l.accepted.empty());
    // Once the listener accepts, the SYN is retried and the pending connect completes.
    const auto deadline = std::chrono::steady_clock::now() + hang_guard;
    while (!reader.connected() && reader.connecting() && std::chrono::steady_clock::now() < deadline) {
      l.accept_all();
      reader.poll(t);
      std::this_thread::sleep_for(5ms);
    }
    CHECK(reader.connected());
  }
}

TEST_CASE("a connect that stays unanswered times out with a message", "[traces][live]") {
  hung_listener l;
  const auto t0 = std::chrono::steady_clock::now();
  live_reader reader("127.0.0.1:" + std::to_string(l.port), 100);
  trace t;
  const auto deadline = t0 + hang_guard;
  while (reader.connecting() && std::chrono::steady_clock::now() < deadline) {
    reader.poll(t);
    std::this_thread::sleep_for(5ms);
  }
  // Not before the timeout (a lower bound on elapsed time cannot flake).
  CHECK(std::chrono::steady_clock::now() - t0 >= 100ms);
  CHECK(reader.status() == live_reader::state::failed);
  CHECK(reader.connect_error().find("timed out after 100 ms") != std::string::npos);
  CHECK_FALSE(reader.connected());
  CHECK(reader.poll(t) == 0);
  CHECK(t.events.empty());
}

TEST_CASE("a reader sees the end of the stream once the publisher stops, after every line it sent", "[traces][live]") {
  trace t;
  std::optional<live_reader> reader;
  {
    live_publisher pub({.port = 0});
    reader.emplace("127.0.0.1:" + std::to_string(pub.port()));
    auto deadline = std::chrono::steady_clock::now() + hang_guard;
    while (pub.clients() < 1 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(1ms);
    REQUIRE(pub.clients() == 1);
    for (int i = 0; i < 5000; ++i)
      pub.publish(nth(i));
    pub.publish(memory_sample{2, 7.0, 123});
  } // stops: what is queued still goes out, then the stream is closed
  const auto deadline = std::chrono::steady_clock::now() + hang_guard;
  while (reader->status() == live_reader::state::open && std::chrono::steady_clock::now() < deadline) {
    if (!reader->poll(t))
      std::this_thread::sleep_for(1ms);
  }
  CHECK(reader->status() == live_reader::state::ended);
  CHECK_FALSE(reader->connected());
  REQUIRE(t.events.size() == 5000);
  for (int i = 0; i < 5000; ++i)
    REQUIRE(t.events[static_cast<std::size_t>(i)] == nth(i));
  REQUIRE(t.memory.size() == 1);
  CHECK(t.memory[0] == memory_sample{2, 7.0, 123});
  CHECK(reader->errors().empty());
  CHECK(reader->poll(t) == 0); // ended stays ended
  CHECK(reader->status() == live_reader::state::ended);
}

TEST_CASE("a viewer that reconnects gets the replay once and then the new lines", "[traces][live]") {
  live_publisher pub({.port = 0});
  const std::string spec = "127.0.0.1:" + std::to_string(pub.port());
  for (int i = 0; i < 100; ++i)
    pub.publish(nth(i));
  {
    live_reader first(spec);
    trace t;
    CHECK(read_until(first, t, 100) == 100);
  } // the viewer goes away (a window closed, a network blip)
  auto deadline = std::chrono::steady_clock::now() + hang_guard;
  while (pub.clients() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  REQUIRE(pub.clients() == 0);
  for (int i = 100; i < 200; ++i)
    pub.publish(nth(i)); // while nobody watches
  live_reader again(spec);
  trace t;
  CHECK(read_until(again, t, 200) == 200);
  for (int i = 200; i < 300; ++i)
    pub.publish(nth(i));
  CHECK(read_until(again, t, 300) == 300);
  pub.flush();
  again.poll(t);
  REQUIRE(t.events.size() == 300); // each line once: the replay does not repeat what follows it
  for (int i = 0; i < 300; ++i)
    REQUIRE(t.events[static_cast<std::size_t>(i)] == nth(i));
  CHECK(again.connected());
  CHECK(again.errors().empty());
}

TEST_CASE("a port bound but not listening refuses at once", "[traces][live]") {
  const auto held = test::bind_loopback();
  CHECK_THROWS_WITH(live_reader("127.0.0.1:" + std::to_string(held.port)),
                    Catch::Contains("cannot connect") && Catch::Contains("refused"));
  ::close(held.fd);
}

TEST_CASE("a viewer that closes its end is forgotten with nothing more published", "[traces][live]") {
  live_publisher pub({.port = 0});
  const auto deadline = std::chrono::steady_clock::now() + hang_guard;
  {
    live_reader reader("127.0.0.1:" + std::to_string(pub.port()));
    while (pub.clients() == 0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(2ms);
    REQUIRE(pub.clients() == 1);
  } // closed: the publisher sees the end of its stream from the viewer, not a failed write
  while (pub.clients() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(2ms);
  CHECK(pub.clients() == 0);
}

TEST_CASE("a stopping publisher lets a viewer that is still reading take the whole tail", "[traces][live]") {
  constexpr int n = 200000; // ~20 MB: far more than the socket buffers hold
  std::optional<live_publisher> pub;
  pub.emplace(live_publisher_options{.port = 0, .queue_capacity = n + 1, .tail_wait_ms = 30000});
  live_reader reader("127.0.0.1:" + std::to_string(pub->port()));
  const auto deadline = std::chrono::steady_clock::now() + hang_guard;
  while (pub->clients() == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(2ms);
  REQUIRE(pub->clients() == 1);
  for (int i = 0; i < n; ++i)
    pub->publish(nth(i));
  pub->flush(); // all of it is now the viewer's pending tail, none read yet
  trace t;
  std::thread viewer([&] { read_until(reader, t, n); });
  pub.reset(); // stops while most of the tail is still pending
  viewer.join();
  REQUIRE(t.events.size() == std::size_t{n});
  CHECK(t.events.back() == nth(n - 1));
}

TEST_CASE("HOST:PORT takes a port of digits only, and an empty host means this machine", "[traces][live]") {
  CHECK(is_host_port("localhost:65535"));
  CHECK(is_host_port(":7777"));
  CHECK_FALSE(is_host_port("localhost:77x"));  // not a number: a file name with a colon
  CHECK_FALSE(is_host_port("localhost:+80"));  // strtol would take the sign
  CHECK_FALSE(is_host_port("localhost:8 0"));
  CHECK_FALSE(is_host_port("localhost:"));
  CHECK_FALSE(is_host_port("localhost:0"));
  CHECK_FALSE(is_host_port("localhost:65536"));
  // A name that is not HOST:PORT is a file to open, not a host to connect to.
  CHECK_THROWS_WITH(live_reader("/nonexistent/run:1a"), Catch::Contains("cannot open the live file"));
  // ":PORT" connects to 127.0.0.1.
  live_publisher pub({.port = 0});
  for (int i = 0; i < 10; ++i)
    pub.publish(nth(i));
  live_reader reader(":" + std::to_string(pub.port()));
  CHECK(reader.is_tcp());
  trace t;
  REQUIRE(read_until(reader, t, 10) == 10);
  for (int i = 0; i < 10; ++i)
    CHECK(t.events[static_cast<std::size_t>(i)] == nth(i));
}

TEST_CASE("a directory is not a live file", "[traces][live]") {
  const std::string dir = temp_path("pippy-live-dir");
  std::filesystem::create_directories(dir);
  CHECK_THROWS_WITH(live_reader(dir), Catch::Contains("is a directory"));
  std::filesystem::remove(dir);
}

TEST_CASE("a stream that the peer resets ends with the read error reported", "[traces][live]") {
  const auto [srv, port] = test::bind_loopback();
  REQUIRE(::listen(srv, 1) == 0);
  live_reader reader("127.0.0.1:" + std::to_string(port));
  trace t;
  auto deadline = std::chrono::steady_clock::now() + hang_guard;
  while (reader.connecting() && std::chrono::steady_clock::now() < deadline) {
    reader.poll(t);
    std::this_thread::sleep_for(1ms);
  }
  REQUIRE(reader.connected());
  const int peer = ::accept4(srv, nullptr, nullptr, SOCK_CLOEXEC);
  REQUIRE(peer >= 0);
  const linger abort_on_close{.l_onoff = 1, .l_linger = 0};
  REQUIRE(::setsockopt(peer, SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close) == 0);
  ::close(peer); // a reset, not an orderly end: the reader's read fails with ECONNRESET
  deadline = std::chrono::steady_clock::now() + hang_guard;
  while (reader.connected() && std::chrono::steady_clock::now() < deadline) {
    reader.poll(t);
    std::this_thread::sleep_for(1ms);
  }
  CHECK(reader.status() == live_reader::state::ended);
  REQUIRE(reader.errors().size() == 1);
  CHECK(reader.errors()[0].find("read failed: " + std::string(std::strerror(ECONNRESET))) != std::string::npos);
  CHECK(t.events.empty());
  ::close(srv);
}

TEST_CASE("one poll reads at most 16 MiB, the rest comes with the next", "[traces][live]") {
  constexpr std::size_t cap = 16u << 20; // what one call reads at most, so that a GUI timer stays responsive
  // nth(0), a blank line (spaces) up to 10 bytes short of 16 MiB, then nth(1) across the 16 MiB mark, nth(2).
  const std::string first = to_json_line(nth(0));
  std::string text = first + std::string(cap - 10 - first.size() - 1, ' ') + "\n";
  REQUIRE(text.size() == cap - 10);
  text += to_json_line(nth(1)) + to_json_line(nth(2));
  const std::string path = temp_path("pippy-live-big.jsonl");
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
  }
  {
    live_reader reader(path);
    trace t;
    CHECK(reader.poll(t) == 1); // the lines that end within the first 16 MiB: nth(0) and the blank one
    CHECK(reader.poll(t) == 2);
    CHECK(reader.poll(t) == 0);
    REQUIRE(t.events.size() == 3);
    for (int i = 0; i < 3; ++i)
      CHECK(t.events[static_cast<std::size_t>(i)] == nth(i));
    CHECK(reader.errors().empty());
  }
  std::filesystem::remove(path);
}

TEST_CASE("a viewer accepted on descriptor 0 (a job started with stdin closed) is served", "[traces][live]") {
  // Descriptor 0 is a descriptor like any other: with stdin closed, it is the next one a socket gets.
  const int saved_stdin = ::fcntl(0, F_DUPFD_CLOEXEC, 3); // -1 when stdin is closed already
  const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  REQUIRE(null_fd >= 0);
  REQUIRE(::dup2(null_fd, 0) == 0); // taken while the publisher and the viewer open theirs
  ::close(null_fd);
  const int viewer = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(viewer > 0);
  std::string got;
  {
    live_publisher pub({.port = 0});
    for (int i = 0; i < 10; ++i)
      pub.publish(nth(i));
    sockaddr_in a = test::loopback_address(pub.port());
    ::close(0); // from here on the lowest free descriptor is 0: the publisher's accept gets it
    REQUIRE(::connect(viewer, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    auto deadline = std::chrono::steady_clock::now() + hang_guard;
    while (pub.clients() < 1 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(1ms);
    REQUIRE(pub.clients() == 1);
    // It was: descriptor 0 is now the publisher's end of the viewer's connection.
    sockaddr_in mine{}, theirs{};
    socklen_t l1 = sizeof mine, l2 = sizeof theirs;
    REQUIRE(::getsockname(viewer, reinterpret_cast<sockaddr*>(&mine), &l1) == 0);
    REQUIRE(::getpeername(0, reinterpret_cast<sockaddr*>(&theirs), &l2) == 0);
    CHECK(theirs.sin_port == mine.sin_port);
    for (int i = 10; i < 20; ++i)
      pub.publish(nth(i));
    const std::string want = lines_of(0, 20); // the replay, then what followed
    deadline = std::chrono::steady_clock::now() + hang_guard;
    while (got.size() < want.size() && std::chrono::steady_clock::now() < deadline) {
      pollfd p{viewer, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0)
        continue;
      char buf[4096];
      const ssize_t n = ::recv(viewer, buf, sizeof buf, 0);
      if (n <= 0)
        break;
      got.append(buf, static_cast<std::size_t>(n));
    }
    CHECK((got == want));
  } // the publisher closes descriptor 0 with its viewers
  ::close(viewer);
  if (saved_stdin >= 0) {
    ::dup2(saved_stdin, 0);
    ::close(saved_stdin);
  }
}

TEST_CASE("a publisher that polls rarely takes what is queued only when woken, and its thread's CPU can be read",
          "[traces][live]") {
  const std::string path = temp_path("pippy-live-wake.jsonl");
  std::filesystem::remove(path);
  auto lines_in = [&] {
    std::ifstream in(path);
    std::size_t n = 0;
    for (std::string l; std::getline(in, l);)
      ++n;
    return n;
  };
  {
    live_publisher pub({.path = path, .poll_ms = 60000});
    pub.publish(nth(0));
    pub.flush(); // the thread wrote line 0 and went back to its (minute-long) poll
    CHECK(lines_in() == 1);
    pub.publish(nth(1));
    std::this_thread::sleep_for(200ms);
    CHECK(lines_in() == 1); // queued, not taken: publishing does not wake the thread
    pub.wake();
    const auto deadline = std::chrono::steady_clock::now() + hang_guard;
    while (lines_in() < 2 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(2ms);
    CHECK(lines_in() == 2);
    const double cpu = pub.thread_cpu_us();
    CHECK(cpu > 0);
    CHECK(cpu < 1e7);
  }
  std::thread gone;
  CHECK(thread_cpu_us(gone) == 0); // not a running thread
  std::filesystem::remove(path);
}
