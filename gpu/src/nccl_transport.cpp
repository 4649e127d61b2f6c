#include "pippy/gpu/nccl_transport.hpp"

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <caf/all.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <cstring>
#include <set>

#include "pippy/core/error.hpp"
#include "pippy/gpu/cuda_payload.hpp"
#include "pippy/core/failure.hpp" // peer_error
#include "pippy/runtime/clock.hpp"

namespace pippy::gpu {

namespace {
int dst_stage_of(const action& send) { return send.kind == action_kind::send_f ? send.stage + 1 : send.stage - 1; }
// Transports made in one job share the store: each gets a prefix from a per-process count, the same on
// every rank because every rank makes its transports in the same order (one program, SPMD).
std::atomic<int> transports_made{0};

std::vector<torch::Tensor> with(std::vector<torch::Tensor> ts, torch::Tensor t) {
  ts.push_back(std::move(t));
  return ts;
}

// The transfer a SEND_F or SEND_B of `stage` starts, as the shape handshake names it.
transfer_key key_of(action_kind send, int stage, int microbatch) {
  return {send == action_kind::send_f ? 0 : 1, stage, microbatch};
}
} // namespace

void nccl_check(ncclResult_t r, const char* what, ncclComm_t comm) {
  if (r == ncclSuccess || r == ncclInProgress)
    return;
  std::string msg = std::string(what) + ": " + ncclGetErrorString(r);
  if (comm)
    if (const char* last = ncclGetLastError(comm); last && *last)
      msg += std::string(" (") + last + ")";
  throw std::runtime_error(msg);
}

// ---- nccl_comm

nccl_comm::nccl_comm(c10d::Store& store, const std::string& key, int rank, int nranks, c10::DeviceIndex device)
    : rank_(rank), nranks_(nranks), device_(device) {
  if (nranks < 1 || rank < 0 || rank >= nranks)
    throw input_error("nccl_comm '" + key + "': rank " + std::to_string(rank) + " of " + std::to_string(nranks));
  ncclUniqueId id;
  if (rank == 0) {
    nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    const auto* b = reinterpret_cast<const std::uint8_t*>(&id);
    store.set(key, std::vector<std::uint8_t>(b, b + sizeof(id)));
  } else {
    const auto v = store.get(key); // waits for rank 0 (store timeout)
    if (v.size() != sizeof(id))
      throw std::runtime_error("nccl_comm '" + key + "': malformed unique id in the store (" +
                               std::to_string(v.size()) + " bytes)");
    std::memcpy(&id, v.data(), sizeof(id));
  }
  c10::cuda::CUDAGuard guard(device);
  nccl_check(ncclCommInitRank(&comm_, nranks, id, rank), ("ncclCommInitRank '" + key + "'").c_str());
}

nccl_comm::~nccl_comm() {
  if (comm_ && !aborted_.load())
    ncclCommDestroy(comm_);
}

ncclResult_t nccl_comm::async_error() const {
  if (aborted_.load())
    return ncclSuccess;
  ncclResult_t r = ncclSuccess;
  const ncclResult_t q = ncclCommGetAsyncError(comm_, &r);
  return q != ncclSuccess ? q : r;
}

void nccl_comm::abort() {
  if (!aborted_.exchange(true) && comm_)
    ncclCommAbort(comm_);
}

// ---- owned_stream

owned_stream::owned_stream(c10::DeviceIndex d) : device(d) {
  c10::cuda::CUDAGuard guard(d);
  int least = 0, greatest = 0;
  C10_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  C10_CUDA_CHECK(cudaStreamCreateWithPriority(&raw, cudaStreamNonBlocking, greatest)); // transfers first
}

owned_stream::~owned_stream() {
  if (raw) {
    c10::cuda::CUDAGuard guard(device);
    cudaStreamDestroy(raw);
  }
}

// ---- nccl_transport

nccl_transport::nccl_transport(c10::intrusive_ptr<c10d::Store> store, int rank, int world_size,
                               const schedule& lowered, event_log& log, nccl_options options)
    : store_(std::move(store)), rank_(rank), world_(world_size), plan_(lowered), log_(log), opt_(options),
      prefix_("pippy/nccl/" + std::to_string(transports_made.fetch_add(1)) + "/") {
  if (static_cast<int>(plan_.ranks.size()) != world_)
    throw input_error("nccl_transport: schedule '" + plan_.name + "' has " + std::to_string(plan_.ranks.size()) +
                      " ranks, world size is " + std::to_string(world_));
  if (rank_ < 0 || rank_ >= world_)
    throw input_error("nccl_transport: rank " + std::to_string(rank_) + " outside world size " + std::to_string(world_));
  stages_.resize(static_cast<std::size_t>(plan_.shape.num_stages()));
  // Every directed pair that carries payloads, and what this rank receives from each peer, in the
  // sender's order.
  std::set<std::pair<int, int>> pairs;
  for (int r = 0; r < world_; ++r)
    for (const auto& a : plan_.ranks[static_cast<std::size_t>(r)]) {
      if (!is_send(a.kind))
        continue;
      const int dst = plan_.shape.rank_of(dst_stage_of(a));
      if (dst == r)
        continue; // same rank: handed over in memory by the stage actors
      pairs.insert({r, dst});
      if (dst == rank_)
        incoming_[r].push_back(a);
      if (r == rank_)
        ++sends_expected_;
    }
  std::size_t recvs = 0;
  for (const auto& a : plan_.ranks[static_cast<std::size_t>(rank_)])
    if (is_receive(a.kind) && plan_.shape.rank_of(a.kind == action_kind::recv_f ? a.stage - 1 : a.stage + 1) != rank_)
      ++recvs;
  std::size_t incoming = 0;
  for (const auto& [src, seq] : incoming_)
    incoming += seq.size();
  if (recvs != incoming)
    throw input_error("nccl_transport: schedule '" + plan_.name + "': rank " + std::to_string(rank_) + " has " +
                      std::to_string(recvs) + " RECV actions but its peers send it " + std::to_string(incoming) +
                      " payloads");
  // One global order (std::set's), so that the two-rank inits cannot wait on each other.
  for (const auto& [a, b] : pairs) {
    if (a != rank_ && b != rank_)
      continue;
    const std::string key = prefix_ + "comm/" + std::to_string(a) + "->" + std::to_string(b);
    auto comm = std::make_unique<nccl_comm>(*store_, key, a == rank_ ? 0 : 1, 2, opt_.device);
    auto owned = std::make_unique<owned_stream>(opt_.device);
    const auto stream = c10::cuda::getStreamFromExternal(owned->raw, opt_.device);
    link l{std::move(owned), std::move(comm), stream, a == rank_ ? 1 : 0};
    (a == rank_ ? out_ : in_).emplace(a == rank_ ? b : a, std::move(l));
  }
  sender_ = std::thread([this] { sender_loop(); });
  poller_ = std::thread([this] { poller_loop(); });
}

nccl_transport::~nccl_transport() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto* t : {&sender_, &receiver_, &poller_})
    if (t->joinable())
      t->join();
  if (abandoned_) // ncclCommDestroy would wait for the posted receive's peer
    for (auto* links : {&out_, &in_})
      for (auto& [peer, l] : *links)
        l.comm->abort();
}

