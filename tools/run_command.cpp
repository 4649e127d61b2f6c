// pippy run --nproc N -- PROGRAM ARGS...: a launcher in torchrun's manner. Starts N processes with
// RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR and MASTER_PORT (unless given,
// a free port that this launcher holds for the job and hands to rank 0: PIPPY_MASTER_LISTEN_FD); their output goes straight to ours. Across hosts, torchrun's flags: one launcher per node,
// `--nnodes N --node-rank K --nproc-per-node P --master-addr A --master-port Q`: its ranks are K*P ..
// K*P+P-1 of N*P (the ranks' rendezvous names a node that does not arrive in time). When one fails, it says which rank and how, gives the
// others --grace seconds to notice and exit by themselves (the backend names the lost peer within its
// c10d timeout), then stops them (SIGTERM to each rank's process group, SIGKILL 3 s later); the exit
// status is the first failing rank's. On SIGINT or SIGTERM it stops every rank the same way at once and
// exits with 128 + the signal's number (130, 143). The rank to blame is the first that failed by itself
// for a reason of its own: one that exits 3 lost a peer and is a witness, and when all failures are
// witnesses, the rank still running when the grace ends hung. Ranks die with the launcher (SIGKILL
// included: PR_SET_PDEATHSIG), and carry the job's id (PIPPY_JOB_ID, --job-id) so that two jobs on one
// port cannot mix. --max-restarts K stops every rank when one fails and starts them all again, up to K
// times, as torchrun's elastic agent does (TORCHELASTIC_RESTART_COUNT tells them; they resume from their
// checkpoint). --bind-cores gives each rank its own share of the CPUs
// this launcher may use (DeepSpeed's --bind_cores_to_rank) and tells the runtime, through
// PIPPY_COMPUTE_YIELDS=1, that its compute thread may yield to the rank's transport threads.
#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "commands.hpp"
#include "pippy/core/digest.hpp"
#include "pippy/core/error.hpp"
#include "pippy/core/failure.hpp" // lost_peer_exit_status
#include "pippy/core/topology.hpp"

