#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "../support/hung_listener.hpp"
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
// Polls until `want` events arrived or 5 s passed.
std::size_t read_until(live_reader& r, trace& t, std::size_t want) {
  const auto deadline = std::chrono::steady_clock::now() + 5s;
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
  const auto deadline = std::chrono::steady_clock::now() + 2s;
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
  const auto deadline = std::chrono::steady_clock::now() + 2s;
  while (pub.clients() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  CHECK(pub.clients() == 0);
  live_reader again("127.0.0.1:" + std::to_string(pub.port()));
  trace t2;
  CHECK(read_until(again, t2, 20000) == 20000);
  CHECK(t2.events.back() == nth(19999));
}

TEST_CASE("publishing with no viewer is cheap and bounded", "[traces][live]") {
  live_publisher pub({.port = 0, .queue_capacity = 1000, .replay_capacity = 1000});
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 200000; ++i)
    pub.publish(nth(i));
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  INFO("200k publishes took " << s << " s");
  CHECK(s < 2.0); // a few microseconds each, JSON formatting included
  CHECK(pub.published() == 200000);
  pub.flush();
  live_reader late("127.0.0.1:" + std::to_string(pub.port()));
  trace t;
  read_until(late, t, 1000);
  CHECK(t.events.size() == 1000); // the replay is bounded: only the last 1000 lines
  CHECK(t.events.back() == nth(199999));
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
  hung_listener l;
  const auto t0 = std::chrono::steady_clock::now();
  live_reader reader("127.0.0.1:" + std::to_string(l.port));
  const double ctor_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  INFO("constructor took " << ctor_ms << " ms");
  CHECK(ctor_ms < 100);
  CHECK(reader.is_tcp());
  CHECK(reader.connecting());
  CHECK_FALSE(reader.connected());
  trace t;
  double worst_ms = 0;
  for (int k = 0; k < 50; ++k) { // 0.25 s of polling as the GUI timer would
    const auto p0 = std::chrono::steady_clock::now();
    CHECK(reader.poll(t) == 0);
    worst_ms = std::max(worst_ms, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - p0).count());
    std::this_thread::sleep_for(5ms);
  }
  INFO("slowest poll took " << worst_ms << " ms");
  CHECK(worst_ms < 50); // a blocking connect would take 1 s or more (the SYN retry), up to minutes
  CHECK(reader.connecting()); // still waiting, not failed
  // Once the listener accepts, the SYN is retried and the pending connect completes.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!reader.connected() && reader.connecting() && std::chrono::steady_clock::now() < deadline) {
    l.accept_all();
    reader.poll(t);
    std::this_thread::sleep_for(5ms);
  }
  CHECK(reader.connected());
}

TEST_CASE("a connect that stays unanswered times out with a message", "[traces][live]") {
  hung_listener l;
  live_reader reader("127.0.0.1:" + std::to_string(l.port), 100);
  trace t;
  const auto deadline = std::chrono::steady_clock::now() + 3s;
  while (reader.connecting() && std::chrono::steady_clock::now() < deadline) {
    reader.poll(t);
    std::this_thread::sleep_for(5ms);
  }
  CHECK(reader.status() == live_reader::state::failed);
  CHECK(reader.connect_error().find("timed out") != std::string::npos);
  CHECK_FALSE(reader.connected());
}

TEST_CASE("a port bound but not listening refuses at once", "[traces][live]") {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  CHECK_THROWS_WITH(live_reader("127.0.0.1:" + std::to_string(ntohs(a.sin_port))),
                    Catch::Contains("cannot connect") && Catch::Contains("refused"));
  ::close(fd);
}
