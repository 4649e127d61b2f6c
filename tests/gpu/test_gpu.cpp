// The GPU backend on one GPU: NCCL with a one-rank communicator, and the GPT-style example split into
// stages that all run on the one GPU (two ranks in this process, a CUDA stream each, payloads handed over
// without copies, ordered by CUDA events) giving the unsplit model's loss and gradients.
// Without a CUDA device every test ends the process with PIPPY_SKIP_EXIT_CODE, which CTest reports as
// skipped (never as passed).
#include <catch2/catch.hpp>

#include <ATen/Context.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/cuda.h>

#include <cstdlib>
#include <iostream>

#include "helpers.hpp"
#include "models/gpt.hpp"
#include "pippy/core/generators.hpp"
#include "pippy/gpu/cuda_backend.hpp"
#include "pippy/gpu/nccl_collectives.hpp"
#include "pippy/gpu/nccl_transport.hpp"
#include "pippy/runtime/data_parallel.hpp"

using namespace pippy;

namespace {

void require_gpu() {
  if (torch::cuda::is_available())
    return;
  std::cout << "no CUDA device: GPU test skipped" << std::endl;
  std::exit(PIPPY_SKIP_EXIT_CODE);
}

// float32 everywhere: no TF32 in matmuls or convolutions, so split and unsplit runs agree closely.
void no_tf32() {
  at::globalContext().setAllowTF32CuBLAS(false);
  at::globalContext().setAllowTF32CuDNN(false);
}

struct gpt_fixture {
  models::gpt_config cfg{.vocab_size = 64, .block_size = 16, .n_layer = 4, .n_head = 2, .n_embd = 32};
  torch::Device dev{torch::kCUDA, 0};
  models::GPT net{nullptr};
  torch::Tensor idx, targets;
  gpt_fixture() {
    no_tf32();
    torch::manual_seed(3);
    net = models::GPT(cfg);
    net->to(dev);
    idx = torch::randint(cfg.vocab_size, {8, 16}, torch::kLong).to(dev);
    targets = torch::randint(cfg.vocab_size, {8, 16}, torch::kLong).to(dev);
  }
  forward_fn call() {
    return [n = net](const std::vector<torch::Tensor>& xs) mutable { return std::vector<torch::Tensor>{n(xs[0])}; };
  }
  static torch::Tensor loss(const torch::Tensor& logits, const torch::Tensor& y) {
    return torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}), y.reshape({-1}));
  }
};

struct gpu_run {
  pippy::pipe p;
  std::unique_ptr<caf::actor_system_config> cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::unique_ptr<step_driver> pipeline;
};

gpu_run make_run(gpt_fixture& f, const schedule& s, c10::intrusive_ptr<c10d::Store> store = {}) {
  const int S = s.shape.num_stages();
  // Traced on one micro-batch's shape (what every stage will see).
  const auto example = f.idx.slice(0, 0, f.idx.size(0) / s.shape.num_microbatches);
  gpu_run r{pipeline(*f.net, f.call(), {example}, {.num_stages = S, .clone_parameters = true}), nullptr, nullptr,
            nullptr};
  REQUIRE(r.p.num_stages() == S);
  std::vector<std::shared_ptr<stage_executor>> stages;
  for (int i = 0; i < S; ++i) {
    auto m = r.p.stage(i);
    m->to(f.dev);
    auto opt = std::make_shared<torch::optim::SGD>(m->parameters(), torch::optim::SGDOptions(0.05));
    stages.push_back(std::make_shared<stage_executor>(i, S, m, opt, &gpt_fixture::loss));
  }
  r.cfg = std::make_unique<caf::actor_system_config>();
  configure_for_training(*r.cfg);
  r.sys = std::make_unique<caf::actor_system>(*r.cfg);
  r.pipeline = std::make_unique<step_driver>(
      *r.sys, s, std::move(stages), gpu::cuda_backend({.device = 0, .store = std::move(store), .rank = 0}));
  return r;
}

} // namespace

