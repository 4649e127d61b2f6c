#pragma once
// actors::transport between ranks on different GPUs, with NCCL point-to-point.
//
// Communicators: one 2-rank NCCL communicator per directed pair of ranks that exchange tensors (a -> b:
// rank a sends, rank b receives, nothing else), bootstrapped through the c10d Store of the rendezvous
// (the sender calls ncclGetUniqueId and store.set()s it, the receiver store.get()s it), created at
// construction in one global order so that the collective inits cannot wait on each other. Each side
// runs the pair's transfers on a CUDA stream of its own. Why pairs and not one world communicator: NCCL
// matches sends and receives between two ranks in posting order and a send kernel occupies its stream
// until the peer receives, so with one stream per rank 1F1B's "send F1 / receive B0" on one rank against
// "send B0 / receive F1" on the other deadlocks; with a stream per direction it cannot. The tensors of one
// payload go in one ncclGroupStart/End.
//
// Ordering against compute, without blocking the CPU: the payload's CUDA event (recorded on the
// producer's compute stream, see cuda_payload.hpp) is waited for by the send stream
// (cudaStreamWaitEvent); a receive records an event on the receive stream that the consumer's compute
// stream waits for. So transfers overlap compute on both sides.
//
// Threads: send() only queues (actors never block); a sender thread posts the sends in the order the
// rank's actors issued them (its schedule order); a receiver thread walks the rank's RECV actions in
// schedule order and posts the receives; a poller thread queries the transfers' events, logs their
// trace events, delivers received payloads when delivery is on_arrival, watches NCCL's asynchronous
// errors and a timeout, and on failure aborts the communicators and tells the supervisor (stage_failed).
// Each communicator is used by one thread on each side (NCCL communicators are not thread-safe).
//
// Shapes and dtypes: the shape handshake of tensor_header.hpp, as on Gloo. Each payload's header goes
// on the link before its data, without waiting for the producer; the receiver thread waits (host) for
// the header (polling its event, backing off to 1 ms), checks that it names the transfer due, allocates
// and posts the data receive. So shapes may change between steps on GPUs too. Stages on the same rank
// never come here (the stage actors hand payloads over in memory, without copies).
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAStream.h>
#include <nccl.h>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "pippy/runtime/tensor_header.hpp"
#include "pippy/actors/seams.hpp"
#include "pippy/core/schedule.hpp"
#include "pippy/runtime/event_log.hpp"
#include "pippy/runtime/store.hpp"
#include "pippy/runtime/environment.hpp"

namespace pippy::gpu {

// Throws std::runtime_error naming the call and NCCL's message.
void nccl_check(ncclResult_t r, const char* what, ncclComm_t comm = nullptr);

// An NCCL communicator (RAII). Not thread-safe: one thread uses it at a time.
class nccl_comm {
public:
  // Collective over the `nranks` ranks that call it with the same key: rank 0 creates the unique id and
  // publishes it under `key` in the store, the others read it; then ncclCommInitRank on `device`.
  // nranks == 1 works (one process, one GPU).
  nccl_comm(c10d::Store& store, const std::string& key, int rank, int nranks, c10::DeviceIndex device);
  ~nccl_comm();
  nccl_comm(const nccl_comm&) = delete;
  nccl_comm& operator=(const nccl_comm&) = delete;