namespace pippy::cli {

namespace {

struct run_options {
  int nproc = 1; // on this node
  int nnodes = 1;
  int node_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;
  double grace_s = 10;
  bool bind_cores = false;
  int max_restarts = 0;
  std::string job_id; // empty: made up (one node) or derived from the program (several)
  std::vector<std::string> program;
};

// One node: random, so two jobs never share an id. Several: every node's launcher must find the same id
// without talking, so it is the program and its arguments (give --job-id to tell two such jobs apart).
std::string make_job_id(const run_options& o) {
  if (!o.job_id.empty())
    return o.job_id;
  if (o.nnodes > 1) {
    std::string all;
    for (const auto& a : o.program)
      all += a + '\0';
    return "p" + hex16(fnv1a(all));
  }
  std::uint64_t r = 0;
  if (FILE* f = std::fopen("/dev/urandom", "rb")) {
    if (std::fread(&r, sizeof r, 1, f) != 1)
      r = 0;
    std::fclose(f);
  }
  r ^= fnv1a(std::to_string(::getpid()) + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
  return "j" + hex16(r);
}

// A port for the job's store that no other job can take: bound and listening here until the job ends,
// and handed to rank 0 (PIPPY_MASTER_LISTEN_FD), whose store serves on it. A port only probed free and
// closed again could be given to a job started beside this one before rank 0 binds it.
struct held_port {
  int fd = -1;
  int port = 0;
  held_port() = default;
  held_port(const held_port&) = delete;
  held_port& operator=(const held_port&) = delete;
  ~held_port() {
    if (fd >= 0)
      ::close(fd);
  }
};

void hold_free_port(held_port& h) {
  h.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (h.fd < 0)
    throw input_error(std::string("run: cannot open a socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(h.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(h.fd, 1024) != 0 ||
      ::getsockname(h.fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    throw input_error(std::string("run: cannot find a free port: ") + std::strerror(errno));
  h.port = ntohs(addr.sin_port);
}

std::string describe(int status) {
  if (WIFEXITED(status))
    return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* name = ::strsignal(sig);
    return "was killed by signal " + std::to_string(sig) + " (" + (name ? name : "?") + ")";
  }
  return "stopped (status " + std::to_string(status) + ")";
}

int exit_code(int status) {
  if (WIFEXITED(status))
    return WEXITSTATUS(status);
  if (WIFSIGNALED(status))
    return 128 + WTERMSIG(status);
  return 1;
}

// One write per message, so our lines and the ranks' do not interleave mid-line.
struct line {
  std::ostringstream out;
  template <class T>
  line& operator<<(const T& x) {
    out << x;
    return *this;
  }
  ~line() {
    const std::string l = out.str() + "\n";
    std::fwrite(l.data(), 1, l.size(), stderr);
    std::fflush(stderr);
  }
};

volatile std::sig_atomic_t interrupted = 0; // the signal (SIGINT, SIGTERM) that asked us to stop
void on_signal(int sig) { interrupted = sig; }

// One attempt: starts the ranks and waits for them; the exit status as described at the top of the file.
int run_attempt(const run_options& o, int port, int listen_fd, const std::string& job_id, int attempt) {
  const int world = o.nnodes * o.nproc;
  const auto global = [&](int local) { return o.node_rank * o.nproc + local; };
  const pid_t launcher = ::getpid();
  std::vector<pid_t> pids(static_cast<std::size_t>(o.nproc), -1);
  const std::vector<int> allowed = o.bind_cores ? allowed_cpus() : std::vector<int>{};
  if (o.bind_cores && allowed.empty())
    throw input_error("run: --bind-cores: cannot read this process's CPUs");
  std::cout.flush();
  std::cerr.flush();
  for (int r = 0; r < o.nproc; ++r) {
    const pid_t pid = ::fork();
    if (pid < 0)
      throw input_error(std::string("run: fork failed: ") + std::strerror(errno));
    if (pid == 0) {
      ::setpgid(0, 0); // its own process group: stopping a rank stops what it started too
      // A rank dies with its launcher, even one killed with SIGKILL (which cannot be caught and forwarded).
      if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != launcher)
        ::_exit(127);
      ::setenv("PIPPY_JOB_ID", job_id.c_str(), 1);
      ::setenv("TORCHELASTIC_RESTART_COUNT", std::to_string(attempt).c_str(), 1);
      ::setenv("TORCHELASTIC_MAX_RESTARTS", std::to_string(o.max_restarts).c_str(), 1);
      ::setenv("RANK", std::to_string(global(r)).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(o.nproc).c_str(), 1);
      ::setenv("GROUP_RANK", std::to_string(o.node_rank).c_str(), 1);
      ::setenv("ROLE_RANK", std::to_string(global(r)).c_str(), 1);
      ::setenv("ROLE_WORLD_SIZE", std::to_string(world).c_str(), 1);
      ::setenv("MASTER_ADDR", o.master_addr.c_str(), 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      ::unsetenv("PIPPY_MASTER_LISTEN_FD");
      if (listen_fd >= 0 && global(r) == 0 && ::fcntl(listen_fd, F_SETFD, 0) == 0) // rank 0 inherits it
        ::setenv("PIPPY_MASTER_LISTEN_FD", std::to_string(listen_fd).c_str(), 1);
      if (o.bind_cores) {
        if (const int err = bind_to_cpus(cpu_share(allowed, r, o.nproc)); err != 0)
          line{} << "pippy run: rank " << global(r) << ": --bind-cores: " << std::strerror(err);
        ::setenv("PIPPY_COMPUTE_YIELDS", "1", 1);
      }
      std::vector<char*> argv;
      for (const auto& a : o.program)
        argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execvp(argv[0], argv.data());
      line{} << "pippy run: rank " << global(r) << ": cannot start '" << o.program[0] << "': " << std::strerror(errno);
      ::_exit(127);
    }
    ::setpgid(pid, pid); // also here, so a signal to the group cannot race the child's own setpgid
    pids[static_cast<std::size_t>(r)] = pid;
  }
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);

  using clock = std::chrono::steady_clock;
  int running = o.nproc;
  int first_failed = -1, result = 0;
  int cause = -1; // the first rank to fail by itself for a reason other than a lost peer
  std::vector<bool> stopped(static_cast<std::size_t>(o.nproc), false); // by a signal (SIGSTOP, SIGTSTP)
  clock::time_point deadline{};
  bool terminated = false, killed = false;
  while (running > 0) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG | WUNTRACED);
    if (pid > 0) {
      int rank = -1;
      for (int r = 0; r < o.nproc; ++r)
        if (pids[static_cast<std::size_t>(r)] == pid)
          rank = r;
      if (rank < 0)
        continue;
      if (WIFSTOPPED(status)) { // still there, and likely the one its peers will soon report lost
        line{} << "pippy run: rank " << global(rank) << " (pid " << pid << ") was stopped by signal "
               << WSTOPSIG(status) << " (" << ::strsignal(WSTOPSIG(status)) << ")";
        stopped[static_cast<std::size_t>(rank)] = true;
        continue;
      }
      pids[static_cast<std::size_t>(rank)] = -1;
      --running;
      const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      if (!ok) {
        line{} << "pippy run: rank " << global(rank) << " (pid " << pid << ") " << describe(status);
        if (cause < 0 && !terminated && exit_code(status) != lost_peer_exit_status)
          cause = rank;
        if (first_failed < 0) {
          first_failed = rank;
          result = exit_code(status);
          deadline = clock::now() + std::chrono::milliseconds(static_cast<int64_t>(o.grace_s * 1000));
          if (running > 0)
            line{} << "pippy run: waiting up to " << o.grace_s << " s for the other ranks to stop";
        }
      }
      continue;
    }
    if (pid < 0 && errno != EINTR)
      break;
    const bool failing = first_failed >= 0 || interrupted;
    if (interrupted && first_failed < 0) {
      first_failed = o.nproc; // no rank: the launcher was interrupted
      result = 128 + interrupted; // as a shell reports a command killed by that signal: 130, 143
      deadline = clock::now();
      line{} << "pippy run: got signal " << interrupted << " (" << ::strsignal(interrupted) << ")";
    }
    if (failing && !terminated && clock::now() >= deadline) {
      line{} << "pippy run: stopping " << running << " remaining rank(s)";
      // Every failure so far lost a peer: the hung one is among those still running, a stopped one first.
      if (cause < 0 && first_failed < o.nproc)
        for (int pass = 0; pass < 2 && cause < 0; ++pass)
          for (int r = 0; r < o.nproc && cause < 0; ++r)
            if (pids[static_cast<std::size_t>(r)] > 0 && (pass == 1 || stopped[static_cast<std::size_t>(r)])) {
              cause = r;
              line{} << "pippy run: rank " << global(r) << " did not exit after its peers lost it: it hung";
            }
      for (int r = 0; r < o.nproc; ++r) {
        const pid_t p = pids[static_cast<std::size_t>(r)];
        if (p <= 0)
          continue;
        ::kill(-p, SIGTERM);
        ::kill(-p, SIGCONT); // a stopped rank gets its SIGTERM now
      }
      terminated = true;
      deadline = clock::now() + std::chrono::seconds(3);
    } else if (terminated && !killed && clock::now() >= deadline) {
      for (auto p : pids)
        if (p > 0)
          ::kill(-p, SIGKILL);
      killed = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (first_failed >= 0 && first_failed < o.nproc) {
    if (cause >= 0 && cause != first_failed)
      line{} << "pippy run: failed: rank " << global(cause) << " caused it (rank " << global(first_failed)
             << ", the first to exit, lost a peer)";
    else
      line{} << "pippy run: failed: rank " << global(first_failed) << " was the first to fail";
  }
  return first_failed >= 0 ? std::max(result, 1) : 0;
}

int run(const run_options& o) {
  if (o.nproc < 1)
    throw input_error("run: --nproc must be at least 1");
  if (o.nnodes < 1 || o.node_rank < 0 || o.node_rank >= o.nnodes)
    throw input_error("run: --node-rank " + std::to_string(o.node_rank) + " is outside [0, --nnodes " +
                      std::to_string(o.nnodes) + ")");
  if (o.nnodes > 1 && o.master_port <= 0)
    throw input_error("run: --nnodes " + std::to_string(o.nnodes) +
                      " needs --master-port (every node's launcher must name the same one)");
  if (o.program.empty())
    throw input_error("run: no program given (pippy run --nproc N -- PROGRAM ARGS...)");
  if (o.max_restarts > 0 && o.nnodes > 1)
    throw input_error("run: --max-restarts restarts the ranks of one node; with --nnodes " + std::to_string(o.nnodes) +
                      " restart the launchers together instead (srun, or torchrun's elastic agent)");
  const std::string job_id = make_job_id(o);
  held_port held;
  if (o.master_port <= 0)
    hold_free_port(held);
  const int port = o.master_port > 0 ? o.master_port : held.port;
  for (int attempt = 0;; ++attempt) {
    const int status = run_attempt(o, port, held.fd, job_id, attempt);
    if (status == 0 || interrupted || attempt >= o.max_restarts)
      return status;
    line{} << "pippy run: restarting all ranks (restart " << attempt + 1 << " of " << o.max_restarts
           << "; they resume from their last checkpoint, if they keep one)";
  }
}
} // namespace

command add_run_command(CLI::App& app) {
  auto o = std::make_shared<run_options>();
  auto* sub = app.add_subcommand("run", "launch N local processes of a program with torchrun's environment");
  sub->add_option("--nproc,--nproc-per-node", o->nproc, "number of processes (ranks) on this node")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  sub->add_option("--nnodes", o->nnodes, "number of nodes, one launcher each")
      ->check(CLI::Range(1, 65536))
      ->capture_default_str();
  sub->add_option("--node-rank", o->node_rank, "this node's index (torchrun's GROUP_RANK)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  sub->add_option("--master-addr", o->master_addr, "rendezvous address (node 0's)")->capture_default_str();
  sub->add_option("--master-port", o->master_port, "rendezvous port (0: a free one; required with --nnodes > 1)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  sub->add_option("--grace", o->grace_s, "seconds the others get to exit by themselves after one fails")
      ->check(within(0, 3600))
      ->capture_default_str();
  sub->add_option("--max-restarts", o->max_restarts,
                  "when a rank fails, stop them all and start them again, up to this many times (torchrun's "
                  "--max-restarts; a restarted rank sees TORCHELASTIC_RESTART_COUNT and resumes from its checkpoint)")
      ->check(CLI::Range(0, 1000))
      ->capture_default_str();
  sub->add_option("--job-id", o->job_id,
                  "the job's identity (torchrun's --rdzv-id): the ranks' store keys live under it, and a rank that "
                  "reaches another job's store stops at once (default: random on one node; from the program and "
                  "its arguments on several)")
      ->check([](const std::string& v) {
        return v.empty() || v.size() > 128 || v.find('/') != std::string::npos ? "at most 128 characters, no '/'" : "";
      });
  sub->add_flag("--bind-cores", o->bind_cores,
                "give each rank its own share of the CPUs, and let its compute thread yield to its transport "
                "threads (for a machine given to the job: other work starves the compute)");
  sub->add_option("program", o->program, "PROGRAM ARGS... (after --)")->required();
  return {sub, [o] { return run(*o); }};
}

} // namespace pippy::cli
