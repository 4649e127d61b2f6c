// The shape handshake (tensor_header.hpp), which Gloo's tensor_channel and NCCL's transport share: the
// header's framing and checks, and a transfer over a real in-process Gloo pair whose shapes change.
#include <catch2/catch.hpp>

#include "../support/gloo_pair.hpp"
#include "pippy/core/error.hpp"
#include "pippy/core/failure.hpp"
#include "pippy/runtime/gloo_group.hpp"
#include "pippy/runtime/tensor_channel.hpp"
#include "pippy/runtime/tensor_header.hpp"

using namespace pippy;

namespace {
const transfer_key due{1, 3, 5}; // gradients of stage 3, micro-batch 5

// A header for `due` whose words after the transfer's identity are `body` (count, entries...).
std::vector<int64_t> with_body(const std::vector<int64_t>& body) {
  auto full = frame_header({}, due);
  std::copy(body.begin(), body.end(), full.begin() + 4);
  return full;
}

failure_kind kind_of_reading(std::vector<int64_t> full) {
  full.resize(header_words, 0);
  try {
    read_header(full.data(), due, 1);
  } catch (const failure_error& e) {
    CHECK(e.what_failed().peer == 1);
    CHECK_THAT(e.what(), Catch::Contains("stage 3") && Catch::Contains("rank 1"));
    return e.what_failed().kind;
  }
  FAIL("the header was accepted");
  return failure_kind::compute_error;
}

} // namespace

TEST_CASE("a header round-trips dtypes, shapes and undefined tensors", "[runtime][header]") {
  const std::vector<torch::Tensor> ts{torch::zeros({3, 5}, torch::kFloat), torch::Tensor(),
                                      torch::zeros({2, 1, 4}, torch::kLong), torch::zeros({}, torch::kHalf)};
  const auto words = frame_header(ts, {0, 2, 7});
  REQUIRE(words.size() == header_words);
  const auto entries = read_header(words.data(), {0, 2, 7}, 0);
  REQUIRE(entries.size() == 4);
  CHECK(entries[0].dtype == torch::kFloat);
  CHECK(entries[0].sizes == std::vector<int64_t>{3, 5});
  CHECK_FALSE(entries[1].defined);
  CHECK(entries[2].dtype == torch::kLong);
  CHECK(entries[2].sizes == std::vector<int64_t>{2, 1, 4});
  CHECK(entries[3].dtype == torch::kHalf);
  CHECK(entries[3].sizes.empty());
  const auto into = receive_buffers(entries, torch::TensorOptions());
  CHECK(into[0].sizes() == ts[0].sizes());
  CHECK_FALSE(into[1].defined());
  CHECK(defined_tensors(into).size() == 3);
}

TEST_CASE("tensors that do not fit the header are refused on the sending stage", "[runtime][header]") {
  std::vector<torch::Tensor> many(max_boundary_tensors + 1, torch::zeros({1}));
  CHECK_THROWS_WITH(frame_header(many, {0, 4, 0}), Catch::Contains("stage 4") && Catch::Contains("17 tensors"));
  std::vector<int64_t> dims(40, 1);
  std::vector<torch::Tensor> deep{torch::zeros(dims), torch::zeros(dims)};
  CHECK_THROWS_AS(frame_header(deep, {0, 4, 0}), input_error);
}

TEST_CASE("a malformed header is a shape mismatch naming the stage and the peer", "[runtime][header]") {
  CHECK(kind_of_reading(with_body({17})) == failure_kind::shape_mismatch);           // too many tensors
  CHECK(kind_of_reading(with_body({-1})) == failure_kind::shape_mismatch);           // a negative count
  CHECK(kind_of_reading(with_body({1, 999, 1, 4})) == failure_kind::shape_mismatch); // an unknown dtype
  CHECK(kind_of_reading(with_body({1, 6, 1, -4})) == failure_kind::shape_mismatch);  // a negative size
  CHECK(kind_of_reading(with_body({1, 6, 3, 1 << 20, 1 << 20, 1 << 20})) == failure_kind::shape_mismatch); // 2^60
  CHECK(kind_of_reading(with_body({1, 6, 70})) == failure_kind::shape_mismatch); // more dimensions than words
  auto runs_off = with_body({1, 6, 59});
  std::fill(runs_off.begin() + 7, runs_off.end(), 1);
  CHECK(kind_of_reading(runs_off) == failure_kind::shape_mismatch); // sizes past the last word
  CHECK(kind_of_reading({}) == failure_kind::shape_mismatch);       // zeros: no magic word
}

