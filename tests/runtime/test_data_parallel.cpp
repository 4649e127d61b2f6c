// pp x dp over a real in-process Gloo pair (two threads, two replicas of one stage): what
// replica_grad_sync leaves in the gradients before U, plain and with ZeRO-1, and zero1_optimizer's step.
#include <catch2/catch.hpp>

#include "../support/gloo_pair.hpp"
#include "pippy/runtime/clock.hpp"
#include "pippy/runtime/data_parallel.hpp"
#include "pippy/runtime/gloo_group.hpp"

using namespace pippy;

namespace {
// One stage's parameters on replica `rank`: a (5 elements), t (4; a tied copy), b (3); 12 flattened.
// Gradient element i of the flattened whole is 10 * (rank + 1) + i: the replicas' mean is 15 + i.
std::vector<torch::Tensor> stage_params(int rank) {
  std::vector<torch::Tensor> ps{torch::zeros({5}), torch::zeros({2, 2}), torch::zeros({3})};
  float at = 0;
  for (auto& p : ps) {
    p.set_requires_grad(true);
    p.mutable_grad() = torch::arange(at, at + static_cast<float>(p.numel())).view_as(p) + 10.0f * static_cast<float>(rank + 1);
    at += static_cast<float>(p.numel());
  }
  return ps;
}
torch::Tensor flat_grads(const std::vector<torch::Tensor>& ps) {
  std::vector<torch::Tensor> g;
  for (const auto& p : ps)
    g.push_back(p.grad().reshape(-1));
  return torch::cat(g);
}

} // namespace

TEST_CASE("replica_grad_sync: the replicas' mean of every gradient before U", "[runtime][data-parallel]") {
  for (auto mode : {grad_sync_mode::overlap, grad_sync_mode::at_step}) {
    const auto got = test::on_two_ranks([mode](int rank, gloo_group& replicas) {
      const auto ps = stage_params(rank);
      replica_grad_sync sync(replicas, ps, 2, mode);
      const double began = now_us();
      sync.weight_grads_in();
      sync.weight_grads_in(); // the last micro-batch: overlap posts the all-reduce here
      const double gate = now_us();
      bool stepped = false;
      sync.before_step([&] { stepped = true; });
      return std::tuple{stepped, flat_grads(ps), sync.windows(), began, gate, now_us()};
    });
    for (const auto& [stepped, g, windows, began, gate, after] : got) {
      CHECK(stepped);
      CHECK(g.equal(torch::arange(15.0f, 27.0f)));
      // The step's all-reduce, as the trace's REDUCE_GRAD: 12 float gradients, posted at the last
      // micro-batch's weight gradients (overlap) or at the gate (at the step), done before the step.
      REQUIRE(windows.size() == 1);
      CHECK(windows[0].bytes == 12 * sizeof(float));
      CHECK(windows[0].posted_us >= (mode == grad_sync_mode::overlap ? began : gate));
      CHECK(windows[0].posted_us <= (mode == grad_sync_mode::overlap ? gate : after));
      CHECK(windows[0].done_us >= windows[0].posted_us);
      CHECK(windows[0].done_us <= after);
    }
  }
}

TEST_CASE("replica_grad_sync with ZeRO-1: the mean of this replica's shard, and of tied copies whole",
          "[runtime][data-parallel]") {
  // Shards of 6: replica 0 keeps a and t's first element, replica 1 the rest of t and b. t, a tied copy,
  // must be the mean whole on both: its sum with the other holders' copies reads all of it.
  const auto got = test::on_two_ranks([](int rank, gloo_group& replicas) {
    const auto ps = stage_params(rank);
    replica_grad_sync sync(replicas, ps, 1, grad_sync_mode::overlap, optimizer_shard::of(12, rank, 2), {ps[1]});
    sync.weight_grads_in();
    sync.before_step([] {});
    return flat_grads(ps);
  });
  for (int rank = 0; rank < 2; ++rank) {
    const auto shard = optimizer_shard::of(12, rank, 2);
    CHECK(shard.per == 6);
    CHECK(shard.begin == 6 * rank);
    CHECK(shard.count == 6);
  }
  CHECK(optimizer_shard::of(13, 1, 2).count == 6); // the last shard padded: 7 + 6
  const auto mean = torch::arange(15.0f, 27.0f);
  for (int rank = 0; rank < 2; ++rank) {
    INFO("replica " << rank);
    const auto own = torch::arange(0.0f, 12.0f) + 10.0f * static_cast<float>(rank + 1);
    const auto& g = got[static_cast<std::size_t>(rank)];
    CHECK(g.narrow(0, 6 * rank, 6).equal(mean.narrow(0, 6 * rank, 6))); // its shard
    CHECK(g.narrow(0, 5, 4).equal(mean.narrow(0, 5, 4)));                // t, whole
    // Outside both, its own gradients: what it neither sends nor reads.
    const auto other = rank == 0 ? std::pair{9, 3} : std::pair{0, 5};
    CHECK(g.narrow(0, other.first, other.second).equal(own.narrow(0, other.first, other.second)));
  }
}

TEST_CASE("zero1_optimizer: each replica steps its shard, the all-gather gives both the whole update",
          "[runtime][data-parallel]") {
  const auto got = test::on_two_ranks([](int rank, gloo_group& replicas) {
    auto ps = stage_params(rank);
    zero1_optimizer opt(ps, replicas, [](std::vector<torch::Tensor> shard) {
      return std::make_shared<torch::optim::SGD>(shard, torch::optim::SGDOptions(0.5));
    });
    replica_grad_sync sync(replicas, ps, 1, grad_sync_mode::at_step, opt.part(), {});
    sync.before_step([&] { opt.step(); });
    std::vector<torch::Tensor> values;
    for (const auto& p : ps)
      values.push_back(p.detach().reshape(-1));
    return std::pair{opt.slice_size(), torch::cat(values)};
  });
  // SGD, lr 0.5, from zeros: -0.5 x the mean gradient, on both replicas.
  for (const auto& [kept, v] : got) {
    CHECK(kept == 6);
    CHECK(v.equal(torch::arange(15.0f, 27.0f) * -0.5f));
  }
}
