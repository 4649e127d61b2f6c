#pragma once
// Sockets on 127.0.0.1 for the live tests: a port is taken by binding to 0 and held by the test, so
// nothing else can take it between the test learning it and using it.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace pippy::test {

inline sockaddr_in loopback_address(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

struct bound_socket {
  int fd = -1;
  int port = 0;
};

// A TCP socket bound to a free loopback port, not yet listening (connects to it are refused).
// `flags` go to socket(2), e.g. SOCK_NONBLOCK.
inline bound_socket bind_loopback(int flags = 0) {
  bound_socket s;
  s.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);
  REQUIRE(s.fd >= 0);
  sockaddr_in a = loopback_address(0);
  REQUIRE(::bind(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  REQUIRE(::getsockname(s.fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  s.port = ntohs(a.sin_port);
  return s;
}

// A loopback port free now, for a server the code under test opens itself (a c10d store): closed
// again at once, so another process could take it first; good enough for tests in one process.
inline int free_loopback_port() {
  const bound_socket s = bind_loopback();
  ::close(s.fd);
  return s.port;
}

} // namespace pippy::test