TEST_CASE("a header of another transfer than the one due is refused, naming both", "[runtime][header]") {
  for (const transfer_key other : {transfer_key{0, 3, 5}, transfer_key{1, 2, 5}, transfer_key{1, 3, 4}}) {
    const auto words = frame_header({torch::zeros({2})}, other);
    CHECK_THROWS_WITH(read_header(words.data(), due, 1),
                      Catch::Contains("gradients of stage 3 micro-batch 5 is due") && Catch::Contains("rank 1"));
  }
  const auto words = frame_header({torch::zeros({2})}, {0, 3, 4});
  CHECK_THROWS_WITH(read_header(words.data(), due, 1), Catch::Contains("announces the activations of stage 3 micro-batch 4"));
  CHECK(read_header(frame_header({torch::zeros({2})}, due).data(), due, 1).size() == 1);
}

// The receiver posts a transfer's data ahead of its header where the link carried it before, with the
// last shapes (tensor_channel.hpp): the steps below repeat a transfer's shapes (taken by that receive),
// change its sequence length and its dtype (a filler of the old shapes goes first, dropped), and repeat
// again.
TEST_CASE("over Gloo, shapes may change from one transfer to the next", "[runtime][header]") {
  const std::vector<int64_t> tokens{16, 16, 11, 11, 6, 6, 6};
  auto index_dtype = [](std::size_t step) { return step == 5 ? torch::kInt : torch::kLong; };
  const auto got = test::on_two_ranks([&](int rank, gloo_group& net) {
    tensor_channel channel(net);
    std::vector<std::vector<torch::Tensor>> received;
    for (std::size_t step = 0; step < tokens.size(); ++step) {
      const int64_t seq = tokens[step];
      if (rank == 0) {
        channel.send(tensor_channel::direction::forward, 0, 1,
                     {torch::full({2, seq}, float(step)), torch::Tensor(), torch::arange(seq).to(index_dtype(step))}, 1);
        net.flush();
      } else {
        received.push_back(channel.recv(tensor_channel::direction::forward, 0, 1, 0));
      }
    }
    return received;
  })[1];
  REQUIRE(got.size() == tokens.size());
  for (std::size_t step = 0; step < tokens.size(); ++step) {
    const int64_t seq = tokens[step];
    INFO("step " << step);
    REQUIRE(got[step].size() == 3);
    CHECK(got[step][0].equal(torch::full({2, seq}, float(step))));
    CHECK_FALSE(got[step][1].defined());
    CHECK(got[step][2].scalar_type() == index_dtype(step));
    CHECK(got[step][2].equal(torch::arange(seq).to(index_dtype(step))));
  }
}

// A receive posted ahead (tensor_channel::post_ahead, before the sender sends) is what the next recv of
// that transfer takes: the first time with the header alone, then with the data posted at the last
// shapes, and when the shapes change, through the sender's filler. A second post_ahead before that recv
// posts nothing more, or the transfer after it would land in a receive nobody takes.
TEST_CASE("over Gloo, a receive posted ahead takes the next transfer, whatever its shapes", "[runtime][header]") {
  const std::vector<int64_t> tokens{16, 16, 11, 11, 11};
  const std::vector<int> posts{1, 2, 1, 0, 1}; // post_ahead calls before each transfer
  const auto got = test::on_two_ranks([&](int rank, gloo_group& net) {
    tensor_channel channel(net);
    std::vector<std::vector<torch::Tensor>> received;
    for (std::size_t step = 0; step < tokens.size(); ++step) {
      if (rank == 1)
        for (int k = 0; k < posts[step]; ++k)
          channel.post_ahead(tensor_channel::direction::backward, 1, 3, 0);
      net.barrier(); // the receive is posted before the send
      if (rank == 0) {
        channel.send(tensor_channel::direction::backward, 1, 3, {torch::full({tokens[step], 4}, float(step))}, 1);
        net.flush();
      } else {
        received.push_back(channel.recv(tensor_channel::direction::backward, 1, 3, 0));
      }
    }
    return received;
  })[1];
  REQUIRE(got.size() == tokens.size());
  for (std::size_t step = 0; step < tokens.size(); ++step) {
    INFO("step " << step);
    REQUIRE(got[step].size() == 1);
    CHECK(got[step][0].equal(torch::full({tokens[step], 4}, float(step))));
  }
}
