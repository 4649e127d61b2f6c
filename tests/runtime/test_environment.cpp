#include <catch2/catch.hpp>

#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "pippy/core/error.hpp"
#include "pippy/core/topology.hpp"
#include "pippy/runtime/environment.hpp"

using namespace pippy;

namespace {
const char* const vars[] = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID",
                            "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_LAUNCH_NODE_IPADDR"};
struct clean_env {
  clean_env() {
    for (auto v : vars)
      ::unsetenv(v);
  }
  ~clean_env() {
    for (auto v : vars)
      ::unsetenv(v);
  }
};
} // namespace

TEST_CASE("no launcher: one process", "[runtime][env]") {
  clean_env c;
  auto e = read_dist_env();
  CHECK(e.world_size == 1);
  CHECK(e.rank == 0);
  CHECK(e.launcher == "none");
}

TEST_CASE("torchrun's environment", "[runtime][env]") {
  clean_env c;
  ::setenv("RANK", "2", 1);
  ::setenv("WORLD_SIZE", "4", 1);
  ::setenv("LOCAL_RANK", "0", 1);
  ::setenv("MASTER_ADDR", "10.0.0.7", 1);
  ::setenv("MASTER_PORT", "29600", 1);
  auto e = read_dist_env();
  CHECK(e.launcher == "torchrun");
  CHECK(e.rank == 2);
  CHECK(e.world_size == 4);
  CHECK(e.local_rank == 0);
  CHECK(e.master_addr == "10.0.0.7");
  CHECK(e.master_port == 29600);
}

TEST_CASE("Slurm's environment", "[runtime][env]") {
  clean_env c;
  ::setenv("SLURM_PROCID", "5", 1);
  ::setenv("SLURM_NTASKS", "8", 1);
  ::setenv("SLURM_LOCALID", "1", 1);
  ::setenv("SLURM_LAUNCH_NODE_IPADDR", "10.1.2.3", 1);
  auto e = read_dist_env();
  CHECK(e.launcher == "slurm");
  CHECK(e.rank == 5);
  CHECK(e.world_size == 8);
  CHECK(e.local_rank == 1);
  CHECK(e.master_addr == "10.1.2.3");
  CHECK(e.master_port == 29500);
}

TEST_CASE("malformed variables are named", "[runtime][env]") {
  clean_env c;
  ::setenv("RANK", "two", 1);
  ::setenv("WORLD_SIZE", "4", 1);
  CHECK_THROWS_WITH(read_dist_env(), Catch::Contains("RANK='two'"));
  ::setenv("RANK", "4", 1);
  CHECK_THROWS_WITH(read_dist_env(), Catch::Contains("RANK 4 is outside [0, 4)"));
  ::setenv("RANK", "0", 1);
  ::setenv("MASTER_PORT", "70000", 1);
  CHECK_THROWS_WITH(read_dist_env(), Catch::Contains("MASTER_PORT"));
}

TEST_CASE("A rank's own --bind-cores takes its local share of the CPUs and makes its compute yield", "[runtime][env]") {
  const char* had = std::getenv("PIPPY_COMPUTE_YIELDS");
  const std::string kept = had ? had : "";
  ::unsetenv("PIPPY_COMPUTE_YIELDS");
  // In a thread of its own: the test process's other threads keep their CPUs.
  std::vector<int> allowed, taken, now;
  std::thread t([&] {
    allowed = allowed_cpus();
    dist_env env;
    env.local_rank = 1, env.local_world_size = 2;
    taken = bind_to_local_share(env);
    now = allowed_cpus();
  });
  t.join();
  const bool yields = compute_yields();
  had ? ::setenv("PIPPY_COMPUTE_YIELDS", kept.c_str(), 1) : ::unsetenv("PIPPY_COMPUTE_YIELDS");
  CHECK(taken == cpu_share(allowed, 1, 2));
  CHECK(now == taken);
  CHECK(yields);
}

// The threads started inside get SCHED_BATCH at nice 19 (Gloo's socket loop thread, under --bind-cores); the caller and
// the threads that were there before keep theirs.
TEST_CASE("threads started at the lowest normal priority: only the new ones", "[runtime][env]") {
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  long before_tid = 0, new_tid = 0;
  auto park = [&](long& tid) {
    {
      std::lock_guard lock(mu);
      tid = static_cast<long>(::gettid());
    }
    cv.notify_all();
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return stop; });
  };
  std::thread before([&] { park(before_tid); });
  std::thread started;
  {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return before_tid != 0; });
  }
  const int caller_nice = ::getpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()));
  const int lowered = start_threads_at_lowest_normal_priority([&] {
    started = std::thread([&] { park(new_tid); });
    std::unique_lock lock(mu); // the thread is there once it has said so
    cv.wait(lock, [&] { return new_tid != 0; });
  });
  const int new_nice = ::getpriority(PRIO_PROCESS, static_cast<id_t>(new_tid));
  const int new_policy = ::sched_getscheduler(static_cast<pid_t>(new_tid));
  const int before_policy = ::sched_getscheduler(static_cast<pid_t>(before_tid));
  const int before_nice = ::getpriority(PRIO_PROCESS, static_cast<id_t>(before_tid));
  const int caller_after = ::getpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()));
  {
    std::lock_guard lock(mu);
    stop = true;
  }
  cv.notify_all();
  before.join();
  started.join();
  CHECK(lowered == 1);
  CHECK(new_nice == 19);
  CHECK(new_policy == SCHED_BATCH);
  CHECK(before_policy == SCHED_OTHER);
  CHECK(before_nice == caller_nice);
  CHECK(caller_after == caller_nice);
}
