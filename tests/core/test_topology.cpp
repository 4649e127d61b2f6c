#include <catch2/catch.hpp>

#include <cerrno>
#include <thread>

#include "pippy/core/error.hpp"
#include "pippy/core/topology.hpp"

using namespace pippy;

// The name avoids "split": the mutation check leaves out tests matching it (`pippy split` needs torch).
TEST_CASE("chunk sizes follow torch: as even as possible, the first chunks one row larger") {
  // torch.tensor_split's rule: rows / chunks each, and one more for the first rows % chunks.
  CHECK(chunk_sizes(10, 3) == std::vector<std::int64_t>{4, 3, 3});
  CHECK(chunk_sizes(11, 4) == std::vector<std::int64_t>{3, 3, 3, 2});
  CHECK(chunk_sizes(3, 3) == std::vector<std::int64_t>{1, 1, 1}); // as many rows as chunks: one each
  CHECK(chunk_sizes(5, 1) == std::vector<std::int64_t>{5});
  CHECK_THROWS_WITH(chunk_sizes(2, 3), "cannot split 2 rows into 3 micro-batches");
  CHECK_THROWS_WITH(chunk_sizes(4, 0), "chunks must be at least 1, got 0");
}

TEST_CASE("cpu_share gives each rank an even share of the CPUs, or one each round robin when ranks outnumber them") {
  using cpus = std::vector<int>;
  // 8 CPUs, 3 ranks: [0, 8/3), [8/3, 16/3), [16/3, 8) in CPU positions, taken in increasing order.
  const cpus eight{7, 6, 5, 4, 3, 2, 1, 0};
  CHECK(cpu_share(eight, 0, 3) == cpus{0, 1});
  CHECK(cpu_share(eight, 1, 3) == cpus{2, 3, 4});
  CHECK(cpu_share(eight, 2, 3) == cpus{5, 6, 7});
  // Positions, not numbers: a process allowed CPUs 4, 9, 12 and 13 gives 2 ranks two each.
  CHECK(cpu_share({13, 4, 12, 9}, 0, 2) == cpus{4, 9});
  CHECK(cpu_share({13, 4, 12, 9}, 1, 2) == cpus{12, 13});
  // 3 ranks on 2 CPUs: ranks 0 and 2 share the first.
  CHECK(cpu_share({0, 1}, 0, 3) == cpus{0});
  CHECK(cpu_share({0, 1}, 1, 3) == cpus{1});
  CHECK(cpu_share({0, 1}, 2, 3) == cpus{0});
  CHECK(cpu_share({0, 1}, 0, 1) == cpus{0, 1}); // one rank: all of them
  CHECK(cpu_share({}, 0, 2).empty());
  CHECK_THROWS_WITH(cpu_share({0, 1}, 2, 2), "cpu_share: rank 2 of 2 ranks");
  CHECK_THROWS_WITH(cpu_share({0, 1}, 0, 0), "cpu_share: rank 0 of 0 ranks");
}

TEST_CASE("ranks_sharing_cpus: the ranks bound to one CPU of one host") {
  using groups = std::vector<std::vector<int>>;
  auto on = [](std::vector<std::vector<int>> cpus, std::vector<std::string> hosts = {}) {
    std::vector<rank_cpus> out;
    for (std::size_t r = 0; r < cpus.size(); ++r)
      out.push_back({r < hosts.size() ? hosts[r] : "h", cpus[r]});
    return out;
  };
  CHECK(ranks_sharing_cpus(on({{0}, {1}})).empty());
  CHECK(ranks_sharing_cpus(on({{0}, {1}, {0}})) == groups{{0, 2}});
  CHECK(ranks_sharing_cpus(on({{1}, {0}, {1}, {0}})) == groups{{0, 2}, {1, 3}});
  CHECK(ranks_sharing_cpus(on({{5}, {5}, {5}})) == groups{{0, 1, 2}});
  CHECK(ranks_sharing_cpus(on({{0}, {1}, {0}, {0}}, {"a", "a", "b", "b"})) == groups{{2, 3}}); // never across hosts
  CHECK(ranks_sharing_cpus(on({{0, 1}, {0, 1}, {0, 1}})).empty()); // not bound: the OS moves them
  CHECK(ranks_sharing_cpus({}).empty());
}

TEST_CASE("bind_to_cpus binds the calling thread to the CPUs given, and refuses none or one out of range") {
  // In a thread of its own: the test process's other threads keep their CPUs.
  std::vector<int> before, after;
  int bound = -1, empty = -1, outside = -1;
  std::thread t([&] {
    before = allowed_cpus();
    bound = bind_to_cpus({before.back()});
    after = allowed_cpus();
    empty = bind_to_cpus({});
    outside = bind_to_cpus({-1});
  });
  t.join();
  REQUIRE_FALSE(before.empty());
  CHECK(bound == 0);
  CHECK(after == std::vector<int>{before.back()});
  CHECK(empty == EINVAL);
  CHECK(outside == EINVAL);
}