std::vector<int> nccl_transport::send_peers() const {
  std::vector<int> v;
  for (const auto& [peer, l] : out_)
    v.push_back(peer);
  return v;
}
std::vector<int> nccl_transport::recv_peers() const {
  std::vector<int> v;
  for (const auto& [peer, l] : in_)
    v.push_back(peer);
  return v;
}

void nccl_transport::attach(int stage, const caf::actor& stage_actor) {
  std::lock_guard lock(mu_);
  stages_.at(static_cast<std::size_t>(stage)) = stage_actor;
}

caf::actor nccl_transport::stage_actor(int stage) {
  std::lock_guard lock(mu_);
  return stages_.at(static_cast<std::size_t>(stage));
}

void nccl_transport::send(actors::payload p, const caf::actor&) {
  {
    std::lock_guard lock(mu_);
    send_queue_.push_back(std::move(p));
  }
  cv_.notify_all();
}

void nccl_transport::begin_step(const caf::actor& supervisor) {
  if (receiver_.joinable())
    receiver_.join();
  {
    std::lock_guard lock(mu_);
    if (error_) // an earlier step failed; the step driver does not start another
      return;
    supervisor_ = supervisor;
    sends_posted_ = 0;
    receiver_done_ = false;
  }
  if (!out_.empty() || !in_.empty()) { // links are idle here (end_step waited for them)
    const auto& s = (out_.empty() ? in_ : out_).begin()->second.stream;
    c10::cuda::CUDAGuard device(opt_.device);
    s.synchronize();
    auto anchor = timed_event();
    const double t = now_us();
    anchor->record(s);
    std::lock_guard lock(mu_);
    anchor_ = std::move(anchor);
    anchor_us_ = t;
  }
  receiver_ = std::thread([this] { receiver_loop(); });
}

