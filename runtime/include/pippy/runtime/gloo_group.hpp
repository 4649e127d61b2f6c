#pragma once
#include <torch/torch.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "pippy/core/failure.hpp" // peer_error
#include "pippy/runtime/collectives.hpp"
#include "pippy/runtime/environment.hpp"

namespace c10d {
class Store;
class Backend;
class Work;
} // namespace c10d

namespace pippy {

// Tensors between processes with c10d: a TCPStore rendezvous (rank 0 serves it at MASTER_ADDR:
// MASTER_PORT) and one ProcessGroupGloo. send and recv only post (Gloo's own I/O thread moves the
// bytes); every blocking Work::wait runs on one of this object's two waiter threads (one for sends,
// one for receives, so that a send waiting for its peer never delays a receive that already arrived),
// which fulfil the futures recv returns. The caller never blocks inside c10d, and a dead peer turns
// into a peer_error after at most `timeout`. Thread-safe.
class gloo_group : public replica_collectives {
public:
  gloo_group(const dist_env& env, std::chrono::milliseconds timeout);
  // A group of some of a job's ranks, met through keys under `prefix` of the job's store: this process
  // is `rank` of `size` in it (a pipeline replica, or the replicas of one pipeline rank).
  gloo_group(const c10::intrusive_ptr<c10d::Store>& job_store, const std::string& prefix, int rank, int size,
             const std::string& master_addr, std::chrono::milliseconds timeout);
  ~gloo_group() override;
  gloo_group(const gloo_group&) = delete;
  gloo_group& operator=(const gloo_group&) = delete;

  int rank() const override { return env_.rank; }
  int world_size() const override { return env_.world_size; }
  std::chrono::milliseconds timeout() const { return timeout_; }

  // Posts one send per tensor to rank dst with tags tag, tag+1, ...; the tensors stay alive until sent.
  void send(const std::vector<torch::Tensor>& tensors, int dst, int tag);
  // Posts receives into `into` (contiguous, preallocated with the agreed shapes); the future is ready
  // once all arrived, or holds a peer_error.
  std::shared_future<void> recv(std::vector<torch::Tensor> into, int src, int tag);
  // The same in two halves: post_recv posts the receives (Gloo tells the sender they are there, so a
  // send posted after it goes out at once), await_recv waits for them from then on, within the
  // timeout, like recv. A posted receive never awaited is dropped with its buffers; its sender must
  // not send to it.
  class posted_recv;
  posted_recv post_recv(std::vector<torch::Tensor> into, int src, int tag);
  std::shared_future<void> await_recv(posted_recv&& posted);
  // Waits for every posted send; throws the first peer_error.
  void flush();
  // All ranks meet (through the process group).
  void barrier();
  // Sums `tensors` (CPU, contiguous) over the group's ranks, in place; throws peer_error.
  void allreduce_sum(std::vector<torch::Tensor>& tensors);
  // The same without waiting: the future is ready once the sums are in `tensors` (kept alive until
  // then), or holds a peer_error. Posting order must be the same on every rank of the group.
  std::shared_future<double> allreduce_sum_async(std::vector<torch::Tensor> tensors) override;
  // Sums `input` (CPU, contiguous, world_size equal parts) over the group's ranks and leaves this rank's
  // part of the sum in `output` (one part's size), without waiting, as allreduce_sum_async. c10d's Gloo
  // runs it as a whole all-reduce of a copy of `input` (cost_table::replica_reduce_scatter_by_allreduce).
  std::shared_future<double> reduce_scatter_sum_async(torch::Tensor input, torch::Tensor output) override;
  // Every rank's `mine` (the same size everywhere) flattened and concatenated in rank order; throws
  // peer_error.
  torch::Tensor allgather(const torch::Tensor& mine) override;
  // Shared key-value store of the rendezvous, for small control data (traces, profiles).
  void store_set(const std::string& key, const std::string& value);
  std::string store_get(const std::string& key);

private:
  struct pending {
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    std::vector<torch::Tensor> keep_alive;
    std::shared_ptr<std::promise<void>> done;
    std::shared_ptr<std::promise<double>> done_at; // instead of done: a collective, told when it was seen done
    int peer;
    std::string what;
  };
  struct waiter {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<pending> queue;
    bool stop = false;
    std::thread thread;
  };
  void wait_loop(waiter& w);
  void enqueue(waiter& w, pending p);
  void connect(); // the process group over store_, and the waiters
  void wait_for(c10::intrusive_ptr<c10d::Work> work, const std::string& what);
  // The future of a posted collective, fulfilled by the receive waiter (in posting order).
  std::shared_future<double> collective_done(c10::intrusive_ptr<c10d::Work> work, std::vector<torch::Tensor> keep_alive,
                                           const char* what);

  dist_env env_;
  std::chrono::milliseconds timeout_;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::Backend> pg_; // a ProcessGroupGloo (gloo_backend.hpp)
  std::mutex post_mu_; // posting (several threads may send/recv) and sends_
  std::vector<std::shared_future<void>> sends_;
  waiter send_waiter_, recv_waiter_;
};

// Held by pointer: c10d's Work is only declared here, and the pointer's deleter is made where it is whole.
class gloo_group::posted_recv {
public:
  posted_recv() = default;
  bool posted() const { return static_cast<bool>(p_); }

private:
  friend class gloo_group;
  explicit posted_recv(std::shared_ptr<pending> p) : p_(std::move(p)) {}
  std::shared_ptr<pending> p_;
};

} // namespace pippy
