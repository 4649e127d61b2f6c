#pragma once
// The one shape handshake between ranks, the same for Gloo (tensor_channel) and NCCL (gpu's
// nccl_transport): before each transfer's data, on the same link and in the same order, the sender sends
// a header of exactly header_words int64 words, [magic, direction, stage, micro-batch, count, (dtype or
// -1 if undefined, ndim, sizes...) per tensor, zeros...]; the receiver reads it, checks that it announces
// the transfer it expects, and allocates the buffers the data lands in (over Gloo, a transfer the link
// carried before has its data's receive posted ahead with the last shapes: tensor_channel.hpp). So the
// shapes may change from one transfer to the next on either transport (an uneven last micro-batch,
// sequence lengths that change between steps), and nothing is agreed out of band.
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace pippy {

// The header's fixed length, and the most tensors one transfer carries.
inline constexpr std::size_t header_words = 64;
inline constexpr std::size_t max_boundary_tensors = 16;

// The transfer a header announces: direction 0 carries a stage's activations forward, 1 its input
// gradients backward; `stage` is the producing stage.
struct transfer_key {
  int direction = 0;
  int stage = 0;
  int microbatch = 0;
};

struct tensor_header_entry {
  bool defined = true;
  torch::ScalarType dtype = torch::kFloat;
  std::vector<int64_t> sizes;
  friend bool operator==(const tensor_header_entry&, const tensor_header_entry&) = default;
};

// The header sent before `tensors` of transfer `key`: header_words words. Throws input_error naming the
// stage when they do not fit (more than max_boundary_tensors, too many dimensions).
std::vector<int64_t> frame_header(const std::vector<torch::Tensor>& tensors, const transfer_key& key);

// The entries of a header received from rank `peer` where transfer `expected` is due. A header of another
// transfer (the links out of step) or a malformed one (no magic, a count above max_boundary_tensors, an
// unknown dtype, a negative size, more than 2^40 elements, too few words) throws failure_error of kind
// shape_mismatch naming the stage and the peer: a peer's bytes decide no allocation before they are checked.
std::vector<tensor_header_entry> read_header(const int64_t* words, const transfer_key& expected, int peer);

// Empty tensors to receive into (undefined for undefined entries), with `options`' device.
std::vector<torch::Tensor> receive_buffers(const std::vector<tensor_header_entry>& entries,
                                           const torch::TensorOptions& options);

// The defined tensors of a transfer: what moves on the wire after the header.
std::vector<torch::Tensor> defined_tensors(const std::vector<torch::Tensor>& tensors);
// Bytes of the defined tensors (a transfer's size, without its header).
std::uint64_t bytes_of(const std::vector<torch::Tensor>& ts);

} // namespace pippy