std::optional<failure> nccl_transport::end_step() {
  bool ok;
  {
    std::unique_lock lock(mu_);
    ok = cv_.wait_for(lock, opt_.timeout, [&] {
      return error_ ||
             (receiver_done_ && sends_posted_ == sends_expected_ && pending_.empty() && processing_ == 0);
    });
  }
  if (!ok)
    fail({failure_kind::timeout, "rank " + std::to_string(rank_) + ": the step's transfers did not finish within " +
                                     std::to_string(opt_.timeout.count()) + " ms"});
  if (receiver_.joinable())
    receiver_.join();
  std::lock_guard lock(mu_);
  return error_;
}

void nccl_transport::fail(failure why) {
  caf::actor sup;
  {
    std::lock_guard lock(mu_);
    if (error_)
      return;
    error_ = why;
    sup = supervisor_;
  }
  // Unblocks kernels and host calls that wait for a dead peer (NCCL allows abort from another thread).
  for (auto* links : {&out_, &in_})
    for (auto& [peer, l] : *links)
      l.comm->abort();
  if (sup)
    caf::anon_send(sup, actors::stage_failed{rank_, action{}, std::move(why)});
  cv_.notify_all();
}

void nccl_transport::add_pending(pending p) {
  {
    std::lock_guard lock(mu_);
    pending_.push_back(std::move(p));
  }
  cv_.notify_all();
}

// ---- sends

void nccl_transport::sender_loop() {
  for (;;) {
    actors::payload p;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !send_queue_.empty(); });
      if (stop_)
        return;
      p = std::move(send_queue_.front());
      send_queue_.pop_front();
    }
    try {
      post_send(p);
    } catch (const input_error& e) { // the tensors do not fit the shape handshake's header
      fail({failure_kind::shape_mismatch, "rank " + std::to_string(rank_) + ": " + e.what()});
    } catch (const failure_error& e) { // a payload of another type than cuda_tensors (unwrap)
      fail(e.what_failed());
    } catch (const std::exception& e) {
      fail({failure_kind::peer_lost,
            "rank " + std::to_string(rank_) + ": sending " + to_string(action{p.src_stage, p.kind, p.microbatch}) +
                " failed: " + e.what(),
            plan_.shape.rank_of(p.dst_stage)});
    }
    {
      std::lock_guard lock(mu_);
      ++sends_posted_;
    }
    cv_.notify_all();
  }
}

