#include "pippy/runtime/gloo_group.hpp"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "gloo_backend.hpp"
#include "pippy/core/error.hpp"
#include "pippy/runtime/clock.hpp"
#include "pippy/runtime/store.hpp"

namespace pippy {

std::string without_backtrace(const std::exception& e) {
  if (const auto* c10_error = dynamic_cast<const c10::Error*>(&e))
    return c10_error->what_without_backtrace();
  const std::string what = e.what();
  return what.substr(0, what.find("\nException raised from"));
}

c10::intrusive_ptr<c10d::Store> connect_store(const dist_env& env, std::chrono::milliseconds timeout,
                                              int port_offset) {
  const std::string where = env.master_addr + ":" + std::to_string(env.master_port + port_offset);
  char secs[32];
  std::snprintf(secs, sizeof secs, "%g s", static_cast<double>(timeout.count()) / 1000.0);
  c10d::TCPStoreOptions so;
  so.port = static_cast<std::uint16_t>(env.master_port + port_offset);
  so.isServer = env.rank == 0;
  so.numWorkers = static_cast<std::size_t>(env.world_size);
  so.waitWorkers = false; // we wait ourselves, to name who is missing
  so.timeout = timeout;
  if (so.isServer && port_offset == 0 && env.master_listen_fd >= 0) {
    const int fd = ::dup(env.master_listen_fd); // the store may close its copy; a restart's rank 0 needs one
    if (fd < 0)
      throw input_error("rank 0: PIPPY_MASTER_LISTEN_FD " + std::to_string(env.master_listen_fd) +
                        " is not an open socket: " + std::strerror(errno));
    so.masterListenFd = fd;
  }
  c10::intrusive_ptr<c10d::Store> store;
  try {
    store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
  } catch (const std::exception& e) {
    if (so.isServer && std::string(e.what()).find("EADDRINUSE") != std::string::npos)
      throw input_error("rank 0: cannot serve the rendezvous store at " + where +
                        ": the port is in use (another job on this --master-port?)");
    throw peer_error(0, "rank " + std::to_string(env.rank) + " (node " + std::to_string(env.node_rank) +
                            "): rendezvous at " + where + " failed (node 0, which serves it, is not up?): " + without_backtrace(e));
  }
  // The job's identity first: the rank serving the store writes it, every other rank reads it, and a rank that
  // reached another job's store (two jobs given one --master-port) stops at once instead of joining it.
  if (!env.job_id.empty()) {
    const std::string key = "pippy/job/" + std::to_string(port_offset);
    std::string owner;
    try {
      if (env.rank == 0)
        store->set(key, std::vector<uint8_t>(env.job_id.begin(), env.job_id.end()));
      const auto got = store->get(key); // waits (within the timeout) for the server's rank 0
      owner.assign(got.begin(), got.end());
    } catch (const std::exception& e) {
      throw peer_error(0, "rank " + std::to_string(env.rank) + ": rendezvous at " + where +
                              ": the store did not say whose it is within " + secs + ": " + without_backtrace(e));
    }
    if (owner != env.job_id)
      throw input_error("rank " + std::to_string(env.rank) + ": the store at " + where + " belongs to job '" + owner +
                        "', not to this job '" + env.job_id + "': another job uses this --master-port; give each job "
                        "its own port");
    store = c10::make_intrusive<c10d::PrefixStore>("job/" + env.job_id, store); // nothing of another job's mixes in
  }
  // Every rank checks in; rank 0 waits for all of them and names the nodes that did not arrive, the
  // others wait for rank 0's go.
  const std::string round = "pippy/arrived/" + std::to_string(port_offset) + "/";
  try {
    store->set(round + std::to_string(env.rank), std::vector<uint8_t>{'1'});
    if (env.rank == 0) {
      std::vector<std::string> keys;
      for (int r = 0; r < env.world_size; ++r)
        keys.push_back(round + std::to_string(r));
      const auto deadline = std::chrono::steady_clock::now() + timeout;
      while (!store->check(keys)) {
        if (std::chrono::steady_clock::now() > deadline) {
          std::string ranks, nodes;
          int first_missing = -1, count = 0, last_node = -1;
          for (int r = 0; r < env.world_size; ++r)
            if (!store->check({keys[static_cast<std::size_t>(r)]})) {
              if (first_missing < 0)
                first_missing = r;
              if (++count <= 8)
                ranks += (count > 1 ? ", " : "") + std::to_string(r);
              const int node = r / std::max(1, env.local_world_size);
              if (node != last_node)
                nodes += (nodes.empty() ? "" : ", ") + std::to_string(node);
              last_node = node;
            }
          if (count > 8)
            ranks += " and " + std::to_string(count - 8) + " more";
          throw peer_error(first_missing, "rank 0: rendezvous at " + where + ": rank(s) " + ranks + " of " +
                                              std::to_string(env.world_size) + " (node(s) " + nodes +
                                              ") did not arrive within " + secs + " (started? the same MASTER_ADDR, "
                                              "MASTER_PORT and WORLD_SIZE?)");
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      store->set(round + "all", std::vector<uint8_t>{'1'});
    } else {
      store->wait({round + "all"}, timeout);
    }
  } catch (const peer_error&) {
    throw;
  } catch (const std::exception& e) {
    throw peer_error(0, "rank " + std::to_string(env.rank) + " (node " + std::to_string(env.node_rank) +
                            "): rendezvous at " + where + ": not every node arrived within " + secs + ": " + without_backtrace(e));
  }
  return store;
}

gloo_group::gloo_group(const dist_env& env, std::chrono::milliseconds timeout)
    : env_(env), timeout_(timeout) {
  store_ = connect_store(env, timeout);
  connect();
}

gloo_group::gloo_group(const c10::intrusive_ptr<c10d::Store>& job_store, const std::string& prefix, int rank,
                       int size, const std::string& master_addr, std::chrono::milliseconds timeout)
    : timeout_(timeout) {
  env_.rank = rank;
  env_.world_size = size;
  env_.master_addr = master_addr;
  store_ = c10::make_intrusive<c10d::PrefixStore>(prefix, job_store);
  connect();
}

void gloo_group::connect() {
  try {
    pg_ = make_gloo_backend(store_, env_.rank, env_.world_size, timeout_, env_.master_addr);
  } catch (const std::exception& e) {
    throw peer_error(-1, "rank " + std::to_string(env_.rank) + ": connecting the process group failed: " +
                             without_backtrace(e));
  }
  send_waiter_.thread = std::thread([this] { wait_loop(send_waiter_); });
  recv_waiter_.thread = std::thread([this] { wait_loop(recv_waiter_); });
}

gloo_group::~gloo_group() {
  for (auto* w : {&send_waiter_, &recv_waiter_}) {
    {
      std::lock_guard lock(w->mu);
      w->stop = true;
    }
    w->cv.notify_all();
    if (w->thread.joinable())
      w->thread.join();
  }
}

void gloo_group::enqueue(waiter& w, pending p) {
  {
    std::lock_guard lock(w.mu);
    w.queue.push_back(std::move(p));
  }
  w.cv.notify_one();
}

void gloo_group::wait_loop(waiter& w) {
  for (;;) {
    pending p;
    {
      std::unique_lock lock(w.mu);
      w.cv.wait(lock, [&] { return w.stop || !w.queue.empty(); });
      if (w.queue.empty())
        return;
      p = std::move(w.queue.front());
      w.queue.pop_front();
    }
    try {
      for (auto& work : p.works)
        work->wait(timeout_);
      if (p.done_at)
        p.done_at->set_value(now_us());
      else
        p.done->set_value();
    } catch (const std::exception& e) {
      const std::string me = "rank " + std::to_string(env_.rank) + ": ";
      const std::string peer = "rank " + std::to_string(p.peer);
      auto failed = std::make_exception_ptr(peer_error(
          p.peer, p.peer < 0 ? me + p.what + " failed (a rank died or timed out): " + without_backtrace(e)
                             : me + p.what + " " + peer + " failed (" + peer + " died or timed out): " + without_backtrace(e)));
      if (p.done_at)
        p.done_at->set_exception(failed);
      else
        p.done->set_exception(failed);
    }
  }
}

void gloo_group::send(const std::vector<torch::Tensor>& tensors, int dst, int tag) {
  pending p;
  p.peer = dst;
  p.what = "sending to";
  p.done = std::make_shared<std::promise<void>>();
  std::lock_guard lock(post_mu_);
  try {
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      std::vector<torch::Tensor> one{tensors[i].contiguous()};
      p.keep_alive.push_back(one[0]);
      p.works.push_back(pg_->send(one, dst, tag + static_cast<int>(i)));
    }
  } catch (const std::exception& e) {
    throw peer_error(dst, "rank " + std::to_string(env_.rank) + ": sending to rank " + std::to_string(dst) +
                              " failed: " + without_backtrace(e));
  }
  sends_.push_back(p.done->get_future().share());
  enqueue(send_waiter_, std::move(p));
}

std::shared_future<void> gloo_group::recv(std::vector<torch::Tensor> into, int src, int tag) {
  return await_recv(post_recv(std::move(into), src, tag));
}

std::shared_future<void> gloo_group::await_recv(posted_recv&& posted) {
  if (!posted.posted())
    throw std::logic_error("gloo_group::await_recv: nothing posted");
  pending p = std::move(*posted.p_);
  posted.p_.reset();
  auto fut = p.done->get_future().share();
  enqueue(recv_waiter_, std::move(p));
  return fut;
}

gloo_group::posted_recv gloo_group::post_recv(std::vector<torch::Tensor> into, int src, int tag) {
  pending p;
  p.peer = src;
  p.what = "receiving from";
  p.done = std::make_shared<std::promise<void>>();
  std::lock_guard lock(post_mu_);
  try {
    for (std::size_t i = 0; i < into.size(); ++i) {
      std::vector<torch::Tensor> one{into[i]};
      p.works.push_back(pg_->recv(one, src, tag + static_cast<int>(i)));
    }
  } catch (const std::exception& e) {
    throw peer_error(src, "rank " + std::to_string(env_.rank) + ": receiving from rank " +
                              std::to_string(src) + " failed: " + without_backtrace(e));
  }
  p.keep_alive = std::move(into);
  return posted_recv(std::make_shared<pending>(std::move(p)));
}

void gloo_group::flush() {
  std::vector<std::shared_future<void>> sends;
  {
    std::lock_guard lock(post_mu_);
    sends = std::move(sends_);
    sends_.clear();
  }
  for (auto& f : sends)
    f.get();
}

void gloo_group::barrier() {
  c10::intrusive_ptr<c10d::Work> work;
  {
    std::lock_guard lock(post_mu_);
    work = pg_->barrier();
  }
  wait_for(std::move(work), "barrier");
}

void gloo_group::allreduce_sum(std::vector<torch::Tensor>& tensors) { allreduce_sum_async(tensors).get(); }

std::shared_future<double> gloo_group::allreduce_sum_async(std::vector<torch::Tensor> tensors) {
  c10::intrusive_ptr<c10d::Work> work;
  {
    std::lock_guard lock(post_mu_);
    work = pg_->allreduce(tensors);
  }
  return collective_done(std::move(work), std::move(tensors), "all-reduce");
}

std::shared_future<double> gloo_group::reduce_scatter_sum_async(torch::Tensor input, torch::Tensor output) {
  c10::intrusive_ptr<c10d::Work> work;
  {
    std::lock_guard lock(post_mu_);
    work = pg_->_reduce_scatter_base(output, input);
  }
  return collective_done(std::move(work), {std::move(input), std::move(output)}, "reduce-scatter");
}

std::shared_future<double> gloo_group::collective_done(c10::intrusive_ptr<c10d::Work> work,
                                                       std::vector<torch::Tensor> keep_alive, const char* what) {
  pending p;
  p.works.push_back(std::move(work));
  p.peer = -1;
  p.what = what;
  p.keep_alive = std::move(keep_alive);
  p.done_at = std::make_shared<std::promise<double>>();
  std::shared_future<double> fut = p.done_at->get_future().share();
  enqueue(recv_waiter_, std::move(p));
  return fut;
}

torch::Tensor gloo_group::allgather(const torch::Tensor& mine) {
  auto in = mine.contiguous();
  auto out = torch::empty({env_.world_size * in.numel()}, in.options());
  c10::intrusive_ptr<c10d::Work> work;
  {
    std::lock_guard lock(post_mu_);
    work = pg_->_allgather_base(out, in);
  }
  wait_for(std::move(work), "all-gather");
  return out;
}

void gloo_group::wait_for(c10::intrusive_ptr<c10d::Work> work, const std::string& what) {
  pending p;
  p.peer = -1;
  p.what = what;
  p.works.push_back(std::move(work));
  p.done = std::make_shared<std::promise<void>>();
  auto fut = p.done->get_future();
  enqueue(recv_waiter_, std::move(p));
  fut.get();
}

void gloo_group::store_set(const std::string& key, const std::string& value) {
  store_->set(key, std::vector<uint8_t>(value.begin(), value.end()));
}

std::string gloo_group::store_get(const std::string& key) {
  auto v = store_->get(key);
  return std::string(v.begin(), v.end());
}

} // namespace pippy
