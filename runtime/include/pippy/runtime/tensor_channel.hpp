#pragma once
#include <torch/torch.h>

#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "pippy/core/schedule.hpp"
#include "pippy/runtime/gloo_group.hpp"
#include "pippy/runtime/tensor_header.hpp" // bytes_of, and the shape handshake

namespace pippy {

// Activations (forward) and gradients (backward) between stages on different ranks, over a
// gloo_group. Shapes and dtypes travel by the shape handshake of tensor_header.hpp (a header before each
// transfer, as on NCCL). Tags are unique per (direction, stage, micro-batch, tensor index).
//
// A receive posted only once its header has come costs a second round trip: Gloo holds the data's send
// until the sender has handled the receiver's "receive posted" notice, which waited for the sender's
// compute to end (GPT gpipe: 1.6-2.1 ms late in some steps, against 0.15 ms). So where a link has carried
// this transfer (direction, stage, micro-batch) before, the receiver posts the data's receive with the
// shapes of the last one beside the header's, and the sender, tracking the same history, knows it did.
// If the shapes changed, the sender sends a filler of the old shapes first, which that receive takes and
// the receiver drops, then the data for a receive posted from the header.
// Thread-safe: one thread may send while another receives.
class tensor_channel {
public:
  enum class direction { forward = 0, backward = 1 };
  explicit tensor_channel(gloo_group& net) : net_(net) {}

  // Where a RECV_F / RECV_B action's transfer comes from: its direction, the producing stage and its rank.
  struct incoming {
    direction dir;
    int from_stage;
    int src;
  };
  static incoming incoming_of(const action& recv, const pipeline_shape& shape);

  // Posts the sends and returns at once. `from_stage` is the producing stage.
  void send(direction d, int from_stage, int microbatch, const std::vector<torch::Tensor>& tensors, int dst);
  // Blocks until the tensors produced by `from_stage` for `microbatch` arrived from rank src; throws
  // peer_error when src is lost, failure_error (shape_mismatch) for a header that cannot be read.
  std::vector<torch::Tensor> recv(direction d, int from_stage, int microbatch, int src);
  // Posts the receives of that transfer's next recv now (its header's, and its data's with the last
  // shapes), so that a send posted before that recv is called still finds them: Gloo holds a send whose
  // receive is not posted until the sender's I/O thread handles the receiver's notice, and under
  // --bind-cores that thread waits for the sender's compute (a step's first forward: 0.9 ms against
  // 0.09). The next recv of it takes them. At most one is posted ahead per transfer.
  void post_ahead(direction d, int from_stage, int microbatch, int src);
  // post_ahead for the receives `rank` runs before its first compute action in the lowered schedule: what
  // a rank idle at its step's start waits for first, while a peer may already be in that step. Later
  // receives follow the one before them. A post that fails (a lost peer) ends it quietly: the step's own
  // recv reports the peer.
  void post_step_ahead(const schedule& lowered, int rank);

  gloo_group& transport() { return net_; }

private:
  // (direction, stage, micro-batch, peer): the entries of the last such transfer.
  using history = std::map<std::tuple<int, int, int, int>, std::vector<tensor_header_entry>>;
  struct posted_transfer {
    torch::Tensor header;
    gloo_group::posted_recv header_recv;
    std::vector<tensor_header_entry> last; // the shapes of the last such transfer (none the first time)
    std::vector<torch::Tensor> ahead;      // the data's buffers with them
    gloo_group::posted_recv ahead_recv;
  };
  posted_transfer post(direction d, int from_stage, int microbatch, int src);

  gloo_group& net_;
  std::mutex sent_mu_, received_mu_;
  history sent_, received_;
  std::map<std::tuple<int, int, int, int>, posted_transfer> posted_; // under received_mu_
};

} // namespace pippy
