#pragma once
#include <functional>
#include <string>
#include <vector>

namespace pippy {

// Where this process sits in a job, read from the launcher's environment: torchrun / `pippy run`
// (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR, MASTER_PORT) or Slurm's
// srun (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NODEID, SLURM_NNODES; MASTER_ADDR/MASTER_PORT
// still name the rendezvous, defaulting to SLURM_LAUNCH_NODE_IPADDR and 29500). Without either: a single
// process, world size 1.
struct dist_env {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1; // processes on this node
  int node_rank = 0;        // torchrun's GROUP_RANK
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string launcher = "none"; // torchrun | slurm | none
  // The job's identity (PIPPY_JOB_ID from `pippy run`, else torchrun's TORCHELASTIC_RUN_ID; empty: none).
  // The store's keys live under it, and a rank reaching another job's store is refused at once.
  std::string job_id;
  // PIPPY_MASTER_LISTEN_FD: a socket `pippy run` bound to MASTER_PORT and listens on, handed to rank 0 to
  // serve the store on, so that no other job can take the port between its choice and its use. -1: none.
  int master_listen_fd = -1;
  int restart_count = 0; // TORCHELASTIC_RESTART_COUNT: how often the launcher restarted the ranks
};

// Throws input_error naming the variable when one is set but malformed or out of range.
dist_env read_dist_env();

// PIPPY_COMPUTE_YIELDS=1 (`pippy run --bind-cores`): the rank has cores of its own, and its compute thread
// should give way at once to its transport and actor threads. Without it a woken transport thread waits
// for the compute thread's time slice (milliseconds: Gloo's round trips between two busy processes on two
// cores took 3 ms at the 90th percentile). Throws input_error unless unset, 0 or 1.
bool compute_yields();
// A rank's own --bind-cores, for launchers that bind nothing (torchrun): the calling thread, and the
// threads it starts from then on, on local rank LOCAL_RANK's share of the CPUs it may use (core's
// cpu_share over LOCAL_WORLD_SIZE ranks), and PIPPY_COMPUTE_YIELDS=1, as `pippy run --bind-cores` starts
// a rank. Call it before the rank starts a thread. Returns the CPUs taken; throws input_error when they
// cannot be read or set.
std::vector<int> bind_to_local_share(const dist_env& env);
// Makes the calling thread yield to every other thread wanting its CPU (SCHED_IDLE). Returns false where
// the system refuses.
bool yield_to_other_threads();
// Calls `start`, then gives the threads it started (Linux: new entries of /proc/self/task) the lowest
// priority of normal threads, SCHED_BATCH at nice 19: they no longer preempt a normal thread when they
// wake (Linux lets a batch thread wait for the tick), but still preempt a SCHED_IDLE one. Returns how
// many it lowered; a thread the system refuses to lower is left as it is.
int start_threads_at_lowest_normal_priority(const std::function<void()>& start);

} // namespace pippy
