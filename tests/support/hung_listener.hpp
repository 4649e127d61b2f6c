#pragma once
// A loopback listener whose accept queue is full: a further connect gets no answer (its SYNs are
// dropped) until something is accepted. `fillers` hold the queue; only 127.0.0.1 is used.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

#include "loopback.hpp"

namespace pippy::test {

struct hung_listener {
  int fd = -1;
  int port = 0;
  std::vector<int> fillers, accepted;
  hung_listener() {
    const auto held = bind_loopback(SOCK_NONBLOCK);
    fd = held.fd;
    port = held.port;
    REQUIRE(::listen(fd, 0) == 0);
    sockaddr_in a = loopback_address(port);
    for (int k = 0; k < 16; ++k) { // connect until one stays pending: the queue is full
      const int c = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      ::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a);
      fillers.push_back(c);
      pollfd p{c, POLLOUT, 0};
      if (::poll(&p, 1, 100) == 0)
        return;
    }
    FAIL("the accept queue never filled");
  }
  hung_listener(const hung_listener&) = delete;
  hung_listener& operator=(const hung_listener&) = delete;
  // Accepts whatever is queued; the accepted sockets are closed with the listener.
  void accept_all() {
    for (int c; (c = ::accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0;)
      accepted.push_back(c);
  }
  ~hung_listener() {
    for (int c : fillers)
      ::close(c);
    for (int c : accepted)
      ::close(c);
    ::close(fd);
  }
};

} // namespace pippy::test