void nccl_transport::post_send(const actors::payload& p) {
  {
    std::lock_guard lock(mu_);
    if (error_) // the communicators may be aborted: post nothing more
      return;
  }
  const cuda_tensors& in = unwrap(p.data);
  const int dst = plan_.shape.rank_of(p.dst_stage);
  link& l = out_.at(dst);
  // The shape handshake (tensor_header.hpp).
  const auto words = frame_header(in.tensors, key_of(p.kind, p.src_stage, p.microbatch));
  c10::cuda::CUDAGuard device(opt_.device);
  c10::cuda::CUDAStreamGuard stream(l.stream);
  // The header goes first and does not wait for the producer, so the receiver allocates and posts its
  // receive while the producer's kernels still run. From pinned memory: the copy does not block the host.
  auto staged = torch::empty({static_cast<int64_t>(header_words)}, torch::TensorOptions(torch::kLong).pinned_memory(true));
  std::copy(words.begin(), words.end(), staged.data_ptr<int64_t>());
  auto header = staged.to(torch::Device(torch::kCUDA, opt_.device), /*non_blocking=*/true);
  nccl_check(ncclGroupStart(), "ncclGroupStart");
  nccl_check(ncclSend(header.data_ptr(), static_cast<size_t>(header.nbytes()), ncclUint8, l.peer_in_comm,
                      l.comm->get(), l.stream.stream()),
             "ncclSend (header)", l.comm->get());
  nccl_check(ncclGroupEnd(), "ncclGroupEnd (header)", l.comm->get());
  if (in.ready)
    in.ready->block(l.stream); // after the producer's kernels, on the device
  std::vector<torch::Tensor> keep;
  for (const auto& t : in.tensors) {
    if (!t.defined())
      continue;
    auto c = t.contiguous(); // on the send stream, after the wait
    c.record_stream(l.stream);
    keep.push_back(c);
  }
  const double t0 = now_us();
  auto start = timed_event();
  start->record(l.stream); // after the wait: when the transfer can begin
  nccl_check(ncclGroupStart(), "ncclGroupStart");
  for (const auto& c : keep)
    nccl_check(ncclSend(c.data_ptr(), static_cast<size_t>(c.nbytes()), ncclUint8, l.peer_in_comm, l.comm->get(),
                        l.stream.stream()),
               "ncclSend", l.comm->get());
  nccl_check(ncclGroupEnd(), "ncclGroupEnd (send)", l.comm->get());
  auto done = timed_event();
  done->record(l.stream);
  add_pending(pending{.start = std::move(start),
                      .done = std::move(done),
                      .ev = trace_event{.rank = rank_, .act = {p.src_stage, p.kind, p.microbatch}, .start_us = t0,
                                        .bytes = bytes_of(keep), .peer = dst, .source = event_source::measured},
                      .keep_alive = with(std::move(keep), header),
                      .deliver = std::nullopt,
                      .posted = std::chrono::steady_clock::now()});
}

// ---- receives

