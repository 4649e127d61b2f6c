#include "pippy/runtime/environment.hpp"

#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "pippy/core/error.hpp"
#include "pippy/core/topology.hpp"

namespace pippy {

namespace {
std::optional<std::string> get(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0')
    return std::nullopt;
  return std::string(v);
}

int get_int(const char* name, int fallback) {
  auto v = get(name);
  if (!v)
    return fallback;
  try {
    std::size_t used = 0;
    const int x = std::stoi(*v, &used);
    if (used != v->size())
      throw std::invalid_argument("trailing characters");
    return x;
  } catch (const std::exception&) {
    throw input_error(std::string("environment variable ") + name + "='" + *v + "' is not an integer");
  }
}
} // namespace

dist_env read_dist_env() {
  dist_env e;
  if (get("RANK") || get("WORLD_SIZE")) {
    e.launcher = "torchrun";
    e.rank = get_int("RANK", 0);
    e.world_size = get_int("WORLD_SIZE", 1);
    e.local_rank = get_int("LOCAL_RANK", e.rank);
    e.local_world_size = get_int("LOCAL_WORLD_SIZE", e.world_size);
    e.node_rank = get_int("GROUP_RANK", 0);
  } else if (get("SLURM_PROCID")) {
    e.launcher = "slurm";
    e.rank = get_int("SLURM_PROCID", 0);
    e.world_size = get_int("SLURM_NTASKS", 1);
    e.local_rank = get_int("SLURM_LOCALID", 0);
    e.node_rank = get_int("SLURM_NODEID", 0);
    e.local_world_size = std::max(1, e.world_size / std::max(1, get_int("SLURM_NNODES", 1)));
    if (auto a = get("SLURM_LAUNCH_NODE_IPADDR"))
      e.master_addr = *a;
  }
  if (auto a = get("MASTER_ADDR"))
    e.master_addr = *a;
  e.master_port = get_int("MASTER_PORT", e.master_port);
  e.job_id = get("PIPPY_JOB_ID").value_or(get("TORCHELASTIC_RUN_ID").value_or(""));
  if (e.job_id.size() > 128 || e.job_id.find('/') != std::string::npos)
    throw input_error("the job id (PIPPY_JOB_ID or TORCHELASTIC_RUN_ID) '" + e.job_id.substr(0, 128) +
                      "' must be at most 128 characters without '/'");
  e.master_listen_fd = get_int("PIPPY_MASTER_LISTEN_FD", -1);
  if (e.master_listen_fd < -1)
    throw input_error("PIPPY_MASTER_LISTEN_FD must be a file descriptor, got " + std::to_string(e.master_listen_fd));
  e.restart_count = get_int("TORCHELASTIC_RESTART_COUNT", 0);
  if (e.restart_count < 0)
    throw input_error("TORCHELASTIC_RESTART_COUNT must be at least 0, got " + std::to_string(e.restart_count));
  if (e.world_size < 1)
    throw input_error("WORLD_SIZE must be at least 1, got " + std::to_string(e.world_size));
  if (e.rank < 0 || e.rank >= e.world_size)
    throw input_error("RANK " + std::to_string(e.rank) + " is outside [0, " +
                      std::to_string(e.world_size) + ")");
  if (e.local_world_size < 1 || e.node_rank < 0)
    throw input_error("LOCAL_WORLD_SIZE must be at least 1 and GROUP_RANK at least 0, got " +
                      std::to_string(e.local_world_size) + " and " + std::to_string(e.node_rank));
  if (e.master_port <= 0 || e.master_port > 65535)
    throw input_error("MASTER_PORT " + std::to_string(e.master_port) + " is not a TCP port");
  return e;
}

bool compute_yields() {
  const char* v = std::getenv("PIPPY_COMPUTE_YIELDS");
  if (v == nullptr || std::string(v).empty() || std::string(v) == "0")
    return false;
  if (std::string(v) == "1")
    return true;
  throw input_error(std::string("environment variable PIPPY_COMPUTE_YIELDS='") + v + "' must be 0 or 1");
}

std::vector<int> bind_to_local_share(const dist_env& env) {
  const std::vector<int> allowed = allowed_cpus();
  if (allowed.empty())
    throw input_error("--bind-cores: cannot read this process's CPUs");
  std::vector<int> mine = cpu_share(allowed, env.local_rank, env.local_world_size);
  if (const int err = bind_to_cpus(mine); err != 0)
    throw input_error("--bind-cores: local rank " + std::to_string(env.local_rank) + " of " +
                      std::to_string(env.local_world_size) + ": " + std::strerror(err));
  ::setenv("PIPPY_COMPUTE_YIELDS", "1", 1);
  return mine;
}

bool yield_to_other_threads() {
  sched_param none{};
  return ::pthread_setschedparam(::pthread_self(), SCHED_IDLE, &none) == 0;
}

namespace {
std::vector<long> thread_ids() {
  std::vector<long> ids;
  if (DIR* d = ::opendir("/proc/self/task")) {
    while (const dirent* e = ::readdir(d))
      if (e->d_name[0] != '.')
        ids.push_back(std::strtol(e->d_name, nullptr, 10));
    ::closedir(d);
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}
} // namespace

int start_threads_at_lowest_normal_priority(const std::function<void()>& start) {
  const std::vector<long> before = thread_ids();
  start();
  int lowered = 0;
  const sched_param none{};
  for (long id : thread_ids()) {
    if (std::binary_search(before.begin(), before.end(), id))
      continue;
    // SCHED_BATCH first (Linux keeps the nice across it): at nice 19 alone, a thread that slept long
    // enough still preempted a normal thread on waking (the sleeper's credit) and kept the CPU until the
    // next tick.
    const bool batch = ::sched_setscheduler(static_cast<pid_t>(id), SCHED_BATCH, &none) == 0;
    if (batch && ::setpriority(PRIO_PROCESS, static_cast<id_t>(id), 19) == 0) // Linux: one thread's nice
      ++lowered;
  }
  return lowered;
}

} // namespace pippy