  ncclComm_t get() const { return comm_; }
  int rank() const { return rank_; }
  int size() const { return nranks_; }
  c10::DeviceIndex device() const { return device_; }
  // ncclCommGetAsyncError: ncclSuccess, ncclInProgress or the error.
  ncclResult_t async_error() const;
  // ncclCommAbort (idempotent): frees the communicator; pending kernels return.
  void abort();

private:
  ncclComm_t comm_ = nullptr;
  int rank_, nranks_;
  c10::DeviceIndex device_;
  std::atomic<bool> aborted_{false};
};

// A CUDA stream of our own, at the highest priority (communication first): not from PyTorch's pool, which
// hands out its 32 streams round-robin and could give two links the same one, serializing a send behind a
// receive.
struct owned_stream {
  explicit owned_stream(c10::DeviceIndex device);
  ~owned_stream();
  owned_stream(const owned_stream&) = delete;
  owned_stream& operator=(const owned_stream&) = delete;
  cudaStream_t raw = nullptr;
  c10::DeviceIndex device;
};

// connect_store: runtime/store.hpp (the one rendezvous, shared with gloo_group).

enum class delivery {
  on_post,    // a receive's payload goes to the stage actor as soon as it is posted (with its event):
              // the consumer's kernels are queued behind the transfer, the CPU never waits. Default.
  on_arrival, // the poller delivers it once the transfer's event completed (the stage actor sees real
              // arrival; costs the poll interval and a launch after arrival).
};

struct nccl_options {
  c10::DeviceIndex device = 0;
  std::chrono::milliseconds timeout = std::chrono::seconds(300); // a transfer pending longer fails the step
  delivery deliver = delivery::on_post;
  std::chrono::microseconds poll_interval = std::chrono::microseconds(20);
};

class nccl_transport : public actors::transport {
public:
  // lowered: the schedule with communication, the same on every rank; this transport serves `rank`.
  // Creates the communicators of every pair `rank` belongs to (collective with those peers).
  nccl_transport(c10::intrusive_ptr<c10d::Store> store, int rank, int world_size, const schedule& lowered,
                 event_log& log, nccl_options options = {});
  ~nccl_transport() override;
  nccl_transport(const nccl_transport&) = delete;
  nccl_transport& operator=(const nccl_transport&) = delete;

  void attach(int stage, const caf::actor& stage_actor) override;
  // Starts the step's receives; a failure is reported to `supervisor` as stage_failed.
  void begin_step(const caf::actor& supervisor) override;
  void send(actors::payload p, const caf::actor& sender) override;
  // Waits (host) until the step's transfers completed: the failure (peer lost, timeout), if any.
  std::optional<failure> end_step() override;
  bool blocking() const override { return false; }

  int rank() const { return rank_; }
  // The peers this rank sends to / receives from (one communicator each).
  std::vector<int> send_peers() const;
  std::vector<int> recv_peers() const;

private:
  struct link {
    std::unique_ptr<owned_stream> owned; // declared first: outlives the communicator that used it
    std::unique_ptr<nccl_comm> comm;
    c10::cuda::CUDAStream stream;    // wraps owned->raw
    int peer_in_comm;                // the other side's rank in the 2-rank communicator
  };
  struct pending { // a posted transfer, until its event completes
    std::shared_ptr<at::cuda::CUDAEvent> start, done; // timed, on the link's stream
    trace_event ev;
    std::vector<torch::Tensor> keep_alive;
    std::optional<actors::payload> deliver; // on_arrival receives
    std::chrono::steady_clock::time_point posted;
  };
  void sender_loop();
  void post_send(const actors::payload& p);
  void receiver_loop();
  void poller_loop();
  void add_pending(pending p);
  void fail(failure why);
  caf::actor stage_actor(int stage);
  std::optional<std::vector<tensor_header_entry>> receive_header(link& l, const transfer_key& due, int src);

  c10::intrusive_ptr<c10d::Store> store_;
  int rank_, world_;
  const schedule& plan_;
  event_log& log_;
  nccl_options opt_;
  std::string prefix_; // of this transport's store keys
  std::map<int, link> out_, in_; // by peer rank
  // For each source rank: the sequence of payloads it sends to this rank, in its posting order (NCCL
  // matches the k-th receive on the link with the k-th send).
  std::map<int, std::vector<action>> incoming_;
  // Transfer times: GPU events relative to an event recorded at begin_step on an idle link stream, at
  // host time anchor_us_ (under mu_: set by begin_step, snapshot by the poller with the transfers).
  std::shared_ptr<at::cuda::CUDAEvent> anchor_;
  double anchor_us_ = 0;

  std::mutex mu_; // everything below
  std::condition_variable cv_;
  std::vector<caf::actor> stages_;
  caf::actor supervisor_;
  std::deque<actors::payload> send_queue_;
  std::deque<pending> pending_;
  std::size_t processing_ = 0; // completed transfers the poller is logging / delivering
  std::size_t sends_expected_ = 0, sends_posted_ = 0; // this step
  bool receiver_done_ = true;
  bool abandoned_ = false; // the receiver left a header receive posted (stopped mid-step): abort, not destroy
  bool stop_ = false;
  std::optional<failure> error_;

  std::thread sender_, receiver_, poller_;
};

} // namespace pippy::gpu