// The shape handshake's receiving half: the header from `src`, read once it arrived. The receiver thread
// waits for it on the host (the data's size is in it), watching for a stop, a failure and the timeout.
std::optional<std::vector<tensor_header_entry>> nccl_transport::receive_header(link& l, const transfer_key& due,
                                                                               int src) {
  auto header = torch::empty({static_cast<int64_t>(header_words)},
                             torch::TensorOptions().dtype(torch::kLong).device(torch::kCUDA, opt_.device));
  nccl_check(ncclGroupStart(), "ncclGroupStart");
  nccl_check(ncclRecv(header.data_ptr(), static_cast<size_t>(header.nbytes()), ncclUint8, l.peer_in_comm,
                      l.comm->get(), l.stream.stream()),
             "ncclRecv (header)", l.comm->get());
  nccl_check(ncclGroupEnd(), "ncclGroupEnd (header)", l.comm->get());
  auto host = torch::empty({static_cast<int64_t>(header_words)}, torch::TensorOptions(torch::kLong).pinned_memory(true));
  host.copy_(header, /*non_blocking=*/true);
  at::cuda::CUDAEvent arrived;
  arrived.record(l.stream);
  const auto since = std::chrono::steady_clock::now();
  auto pause = opt_.poll_interval; // doubled up to 1 ms while the peer computes
  auto stopped = [&] {
    std::lock_guard lock(mu_);
    return stop_ || error_.has_value();
  };
  while (!arrived.query()) {
    if (stopped()) {
      std::lock_guard lock(mu_);
      abandoned_ = true;
      return std::nullopt;
    }
    if (std::chrono::steady_clock::now() - since > opt_.timeout) {
      fail({failure_kind::timeout,
            "rank " + std::to_string(rank_) + ": no tensor header from rank " + std::to_string(src) + " for stage " +
                std::to_string(due.stage) + " within " + std::to_string(opt_.timeout.count()) + " ms (rank " +
                std::to_string(src) + " died or hangs)",
            src});
      return std::nullopt;
    }
    std::this_thread::sleep_for(pause);
    pause = std::min<std::chrono::microseconds>(2 * pause, std::chrono::milliseconds(1));
  }
  // An abort (fail() sets error_ first) also completes the event, with stale bytes in the buffer, and
  // leaves the communicator freed: nothing more may be read or posted.
  if (stopped())
    return std::nullopt;
  return read_header(host.data_ptr<int64_t>(), due, src);
}

void nccl_transport::receiver_loop() { // failures go through fail(), which reports to supervisor_
  std::map<int, std::size_t> next; // per source rank: index into incoming_[src]
  try {
    c10::cuda::CUDAGuard device(opt_.device);
    for (const auto& a : plan_.ranks[static_cast<std::size_t>(rank_)]) {
      if (!is_receive(a.kind))
        continue;
      const int from = a.kind == action_kind::recv_f ? a.stage - 1 : a.stage + 1;
      const int src = plan_.shape.rank_of(from);
      if (src == rank_)
        continue;
      {
        std::lock_guard lock(mu_);
        if (stop_ || error_)
          break;
      }
      // NCCL matches the k-th receive on this link with the sender's k-th send: receive that payload
      // (the same as `a` whenever both ranks order their transfers alike).
      const action& item = incoming_.at(src).at(next[src]++);
      link& l = in_.at(src);
      c10::cuda::CUDAStreamGuard stream(l.stream); // allocate on the receive stream
      const auto entries = receive_header(l, key_of(item.kind, item.stage, item.microbatch), src);
      if (!entries)
        break; // stopped, or the step failed
      std::vector<torch::Tensor> into =
          receive_buffers(*entries, torch::TensorOptions().device(torch::Device(torch::kCUDA, opt_.device)));
      const double t0 = now_us();
      auto start = timed_event();
      start->record(l.stream);
      nccl_check(ncclGroupStart(), "ncclGroupStart");
      for (const auto& t : into)
        if (t.defined())
          nccl_check(ncclRecv(t.data_ptr(), static_cast<size_t>(t.nbytes()), ncclUint8, l.peer_in_comm,
                              l.comm->get(), l.stream.stream()),
                     "ncclRecv", l.comm->get());
      nccl_check(ncclGroupEnd(), "ncclGroupEnd (recv)", l.comm->get());
      auto done = timed_event();
      done->record(l.stream);
      const auto bytes = bytes_of(into);
      actors::payload p{.src_stage = item.stage, .dst_stage = dst_stage_of(item), .microbatch = item.microbatch,
                        .kind = item.kind, .bytes = bytes, .data = wrap(into, done)};
      pending pd{.start = std::move(start),
                 .done = done,
                 .ev = trace_event{.rank = rank_, .act = {p.dst_stage, item.kind == action_kind::send_f
                                                                           ? action_kind::recv_f
                                                                           : action_kind::recv_b,
                                                          item.microbatch},
                                   .start_us = t0, .bytes = bytes, .peer = src, .source = event_source::measured},
                 .keep_alive = std::move(into),
                 .deliver = std::nullopt,
                 .posted = std::chrono::steady_clock::now()};
      if (opt_.deliver == delivery::on_post)
        caf::anon_send(stage_actor(p.dst_stage), std::move(p));
      else
        pd.deliver = std::move(p);
      add_pending(std::move(pd));
    }
  } catch (const failure_error& e) { // a header that cannot be read
    fail(e.what_failed());
  } catch (const std::exception& e) {
    fail({failure_kind::peer_lost, "rank " + std::to_string(rank_) + ": receiving failed: " + e.what()});
  }
  {
    std::lock_guard lock(mu_);
    receiver_done_ = true;
  }
  cv_.notify_all();
}

