// GPU throughput of the GPT-style example (examples/models/gpt.hpp): the unsplit model on one GPU (the
// ceiling), and the same model split into stages and trained by a schedule through the stage actors on
// the GPU backend (cuda_executor; memory hand-over on one GPU, NCCL across processes). Prints one JSON
// object per measurement (bench/gpu_bench.sh puts them beside torch.distributed.pipelining's numbers).
//
//   gpu_bench --mode unsplit|pipeline|both --schedule interleaved-1f1b --ranks 1 --stages-per-rank 4
//             --microbatches 8 --batch 32 --seq 256 --n-layer 8 --n-embd 512 --n-head 8 --vocab 8192
//             --steps 20 --warmup 5
// --ranks 1 puts every stage on this process's GPU; under `pippy run --nproc R` / torchrun (WORLD_SIZE > 1)
// each process is one rank on GPU LOCAL_RANK, NCCL between them.
#include <CLI/CLI.hpp>
#include <ATen/Context.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAFunctions.h>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <torch/cuda.h>

#include <chrono>
#include <iostream>

#include "models/gpt.hpp"
#include "pippy/core/generators.hpp"
#include "pippy/gpu/cuda_backend.hpp"
#include "pippy/gpu/cuda_executor.hpp"
#include "pippy/runtime/environment.hpp"

using namespace pippy;

namespace {

struct options {
  std::string mode = "both", schedule_name = "interleaved-1f1b";
  int ranks = 1, stages_per_rank = 4, microbatches = 8, steps = 20, warmup = 5;
  int64_t batch = 32, seq = 256, n_layer = 8, n_embd = 512, n_head = 8, vocab = 8192;
  double lr = 1e-4;
  std::uint64_t seed = 0;
  bool tf32 = false;
};

torch::Tensor lm_loss(const torch::Tensor& logits, const torch::Tensor& y) {
  return torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}), y.reshape({-1}));
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void report(const options& o, const std::string& what, int stages, double secs, double loss, c10::DeviceIndex dev) {
  const double tokens = static_cast<double>(o.batch * o.seq) * o.steps;
  std::cout << "{\"impl\": \"" << what << "\", \"schedule\": \"" << (what == "unsplit" ? "-" : o.schedule_name)
            << "\", \"ranks\": " << o.ranks << ", \"stages\": " << stages << ", \"microbatches\": " << o.microbatches
            << ", \"batch\": " << o.batch << ", \"seq\": " << o.seq << ", \"n_layer\": " << o.n_layer
            << ", \"n_embd\": " << o.n_embd << ", \"steps\": " << o.steps << ", \"step_ms\": "
            << 1000.0 * secs / o.steps << ", \"tokens_per_s\": " << tokens / secs << ", \"last_loss\": " << loss
            << ", \"peak_allocated_mb\": " << static_cast<double>(gpu::peak_allocated_bytes(dev)) / 1e6 << "}"
            << std::endl;
}

} // namespace