TEST_CASE("NCCL: a one-rank communicator comes up through the store and moves a tensor to itself", "[gpu][nccl]") {
  require_gpu();
  c10d::HashStore store;
  gpu::nccl_comm comm(store, "test/world", 0, 1, 0);
  int count = 0;
  gpu::nccl_check(ncclCommCount(comm.get(), &count), "ncclCommCount");
  CHECK(count == 1);
  c10::cuda::CUDAGuard guard(0);
  auto stream = c10::cuda::getStreamFromPool(false, 0);
  c10::cuda::CUDAStreamGuard sg(stream);
  auto a = torch::arange(1000, torch::TensorOptions().dtype(torch::kFloat).device(torch::kCUDA, 0));
  auto b = torch::zeros_like(a);
  gpu::nccl_check(ncclGroupStart(), "ncclGroupStart");
  gpu::nccl_check(ncclSend(a.data_ptr(), static_cast<size_t>(a.nbytes()), ncclUint8, 0, comm.get(), stream.stream()),
                  "ncclSend");
  gpu::nccl_check(ncclRecv(b.data_ptr(), static_cast<size_t>(b.nbytes()), ncclUint8, 0, comm.get(), stream.stream()),
                  "ncclRecv");
  gpu::nccl_check(ncclGroupEnd(), "ncclGroupEnd");
  stream.synchronize();
  CHECK(torch::equal(a, b));
  CHECK(comm.async_error() == ncclSuccess);
}

// One replica is all one GPU allows (NCCL refuses two ranks of a communicator on one device): each
// collective must then give its input back, and the data-parallel step must be the plain one.
TEST_CASE("NCCL collectives of the replicas: one replica gets its own sum, slice and gather back", "[gpu][nccl][dp]") {
  require_gpu();
  c10d::HashStore store;
  gpu::nccl_collectives replicas(store, "test/dp0", 0, 1, 0, std::chrono::seconds(30));
  CHECK(replicas.rank() == 0);
  CHECK(replicas.world_size() == 1);
  const auto on_gpu = torch::TensorOptions().dtype(torch::kFloat).device(torch::kCUDA, 0);
  auto a = torch::arange(10, on_gpu), b = torch::ones({3}, on_gpu.dtype(torch::kDouble));
  replicas.allreduce_sum_async({a, b}).get();
  CHECK(torch::equal(a, torch::arange(10, on_gpu)));
  CHECK(torch::equal(b, torch::ones({3}, on_gpu.dtype(torch::kDouble))));
  auto part = torch::empty({10}, on_gpu);
  replicas.reduce_scatter_sum_async(a, part).get();
  CHECK(torch::equal(part, a));
  CHECK(torch::equal(replicas.allgather(a.view({2, 5})), a));
  CHECK_THROWS_WITH(replicas.allreduce_sum_async({torch::ones({2})}), Catch::Contains("must be contiguous on cuda:0"));
  CHECK_THROWS_WITH(replicas.reduce_scatter_sum_async(a, torch::empty({4}, on_gpu)),
                    Catch::Contains("the input must hold 1 parts of the output's size"));
  CHECK_THROWS_WITH(gpu::nccl_type_of(c10::ScalarType::ComplexFloat), Catch::Contains("NCCL has no type for dtype"));

  // The gradients' sync and ZeRO-1 through NCCL, on the GPU's parameters: one step of SGD as without them.
  torch::manual_seed(5);
  torch::nn::Linear plain(4, 3), sharded(4, 3);
  plain->to(torch::kCUDA), sharded->to(torch::kCUDA);
  {
    torch::NoGradGuard no_grad;
    for (std::size_t i = 0; i < plain->parameters().size(); ++i)
      sharded->parameters()[i].copy_(plain->parameters()[i]);
  }
  const auto x = torch::randn({8, 4}, on_gpu);
  torch::optim::SGD sgd(plain->parameters(), torch::optim::SGDOptions(0.1));
  plain(x).pow(2).sum().backward();
  sgd.step();
  const auto params = sharded->parameters();
  zero1_optimizer zero1(params, replicas, [](std::vector<torch::Tensor> slice) {
    return std::make_shared<torch::optim::SGD>(std::move(slice), torch::optim::SGDOptions(0.1));
  });
  replica_grad_sync sync(replicas, params, 1, grad_sync_mode::overlap, zero1.part());
  sharded(x).pow(2).sum().backward();
  sync.weight_grads_in(); // the one micro-batch: posted now
  sync.before_step([&] { zero1.step(); });
  for (std::size_t i = 0; i < params.size(); ++i)
    CHECK(torch::allclose(params[i], plain->parameters()[i], 1e-6, 1e-6));
}