// ---- completion detection

void nccl_transport::poller_loop() {
  auto last_check = std::chrono::steady_clock::now();
  for (;;) {
    std::vector<pending> done;
    std::string timeout_msg;
    std::shared_ptr<at::cuda::CUDAEvent> anchor;
    double anchor_us = 0;
    {
      std::unique_lock lock(mu_);
      if (pending_.empty())
        cv_.wait_for(lock, std::chrono::milliseconds(100), [&] { return stop_ || !pending_.empty(); });
      if (stop_)
        return;
      const auto now = std::chrono::steady_clock::now();
      for (auto it = pending_.begin(); it != pending_.end();) {
        bool complete = false;
        try {
          complete = it->done->query();
        } catch (const std::exception& e) { // a CUDA error: report it, drop the transfer
          if (timeout_msg.empty())
            timeout_msg = "rank " + std::to_string(rank_) + ": " + to_string(it->ev.act) + ": " + e.what();
          it = pending_.erase(it);
          continue;
        }
        if (complete) {
          done.push_back(std::move(*it));
          it = pending_.erase(it);
        } else {
          if (timeout_msg.empty() && now - it->posted > opt_.timeout)
            timeout_msg = "rank " + std::to_string(rank_) + ": " + to_string(it->ev.act) + " with rank " +
                          std::to_string(it->ev.peer) + " pending for more than " +
                          std::to_string(opt_.timeout.count()) + " ms (rank " + std::to_string(it->ev.peer) +
                          " died or hangs)";
          ++it;
        }
      }
      processing_ = done.size();
      anchor = anchor_;
      anchor_us = anchor_us_;
    }
    const double t = now_us();
    for (auto& p : done) {
      p.ev.end_us = t; // host time it was seen complete, unless the GPU times below are available
      try {
        if (anchor && p.start && p.start->isCreated()) {
          p.ev.start_us = anchor_us + 1000.0 * anchor->elapsed_time(*p.start);
          p.ev.end_us = anchor_us + 1000.0 * anchor->elapsed_time(*p.done);
        }
      } catch (const std::exception&) {
        // keep the host times
      }
      log_.add(p.ev);
      if (p.deliver)
        caf::anon_send(stage_actor(p.deliver->dst_stage), std::move(*p.deliver));
    }
    if (!done.empty()) {
      {
        std::lock_guard lock(mu_);
        processing_ = 0;
      }
      cv_.notify_all();
    }
    if (!timeout_msg.empty()) // a timeout or a CUDA error
      fail({failure_kind::timeout, timeout_msg});
    if (std::chrono::steady_clock::now() - last_check > std::chrono::milliseconds(100)) {
      last_check = std::chrono::steady_clock::now();
      for (auto* links : {&out_, &in_})
        for (auto& [peer, l] : *links)
          if (auto r = l.comm->async_error(); r != ncclSuccess && r != ncclInProgress)
            fail({failure_kind::peer_lost,
                  "rank " + std::to_string(rank_) + ": NCCL error on the link with rank " + std::to_string(peer) +
                      ": " + ncclGetErrorString(r),
                  peer});
    }
    std::this_thread::sleep_for(opt_.poll_interval);
  }
}

} // namespace pippy::gpu