int main(int argc, char** argv) {
  options o;
  CLI::App app{"GPU throughput: unsplit GPT vs the pipelined GPU backend"};
  app.add_option("--mode", o.mode, "unsplit | pipeline | both");
  app.add_option("--schedule", o.schedule_name);
  app.add_option("--ranks", o.ranks, "pipeline ranks (1: every stage on this GPU; else WORLD_SIZE)");
  app.add_option("--stages-per-rank", o.stages_per_rank);
  app.add_option("--microbatches", o.microbatches);
  app.add_option("--steps", o.steps);
  app.add_option("--warmup", o.warmup);
  app.add_option("--batch", o.batch);
  app.add_option("--seq", o.seq);
  app.add_option("--n-layer", o.n_layer);
  app.add_option("--n-embd", o.n_embd);
  app.add_option("--n-head", o.n_head);
  app.add_option("--vocab", o.vocab);
  app.add_option("--lr", o.lr);
  app.add_option("--seed", o.seed);
  app.add_flag("--tf32", o.tf32, "allow TF32 matmuls (default: float32)");
  CLI11_PARSE(app, argc, argv);

  if (!torch::cuda::is_available()) {
    std::cerr << "gpu_bench: no CUDA device\n";
    return 2;
  }
  const dist_env env = read_dist_env();
  const c10::DeviceIndex dev = static_cast<c10::DeviceIndex>(env.local_rank % static_cast<int>(torch::cuda::device_count()));
  c10::cuda::CUDAGuard guard(dev);
  const torch::Device device(torch::kCUDA, dev);
  at::globalContext().setAllowTF32CuBLAS(o.tf32);
  at::globalContext().setAllowTF32CuDNN(o.tf32);
  const models::gpt_config cfg{.vocab_size = o.vocab, .block_size = o.seq, .n_layer = o.n_layer,
                               .n_head = o.n_head, .n_embd = o.n_embd};
  auto make_net = [&] {
    torch::manual_seed(o.seed);
    auto net = models::GPT(cfg);
    net->to(device);
    return net;
  };
  torch::manual_seed(o.seed + 1);
  const auto idx = torch::randint(o.vocab, {o.batch, o.seq}, torch::kLong).to(device);
  const auto tgt = torch::randint(o.vocab, {o.batch, o.seq}, torch::kLong).to(device);

  if ((o.mode == "unsplit" || o.mode == "both") && env.rank == 0) {
    auto net = make_net();
    torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(o.lr));
    double loss = 0;
    auto one = [&] {
      opt.zero_grad();
      auto l = lm_loss(net(idx), tgt);
      l.backward();
      opt.step();
      loss = l.item<double>();
    };
    for (int i = 0; i < o.warmup; ++i)
      one();
    torch::cuda::synchronize();
    gpu::reset_peak(dev);
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < o.steps; ++i)
      one();
    torch::cuda::synchronize();
    report(o, "unsplit", 1, seconds_since(t0), loss, dev);
  }

  if (o.mode == "pipeline" || o.mode == "both") {
    if (o.ranks != env.world_size)
      throw std::runtime_error("--ranks " + std::to_string(o.ranks) + " but WORLD_SIZE is " +
                               std::to_string(env.world_size));
    const auto sched = make_schedule({.name = o.schedule_name, .num_ranks = o.ranks,
                                      .num_microbatches = o.microbatches, .stages_per_rank = o.stages_per_rank});
    const int S = sched.shape.num_stages();
    auto net = make_net();
    annotate_split_points(*net, models::gpt_manual_split(cfg, S)); // block boundaries, as gpu_pipelining.py
    const auto example = idx.slice(0, 0, o.batch / o.microbatches);
    pippy::pipe p = pipeline(
        *net, [n = net](const std::vector<torch::Tensor>& xs) mutable { return std::vector<torch::Tensor>{n(xs[0])}; },
        {example}, {.clone_parameters = true});
    std::vector<std::shared_ptr<stage_executor>> stages(static_cast<std::size_t>(S));
    for (int s : sched.shape.stages_of(env.rank)) {
      auto m = p.stage(s);
      m->to(device);
      stages[static_cast<std::size_t>(s)] = std::make_shared<stage_executor>(
          s, S, m, std::make_shared<torch::optim::SGD>(m->parameters(), torch::optim::SGDOptions(o.lr)), lm_loss);
    }
    caf::actor_system_config cfg_caf;
    configure_for_training(cfg_caf);
    caf::actor_system sys{cfg_caf};
    gpu::cuda_backend_options po{.device = dev};
    if (env.world_size > 1) {
      po.store = connect_store(env, std::chrono::seconds(300));
      po.rank = env.rank;
    }
    step_driver pl(sys, sched, stages, gpu::cuda_backend(po));
    std::optional<double> loss;
    for (int i = 0; i < o.warmup; ++i)
      loss = pl.step({idx}, tgt);
    torch::cuda::synchronize();
    gpu::reset_peak(dev);
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < o.steps; ++i)
      loss = pl.step({idx}, tgt);
    torch::cuda::synchronize();
    const double secs = seconds_since(t0);
    if (loss)
      report(o, "pippy-cpp", S, secs, *loss, dev);
  }
  return 0;
}