TEST_CASE("GPU: 1F1B and zero-bubble schedules, all stages on one GPU, equal the unsplit model", "[gpu]") {
  require_gpu();
  for (const auto& o : {schedule_options{.name = "1f1b", .num_ranks = 2, .num_microbatches = 4},
                        schedule_options{.name = "zb-h1", .num_ranks = 2, .num_microbatches = 4},
                        schedule_options{.name = "zbv", .num_ranks = 2, .num_microbatches = 4},
                        schedule_options{.name = "interleaved-zb", .num_ranks = 2, .num_microbatches = 4}}) {
    auto opts = o;
    opts.optimizer_steps = false; // compare the gradients of one step
    INFO(opts.name);
    gpt_fixture f;
    auto run = make_run(f, make_schedule(opts));
    const auto loss = run.pipeline->step({f.idx}, f.targets);
    REQUIRE(loss);
    f.net->zero_grad();
    auto ref = gpt_fixture::loss(f.net(f.idx), f.targets);
    ref.backward();
    CHECK(*loss == Approx(ref.item<double>()).epsilon(1e-5));
    auto grads = test::stage_grads(run.p);
    for (const auto& [name, g] : test::grads_of(*f.net)) {
      if (name == "lm_head.weight")
        continue; // the same tensor as tok_emb.weight
      INFO(name);
      REQUIRE(grads.count(name) == 1);
      CHECK(test::close(grads.at(name).cpu(), g.cpu(), 1e-4));
    }
    // The trace holds GPU-timed compute events and memory samples of the caching allocator.
    const auto t = run.pipeline->events();
    CHECK_FALSE(t.events.empty());
    CHECK_FALSE(t.memory.empty());
    for (const auto& e : t.events)
      CHECK(e.end_us >= e.start_us);
  }
}

TEST_CASE("GPU: schedules agree over several optimizer steps: the NCCL path with one rank runs too", "[gpu]") {
  require_gpu();
  auto losses = [](const schedule_options& o, bool with_store) {
    gpt_fixture f;
    c10::intrusive_ptr<c10d::Store> store;
    if (with_store)
      store = c10::make_intrusive<c10d::HashStore>();
    auto run = make_run(f, make_schedule(o), store);
    std::vector<double> out;
    for (int k = 0; k < 3; ++k)
      out.push_back(run.pipeline->step({f.idx}, f.targets).value());
    return out;
  };
  const auto a = losses({.name = "1f1b", .num_ranks = 2, .num_microbatches = 4}, false);
  const auto b = losses({.name = "zbv", .num_ranks = 2, .num_microbatches = 4}, false);
  // One rank holding every stage (V = 4), through a one-rank nccl_transport: no transfers, same losses.
  const auto c = losses({.name = "interleaved-1f1b", .num_ranks = 1, .num_microbatches = 4, .stages_per_rank = 2}, true);
  for (std::size_t k = 0; k < a.size(); ++k) {
    CHECK(b[k] == Approx(a[k]).epsilon(1e-5));
    CHECK(c[k] == Approx(a[k]).epsilon(1e-5));
  }
  CHECK(a.back() < a.front());
}
